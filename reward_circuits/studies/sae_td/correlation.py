"""Which single feature tracks a TD signal best, chosen on some experiments and scored on others.

Given features at event positions (SAE latents, raw residual dimensions, or anything ``[n, m]``) and a
target per event (the Q-learning TD error or Q-value), :func:`best_feature` picks the feature with
the largest |Pearson r| on the *selection* events and reports its |r| on the held-out events with a
bootstrap interval. With thousands of candidate features and ~100 events, the in-sample maximum |r|
is large by chance alone; the held-out |r| is not. :func:`paired_abs_corr_diff` compares two
selected features on the same held-out events (paired bootstrap).

Events of one experiment are not independent (one agent, one context): pass ``groups`` (the
experiment of each event) and every interval resamples whole experiments (a cluster bootstrap,
``n`` = experiments; :func:`~reward_circuits.analysis.stats.bootstrap_ci`). Without ``groups``
events are resampled as independent, which is optimistic.

:func:`ridge_probe_corr` fits a ridge probe on the selection events and scores its held-out r.
:func:`partial_abs_corr` controls for a confound: the TD error at an outcome token is mostly the
reward just printed there (δ = r − Q at the end of an episode), so a feature that only reads the
reward token correlates with δ; its partial |r| given the reward does not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from jaxtyping import Float

from ...analysis.stats import (
    Interval,
    bootstrap_ci,
    paired_bootstrap_diff,
    partial_pearson_columns,
    pearson_columns,
)

__all__ = ["FeatureChoice", "best_feature", "paired_abs_corr_diff", "partial_abs_corr", "ridge_probe_corr"]


@dataclass(frozen=True)
class FeatureChoice:
    index: int  # the chosen feature (column)
    selection_abs_r: float  # |r| on the selection events (optimistic: the max over all features)
    heldout: Interval  # |r| of that feature on the held-out events, bootstrap over events (or their groups)
    sign: float  # sign of r on the selection events


def _abs_corr(pairs: Float[np.ndarray, "n 2"]) -> float:
    """|Pearson r| of the two columns (0 for a constant column: a dead feature tracks nothing)."""
    r = pearson_columns(pairs[:, :1], pairs[:, 1])[0]
    return float(abs(r)) if np.isfinite(r) else 0.0


def best_feature(features: Float[np.ndarray, "n m"], target: Float[np.ndarray, " n"], select: np.ndarray,
                 heldout: np.ndarray, n_boot: int = 1000, seed: int = 0, groups: np.ndarray | None = None) -> FeatureChoice:
    """The feature with the largest |r| with ``target`` on ``select`` events, scored on ``heldout`` events.

    Constant features (dead latents) get r = 0. ``select``/``heldout`` are index arrays or bool masks;
    ``groups`` (one per event, e.g. its experiment) makes the interval resample whole groups.
    """
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(target, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"features must be [n_events, n_features] matching target ({y.shape[0]}), got {x.shape}.")
    r = np.nan_to_num(pearson_columns(x[select], y[select]), nan=0.0)
    j = int(np.argmax(np.abs(r)))
    ci = bootstrap_ci(np.c_[x[heldout, j], y[heldout]], statistic=_abs_corr, n_boot=n_boot, seed=seed,
                      groups=_held_groups(groups, heldout))
    return FeatureChoice(j, float(abs(r[j])), ci, float(np.sign(r[j]) or 1.0))


def _held_groups(groups: np.ndarray | None, heldout: np.ndarray) -> np.ndarray | None:
    return None if groups is None else np.asarray(groups)[heldout]


def paired_abs_corr_diff(a: Float[np.ndarray, " n"], b: Float[np.ndarray, " n"], target: Float[np.ndarray, " n"],
                         n_boot: int = 1000, seed: int = 0, groups: np.ndarray | None = None) -> tuple[Interval, float]:
    """``|r(a, target)| − |r(b, target)|`` on the same events, with a paired bootstrap interval and a
    two-sided bootstrap p-value for no difference (:func:`~reward_circuits.analysis.stats.paired_bootstrap_diff`;
    ``groups``, one per event, resamples whole groups)."""
    a, b, y = (np.asarray(v, dtype=np.float64) for v in (a, b, target))
    return paired_bootstrap_diff(np.c_[a, y], np.c_[b, y], statistic=_abs_corr, n_boot=n_boot, seed=seed, groups=groups)


def ridge_probe_corr(features: Float[np.ndarray, "n m"], target: Float[np.ndarray, " n"], select: np.ndarray,
                     heldout: np.ndarray, n_boot: int = 1000, seed: int = 0,
                     groups: np.ndarray | None = None) -> tuple[Interval, np.ndarray]:
    """A ridge probe (``RidgeCV`` on standardised features) fitted on ``select`` events; returns the
    |r| of its predictions with ``target`` on ``heldout`` events (bootstrap interval; ``groups``, one
    per event, resamples whole groups) and the predictions."""
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(target, dtype=np.float64)
    probe = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-1, 5, 13))).fit(x[select], y[select])
    pred = probe.predict(x[heldout])
    ci = bootstrap_ci(np.c_[pred, y[heldout]], statistic=_abs_corr, n_boot=n_boot, seed=seed,
                      groups=_held_groups(groups, heldout))
    return ci, pred


def partial_abs_corr(feature: Float[np.ndarray, " n"], target: Float[np.ndarray, " n"], control: Float[np.ndarray, " n"],
                     n_boot: int = 1000, seed: int = 0, groups: np.ndarray | None = None) -> Interval:
    """|partial r| of ``feature`` with ``target`` given ``control`` (linear), bootstrap over events
    (``groups``, one per event: over whole groups)."""
    data = np.stack([np.asarray(feature, np.float64), np.asarray(target, np.float64), np.asarray(control, np.float64)], 1)

    def stat(d: np.ndarray) -> float:
        r = partial_pearson_columns(d[:, :1], d[:, 1], d[:, 2])[0]
        return float(abs(r)) if np.isfinite(r) else 0.0

    return bootstrap_ci(data, statistic=stat, n_boot=n_boot, seed=seed, groups=groups)
