"""``--device``: every command accepts it, checks it against the machine, and says how to fix a bad one.

CUDA runs (a tiny model generating and sweeping on the GPU with the CPU's tokens) are skipped where
CUDA is absent; the validation is tested everywhere.
"""

from __future__ import annotations

import argparse

import pytest
import torch

from reward_circuits.cli import build_parser
from reward_circuits.configs import StudyConfig, check_device

HAS_CUDA = torch.cuda.is_available()


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _device_action(p: argparse.ArgumentParser):
    return next((a for a in p._actions if "--device" in a.option_strings), None)


def test_every_command_accepts_device():
    commands = _subcommands()
    assert {"run", "probe", "architectures", "sae-td", "irm", "yfpo", "applications", "compare"} <= set(commands)
    for name, p in commands.items():
        action = _device_action(p)
        assert action is not None, f"`reward-circuits {name}` has no --device"
        assert action.default == "cpu"
        assert action.type("cpu") == "cpu" and action.type("CPU") == "cpu"


@pytest.mark.skipif(HAS_CUDA, reason="this machine has CUDA: the refusal cannot be seen here")
def test_cuda_without_cuda_is_a_usage_error_naming_the_fix(capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["run", "--device", "cuda"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "CUDA is not available" in err and "--device cpu" in err
    with pytest.raises(ValueError, match="CUDA is not available"):
        StudyConfig(device="cuda")
    from reward_circuits.models import load_model

    with pytest.raises(ValueError, match="CUDA is not available"):
        load_model("default", device="cuda")  # refused before any weights are read


@pytest.mark.parametrize("bad", ["gpu", "cuda:x", "cpu:0", "", "tpu"])
def test_malformed_devices_are_refused_with_the_forms_that_work(bad):
    with pytest.raises(ValueError, match="'cpu', 'cuda', 'cuda:N'"):
        check_device(bad)


def test_study_configs_check_their_device():
    from reward_circuits.studies.run.config import RunConfig

    assert RunConfig(device="CPU").device == "cpu"
    with pytest.raises(ValueError, match="not a torch device"):
        RunConfig(device="gpu")


@pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA")
def test_a_tiny_model_generates_and_sweeps_on_cuda_as_on_cpu():
    from reward_circuits.interventions import scale, sweep
    from reward_circuits.models import GenerationConfig, from_hf
    from reward_circuits.models.tiny import tiny_hf_model

    assert check_device("cuda:0") == "cuda:0"
    prompts = ["hello world", "hi", "abc def ghi jkl"]
    conds = {"baseline": [], "last": [("blocks.1.hook_resid_post", scale([1, 2], 0.5))]}
    cfg = GenerationConfig(max_new_tokens=6, progress=False)
    out = {}
    for device in ("cpu", "cuda"):
        hf, tok = tiny_hf_model(seed=0)
        adapter = from_hf(hf.to(device), tok, "transformer_lens")
        assert adapter.device.type == device
        res = sweep(adapter, prompts, conds, cfg)
        out[device] = {c.name: [g.response_ids for g in c.generations] for c in res}
    assert out["cpu"] == out["cuda"]
