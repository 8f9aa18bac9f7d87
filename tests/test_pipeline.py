"""The main job end to end on the tiny model: every stage writes its section and its figures."""

import json
import re

import pytest

import reward_circuits.studies.run.main_job as pipeline
from reward_circuits.io import relative_paths
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
    # summary.json holds paths relative to the run directory (config.out is "."); the result keeps them absolute
    assert on_disk == json.loads(json.dumps(relative_paths(summary, tmp_path / "run")))
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
    # every comparison the job measures reaches a claim: paired confidence, steering vs matched random
    # sets, the cross-task IoU over probe seeds, the length control (and the dopamine one where it ranked)
    covered = {"srs.confidence_vs_next_token", "srs.confidence_vs_verbalized", "srs.steering_vs_random",
               "srs.cross_task_iou", "srs.value_survives_length"} | (
        {"srs.dopamine_survives_length"} if on_disk["dopamine"].get("status") == "ok" else set())
    assert {c["id"] for c in claims} >= covered
    iou_claims = [c for c in claims if c["id"] == "srs.cross_task_iou"]
    assert {c["scope"].split(", ")[1] for c in iou_claims} == {"uniform", "magnitude_matched"}
    assert all(c["n"] == 3 and None not in c["interval"] and c["p"] is not None for c in iou_claims)  # 3 seed pairs
    assert len(value["iou_across_tasks_over_seeds"]["iou"]) == 3
    steer = on_disk["steering"]["vs_random"]
    assert steer["kind"] == "magnitude_matched" and steer["n_draws"] == 3 and set(steer["factors"]) == {"4", "2"}
    assert all(len(e["random_accs"]) == 3 and "hierarchical" in e["vs_draws"]["method"] for e in steer["factors"].values())
    assert "value_minus_next_token" in on_disk["confidence"]["paired"]
    ablation_claims = [c for c in claims if c["id"] == "srs.ablation_vs_random"]
    assert all("hierarchical bootstrap" in c["method"] for c in ablation_claims)  # draws and examples resampled

    html = (tmp_path / "run" / "report.html").read_text()
    assert "missing figure" not in html
    n_figures = len(re.findall(r"data:image/png;base64,", html))
    assert n_figures >= 7, n_figures  # value (3) + ablation/dose/steering/confidence (4) + dopamine if it ran

    # a rerun resumes from the rollouts and stores on disk and gives the same value table
    again = run(cfg, adapter=tl_adapter).to_dict()
    assert again["value"]["auc_by_layer"] == value["auc_by_layer"]
