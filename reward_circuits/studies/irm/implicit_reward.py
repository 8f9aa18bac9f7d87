"""The paper's IRM scored against the reward, per model, and the base model as its control.

:func:`reconstruct_lexicon` fits Marks et al.'s IRM (:func:`~reward_circuits.studies.irm.irm_model.fit_delta_irm`)
on one model's activation deltas and only *then* reads the VADER values of its words, to score the
reconstruction: Kendall tau (scipy, with p and a bootstrap interval over words) over all words and
over the negative words alone (the paper's Table 11 question: is there a ranking within a polarity?).

:func:`compare_to_base` is the control the paper lacks: the same construction on the base model, and
the claim "the fine-tuned IRM tracks the reward better than the base's" as the paired difference
tau(fine-tuned) − tau(base) over the same words (words resampled jointly, paired bootstrap).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from ...analysis.stats import Interval, paired_bootstrap_diff
from ...report import Table
from .contrastive import ActivationDeltas
from .irm_model import DeltaIrmFit, KendallResult, fit_delta_irm, paired_kendall, reconstruction_table
from .reward import vader_lexicon


@dataclass
class ReconstructedLexicon:
    """One model's IRM: per word its reconstructed value and VADER value, and their Kendall tau."""

    model: str
    fit: DeltaIrmFit
    vader: np.ndarray
    kendall: KendallResult
    kendall_negative: KendallResult
    kendall_delta: float  # tau of the raw mean activation delta (no regression) vs VADER
    feature_set: str = ""

    def table(self, k: int = 8) -> Table:
        return reconstruction_table(self.fit.words, self.vader, self.fit.reconstructed, k,
                                    title=f"Reconstructed lexicon ({self.model} model; IRM values in [-4, 4])")

    def summary(self) -> dict:
        return {"kendall_tau": self.kendall.to_dict(), "kendall_tau_negative": self.kendall_negative.to_dict(),
                "kendall_tau_raw_delta": self.kendall_delta, "delta_r2": self.fit.delta_r2,
                "n_words": len(self.fit.words), "n_occurrences": self.fit.n_occurrences,
                "n_features": self.fit.n_features, "feature_set": self.feature_set,
                "words": self.fit.words, "reconstructed": self.fit.reconstructed.tolist(), "vader": self.vader.tolist()}


def reconstruct_lexicon(deltas: ActivationDeltas, model: str, alpha: float | None = None, n_folds: int = 5,
                        n_boot: int = 1000, seed: int = 0) -> ReconstructedLexicon:
    """Fit the IRM on ``deltas`` (features and deltas only), then score it against VADER."""
    fit = fit_delta_irm(deltas.features, deltas.deltas, deltas.words, alpha=alpha, n_folds=n_folds)
    lx = vader_lexicon()
    vader = np.array([lx[w] for w in fit.words])
    neg = vader < 0
    return ReconstructedLexicon(
        model=model, fit=fit, vader=vader,
        kendall=paired_kendall(fit.reconstructed, vader, n_boot=n_boot, seed=seed),
        kendall_negative=paired_kendall(fit.reconstructed[neg], vader[neg], n_boot=n_boot, seed=seed),
        kendall_delta=float(stats.kendalltau(fit.mean_delta, vader).statistic))


def _tau_columns(m: np.ndarray) -> float:
    return float(stats.kendalltau(m[:, 0], m[:, 1]).statistic)


@dataclass
class BaseControl:
    """tau(fine-tuned) − tau(base) over the same words (overall and negative-only), paired bootstrap."""

    difference: Interval
    p_value: float
    difference_negative: Interval
    p_value_negative: float

    def to_dict(self) -> dict:
        return {"tau_difference": self.difference.to_dict(), "tau_difference_p": self.p_value,
                "tau_difference_negative": self.difference_negative.to_dict(),
                "tau_difference_negative_p": self.p_value_negative}


def compare_to_base(tuned: ReconstructedLexicon, base: ReconstructedLexicon, n_boot: int = 1000,
                    seed: int = 0) -> BaseControl:
    """Paired bootstrap over words of tau(tuned IRM, VADER) − tau(base IRM, VADER)."""
    common = [w for w in tuned.fit.words if w in set(base.fit.words)]
    if len(common) < 3:
        raise ValueError(f"the two models' IRMs share {len(common)} words: build both from the same triples.")
    ti = {w: i for i, w in enumerate(tuned.fit.words)}
    bi = {w: i for i, w in enumerate(base.fit.words)}
    vader = np.array([tuned.vader[ti[w]] for w in common])
    a = np.c_[[tuned.fit.reconstructed[ti[w]] for w in common], vader]
    b = np.c_[[base.fit.reconstructed[bi[w]] for w in common], vader]
    diff, p = paired_bootstrap_diff(a, b, statistic=_tau_columns, n_boot=n_boot, seed=seed)
    neg = vader < 0
    diff_n, p_n = paired_bootstrap_diff(a[neg], b[neg], statistic=_tau_columns, n_boot=n_boot, seed=seed)
    return BaseControl(diff, p, diff_n, p_n)
