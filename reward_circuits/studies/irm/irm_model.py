"""The implicit reward model (IRM), scored by Kendall's tau between the values it reconstructs and
the true lexicon values.

- :class:`DeltaIRM` / :func:`fit_delta_irm` is Marks et al.'s IRM: a linear regression from a
  sentiment token's concatenated SAE feature activations to its *sentiment activation delta*
  (:func:`~reward_circuits.studies.irm.contrastive.activation_deltas`); it never sees a lexicon value.
  Predictions are cross-fitted (folds grouped by word: a word's value is predicted by a regression
  that never saw that word), normalised to [−4, 4] (the VADER range) by dividing by the largest
  magnitude (sign-preserving: a negative delta stays negative; Kendall tau is unchanged by any
  monotone rescaling), then averaged over a word's occurrences.
- :class:`LinearIRM` is the *decodability ceiling*: a ridge regression trained on the lexicon values
  themselves. Its tau says how linearly decodable the VADER value is from the feature deltas, not
  that the fine-tune formed an implicit reward.

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
from sklearn.linear_model import LinearRegression, RidgeCV
from sklearn.model_selection import GroupKFold

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


LEXICON_BOUND = 4.0  # VADER values lie in [-4, 4]


class DeltaIRM:
    """Marks et al.'s IRM (sklearn style): a linear regression from a sentiment token's feature
    activations to its sentiment activation delta, on standardised features. ``alpha=None`` (the
    default) is a ridge whose penalty is chosen by efficient leave-one-out CV *on the deltas*
    (``RidgeCV`` over ``alphas``; VADER is never consulted); ``alpha=0`` is ordinary least squares
    (``LinearRegression``; minimum-norm, i.e. interpolating, when features outnumber tokens);
    ``alpha > 0`` a ridge with that penalty.

    Attributes after ``fit``: ``model_`` (the sklearn estimator), ``kept_features_``, ``scale_``."""

    def __init__(self, alpha: float | None = None, alphas: Sequence[float] = tuple(np.logspace(-2, 4, 13))):
        self.alpha = alpha
        self.alphas = alphas

    def fit(self, features: Float[np.ndarray, "n features"], deltas: Float[np.ndarray, " n"]) -> DeltaIRM:
        x = np.asarray(features, dtype=np.float64)
        y = np.asarray(deltas, dtype=np.float64).reshape(-1)
        if x.ndim != 2 or x.shape[0] != y.size or y.size < 3:
            raise ValueError(f"features must be [n >= 3, features] with one delta per row, got {x.shape} and {y.size}.")
        sd = x.std(0)
        self.kept_features_ = np.flatnonzero(sd > 1e-12)
        if self.kept_features_.size == 0:
            raise ValueError("every feature is constant over the sentiment tokens: nothing to regress on.")
        self.scale_ = sd[self.kept_features_]
        est = (LinearRegression() if self.alpha == 0 else
               RidgeCV(alphas=list(self.alphas) if self.alpha is None else [self.alpha]))
        self.model_ = est.fit(x[:, self.kept_features_] / self.scale_, y)
        return self

    def predict(self, features: Float[np.ndarray, "n features"]) -> Float[np.ndarray, " n"]:
        if not hasattr(self, "model_"):
            raise RuntimeError("DeltaIRM is not fitted: call fit(features, deltas) first.")
        x = np.asarray(features, dtype=np.float64)
        return self.model_.predict(x[:, self.kept_features_] / self.scale_)


def normalise_to_lexicon_range(values: Sequence[float], bound: float = LEXICON_BOUND) -> np.ndarray:
    """``values`` scaled by ``bound / max|values|`` into [−bound, bound] (signs kept; zeros stay 0)."""
    v = np.asarray(values, dtype=np.float64)
    top = np.abs(v).max() if v.size else 0.0
    return v * (bound / top) if top > 0 else v.copy()


def word_means(words: Sequence[str], values: Sequence[float]) -> tuple[list[str], np.ndarray]:
    """The mean of ``values`` per distinct word (first-seen order)."""
    sums: dict[str, list[float]] = {}
    for w, v in zip(words, values):
        sums.setdefault(w, []).append(float(v))
    return list(sums), np.array([np.mean(v) for v in sums.values()])


@dataclass
class DeltaIrmFit:
    """Per word: the IRM's reconstructed value in [−4, 4] (cross-fitted, averaged over occurrences)
    and the mean sentiment activation delta itself."""

    words: list[str]
    reconstructed: Float[np.ndarray, " words"]
    mean_delta: Float[np.ndarray, " words"]
    delta_r2: float  # cross-fitted R^2 of the predicted deltas (how well features predict the deltas)
    n_features: int
    n_occurrences: int


def fit_delta_irm(features: Float[np.ndarray, "n features"], deltas: Float[np.ndarray, " n"], words: Sequence[str],
                  alpha: float | None = None, n_folds: int = 5) -> DeltaIrmFit:
    """Cross-fitted :class:`DeltaIRM` predictions (folds grouped by word), normalised to [−4, 4] and
    averaged per word. Takes feature activations and deltas only: no lexicon value can reach it."""
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(deltas, dtype=np.float64).reshape(-1)
    words = list(words)
    n_words = len(set(words))
    if n_words < max(n_folds, 3):
        raise ValueError(f"{n_words} distinct words for {n_folds} folds: use more words or fewer folds.")
    pred = np.empty_like(y)
    for train, test in GroupKFold(n_splits=n_folds).split(x, y, groups=words):
        pred[test] = DeltaIRM(alpha).fit(x[train], y[train]).predict(x[test])
    r2 = 1 - float(((y - pred) ** 2).sum() / ((y - y.mean()) ** 2).sum()) if y.std() > 0 else math.nan
    names, recon = word_means(words, normalise_to_lexicon_range(pred))
    _, mean_delta = word_means(words, y)
    return DeltaIrmFit(names, recon, mean_delta, r2, int(x.shape[1]), int(y.size))


def reconstruction_table(words: Sequence[str], true: Sequence[float], predicted: Sequence[float], k: int = 8,
                         title: str = "Reconstructed vs original lexicon values (held-out tokens)") -> Table:
    """The paper's Table 3 shape: the ``k`` most positive and ``k`` most negative tokens (by true value)."""
    t = np.asarray(true, dtype=np.float64)
    pick = list(rank_by_score(t)[:k]) + list(rank_by_score(-t)[:k])
    rows = [[words[i], float(true[i]), float(predicted[i])] for i in pick]
    return Table(title, ["token", "VADER value", "IRM value"], rows)
