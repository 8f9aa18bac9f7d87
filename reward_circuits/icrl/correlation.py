"""Which single feature tracks a TD signal best, chosen on some experiments and scored on others.

Given features at event positions (SAE latents, raw residual dimensions, or anything ``[n, m]``) and a
target per event (the Q-learning TD error or Q-value), :func:`best_feature` picks the feature with
the largest |Pearson r| on the *selection* events and reports its |r| on the held-out events with a
bootstrap interval over those events. With thousands of candidate features and ~100 events, the
in-sample maximum |r| is large by chance alone; the held-out |r| is not. :func:`paired_abs_corr_diff`
compares two selected features on the same held-out events (paired bootstrap).

:func:`ridge_probe_corr` fits a ridge probe on the selection events and scores its held-out r.
:func:`partial_abs_corr` controls for a confound: the TD error at an outcome token is mostly the
reward just printed there (δ = r − Q at the end of an episode), so a feature that only reads the
reward token correlates with δ; its partial |r| given the reward does not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from jaxtyping import Float

from ..analysis.stats import (
    Interval,
    bootstrap_ci,
    partial_pearson_columns,
    pearson_columns,
)

__all__ = ["FeatureChoice", "best_feature", "paired_abs_corr_diff", "partial_abs_corr", "ridge_probe_corr"]


@dataclass(frozen=True)
class FeatureChoice:
    index: int  # the chosen feature (column)
    selection_abs_r: float  # |r| on the selection events (optimistic: the max over all features)
    heldout: Interval  # |r| of that feature on the held-out events, bootstrap over events
    sign: float  # sign of r on the selection events


def _abs_corr(x: np.ndarray, y: np.ndarray) -> float:
    if x.std() == 0 or y.std() == 0:
        return 0.0
    return float(abs(np.corrcoef(x, y)[0, 1]))


def best_feature(features: Float[np.ndarray, "n m"], target: Float[np.ndarray, " n"], select: np.ndarray,
                 heldout: np.ndarray, n_boot: int = 1000, seed: int = 0) -> FeatureChoice:
    """The feature with the largest |r| with ``target`` on ``select`` events, scored on ``heldout`` events.

    Constant features (dead latents) get r = 0. ``select``/``heldout`` are index arrays or bool masks.
    """
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(target, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"features must be [n_events, n_features] matching target ({y.shape[0]}), got {x.shape}.")
    r = np.nan_to_num(pearson_columns(x[select], y[select]), nan=0.0)
    j = int(np.argmax(np.abs(r)))
    xs, ys = x[heldout, j], y[heldout]
    pairs = np.stack([xs, ys], 1)
    ci = bootstrap_ci(pairs, statistic=lambda p: _abs_corr(p[:, 0], p[:, 1]), n_boot=n_boot, seed=seed)
    return FeatureChoice(j, float(abs(r[j])), ci, float(np.sign(r[j]) or 1.0))


def paired_abs_corr_diff(a: Float[np.ndarray, " n"], b: Float[np.ndarray, " n"], target: Float[np.ndarray, " n"],
                         n_boot: int = 1000, seed: int = 0) -> tuple[Interval, float]:
    """``|r(a, target)| − |r(b, target)|`` on the same events, with a paired bootstrap interval and a
    two-sided bootstrap p-value for no difference."""
    a, b, y = (np.asarray(v, dtype=np.float64) for v in (a, b, target))
    rng = np.random.default_rng(seed)
    n = y.size
    est = _abs_corr(a, y) - _abs_corr(b, y)
    diffs = np.empty(n_boot)
    for k in range(n_boot):
        i = rng.integers(0, n, n)
        diffs[k] = _abs_corr(a[i], y[i]) - _abs_corr(b[i], y[i])
    p = float(min(1.0, 2 * min((diffs <= 0).mean(), (diffs >= 0).mean())))
    return Interval(float(est), float(np.quantile(diffs, 0.025)), float(np.quantile(diffs, 0.975)), int(n)), p


def ridge_probe_corr(features: Float[np.ndarray, "n m"], target: Float[np.ndarray, " n"], select: np.ndarray,
                     heldout: np.ndarray, n_boot: int = 1000, seed: int = 0) -> tuple[Interval, np.ndarray]:
    """A ridge probe (``RidgeCV`` on standardised features) fitted on ``select`` events; returns the
    |r| of its predictions with ``target`` on ``heldout`` events (bootstrap interval) and the predictions."""
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(target, dtype=np.float64)
    probe = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-1, 5, 13))).fit(x[select], y[select])
    pred = probe.predict(x[heldout])
    pairs = np.stack([pred, y[heldout]], 1)
    return bootstrap_ci(pairs, statistic=lambda p: _abs_corr(p[:, 0], p[:, 1]), n_boot=n_boot, seed=seed), pred


def partial_abs_corr(feature: Float[np.ndarray, " n"], target: Float[np.ndarray, " n"], control: Float[np.ndarray, " n"],
                     n_boot: int = 1000, seed: int = 0) -> Interval:
    """|partial r| of ``feature`` with ``target`` given ``control`` (linear), bootstrap over events."""
    data = np.stack([np.asarray(feature, np.float64), np.asarray(target, np.float64), np.asarray(control, np.float64)], 1)

    def stat(d: np.ndarray) -> float:
        r = partial_pearson_columns(d[:, :1], d[:, 1], d[:, 2])[0]
        return float(abs(r)) if np.isfinite(r) else 0.0

    return bootstrap_ci(data, statistic=stat, n_boot=n_boot, seed=seed)
