"""Every study has one shape (issue 26): a validated config on the shared base → run(config) → a typed
Result with to_section(s)/to_dict → its command; the shared fields are validated in one place."""

import dataclasses
import importlib
import inspect
import json

import pytest

from reward_circuits.configs import StudyConfig, check_backend, check_device
from reward_circuits.studies import STUDY_PACKAGES

SHARED = ("model", "backend", "device", "seed", "out", "progress")


@pytest.mark.parametrize("command", sorted(STUDY_PACKAGES))
def test_every_study_has_the_same_shape(command):
    package = importlib.import_module(STUDY_PACKAGES[command])
    assert package.__name__.rsplit(".", 1)[1] == command.replace("-", "_"), "folder name = command name"
    assert issubclass(package.Config, StudyConfig) and dataclasses.is_dataclass(package.Config)
    assert [f.name for f in dataclasses.fields(package.Config)][: len(SHARED)] == list(SHARED)
    assert hasattr(package.Result, "to_dict")
    assert hasattr(package.Result, "to_section") or hasattr(package.Result, "to_sections")
    first = next(iter(inspect.signature(package.run).parameters.values()))
    assert first.name in ("cfg", "config"), f"{command}: run takes the config first"
    assert callable(importlib.import_module(f"{STUDY_PACKAGES[command]}.commands").register)
    for bad in ({"device": "tpu"}, {"backend": "hf"}):  # every config validates the shared fields (super().__post_init__)
        with pytest.raises(ValueError):
            package.Config(**bad)


@pytest.mark.parametrize("command", sorted(STUDY_PACKAGES))
def test_every_study_command_takes_the_shared_options(command, capsys):
    from reward_circuits.cli import main

    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--model", "--backend", "--device", "--seed", "--out", "--progress", "--no-progress"):
        assert flag in text, f"`reward-circuits {command} --help` lacks {flag}"


@pytest.mark.parametrize("command", sorted(STUDY_PACKAGES))
def test_a_bad_device_or_backend_is_refused_by_every_command(command, capsys):
    from reward_circuits.cli import main

    for option, value, says in (("--device", "cuda:0", "CUDA"), ("--device", "tpu", "not a torch device"),
                                ("--backend", "hf", "invalid choice")):
        with pytest.raises(SystemExit) as exit_:
            code = main([command, option, value, "--out", "/nonexistent/never-written"])
            raise SystemExit(code)
        assert exit_.value.code == 2, (command, option, value)
        assert says in capsys.readouterr().err, (command, option, value)


def test_device_and_backend_checks_name_the_fix():
    check_backend("nnsight"), check_backend("transformer_lens"), check_device("cpu")
    with pytest.raises(ValueError, match="'transformer_lens'.*'nnsight'"):
        check_backend("huggingface")
    with pytest.raises(ValueError, match="cpu.*cuda:N"):
        check_device("gpu")
    assert check_device(" CPU ") == "cpu"  # normalised
    with pytest.raises(ValueError, match="cuda"):
        check_device("cpu:1")
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="--device cpu"):
            check_device("cuda")


@pytest.mark.slow
def test_the_main_job_alone_writes_no_report_and_its_result_is_the_report(tmp_path, tl_adapter, monkeypatch):
    """``main_job.run`` returns a RunResult and writes only its artefacts; the command's report is that result."""
    from test_refactor_equivalence import parity_task

    from reward_circuits.io import relative_paths
    from reward_circuits.studies.run import RunConfig, RunResult, main_job, run_and_report

    monkeypatch.setattr(main_job, "get_task", parity_task)
    cfg = dict(tasks=("a",), limit=24, max_new_tokens=6, batch_size=16, stages=("rollouts", "store"), quick=True)
    alone = main_job.run(RunConfig(out=str(tmp_path / "alone"), **cfg), adapter=tl_adapter)
    assert isinstance(alone, RunResult) and [s.key for s in alone.to_sections()] == ["claims", "rollouts"]  # claims first
    assert not (tmp_path / "alone" / "summary.json").exists() and not (tmp_path / "alone" / "report.html").exists()
    reported = run_and_report(RunConfig(out=str(tmp_path / "reported"), **cfg), adapter=tl_adapter)
    on_disk = json.loads((tmp_path / "reported" / "summary.json").read_text())
    # the report is the result, with its paths written relative to the run directory (config.out is ".")
    assert on_disk == json.loads(json.dumps(relative_paths(reported.to_dict(), tmp_path / "reported")))
    assert on_disk["config"]["out"] == "." and reported.to_dict()["config"]["out"] == str(tmp_path / "reported")
    untimed = lambda d: {k: v for k, v in d.items() if not k.endswith(("_s", "_per_s"))}  # noqa: E731
    assert untimed(on_disk["rollouts"]) == untimed(json.loads(json.dumps(alone.to_dict()["rollouts"])))
