"""Rollout-bootstrap interval and verdict for "dopamine candidates track the TD error more than random dims"."""

from __future__ import annotations

import numpy as np

from reward_circuits.analysis.dopamine_metrics import rollout_bootstrap_abs_corr_diff
from reward_circuits.analysis.stats import pearson_columns, verdict


def planted(seed: int, effect: float):
    rng = np.random.default_rng(seed)
    rollout = np.repeat(np.arange(80), 15)
    td = rng.normal(size=rollout.size)
    x = rng.normal(size=(rollout.size, 12)) + rng.normal(size=(80, 12))[rollout]  # per-rollout offsets
    x[:, :3] += effect * td[:, None]
    return x, td, rollout


def test_planted_td_dims_reproduce_and_null_dims_do_not():
    x, td, rollout = planted(0, 0.5)
    iv = rollout_bootstrap_abs_corr_diff(x, td, rollout, [0, 1, 2], list(range(3, 12)), n_boot=500)
    r = np.abs(pearson_columns(x, td))
    assert abs(iv.estimate - (r[:3].mean() - r[3:].mean())) < 1e-9 and iv.n == 80
    assert verdict(iv) == "reproduces"
    nulls = [verdict(rollout_bootstrap_abs_corr_diff(*planted(s, 0.0), [0, 1, 2], list(range(3, 12)), n_boot=300, seed=s))
             for s in range(20)]
    assert nulls.count("reproduces") <= 3, nulls
