"""The main job survives SIGKILL (issue 15, part C): a ``pipeline.main_job.run`` subprocess on the tiny
model is killed in the middle of writing one of its files, the same config is rerun into the same
directory, and the resumed run's ``summary.json`` numbers (accuracy, AUCs, value sets, dopamine, ...)
equal those of an uninterrupted run, with exactly the same files and no temporary or half-written
one left anywhere in the output tree.

Two kill points, each made deterministic by pausing the child inside the write: half of task b's
rollouts directory written (``rollouts/.b.XXXXXXXX``, before ``io.atomic_dir`` swaps it in), and half
of the first shard of task b's activation store written (``store/b/.shard_00000.safetensors.XXXX.tmp``).

Seen failing: without ``io.remove_atomic_leftovers`` at the start of ``main_job.run`` the killed
rollouts write's temporary directory stayed in ``rollouts/`` forever; with ``save_rollouts``
writing straight into ``rollouts/b`` (not atomic) the rerun took the half-written directory for
finished rollouts and failed to read it (pyarrow ``OSError``); with both that cleanup and the store's
own ``remove_stale_files`` disabled, the half shard ``store/b/.shard_00000.safetensors.*.tmp`` stayed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TINY_NAME, kill_once_ready
from test_refactor_equivalence import _diff, _untimed, parity_task

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
KILL_POINTS = ("rollouts", "store")


def job_config(out):
    from reward_circuits.studies.run import RunConfig

    return RunConfig(tasks=("a", "b"), limit=24, out=str(out), max_new_tokens=8, batch_size=16, eval_examples=4,
                     ablation_layers=1, random_draws=1, quick=True)


def child(out: str, ready: str, kill_at: str) -> None:
    """The killed run (in a subprocess): the main job, paused half-way through one write until SIGKILL."""
    import torch

    torch.set_num_threads(1)
    from reward_circuits.models import from_hf
    from reward_circuits.models.tiny import tiny_hf_model
    from reward_circuits.studies.run import main_job
    from reward_circuits.studies.run.commands import run_and_report

    def pause(half_written: Path) -> None:
        ready_tmp = Path(ready).with_suffix(".part")
        ready_tmp.write_text(str(half_written))
        ready_tmp.rename(ready)
        time.sleep(600)

    if kill_at == "rollouts":
        from datasets import Dataset

        real_save = Dataset.save_to_disk

        def save_to_disk(self, path, *a, **k):
            real_save(self, path, *a, **k)
            if Path(path).name == "b" or Path(path).name.startswith(".b."):  # rollouts/b or io.atomic_dir's temporary
                arrow = next(Path(path).glob("*.arrow"))
                arrow.write_bytes(arrow.read_bytes()[: arrow.stat().st_size // 2])
                pause(Path(path))

        Dataset.save_to_disk = save_to_disk
    else:
        from reward_circuits.data import store

        real_save_file = store.save_file

        def save_file(tensors, filename, *a, **k):
            real_save_file(tensors, filename, *a, **k)
            if Path(filename).parent.name == "b":  # io.atomic_path's temporary in store/b
                Path(filename).write_bytes(Path(filename).read_bytes()[:100])
                pause(Path(filename))

        store.save_file = save_file
    main_job.get_task = parity_task
    hf, tok = tiny_hf_model(seed=0)
    run_and_report(job_config(out), adapter=from_hf(hf, tok, "transformer_lens", name=TINY_NAME))
    raise SystemExit("the job finished without reaching its kill point")


def _run_in_process(out: Path, adapter, monkeypatch) -> dict:
    from reward_circuits.studies.run import main_job
    from reward_circuits.studies.run.commands import run_and_report

    monkeypatch.setattr(main_job, "get_task", parity_task)
    return run_and_report(job_config(out), adapter=adapter).to_dict()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tl_adapter):
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    with pytest.MonkeyPatch.context() as mp:
        summary = _run_in_process(out, tl_adapter, mp)
    return out, summary


def _tree(out: Path) -> list[str]:
    return sorted(str(p.relative_to(out)) for p in out.rglob("*"))


@pytest.mark.parametrize("kill_at", KILL_POINTS)
def test_main_job_killed_mid_write_resumes_to_the_uninterrupted_result(tmp_path, tl_adapter, uninterrupted, monkeypatch, kill_at):
    ref_out, ref_summary = uninterrupted
    out, ready = tmp_path / "run", tmp_path / "ready"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(TESTS)]), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from test_reliability_main_job import child; child(*sys.argv[1:])",
         str(out), str(ready), kill_at],
        cwd=TESTS, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    kill_once_ready(proc, ready)

    half_written = Path(ready.read_text())  # the kill point: the child was half-way through writing this
    assert half_written.exists() and out in half_written.parents and half_written.parent.name == ("rollouts" if kill_at == "rollouts" else "b")
    assert not (out / "summary.json").exists()

    resumed = _run_in_process(out, tl_adapter, monkeypatch)

    problems = _diff(_untimed(json.loads(json.dumps(ref_summary))), _untimed(json.loads(json.dumps(resumed))))
    assert not problems, f"{len(problems)} differences from the uninterrupted run, first: " + "; ".join(problems[:10])
    on_disk = json.loads((out / "summary.json").read_text())
    for section, key in (("rollouts", "accuracy"), ("rollouts", "store_states"), ("value", "auc_by_layer"),
                         ("value", "value_neurons"), ("dopamine", "top_neurons")):
        assert on_disk[section][key] == json.loads((ref_out / "summary.json").read_text())[section][key], (section, key)
    assert _tree(out) == _tree(ref_out), "the resumed run's files differ from the uninterrupted run's"
    leftovers = [p for p in _tree(out) if any(part.startswith(".") or part.endswith(".tmp") for part in Path(p).parts)]
    assert not leftovers, leftovers


def test_remove_atomic_leftovers_touches_only_what_killed_atomic_writes_leave(tmp_path):
    from reward_circuits.io import remove_atomic_leftovers

    keep = [tmp_path / "a" / "summary.json", tmp_path / ".hidden", tmp_path / "b" / ".config.tmp",
            tmp_path / "rollouts" / "b" / "data-00000-of-00001.arrow", tmp_path / ".ipynb_checkpoints" / "x.json"]
    for p in keep:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("x")
    # what a process SIGKILLed inside io.atomic_path / io.atomic_dir leaves (their cleanup never runs)
    (tmp_path / "a" / ".summary.json.ab12cd_9.tmp").write_text("half")
    (tmp_path / "rollouts" / ".b.x1y2z3w4").mkdir(parents=True)
    (tmp_path / "rollouts" / ".b.x1y2z3w4" / "data.arrow").write_text("half")
    (tmp_path / "rollouts" / ".b.old.qwertyui").mkdir()
    removed = remove_atomic_leftovers(tmp_path)
    assert sorted(p.name for p in removed) == [".b.old.qwertyui", ".b.x1y2z3w4", ".summary.json.ab12cd_9.tmp"]
    assert all(p.exists() for p in keep)
    assert remove_atomic_leftovers(tmp_path / "missing") == []
