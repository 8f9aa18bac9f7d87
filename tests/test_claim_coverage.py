"""The comparisons that give the confidence, steering, cross-task IoU and length-control claims their
evidence: a planted effect is found, a planted null is not invented (its rate of "reproduces" stays
near α), and the main job's summary layout reaches the claims."""

import numpy as np
import pytest

from reward_circuits.analysis.claims import ALPHA, Evidence, evidence_from_summary, verdict
from reward_circuits.analysis.confidence import paired_confidence_tests
from reward_circuits.analysis.resampling import overlap_vs_relabelling, paired_auc_test, shift_vs_random

SIMS = 200


def _reproduces(claim_id, test, **kw) -> bool:
    return verdict([Evidence.from_test(claim_id, test, **kw)])[0].verdict == "reproduces"


# ---- V(s0) vs next-token probability, paired ------------------------------------------------------------------------
def planted_confidence(rng, n, value_signal, other_signal):
    """Binary rewards; each score is ``signal × reward + noise`` (the two scores of one prompt share nothing else)."""
    y = (rng.random(n) < 0.5).astype(float)
    return y, value_signal * y + rng.normal(size=n), other_signal * y + rng.normal(size=n)


@pytest.mark.parametrize("n", [60, 12])  # a paired bootstrap from 20 prompts, the exact permutation test below
def test_a_better_confidence_signal_is_found_paired(n):
    rng = np.random.default_rng(0)
    y, v, ntp = planted_confidence(rng, n, 3.0, 0.0)
    test = paired_auc_test(y, v, ntp, n_boot=1000)
    assert ("paired stratified bootstrap" in test.method) == (n >= 20) and test.estimate > 0.3
    assert _reproduces("srs.confidence_vs_next_token", test)
    assert not _reproduces("srs.confidence_vs_next_token", paired_auc_test(y, ntp, v, n_boot=1000))  # the other way


def test_equally_good_confidence_signals_rarely_reproduce():
    rng = np.random.default_rng(1)
    hits = sum(_reproduces("srs.confidence_vs_next_token", paired_auc_test(*planted_confidence(rng, 60, 1.0, 1.0),
                                                                           n_boot=400, seed=s)) for s in range(SIMS))
    print(f"\nequally good signals (n = 60): 'reproduces' in {hits / SIMS:.3f} of {SIMS} runs (α = {ALPHA})")
    assert hits / SIMS <= 0.05


def test_the_confidence_study_pairs_v_s0_with_each_signal_and_the_claims_read_it():
    rng = np.random.default_rng(2)
    y, v, ntp = planted_confidence(rng, 40, 3.0, 0.0)
    verbal = np.where(rng.random(40) < 0.2, np.nan, rng.random(40))  # unparsed replies are dropped, pairwise
    paired = paired_confidence_tests(y, v, {"next_token": ntp, "verbalized": verbal})
    assert paired["value_minus_verbalized"]["n"] == int(np.isfinite(verbal).sum())
    assert paired_confidence_tests([0.5, 1.0], [0.1, 0.2], {"next_token": [0.3, 0.4]}) == {}  # rewards not binary
    by_id = {r.id: r for r in verdict(evidence_from_summary({"confidence": {"paired": paired}}))}
    assert by_id["srs.confidence_vs_next_token"].verdict == "reproduces"
    assert by_id["srs.confidence_vs_verbalized"].verdict == "reproduces"


# ---- steering vs magnitude-matched random sets ----------------------------------------------------------------------
def planted_steering(rng, n=64, k=3, value_flip=0.0, set_sd=0.05):
    """Per-example correctness at baseline, with the value set and ``k`` random sets scaled: each
    set flips a share of outcomes (its own share: the random sets' spread); the value set ``value_flip`` more."""
    base = (rng.random(n) < 0.6).astype(float)
    share = np.clip(0.1 + rng.normal(0, set_sd, k + 1), 0, 1)
    share[0] += value_flip
    out = np.array([np.where(rng.random(n) < s, 0.0, base) for s in share])  # steering breaks answers
    return out[0], out[1:], base


def test_steering_that_moves_accuracy_beyond_random_sets_reproduces_either_way():
    rng = np.random.default_rng(3)
    t, c, base = planted_steering(rng, value_flip=0.6)
    assert _reproduces("srs.steering_vs_random", shift_vs_random(t, c, base, n_boot=1000), premise_met=True)
    lifted = np.where(rng.random(base.size) < 0.8, 1.0, base)  # moving accuracy up counts as much
    assert _reproduces("srs.steering_vs_random", shift_vs_random(lifted, c, base, n_boot=1000), premise_met=True)


