"""Calibration of a confidence score against binary correctness: isotonic or Platt scaling
(scikit-learn), expected calibration error and the reliability diagram.

The calibrators are plain scikit-learn estimators (``IsotonicRegression``, ``LogisticRegression``
on the logit of the score), wrapped so that every confidence signal of the package - the value
probe, next-token probability, verbalized confidence - is calibrated and judged the same way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from jaxtyping import Float

from ...analysis.stats import Interval, bootstrap_ci

CalibrationMethod = Literal["isotonic", "platt", "none"]
CALIBRATION_METHODS = ("isotonic", "platt", "none")


def _as_1d(x, what: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64).reshape(-1)
    if a.size == 0:
        raise ValueError(f"{what} is empty.")
    return a


def _logit(p: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    p = np.clip(p, eps, 1 - eps)
    return np.log(p) - np.log1p(-p)


class ScoreCalibrator:
    """Maps a raw score in [0, 1] (or any real) to a calibrated probability of being correct.

    ``method="isotonic"``: ``sklearn.isotonic.IsotonicRegression`` (monotone, non-parametric,
    clipped out of range); ``"platt"``: ``sklearn.linear_model.LogisticRegression`` on
    ``logit(score)`` (scores outside (0, 1) are used as they are); ``"none"``: identity clipped to
    [0, 1]. Non-finite scores (an unparseable verbalized confidence) are predicted as the base rate
    seen in :meth:`fit`.
    """

    def __init__(self, method: CalibrationMethod = "isotonic"):
        if method not in CALIBRATION_METHODS:
            raise ValueError(f"calibration method must be one of {CALIBRATION_METHODS}, got {method!r}.")
        self.method = method

    def _features(self, s: np.ndarray) -> np.ndarray:
        inside = np.all((s >= 0) & (s <= 1))
        return (_logit(s) if inside else s)[:, None]

    def fit(self, scores: Sequence[float], correct: Sequence[float]) -> ScoreCalibrator:
        s, y = _as_1d(scores, "scores"), _as_1d(correct, "correct")
        if s.shape != y.shape:
            raise ValueError(f"{s.size} scores but {y.size} labels.")
        ok = np.isfinite(s)
        if ok.sum() < 2:
            raise ValueError(f"only {int(ok.sum())} finite scores: calibration needs at least 2.")
        s, y = s[ok], y[ok]
        self.base_rate_ = float(y.mean())
        self.constant_ = np.unique(y).size < 2
        if self.method == "isotonic" and not self.constant_:
            from sklearn.isotonic import IsotonicRegression

            self.model_ = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(s, y)
        elif self.method == "platt" and not self.constant_:
            from sklearn.linear_model import LogisticRegression

            self.model_ = LogisticRegression(C=1e4).fit(self._features(s), y.astype(int))
        else:
            self.model_ = None
        return self

    def predict(self, scores: Sequence[float]) -> Float[np.ndarray, " n"]:
        if not hasattr(self, "base_rate_"):
            raise RuntimeError("this ScoreCalibrator is not fitted: call fit(scores, correct) first.")
        s = _as_1d(scores, "scores")
        out = np.full(s.shape, self.base_rate_)
        ok = np.isfinite(s)
        if not ok.any():
            return out
        if self.constant_:
            out[ok] = self.base_rate_
        elif self.method == "isotonic":
            out[ok] = self.model_.predict(s[ok])
        elif self.method == "platt":
            out[ok] = self.model_.predict_proba(self._features(s[ok]))[:, 1]
        else:
            out[ok] = np.clip(s[ok], 0.0, 1.0)
        return out


def cross_calibrate(scores: Sequence[float], correct: Sequence[float], method: CalibrationMethod = "isotonic",
                    n_folds: int = 2, seed: int = 0, groups: Sequence | None = None) -> Float[np.ndarray, " n"]:
    """Out-of-fold calibrated scores: each unit's calibrated value comes from a calibrator fitted on
    the other folds (so the ECE it yields is an honest held-out ECE). ``groups`` (e.g. prompt ids)
    keeps a group's units in one fold."""
    from sklearn.model_selection import GroupKFold, KFold

    s, y = _as_1d(scores, "scores"), _as_1d(correct, "correct")
    if s.shape != y.shape:
        raise ValueError(f"{s.size} scores but {y.size} labels.")
    if n_folds < 2 or n_folds > s.size:
        raise ValueError(f"n_folds must lie in [2, {s.size}], got {n_folds}.")
    out = np.empty_like(s)
    if groups is None:
        splits = KFold(n_folds, shuffle=True, random_state=seed).split(s)
    else:
        splits = GroupKFold(n_folds).split(s, y, np.asarray(list(groups)))
    for train, held in splits:
        out[held] = ScoreCalibrator(method).fit(s[train], y[train]).predict(s[held])
    return out


