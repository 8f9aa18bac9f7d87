"""Applications on planted data: best-of-N, early abort, calibration, routing, error detection,
curation and regression monitoring (no model needed)."""

from __future__ import annotations

import numpy as np
import pytest

from reward_circuits.neurons import NeuronSet
from reward_circuits.analysis.stats import Interval
from reward_circuits.studies.applications import (
    AbortRule,
    ApplicationsConfig,
    CandidateSet,
    CompareConfig,
    CurationColumns,
    FlagRule,
    RoutingOutcomes,
    ScoreCalibrator,
    ValueSnapshot,
    best_of_n,
    compare_snapshots,
    cross_calibrate,
    curate,
    decide,
    detect_errors,
    expected_calibration_error,
    load_curation,
    majority_choice,
    routing_study,
    select,
    surviving_candidates,
)


# ---------------------------------------------------------------------------------------------
# best-of-N
# ---------------------------------------------------------------------------------------------
def planted_candidates(scorer: str, p: int = 200, k: int = 8, p_correct: float = 0.45, seed: int = 0) -> CandidateSet:
    """Each candidate is right with probability ``p_correct`` (answer "gold"); wrong answers are
    spread over 20 distractors, so majority vote usually finds the right answer. The scorer is the
    reward plus small noise (oracle) or pure noise (random)."""
    rng = np.random.default_rng(seed)
    rewards = (rng.random((p, k)) < p_correct).astype(float)
    answers = [["gold" if r else f"wrong{rng.integers(20)}" for r in row] for row in rewards]
    noise = rng.random((p, k))
    values = rewards + 0.1 * noise if scorer == "oracle" else noise
    lengths = rng.integers(5, 30, (p, k)).astype(float)
    return CandidateSet([f"p{i}" for i in range(p)], rewards, values, answers, lengths,
                        greedy_rewards=rewards[:, 0], greedy_lengths=lengths[:, 0])


def test_oracle_scorer_beats_majority_vote_and_random_scorer_does_not():
    oracle = best_of_n(planted_candidates("oracle"), n_boot=500)
    assert oracle.value_minus_majority.low > 0, oracle.value_minus_majority
    assert oracle.at("value", 8).accuracy.estimate == pytest.approx(oracle.at("oracle", 8).accuracy.estimate)
    random = best_of_n(planted_candidates("random"), n_boot=500)
    assert random.value_minus_majority.high < 0, random.value_minus_majority
    # a random scorer is a random choice: its difference from the exact expectation straddles 0
    assert random.value_minus_random.low < 0 < random.value_minus_random.high
    # the curve has every k and the greedy point
    assert [p.k for p in oracle.curve("majority")] == [1, 2, 4, 8]
    assert oracle.greedy is not None and oracle.greedy.accuracy.n == 200


def test_select_rules_on_a_hand_example():
    c = CandidateSet(["a", "b"], [[0, 1, 1], [1, 0, 0]], [[0.9, 0.2, 0.3], [0.1, 0.8, 0.7]],
                     [["5", "7", "7"], ["3", "4", "4"]], [[4, 5, 6], [1, 2, 3]])
    assert select(c, "value", 3)[0].tolist() == [0, 0]
    assert select(c, "majority", 3)[0].tolist() == [1, 0]
    assert select(c, "oracle", 3)[0].tolist() == [1, 1]
    assert select(c, "random", 3)[0] == pytest.approx([2 / 3, 1 / 3])
    assert select(c, "value", 3)[1].tolist() == [15, 6]
    assert majority_choice([None, None]) == 0
    assert majority_choice([None, "x", "y", "y"]) == 2


def test_early_abort_fires_on_a_dropping_trace_and_not_on_a_flat_one():
    rule = AbortRule(drop=0.3, min_steps=1)
    assert rule.abort_step([0.8, 0.85, 0.7, 0.5, 0.2, 0.1]) == 3  # 0.5 <= peak 0.85 - 0.3
    assert rule.abort_step([0.6, 0.62, 0.58, 0.6, 0.61]) is None
    assert AbortRule(drop=None, floor=0.2).abort_step([0.5, 0.4, 0.1]) == 2
    # never aborts at s_0 (the prompt) even when it is below the floor
    assert AbortRule(drop=None, floor=0.5).abort_step([0.1, 0.6]) is None
    with pytest.raises(ValueError, match="drop or floor"):
        AbortRule(drop=None, floor=None)


