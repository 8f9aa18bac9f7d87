"""The main job end to end on the tiny model: every stage writes its section and its figures."""

import json
import re

import pytest

import reward_circuits.studies.run.main_job as pipeline
from reward_circuits.studies.run import RunConfig, run_and_report as run
from reward_circuits.tasks import Example, Task

pytestmark = pytest.mark.usefixtures("one_thread")


def parity_task(spec: str, n: int, seed: int) -> Task:
    """Mixed rewards from a random model: 1 when the response has an even number of characters."""
    examples = [Example(f"{spec}-{seed}-{i}", f"Say something {i}.", "0") for i in range(n)]
    return Task(spec.replace(":", "_"), examples, lambda resp, ex: float(len(resp) % 2 == 0), max_new_tokens=8)


def test_main_job_writes_every_section_and_embeds_every_figure(tl_adapter, tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "get_task", lambda spec, n, seed: parity_task(spec, n, seed))
    cfg = RunConfig(tasks=("a", "b"), limit=40, out=str(tmp_path / "run"), max_new_tokens=8, batch_size=16,
                    eval_examples=6, ablation_layers=1, random_draws=2, quick=True)
    summary = run(cfg, adapter=tl_adapter).to_dict()

    on_disk = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    for key in ("rollouts", "value", "ablation", "steering", "confidence", "dopamine"):
        assert key in on_disk, key
    rollouts = on_disk["rollouts"]
    assert rollouts["n_rollouts"] == {"a": 40, "b": 40}
    assert 0 < rollouts["accuracy"]["a"] < 1  # mixed rewards
    assert rollouts["store_states"] > 80
    value = on_disk["value"]
    assert set(value["auc_by_layer"]) >= {"0", "1"} and "0.99" in value["prune_curve"]
    layers = on_disk["ablation"]["layers"]
    assert layers and all(len(v["random_accs"]) == 2 for v in layers.values())
    assert value["best_layer"] in layers  # the ablation covers the layer the value stage chose
    assert on_disk["dopamine"]["values"] == "cross-fitted, 5 folds"
    assert on_disk["wall_time_s"] > 0
    # the report opens with the claims the run measured, each with a verdict of the registry's four
    claims = on_disk["claims"]
    assert [k for k in on_disk if k in ("claims", "rollouts")] == ["claims", "rollouts"]
    measured = {"srs.value_probe_auc", "srs.ablation_vs_random"} | (
        {"srs.dopamine_positive_rpe"} if on_disk["dopamine"].get("status") == "ok" else set())
    assert {c["id"] for c in claims} >= measured, on_disk["dopamine"].get("status")
    assert all(c["verdict"] in ("reproduces", "does not reproduce", "inconclusive", "premise not met") for c in claims)
    ablation_claims = [c for c in claims if c["id"] == "srs.ablation_vs_random"]
    assert all("hierarchical bootstrap" in c["method"] for c in ablation_claims)  # draws and examples resampled

    html = (tmp_path / "run" / "report.html").read_text()
    assert "missing figure" not in html
    n_figures = len(re.findall(r"data:image/png;base64,", html))
    assert n_figures >= 7, n_figures  # value (3) + ablation/dose/steering/confidence (4) + dopamine if it ran

    # a rerun resumes from the rollouts and stores on disk and gives the same value table
    again = run(cfg, adapter=tl_adapter).to_dict()
    assert again["value"]["auc_by_layer"] == value["auc_by_layer"]