def expected_calibration_error(confidence: Sequence[float], correct: Sequence[float], n_bins: int = 10) -> float:
    """ECE with ``n_bins`` equal-width bins on [0, 1]: ``Σ_b (n_b/n)·|mean correct_b − mean conf_b|``
    over the finite confidences."""
    c, y = _as_1d(confidence, "confidence"), _as_1d(correct, "correct")
    if c.shape != y.shape:
        raise ValueError(f"{c.size} confidences but {y.size} labels.")
    ok = np.isfinite(c)
    c, y = np.clip(c[ok], 0.0, 1.0), y[ok]
    if c.size == 0:
        return math.nan
    bins = np.minimum((c * n_bins).astype(int), n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        m = bins == b
        if m.any():
            total += m.sum() / c.size * abs(y[m].mean() - c[m].mean())
    return float(total)


def ece_interval(confidence: Sequence[float], correct: Sequence[float], n_bins: int = 10, n_boot: int = 1000,
                 seed: int = 0) -> Interval:
    """ECE with a bootstrap interval over units (finite confidences only)."""
    c, y = _as_1d(confidence, "confidence"), _as_1d(correct, "correct")
    ok = np.isfinite(c)
    pairs = np.c_[c[ok], y[ok]]
    if pairs.shape[0] == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    return bootstrap_ci(pairs, lambda v: expected_calibration_error(v[:, 0], v[:, 1], n_bins), n_boot=n_boot, seed=seed)


@dataclass
class ReliabilityCurve:
    """Points of a reliability diagram (``sklearn.calibration.calibration_curve``, uniform bins)."""

    name: str
    mean_confidence: list[float]
    fraction_correct: list[float]
    ece: Interval

    def to_dict(self) -> dict:
        return {"mean_confidence": self.mean_confidence, "fraction_correct": self.fraction_correct,
                "ece": self.ece.to_dict()}


def reliability_curve(name: str, confidence: Sequence[float], correct: Sequence[float], n_bins: int = 10,
                      n_boot: int = 1000, seed: int = 0) -> ReliabilityCurve:
    from sklearn.calibration import calibration_curve

    c, y = _as_1d(confidence, "confidence"), _as_1d(correct, "correct")
    ok = np.isfinite(c)
    if ok.sum() == 0 or np.unique(y[ok]).size < 2:
        return ReliabilityCurve(name, [], [], ece_interval(c, y, n_bins, n_boot, seed))
    frac, mean = calibration_curve(y[ok].astype(int), np.clip(c[ok], 0, 1), n_bins=n_bins, strategy="uniform")
    return ReliabilityCurve(name, mean.tolist(), frac.tolist(), ece_interval(c, y, n_bins, n_boot, seed))


def plot_reliability(curves: Sequence[ReliabilityCurve], path, title: str = "Reliability diagram") -> str:
    """One reliability diagram with every curve (legend: name and ECE [interval]); returns the file name."""
    from ...report import new_figure, save_figure

    fig, ax = new_figure(5.5, 5.0)
    ax.plot([0, 1], [0, 1], "k:", lw=1, label="perfect calibration")
    for c in curves:
        if c.mean_confidence:
            ax.plot(c.mean_confidence, c.fraction_correct, "o-",
                    label=f"{c.name}: ECE {c.ece.estimate:.3f} [{c.ece.low:.3f}, {c.ece.high:.3f}]")
    ax.set_xlabel("confidence (bin mean)")
    ax.set_ylabel("fraction correct")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(fontsize=7)
    return save_figure(fig, path)