def test_abort_never_kills_the_last_running_sample_and_saves_tokens():
    assert surviving_candidates([2, 3, None], [[0.9, 0.5, 0.1], [0.9, 0.9, 0.9, 0.2], [0.5] * 5]) == [False, False, True]
    assert surviving_candidates([2, 2], [[0.9, 0.9, 0.1], [0.9, 0.9, 0.3]]) == [False, True]  # higher value carries on
    dropping = [0.9, 0.9, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]
    flat = [0.6] * 10
    c = CandidateSet(["a"], [[0, 1]], [[0.1, 0.6]], [["1", "2"]], [[9, 9]], traces=[[dropping, flat]])
    res, tokens = select(c, "value_abort", 2, AbortRule(drop=0.3))
    assert res.tolist() == [1.0] and tokens.tolist() == [2 + 9]
    out = best_of_n(c, abort=AbortRule(drop=0.3), n_boot=100)
    assert out.abort_token_saving == pytest.approx(1 - 11 / 18)


# ---------------------------------------------------------------------------------------------
# calibration
# ---------------------------------------------------------------------------------------------
def test_calibration_lowers_ece_of_a_planted_miscalibrated_score():
    rng = np.random.default_rng(0)
    true_p = rng.random(2000)
    correct = (rng.random(2000) < true_p).astype(float)
    overconfident = true_p ** 0.25  # monotone in the truth, far too high
    raw_ece = expected_calibration_error(overconfident, correct)
    for method in ("isotonic", "platt"):
        cal = cross_calibrate(overconfident, correct, method, n_folds=2, seed=0)
        assert expected_calibration_error(cal, correct) < raw_ece / 3, method
    assert raw_ece > 0.15
    # a calibrated score stays calibrated (no harm)
    assert expected_calibration_error(cross_calibrate(true_p, correct, "isotonic"), correct) < 0.05


def test_calibrator_handles_nan_and_one_class():
    cal = ScoreCalibrator("isotonic").fit([0.1, np.nan, 0.9, 0.8], [0, 1, 1, 1])
    assert np.isfinite(cal.predict([np.nan, 0.5])).all()
    assert ScoreCalibrator("platt").fit([0.2, 0.4], [1, 1]).predict([0.3]).tolist() == [1.0]
    with pytest.raises(ValueError, match="calibration method"):
        ScoreCalibrator("beta")


# ---------------------------------------------------------------------------------------------
# routing and detection
# ---------------------------------------------------------------------------------------------
def test_routing_with_an_informative_confidence_beats_random_routing():
    rng = np.random.default_rng(1)
    p = 300
    hard = rng.random(p) < 0.5
    greedy = np.where(hard, rng.random(p) < 0.2, rng.random(p) < 0.95).astype(float)
    sampled = np.where(hard, rng.random(p) < 0.6, rng.random(p) < 0.95).astype(float)
    conf = np.where(hard, 0.3, 0.8) + 0.05 * rng.random(p)
    ones = np.ones(p)
    outcomes = RoutingOutcomes(greedy, sampled, {1: greedy, 4: sampled}, ones, 4 * ones, {1: ones, 4: 4 * ones}, 4)
    res = routing_study(conf, outcomes, n_boot=300)
    assert res.adaptive_minus_random.low > 0
    assert res.escalation.error_rate_escalated.estimate > res.escalation.error_rate_overall
    flat = routing_study(rng.random(p), outcomes, n_boot=300)
    assert flat.adaptive_minus_random.low < 0 < flat.adaptive_minus_random.high
    # equal compute: the adaptive and random points of one fraction cost the same
    assert [a.samples_per_prompt for a in res.adaptive] == [r.samples_per_prompt for r in res.random]


