"""Statistics shared by every analysis: AUC, column-wise correlations, top-k ranking,
bootstrap intervals and paired tests.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from jaxtyping import Float
from scipy import stats
from sklearn.metrics import roc_auc_score
from torch import Tensor
from ..errors import ProbeError

def binary_auc(rewards: np.ndarray, scores: np.ndarray, what: str = "V(s_0)") -> float:
    """``roc_auc_score(rewards, scores)`` with a clear error when only one class is present."""
    rewards = np.asarray(rewards).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if rewards.shape != scores.shape:
        raise ProbeError(f"{rewards.size} rewards but {scores.size} scores.")
    classes = np.unique(rewards)
    if classes.size < 2:
        raise ProbeError(
            f"AUC of {what} is undefined: all {rewards.size} evaluated rollouts have reward "
            f"{classes.tolist()}. Evaluate on rollouts with both rewards (use store.split, which stratifies)."
        )
    if not np.isfinite(scores).all():
        raise ProbeError(f"{what} contains NaN or inf.")
    return float(roc_auc_score(rewards, scores))



def finite_mean(values: Sequence[float] | np.ndarray) -> float:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else math.nan


def pearson_columns(x: Float[np.ndarray, "n m"], y: Float[np.ndarray, " n"]) -> Float[np.ndarray, " m"]:
    """Pearson correlation of every column of ``x`` with ``y`` (NaN for a constant column)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    xc = x - x.mean(0)
    yc = y - y.mean()
    denom = np.sqrt((xc**2).sum(0) * (yc**2).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (xc * yc[:, None]).sum(0) / denom
    return np.where(denom > 0, r, np.nan)


def partial_pearson_columns(x: Float[np.ndarray, "n m"], y: Float[np.ndarray, " n"],
                            control: Float[np.ndarray, " n"]) -> Float[np.ndarray, " m"]:
    """Partial correlation of every column of ``x`` with ``y`` given ``control`` (both residualised
    on ``[1, control]`` by least squares). With ``control = V(s_t)`` this separates δ-tracking from
    V-tracking: since ``δ(s_t) = γV(s_t) − V(s_(t−1))`` contains ``V(s_t)``, a pure value dimension
    has a non-zero raw correlation with δ but a partial correlation near 0."""
    x = np.asarray(x, dtype=np.float64)
    basis = np.c_[np.ones(len(control)), np.asarray(control, dtype=np.float64)]
    coef_x, *_ = np.linalg.lstsq(basis, x, rcond=None)
    coef_y, *_ = np.linalg.lstsq(basis, np.asarray(y, dtype=np.float64), rcond=None)
    return pearson_columns(x - basis @ coef_x, y - basis @ coef_y)


def spearman_columns(x: Float[np.ndarray, "n m"], y: Float[np.ndarray, " n"]) -> Float[np.ndarray, " m"]:
    """Spearman correlation of every column of ``x`` with ``y`` (average ranks for ties; equals
    ``scipy.stats.spearmanr`` column by column)."""
    return pearson_columns(stats.rankdata(x, axis=0), stats.rankdata(y))



def rank_by_score(scores: Float[Tensor, " d"] | np.ndarray) -> np.ndarray:
    """Indices sorted by score, best first (ties: lower index first, deterministic)."""
    s = np.asarray(scores.detach().cpu() if isinstance(scores, Tensor) else scores, dtype=np.float64)
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or inf.")
    return np.lexsort((np.arange(s.size), -s))

