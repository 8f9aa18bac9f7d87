"""Bootstrap intervals on AUCs: exact AUC per row, nominal coverage of a planted signal's true AUC."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from reward_circuits.analysis.stats import (
    auc_rows,
    bootstrap_auc_ci,
    paired_bootstrap_auc_diff,
    verdict,
)


def test_auc_rows_equals_roc_auc_score_with_ties():
    rng = np.random.default_rng(0)
    y = rng.random(60) < 0.3
    s = np.round(rng.normal(size=(4, 60)) + y, 1)  # rounding makes ties
    np.testing.assert_allclose(auc_rows(y, s), [roc_auc_score(y, r) for r in s], rtol=1e-12)
    assert np.isnan(auc_rows(np.ones(5), s[:, :5])).all()


def test_auc_interval_covers_true_auc_at_nominal_rate():
    """Scores N(mu·y, 1): true AUC = Φ(mu/√2). 400 independent samples of 80 + 120 rollouts; the
    95% interval must cover the truth 90-100% of the time (nominal ± 5%)."""
    mu, n_pos, n_neg, reps = 1.0, 80, 120, 400
    true_auc = float(norm.cdf(mu / np.sqrt(2)))
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(n_pos), np.zeros(n_neg)]
    covered, widths = 0, []
    for r in range(reps):
        s = rng.normal(size=y.size) + mu * y
        ci = bootstrap_auc_ci(y, s, n_boot=500, seed=r)
        covered += ci.low <= true_auc <= ci.high
        widths.append(ci.high - ci.low)
    coverage = covered / reps
    assert 0.90 <= coverage <= 1.0, coverage
    assert 0.08 < np.mean(widths) < 0.16  # ±0.05 AUC needs a few hundred rollouts


def test_paired_auc_difference_covers_zero_for_equal_scorers_and_detects_a_better_one():
    rng = np.random.default_rng(1)
    y = np.r_[np.ones(100), np.zeros(100)]
    covered = 0
    for r in range(100):
        z = rng.normal(size=y.size)  # shared part: the pairing matters
        a = z + 0.8 * y + 0.5 * rng.normal(size=y.size)
        b = z + 0.8 * y + 0.5 * rng.normal(size=y.size)
        diff, _ = paired_bootstrap_auc_diff(y, a, b, n_boot=300, seed=r)
        covered += diff.low <= 0 <= diff.high
    assert covered >= 88
    good = 2.0 * y + rng.normal(size=y.size)
    bad = 0.3 * y + rng.normal(size=y.size)
    diff, p = paired_bootstrap_auc_diff(y, good, bad, n_boot=500)
    assert verdict(diff, expected_sign=1) == "reproduces" and p < 0.01
    with pytest.raises(ValueError, match="differ in shape"):
        paired_bootstrap_auc_diff(y, good, bad[:-1])


def test_auc_interval_resamples_prompts_when_rollouts_are_copies():
    """Greedy rollouts of a repeated prompt are copies: the interval must resample prompts. On
    planted data (40 prompts × 6 copies) the cluster interval covers the true AUC at about the
    nominal rate where the per-rollout interval, 6× too confident in n, does not."""
    from reward_circuits.analysis.stats import bootstrap_auc_ci

    rng = np.random.default_rng(0)
    # population: score = label + noise, true AUC = Phi(1 / sqrt(2)) for unit-variance noise
    true_auc = 0.7602499389065233
    hits_cluster = hits_plain = 0
    reps = 60
    for r in range(reps):
        labels = rng.integers(0, 2, 40)
        scores = labels + rng.normal(size=40)
        y, s, g = np.repeat(labels, 6), np.repeat(scores, 6), np.repeat(np.arange(40), 6)
        c = bootstrap_auc_ci(y, s, n_boot=300, seed=r, groups=list(g))
        p = bootstrap_auc_ci(y, s, n_boot=300, seed=r)
        assert c.n == 40 and p.n == 240 and c.high - c.low > 1.5 * (p.high - p.low)
        hits_cluster += c.low <= true_auc <= c.high
        hits_plain += p.low <= true_auc <= p.high
    assert hits_cluster / reps >= 0.85
    assert hits_plain / reps < 0.75
    # distinct groups: the usual stratified interval
    y, s = rng.integers(0, 2, 50), rng.normal(size=50)
    assert bootstrap_auc_ci(y, s, seed=1, groups=list(range(50))) == bootstrap_auc_ci(y, s, seed=1)


def test_paired_auc_difference_resamples_whole_prompts():
    """Copies of a prompt are not independent evidence: with ``groups`` the paired interval
    resamples whole groups, counts them as ``n``, and is wider than treating copies as independent."""
    rng = np.random.default_rng(0)
    n_prompts, copies = 60, 5
    y0 = (rng.random(n_prompts) < 0.5).astype(float)
    a0 = y0 + rng.normal(0, 1.0, n_prompts)
    b0 = y0 + rng.normal(0, 1.5, n_prompts)
    y, a, b = (np.repeat(v, copies) for v in (y0, a0, b0))
    groups = np.repeat(np.arange(n_prompts), copies).tolist()
    naive, _ = paired_bootstrap_auc_diff(y, a, b, n_boot=1000, seed=0)
    grouped, _ = paired_bootstrap_auc_diff(y, a, b, n_boot=1000, seed=0, groups=groups)
    once, _ = paired_bootstrap_auc_diff(y0, a0, b0, n_boot=1000, seed=0)
    assert naive.n == n_prompts * copies and grouped.n == once.n == n_prompts
    assert grouped.estimate == pytest.approx(naive.estimate)
    width = lambda i: i.high - i.low
    assert width(grouped) > 1.5 * width(naive)
    assert width(grouped) == pytest.approx(width(once), rel=0.35)
    with pytest.raises(ValueError, match="groups"):
        paired_bootstrap_auc_diff(y, a, b, groups=groups[:-1])


def test_cluster_bootstrap_equals_resampling_copies():
    """The weighted (vectorised) cluster bootstrap equals concatenating each replicate's drawn groups
    and scoring the copies, ties and dropped one-class replicates included."""
    from reward_circuits.analysis.stats import _cluster_auc_boots, auc_rows

    rng = np.random.default_rng(3)
    gid = np.arange(30) // 3
    y = np.zeros(30)
    y[[3, 17, 25]] = 1
    scores = [np.round(rng.random(30), 1), rng.random(30)]  # the first has ties
    members = [np.flatnonzero(gid == g) for g in range(10)]
    expected = [[], []]
    for draw in np.random.default_rng(0).integers(0, 10, size=(300, 10)):
        idx = np.concatenate([members[g] for g in draw])
        if 0 < y[idx].sum() < idx.size:
            for e, s in zip(expected, scores):
                e.append(auc_rows(y[idx], s[idx][None])[0])
    got = _cluster_auc_boots(y, scores, gid, 300, 0, block=64)
    assert len(expected[0]) < 300  # some replicates lack a class and are dropped
    for e, g in zip(expected, got):
        np.testing.assert_allclose(g, e, rtol=0, atol=1e-12)


# ---- one home per idea: grouped resampling of any statistic, AUC shifts between versions --------
def test_auc_rows_with_a_label_row_per_score_row():
    rng = np.random.default_rng(1)
    y = rng.random((5, 40)) < 0.4
    s = np.round(rng.normal(size=(5, 40)) + y, 1)
    y[4] = True  # one class: NaN, not an invented AUC
    got = auc_rows(y, s)
    np.testing.assert_allclose(got[:4], [roc_auc_score(yy, ss) for yy, ss in zip(y[:4], s[:4])], rtol=1e-12)
    assert np.isnan(got[4])
    with pytest.raises(ValueError, match="one label row per score row"):
        auc_rows(y[:, :5], s)


def test_cluster_bootstrap_of_a_statistic_counts_groups_and_covers_the_truth():
    """Events of one experiment share its offset (planted): a mean over 8 experiments × 50 events has
    8 units of evidence. The grouped interval says n=8 and covers the true mean 0 at about the
    nominal rate; resampling events as independent is far too narrow and misses it."""
    from reward_circuits.analysis.stats import bootstrap_ci

    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(8), 50)
    hits_grouped = hits_plain = 0
    for r in range(60):
        x = rng.normal(size=8)[groups] + 0.1 * rng.normal(size=groups.size)
        g = bootstrap_ci(x, n_boot=400, seed=r, groups=groups)
        p = bootstrap_ci(x, n_boot=400, seed=r)
        assert g.n == 8 and p.n == 400 and g.estimate == p.estimate
        hits_grouped += g.low <= 0 <= g.high
        hits_plain += p.low <= 0 <= p.high
    assert hits_grouped / 60 >= 0.8 and hits_plain / 60 < 0.3
    # distinct groups give exactly the unit resamples
    x = rng.normal(size=30)
    assert bootstrap_ci(x, seed=3, groups=range(30)) == bootstrap_ci(x, seed=3)
    with pytest.raises(ValueError, match="one group per unit"):
        bootstrap_ci(x, groups=range(29))


def test_paired_diff_of_a_two_column_statistic_finds_a_planted_gap_and_not_a_null():
    """|r(feature, target)| − |r(other, target)| on the same events (2-D units): a tracking feature
    beats noise; two equally noisy copies do not differ."""
    from reward_circuits.analysis.stats import paired_bootstrap_diff

    rng = np.random.default_rng(0)
    y = rng.normal(size=200)
    absr = lambda p: abs(np.corrcoef(p[:, 0], p[:, 1])[0, 1])
    good, noise = np.c_[y + 0.5 * rng.normal(size=200), y], np.c_[rng.normal(size=200), y]
    d, p = paired_bootstrap_diff(good, noise, statistic=absr, n_boot=500)
    assert d.n == 200 and d.low > 0.5 and p < 0.01
    twin = np.c_[y + 2 * rng.normal(size=200), y]
    d, p = paired_bootstrap_diff(np.c_[y + 2 * rng.normal(size=200), y], twin, statistic=absr, n_boot=500)
    assert d.low < 0 < d.high and p > 0.05
    d, _ = paired_bootstrap_diff(good, noise, statistic=absr, n_boot=500, groups=np.arange(200) // 20)
    assert d.n == 10


def test_auc_shift_between_versions_with_their_own_labels():
    """Two versions on the same prompts with different rewards: paired (each against its own labels)
    or unpaired; a planted drop is found, equal versions are not called different."""
    from reward_circuits.analysis.stats import unpaired_bootstrap_auc_diff

    rng = np.random.default_rng(0)
    ya, yb = rng.integers(0, 2, 300), rng.integers(0, 2, 300)
    strong, weak = ya + 0.5 * rng.normal(size=300), yb + 3.0 * rng.normal(size=300)
    d, p = paired_bootstrap_auc_diff(ya, strong, weak, n_boot=500, labels_b=yb)
    assert d.n == 300 and d.low > 0.2 and p < 0.01
    assert d.estimate == pytest.approx(roc_auc_score(ya, strong) - roc_auc_score(yb, weak))
    u, p = unpaired_bootstrap_auc_diff(ya, strong, yb, weak, n_boot=500)
    assert u.estimate == pytest.approx(d.estimate) and u.low > 0.2 and p < 0.01
    same = yb + 0.5 * rng.normal(size=300)
    d, p = paired_bootstrap_auc_diff(ya, strong, same, n_boot=500, labels_b=yb)
    assert d.low < 0 < d.high and p > 0.05
    u, _ = unpaired_bootstrap_auc_diff(ya, strong, yb[:100], same[:100], n_boot=500)
    assert u.n == 100 and u.low < 0 < u.high


def test_cluster_bootstrap_over_too_few_groups_gives_no_interval():
    """Two experiments of many events each: no interval (NaN, verdict inconclusive) rather than the
    spread of three distinct resamples, which can exclude 0 for a true difference of 0."""
    from reward_circuits.analysis.stats import MIN_GROUPS, bootstrap_ci, paired_bootstrap_diff

    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(MIN_GROUPS - 1), 40)
    a, b = rng.normal(size=groups.size), rng.normal(size=groups.size)
    ci = bootstrap_ci(a, n_boot=300, groups=groups)
    assert ci.n == MIN_GROUPS - 1 and np.isnan(ci.low) and np.isnan(ci.high) and ci.estimate == pytest.approx(a.mean())
    d, p = paired_bootstrap_diff(a, b, n_boot=300, groups=groups)
    assert np.isnan(d.low) and np.isnan(p) and verdict(d) == "inconclusive at this n"
    ok = bootstrap_ci(a, n_boot=300, groups=np.arange(a.size) % MIN_GROUPS)
    assert np.isfinite(ok.low)


def test_percentile_interval_and_cluster_weights_are_the_homes():
    """Replicates become an interval in one place (non-finite dropped); cluster weights are group
    multiplicities of draws with replacement (rows sum to the group count, mean 1 per group)."""
    from reward_circuits.analysis.stats import bootstrap_weights, percentile_interval

    iv = percentile_interval(0.5, np.r_[np.linspace(0, 1, 101), np.nan, np.inf], n=7)
    assert iv.n == 7 and iv.low == pytest.approx(0.025) and iv.high == pytest.approx(0.975)
    assert np.isnan(percentile_interval(0.5, np.r_[np.nan], n=3).low)
    w = bootstrap_weights(6, 4000, np.random.default_rng(0))
    assert w.shape == (4000, 6) and (w.sum(1) == 6).all()
    np.testing.assert_allclose(w.mean(0), 1.0, atol=0.05)
