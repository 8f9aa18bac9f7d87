"""The implicit reward model (IRM): a linear map from feature deltas to lexicon values, scored by
Kendall's tau between the values it reconstructs and the true ones.

Kendall's tau is computed on *paired* values: ``kendalltau(predicted[i], true[i])`` over the same
tokens ``i``. Marks et al.'s public code sorted the two lists separately before comparing them,
which makes any two lists look perfectly concordant (tau = 1); a test guards against that.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from jaxtyping import Float
from scipy import stats
from sklearn.linear_model import RidgeCV

from ...analysis.stats import Interval, bootstrap_ci, rank_by_score
from ...report import Table


@dataclass(frozen=True)
class KendallResult:
    """Kendall's tau-b between paired values, its two-sided p-value and a bootstrap interval over units."""

    tau: float
    p_value: float
    interval: Interval

    @property
    def n(self) -> int:
        return self.interval.n

    def to_dict(self) -> dict:
        return {"tau": self.tau, "p_value": self.p_value, "interval": self.interval.to_dict()}


def paired_kendall(predicted: Sequence[float], true: Sequence[float], n_boot: int = 1000, seed: int = 0,
                   level: float = 0.95) -> KendallResult:
    """``scipy.stats.kendalltau(predicted, true)`` on pairs (predicted[i], true[i]), plus a percentile
    bootstrap interval of tau over resampled pairs."""
    x = np.asarray(predicted, dtype=np.float64).reshape(-1)
    y = np.asarray(true, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"Kendall tau needs paired values: {x.size} predicted vs {y.size} true.")
    if x.size < 3:
        raise ValueError(f"Kendall tau needs at least 3 pairs, got {x.size}.")
    res = stats.kendalltau(x, y)
    tau, p = float(res.statistic), float(res.pvalue)
    interval = bootstrap_ci(np.c_[x, y], statistic=_kendall_tau, n_boot=n_boot, level=level, seed=seed)
    return KendallResult(tau, p, interval)


def _kendall_tau(pairs: Float[np.ndarray, "n 2"]) -> float:
    return float(stats.kendalltau(pairs[:, 0], pairs[:, 1]).statistic)


class LinearIRM:
    """Linear regression from feature deltas to token values (sklearn style).

    Ridge regression with its penalty chosen by efficient leave-one-out CV on the training tokens
    (``alphas``); ``alphas=(0,)``-like tiny values give ordinary least squares. Feature deltas are
    standardised by their training standard deviation (constant features are dropped).

    Attributes after ``fit``: ``coef_`` (per feature, in the original units), ``intercept_``,
    ``alpha_``, ``kept_features_`` (indices of non-constant features).
    """

    def __init__(self, alphas: Sequence[float] = tuple(np.logspace(-2, 4, 13))):
        self.alphas = alphas

    def fit(self, deltas: Float[np.ndarray, "n features"], values: Float[np.ndarray, " n"]) -> LinearIRM:
        x = np.asarray(deltas, dtype=np.float64)
        y = np.asarray(values, dtype=np.float64).reshape(-1)
        if x.ndim != 2 or x.shape[0] != y.size:
            raise ValueError(f"deltas must be [n, features] with n = {y.size} values, got {x.shape}.")
        if y.size < 3:
            raise ValueError("fit needs at least 3 tokens.")
        sd = x.std(0)
        self.kept_features_ = np.flatnonzero(sd > 1e-12)
        if self.kept_features_.size == 0:
            raise ValueError("every feature delta is constant: the features do not respond to the swapped words.")
        self.scale_ = sd[self.kept_features_]
        self.model_ = RidgeCV(alphas=list(self.alphas)).fit(x[:, self.kept_features_] / self.scale_, y)
        self.alpha_ = float(self.model_.alpha_)
        coef = np.zeros(x.shape[1])
        coef[self.kept_features_] = self.model_.coef_ / self.scale_
        self.coef_ = coef
        self.intercept_ = float(self.model_.intercept_)
        return self

    def predict(self, deltas: Float[np.ndarray, "n features"]) -> Float[np.ndarray, " n"]:
        if not hasattr(self, "coef_"):
            raise RuntimeError("LinearIRM is not fitted: call fit(deltas, values) first.")
        x = np.asarray(deltas, dtype=np.float64)
        return x @ self.coef_ + self.intercept_

    def score(self, deltas, values) -> float:
        """Kendall's tau between predicted and true values of the same tokens."""
        return paired_kendall(self.predict(deltas), values, n_boot=0).tau if len(values) >= 3 else math.nan


def reconstruction_table(words: Sequence[str], true: Sequence[float], predicted: Sequence[float], k: int = 8,
                         title: str = "Reconstructed vs original lexicon values (held-out tokens)") -> Table:
    """The paper's Table 3 shape: the ``k`` most positive and ``k`` most negative tokens (by true value)."""
    t = np.asarray(true, dtype=np.float64)
    pick = list(rank_by_score(t)[:k]) + list(rank_by_score(-t)[:k])
    rows = [[words[i], float(true[i]), float(predicted[i])] for i in pick]
    return Table(title, ["token", "VADER value", "IRM value"], rows)
