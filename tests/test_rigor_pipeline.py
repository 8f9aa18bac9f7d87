"""The value stage carries intervals, the logistic floor, target variants, outliers and verdicts."""

from __future__ import annotations

import pytest

from reward_circuits.data.store import write_store_from_arrays
from reward_circuits.data.synthetic import planted_rollouts
from reward_circuits.studies.run.value import ValueStageConfig, run_value_stage

pytestmark = pytest.mark.usefixtures("one_thread")
HOOKS = ("blocks.0.hook_resid_post", "blocks.1.hook_resid_post")


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    acts, rewards, info = planted_rollouts(n_rollouts=240, d=24, k=2, T_range=(3, 8), seed=0, hooks=HOOKS)
    massive = info.value_dims[0]
    for a in acts[HOOKS[0]]:
        a[:, massive] = a[:, massive] * 100 + 5000  # a value dim that is also a massive outlier
    root = tmp_path_factory.mktemp("stage")
    store = write_store_from_arrays(root / "store", acts, rewards.tolist(), model="planted", dtype="float32")
    result = run_value_stage(store, root / "out", config=ValueStageConfig(quick=True, n_boot=200))
    return result, info, massive


def test_value_summary_has_intervals_floor_and_verdicts(stage):
    result, info, _ = stage
    s = result.section.summary
    for key in ("0", "1"):
        ci = s["auc_by_layer_ci"][key]
        assert ci["low"] <= s["auc_by_layer"][key] <= ci["high"] and ci["n"] == len(result.test_indices)
        assert set(s["logistic_floor_by_layer"][key]["auc"]) >= {"estimate", "low", "high", "n"}
        assert isinstance(s["probe_reaches_logistic_floor"][key], bool)
    assert s["best_layer"] == "0"
    verdicts = list(s["verdicts"].values())
    assert verdicts[0] == "reproduces"  # V(s_0) above chance at the planted layer
    assert all(v in ("reproduces", "does not reproduce", "inconclusive at this n") for v in verdicts)
    assert set(s["target_variants"]["auc"]) == {"td0", "td_lambda", "monte_carlo"}


def test_value_stage_reports_massive_dims_in_the_value_set(stage):
    result, info, massive = stage
    s = result.section.summary
    assert massive in s["massive_activations"]["0"]["dims"]
    assert s["massive_in_value_set"]["0"] == ([massive] if massive in result.value_sets["0"].indices else [])
    assert set(result.magnitudes) == set(HOOKS) and result.magnitudes[HOOKS[0]][massive] > 1000


def test_exclude_massive_keeps_outliers_out(tmp_path, stage):
    _, info, massive = stage
    acts, rewards, _ = planted_rollouts(n_rollouts=240, d=24, k=2, T_range=(3, 8), seed=0, hooks=HOOKS)
    for a in acts[HOOKS[0]]:
        a[:, massive] = a[:, massive] * 100 + 5000
    store = write_store_from_arrays(tmp_path / "store", acts, rewards.tolist(), model="planted", dtype="float32")
    result = run_value_stage(store, tmp_path / "out", config=ValueStageConfig(quick=True, n_boot=100, exclude_massive=True))
    assert all(massive not in ns.indices for ns in result.value_sets.values())
    assert result.section.summary["value_sets_exclude_massive"] is True


def test_value_stage_shows_its_progress_step_by_step(tmp_path, capfd):
    """The stage runs for minutes in the main job: one bar advances as each of its ten steps ends,
    naming the step; ``progress=False`` keeps it quiet."""
    acts, rewards, _ = planted_rollouts(n_rollouts=80, d=12, k=2, T_range=(3, 5), seed=1, hooks=HOOKS)
    store = write_store_from_arrays(tmp_path / "store", acts, rewards.tolist(), model="planted", dtype="float32")
    result = run_value_stage(store, tmp_path / "out", config=ValueStageConfig(quick=True, n_boot=50))
    err = capfd.readouterr().err
    assert "value stage (steps)" in err and "10/10" in err and "claim checks" in err  # the last step names itself
    assert set(result.section.summary["timings_s"]) >= {"fit_all_layers_s", "pooled_probe_s", "claim_checks_s", "total_s"}
    assert result.section.summary["length_control"]["n_rollouts"] == len(result.test_indices)  # V(s_t), length-controlled
    run_value_stage(store, tmp_path / "quiet", config=ValueStageConfig(quick=True, n_boot=50, progress=False))
    assert "value stage" not in capfd.readouterr().err
