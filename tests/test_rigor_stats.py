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