def test_error_detection_on_planted_traces():
    rng = np.random.default_rng(2)
    traces, rewards = [], []
    for i in range(200):
        wrong = i % 2 == 0
        t = np.full(20, 0.7) + 0.02 * rng.standard_normal(20)
        if wrong and i % 4 == 0:
            t[10:] = 0.1  # half of the wrong ones collapse at step 10
        traces.append(t)
        rewards.append(0.0 if wrong else 1.0)
    res = detect_errors(traces, rewards, FlagRule(value_threshold=0.3), groups=[i // 2 for i in range(200)], n_boot=300)
    assert res.precision.estimate == 1.0 and res.recall.estimate == pytest.approx(0.5)
    assert res.flag_position.estimate == pytest.approx(10 / 19)
    assert res.false_flag_rate.estimate == 0.0
    td = FlagRule(value_threshold=None, td_threshold=0.4).first_flag([0.7, 0.7, 0.2, 0.2])
    assert td == 2
    assert set(res.sweep) == {"value", "td"}


# ---------------------------------------------------------------------------------------------
# curation
# ---------------------------------------------------------------------------------------------
def test_curation_export_round_trips(tmp_path):
    ids = [f"r{i}" for i in range(6)]
    rewards = [0, 0, 1, 1, 0, 1]
    conf = [0.9, 0.2, 0.1, 0.8, 0.75, 0.3]
    res = curate(CurationColumns(ids, [f"e{i // 2}" for i in range(6)], [f"prompt {i}" for i in range(6)],
                                 [f"answer {i}" for i in range(6)], [str(i) for i in range(6)], rewards, conf),
                 tmp_path / "curated", 0.7, 0.3)
    assert (res.n_confident_wrong, res.n_unconfident_right) == (2, 2)
    ds = load_curation(tmp_path / "curated")
    assert len(ds) == 4
    rows = ds.to_list()
    assert [r["id"] for r in rows] == ["r0", "r4", "r2", "r5"]
    assert rows[0] == {"id": "r0", "example_id": "e0", "prompt": "prompt 0", "response": "answer 0", "gold": "0",
                       "reward": 0.0, "confidence": 0.9, "category": "confident_wrong"}
    # rewriting the same path replaces it atomically
    curate(CurationColumns(ids[:1], ["e0"], ["p"], ["a"], ["g"], [0], [0.95]), tmp_path / "curated")
    assert len(load_curation(tmp_path / "curated")) == 1


# ---------------------------------------------------------------------------------------------
# regression monitoring
# ---------------------------------------------------------------------------------------------
def planted_snapshot(source: str, seed: int = 0, signal: float = 2.0, n: int = 120, neurons=(1, 5, 9)) -> ValueSnapshot:
    rng = np.random.default_rng(seed)
    rewards = (np.arange(n) % 2).astype(float)
    values = 1 / (1 + np.exp(-(signal * (rewards - 0.5) + rng.standard_normal(n))))
    sets = {str(layer): NeuronSet(f"blocks.{layer}.hook_resid_post", list(neurons), 64, layer=layer) for layer in (2, 4)}
    return ValueSnapshot(source, "planted", "blocks.2.hook_resid_post", sets, [f"e{i}" for i in range(n)], rewards, values)


def test_monitoring_a_version_against_itself_is_same_with_iou_one(tmp_path):
    snap = planted_snapshot("A")
    snap.save(tmp_path / "run")
    again = ValueSnapshot.from_dir(tmp_path / "run")
    res = compare_snapshots(again, again, CompareConfig(n_boot=200))
    assert res.iou_by_layer == {"2": 1.0, "4": 1.0}
    assert res.verdict == "same" and res.exit_code() == 0
    assert res.auc_shift.estimate == 0.0 and res.auc_shift.low == 0.0 == res.auc_shift.high and res.paired
    assert res.line.startswith("same:")
    section = res.section(tmp_path)
    assert section.key == "compare" and (tmp_path / "compare.png").exists()


def test_monitoring_flags_a_regression_and_moved_neurons():
    base = planted_snapshot("A", signal=3.0, n=300)
    broken = planted_snapshot("B", seed=1, signal=0.0, n=300, neurons=(2, 6, 10))
    res = compare_snapshots(base, broken, CompareConfig(n_boot=300))
    assert res.verdict == "regression" and res.exit_code() == 1
    assert res.iou_by_layer["2"] == 0.0
    moved = planted_snapshot("C", seed=0, signal=3.0, n=300, neurons=(2, 6, 10))
    assert compare_snapshots(base, moved, CompareConfig(n_boot=300)).verdict == "neurons moved"
    cfg = CompareConfig()
    assert decide(Interval(-0.02, -0.08, 0.04, 50), 1.0, cfg) == "inconclusive at this n"
    assert decide(Interval(0.1, 0.06, 0.14, 50), 1.0, cfg) == "improvement"


def test_configs_validate_with_errors_that_name_the_fix():
    with pytest.raises(ValueError, match="n-samples"):
        ApplicationsConfig(n_samples=1)
    with pytest.raises(ValueError, match="prune-ratio"):
        ApplicationsConfig(prune_ratio=1.0)
    with pytest.raises(ValueError, match="auc_tolerance"):
        CompareConfig(auc_tolerance=0.0)
    with pytest.raises(ValueError, match="rewards must be 0 or 1"):
        CandidateSet(["a"], [[0.5]], [[0.1]], [["x"]], [[1]])


def test_monitoring_auc_is_the_stats_auc():
    """The snapshot's AUC interval is the home function's (no private AUC or bootstrap in monitoring)."""
    from reward_circuits.analysis.stats import bootstrap_auc_ci

    snap = planted_snapshot("A", signal=1.0, n=80)
    assert snap.auc(n_boot=300, seed=2) == bootstrap_auc_ci(snap.rewards, snap.values, n_boot=300, seed=2)


def test_monitoring_shift_of_unshared_versions_is_unpaired_and_finds_a_planted_drop():
    """Versions on different prompts: two independent bootstraps; a planted drop in AUC is found, an
    unchanged signal is not called a regression."""
    base = planted_snapshot("A", signal=3.0, n=300)
    drop = planted_snapshot("B", seed=1, signal=0.5, n=300)
    drop.ids = [f"other{i}" for i in range(300)]
    res = compare_snapshots(base, drop, CompareConfig(n_boot=300))
    assert not res.paired and res.auc_shift.high < 0 and res.verdict == "regression"
    same = planted_snapshot("C", seed=2, signal=3.0, n=300)
    same.ids = [f"other{i}" for i in range(300)]
    res = compare_snapshots(base, same, CompareConfig(n_boot=300))
    assert not res.paired and res.auc_shift.low < 0 < res.auc_shift.high and res.verdict != "regression"


def test_empty_curation_round_trips(tmp_path):
    res = curate(CurationColumns(["r0"], ["e0"], ["p"], ["a"], ["g"], [1], [0.9]), tmp_path / "none")
    assert (res.n_confident_wrong, res.n_unconfident_right) == (0, 0)
    ds = load_curation(tmp_path / "none")
    assert len(ds) == 0 and "confidence" in ds.column_names


def test_quantile_thresholds_are_read_off_the_value_traces_without_rewards():
    traces = [np.linspace(0.2, 0.6, 11), np.full(11, 0.4), np.array([0.5, 0.5, 0.1])]
    cfg = ApplicationsConfig(flag_value_threshold=0.1, flag_td_threshold=0.05, abort_drop=0.5,
                             confident_threshold=0.8, unconfident_threshold=0.2)
    t = cfg.resolved_thresholds(traces)
    states = np.concatenate(traces)
    assert t["flag_value"] == pytest.approx(np.quantile(states, 0.1))
    assert t["confident"] == pytest.approx(np.quantile([0.6, 0.4, 0.1], 0.8))
    lo, hi = np.quantile(states, [0.05, 0.95])
    assert t["abort_drop"] == pytest.approx(0.5 * (hi - lo))
    assert t["flag_td"] == pytest.approx(np.quantile(np.concatenate([np.abs(np.diff(x)) for x in traces]), 0.95))
    absolute = ApplicationsConfig(thresholds="absolute").resolved_thresholds(traces)
    assert absolute["flag_value"] == 0.1 and absolute["confident"] == 0.8


def test_compare_command_exits_non_zero_on_a_regression(tmp_path, capsys):
    from reward_circuits.cli import main

    planted_snapshot("A", signal=3.0, n=300).save(tmp_path / "a")
    planted_snapshot("B", seed=1, signal=0.0, n=300).save(tmp_path / "b")
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--n-boot", "200"]) == 1
    assert capsys.readouterr().out.startswith("regression:")
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "a"), "--n-boot", "200"]) == 0
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "missing")]) == 2  # a user error, not a verdict
