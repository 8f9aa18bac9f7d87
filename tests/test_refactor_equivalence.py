"""The whole main job on the tiny model, fixed seed, against numbers pinned from the code before the
architecture refactor (``fixtures/refactor_equivalence_summary.json``, made by the pre-refactor
``pipeline.main_job``). Only timings may differ. A change that is *meant* to move these numbers (e.g.
new probe defaults) regenerates the fixture with ``python tests/test_refactor_equivalence.py`` and
says so in its commit."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

FIXTURE = Path(__file__).parent / "fixtures" / "refactor_equivalence_summary.json"
# (sizing: the plan printed before the job, derived from its config like "config" itself)
UNTIMED = {"timings", "timings_s", "wall_time_s", "peak_rss_mb", "config", "machine", "seconds", "capture_states_per_s", "sizing"}


def parity_task(spec: str, n: int, seed: int):
    from reward_circuits.tasks import Example, Task

    examples = [Example(f"{spec}-{seed}-{i}", f"Say something {i}.", "0") for i in range(n)]
    return Task(spec.replace(":", "_"), examples, lambda resp, ex: float(len(resp) % 2 == 0), max_new_tokens=8)


def run_fixed_job(out: Path, monkeypatch=None, **overrides) -> dict:
    import torch

    import reward_circuits.studies.run.main_job as run_module
    from reward_circuits.models import from_hf
    from reward_circuits.models.tiny import tiny_hf_model
    from reward_circuits.studies.run import RunConfig, run_and_report as run

    if monkeypatch is not None:
        monkeypatch.setattr(run_module, "get_task", parity_task)
    else:
        run_module.get_task = parity_task
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        hf, tok = tiny_hf_model(seed=0)
        adapter = from_hf(hf, tok, "transformer_lens", name="tiny-llama-seed0")
        cfg = RunConfig(tasks=("a", "b"), limit=40, out=str(out), max_new_tokens=8, batch_size=16,
                        eval_examples=6, ablation_layers=1, random_draws=2, quick=True, **overrides)
        summary = run(cfg, adapter=adapter).to_dict()
    finally:
        torch.set_num_threads(old)
    return _untimed(json.loads(json.dumps(summary)))


def _untimed(x):
    if isinstance(x, dict):
        return {k: _untimed(v) for k, v in x.items() if k not in UNTIMED and not k.endswith("_s")}
    if isinstance(x, list):
        return [_untimed(v) for v in x]
    return x


def _diff(a, b, path="", out=None, rel_tol=3e-4, abs_tol=1e-6):
    """Where two summaries differ: keys, list lengths, values (floats within ``rel_tol`` or ``abs_tol``).

    The tolerances absorb float noise between dependency builds, not changes of computation: with torch
    pinned, a venv rebuilt on 2026-12-07 moved 16 of the fixture's floats at the 1e-8 absolute level
    (differences of float32 value readouts, ~5e-4 in size) and up to 1.7e-4 relative (bootstrap
    percentiles of the length control), on the code that had matched at 1e-6 the day before. A
    refactor that changes what is computed moves them by orders of magnitude more, or changes tokens,
    layers or counts, which are compared exactly."""
    out = [] if out is None else out
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                out.append(f"{path}/{k}: only in {'expected' if k in a else 'actual'}")
            else:
                _diff(a[k], b[k], f"{path}/{k}", out, rel_tol, abs_tol)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            _diff(x, y, f"{path}[{i}]", out, rel_tol, abs_tol)
    elif isinstance(a, float) and isinstance(b, (int, float)):
        if not math.isclose(a, b, rel_tol=rel_tol, abs_tol=abs_tol):
            out.append(f"{path}: expected {a!r}, got {b!r}")
    elif a != b:
        out.append(f"{path}: expected {a!r}, got {b!r}")
    return out


def test_main_job_numbers_match_the_pre_refactor_fixture(tmp_path, monkeypatch):
    expected = _untimed(json.loads(FIXTURE.read_text()))
    actual = run_fixed_job(tmp_path / "run", monkeypatch)
    problems = _diff(expected, actual)
    assert not problems, f"{len(problems)} differences, first: " + "; ".join(problems[:10])


def test_the_comparison_can_fail():
    expected = {"value": {"auc": 0.75, "layers": [1, 2]}, "timings": {"total_s": 1.0}}
    assert not _diff(_untimed(expected), _untimed({"value": {"auc": 0.75, "layers": [1, 2]}, "timings": {"total_s": 9.0}}))
    assert _diff(_untimed(expected), _untimed({"value": {"auc": 0.7505, "layers": [1, 2]}}))
    assert not _diff(_untimed(expected), _untimed({"value": {"auc": 0.75005, "layers": [1, 2]}}))  # build noise
    assert _diff(_untimed(expected), _untimed({"value": {"auc": 0.75, "layers": [1, 3]}}))


if __name__ == "__main__":  # regenerate the fixture (only for a deliberate change of numbers)
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        FIXTURE.write_text(json.dumps(run_fixed_job(Path(d) / "run"), indent=1, sort_keys=True) + "\n")
    print(f"wrote {FIXTURE}", file=sys.stderr)