def test_a_value_set_steered_like_another_random_set_rarely_reproduces():
    rng = np.random.default_rng(4)
    hits = 0
    for s in range(SIMS):
        t, c, base = planted_steering(rng)
        hits += _reproduces("srs.steering_vs_random", shift_vs_random(t, c, base, n_boot=300, seed=s), premise_met=True)
    print(f"\nsteering null (3 random draws): 'reproduces' in {hits / SIMS:.3f} of {SIMS} runs")
    assert hits / SIMS <= 0.05


# ---- cross-task IoU over probe seeds --------------------------------------------------------------------------------
def test_overlapping_value_sets_are_found_over_seeds():
    rng = np.random.default_rng(5)
    d, k = 500, 10
    sets_a = [list(range(m)) + rng.choice(np.arange(10, d), k - m, replace=False).tolist() for m in (4, 5, 6)]
    sets_b = [list(range(m)) + rng.choice(np.arange(10, d), k - m, replace=False).tolist() for m in (4, 5, 6)]
    test = overlap_vs_relabelling(sets_a, sets_b, d, n_draws=499)
    assert test.n == 3 and "t interval over the 3 seeds" in test.method and test.low > 0
    assert _reproduces("srs.cross_task_iou", test, premise_met=True)


def test_independent_value_sets_repeated_across_seeds_do_not_invent_overlap():
    """Seeds of one task give nearly the same set (the same data): their IoUs with the other task
    are not independent. The relabelling null keeps that dependence; a t test over the seeds' IoUs
    would call a chance overlap an effect."""
    rng = np.random.default_rng(6)
    d, k = 200, 10
    hits = naive = 0
    for s in range(SIMS):
        a, b = rng.choice(d, k, replace=False), rng.choice(d, k, replace=False)
        sets_a = [a.tolist(), a.tolist(), a[:9].tolist() + [int(rng.integers(d))]]
        sets_b = [b.tolist(), b.tolist(), b.tolist()]
        test = overlap_vs_relabelling(sets_a, sets_b, d, n_draws=199, seed=s)
        hits += _reproduces("srs.cross_task_iou", test, premise_met=True)
        naive += test.low > 0  # the seeds' own spread alone
    print(f"\nIoU null, 3 dependent seeds: 'reproduces' {hits / SIMS:.3f}; t interval over seeds above 0 {naive / SIMS:.3f}")
    assert hits / SIMS <= 0.05
    assert naive / SIMS > 0.05  # what the relabelling null protects against


def test_magnitude_strata_explain_an_overlap_of_massive_dims():
    """Both tasks' sets hold the layer's 3 massive dims: above uniform random sets, not above magnitude-matched ones."""
    rng = np.random.default_rng(7)
    d, massive = 300, [0, 1, 2]
    strata = np.r_[np.full(3, 10), rng.integers(0, 10, d - 3)]
    sets_a = [massive + rng.choice(np.arange(3, d), 3, replace=False).tolist() for _ in range(3)]
    sets_b = [massive + rng.choice(np.arange(3, d), 3, replace=False).tolist() for _ in range(3)]
    assert _reproduces("srs.cross_task_iou", overlap_vs_relabelling(sets_a, sets_b, d, 499), premise_met=True)
    matched = overlap_vs_relabelling(sets_a, sets_b, d, 499, strata=strata)
    assert not _reproduces("srs.cross_task_iou", matched, premise_met=True) and abs(matched.estimate) < 0.1


# ---- the main job's layout reaches the claims -----------------------------------------------------------------------
def test_the_value_stage_length_control_is_read_before_the_dopamine_stage_one():
    def lc(r):
        t = {"estimate": r, "low": r - 0.05, "high": r + 0.05, "n": 50, "unit": "rollouts", "p_greater": 0.001,
             "p_less": 0.999, "method": "m"}
        return {"raw": t, "controlled": t}

    summary = {"value": {"best_layer": "3", "length_control": {"hook": "blocks.3.hook_resid_post", "n_rollouts": 50, **lc(0.3)}},
               "dopamine": {"status": "ok", "hook": "blocks.5.hook_resid_post",
                            "metrics": {"length_control": {"dopamine": lc(0.2), "value": lc(0.1)}}}}
    ev = {e.claim_id: e for e in evidence_from_summary(summary)}
    assert ev["srs.value_survives_length"].estimate == 0.3 and ev["srs.value_survives_length"].scope == "layer 3"
    assert ev["srs.dopamine_survives_length"].estimate == 0.2 and ev["srs.dopamine_survives_length"].scope == "layer 5"
    del summary["value"]["length_control"]
    assert {e.claim_id: e for e in evidence_from_summary(summary)}["srs.value_survives_length"].estimate == 0.1
    summary["dopamine"]["metrics"]["length_control"] = None  # fewer than 5 held-out rollouts: not measured
    assert not {"srs.value_survives_length", "srs.dopamine_survives_length"} & {e.claim_id for e in evidence_from_summary(summary)}
