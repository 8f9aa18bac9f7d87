"""Routing / adaptive compute: per prompt, before generating anything, the scorer's confidence
decides to *answer now* (one greedy sample), *sample N* (best-of-N) or *escalate* (flag for a
larger model or a person). Accuracy against compute next to uniform allocation (every prompt gets
``k`` samples) and random routing at the same compute (the matched control).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ...analysis.stats import Interval, bootstrap_ci, paired_bootstrap_diff
from ...report import Table, new_figure, save_figure


@dataclass
class RoutingPoint:
    """One allocation: ``sample_fraction`` of prompts (the least confident) get ``n`` samples."""

    policy: str
    sample_fraction: float
    samples_per_prompt: float
    tokens_per_prompt: float
    accuracy: Interval

    def to_dict(self) -> dict:
        return {"policy": self.policy, "sample_fraction": self.sample_fraction, "samples_per_prompt": self.samples_per_prompt,
                "tokens_per_prompt": self.tokens_per_prompt, "accuracy": self.accuracy.to_dict()}


@dataclass
class EscalationResult:
    """The least confident ``fraction`` of prompts escalated: are they the ones greedy gets wrong?"""

    fraction: float
    n_escalated: int
    error_rate_escalated: Interval
    error_rate_overall: float
    accuracy_kept: Interval
    accuracy_kept_random: float

    def to_dict(self) -> dict:
        return {"fraction": self.fraction, "n_escalated": self.n_escalated,
                "error_rate_escalated": self.error_rate_escalated.to_dict(), "error_rate_overall": self.error_rate_overall,
                "accuracy_kept": self.accuracy_kept.to_dict(), "accuracy_kept_random_routing": self.accuracy_kept_random}


@dataclass
class RoutingResult:
    adaptive: list[RoutingPoint]
    random: list[RoutingPoint]
    uniform: list[RoutingPoint]
    headline_fraction: float
    adaptive_minus_random: Interval
    adaptive_minus_random_p: float
    escalation: EscalationResult
    coverage_curve: list[tuple[float, float]]
    n_samples: int
    selector: str

    def to_summary(self) -> dict:
        return {
            "selector": self.selector, "n_samples": self.n_samples, "headline_fraction": self.headline_fraction,
            "adaptive_minus_random_at_headline": {**self.adaptive_minus_random.to_dict(), "p_value": self.adaptive_minus_random_p},
            "adaptive": [p.to_dict() for p in self.adaptive], "random_routing": [p.to_dict() for p in self.random],
            "uniform": [p.to_dict() for p in self.uniform], "escalation": self.escalation.to_dict(),
            "coverage_curve": [{"coverage": c, "accuracy": a} for c, a in self.coverage_curve],
        }

    def plot(self, path) -> str:
        fig, (ax1, ax2) = new_figure(11, 4.2, 1, 2)
        for pts, style, label in ((self.adaptive, "o-", "adaptive (scorer routes the least confident)"),
                                  (self.random, "s--", "random routing (same compute)"),
                                  (self.uniform, "^-", "uniform (k samples for every prompt)")):
            x = [p.samples_per_prompt for p in pts]
            y = [p.accuracy.estimate for p in pts]
            ax1.plot(x, y, style, label=label)
            if pts is not self.random:
                ax1.fill_between(x, [p.accuracy.low for p in pts], [p.accuracy.high for p in pts], alpha=0.12)
        ax1.set_xlabel("samples per prompt (mean)")
        ax1.set_ylabel(f"accuracy (n={self.adaptive[0].accuracy.n})")
        ax1.set_title(f"Adaptive compute ({self.selector} over {self.n_samples} samples)")
        ax1.legend(fontsize=7)
        cov, acc = zip(*self.coverage_curve) if self.coverage_curve else ((), ())
        ax2.plot(cov, acc, "o-", label="keep the most confident (greedy answers)")
        if self.coverage_curve:
            ax2.axhline(self.coverage_curve[-1][1], color="gray", ls="--", label="random escalation (expected)")
        ax2.set_xlabel("coverage (fraction not escalated)")
        ax2.set_ylabel("accuracy on the kept prompts")
        ax2.set_title("Escalation: selective accuracy")
        ax2.legend(fontsize=7)
        return save_figure(fig, path)

    def section_parts(self) -> tuple[list[Table], list[str]]:
        rows = [[p.policy, p.sample_fraction, p.samples_per_prompt, p.tokens_per_prompt, p.accuracy.estimate, p.accuracy.low,
                 p.accuracy.high] for p in self.adaptive + self.random + self.uniform]
        table = Table("Routing: accuracy vs compute (95% bootstrap over prompts)",
                      ["policy", "sampled fraction", "samples / prompt", "tokens / prompt", "accuracy", "low", "high"], rows)
        d, e = self.adaptive_minus_random, self.escalation
        notes = [
            (f"At {self.headline_fraction:.0%} of prompts sampled (a preset, not tuned): adaptive minus random routing "
            f"{d.estimate:+.3f} [{d.low:+.3f}, {d.high:+.3f}] (paired bootstrap, n={d.n}, p={self.adaptive_minus_random_p:.3g})."),
            (f"Escalating the least confident {e.fraction:.0%} ({e.n_escalated} prompts): greedy error rate among them "
            f"{e.error_rate_escalated} vs {e.error_rate_overall:.3f} overall; greedy accuracy on the kept prompts "
            f"{e.accuracy_kept} vs {e.accuracy_kept_random:.3f} expected under random escalation."),
        ]
        return [table], notes


def _least_confident(confidence: np.ndarray, fraction: float) -> np.ndarray:
    """Boolean mask of the ``round(fraction·P)`` least confident prompts (ties: lower index first)."""
    m = round(fraction * confidence.size)
    order = np.lexsort((np.arange(confidence.size), confidence))
    mask = np.zeros(confidence.size, dtype=bool)
    mask[order[:m]] = True
    return mask


@dataclass
class RoutingOutcomes:
    """Per prompt, the outcome (correct or not) and cost (tokens) of each way to answer it.

    ``greedy_*``: "answer now"; ``sampled_*``: "sample N" (a selector over ``n_samples`` candidates);
    ``uniform_*``: ``{k: per-prompt outcome / cost with k samples for everyone}``."""

    greedy_correct: Sequence[float]
    sampled_correct: Sequence[float]
    uniform_correct: dict[int, Sequence[float]]
    greedy_tokens: Sequence[float]
    sampled_tokens: Sequence[float]
    uniform_tokens: dict[int, Sequence[float]]
    n_samples: int


def routing_study(confidence: Sequence[float], outcomes: RoutingOutcomes, *, selector: str = "majority",
                  fractions: Sequence[float] = tuple(np.linspace(0, 1, 11)), headline_fraction: float = 0.5,
                  escalate_fraction: float = 0.2, n_boot: int = 1000, seed: int = 0) -> RoutingResult:
    """Accuracy vs compute of confidence-based routing: per prompt, ``confidence`` (the scorer's, from
    the prompt alone) picks which prompts get "sample N" instead of "answer now" (``outcomes``)."""
    o = outcomes
    uniform_correct, uniform_tokens, n_samples = o.uniform_correct, o.uniform_tokens, o.n_samples
    c = np.asarray(confidence, dtype=np.float64)
    g, s = np.asarray(o.greedy_correct, dtype=np.float64), np.asarray(o.sampled_correct, dtype=np.float64)
    gt, st = np.asarray(o.greedy_tokens, dtype=np.float64), np.asarray(o.sampled_tokens, dtype=np.float64)
    if not (c.shape == g.shape == s.shape == gt.shape == st.shape):
        raise ValueError("confidence, greedy and sampled outcomes and costs need one entry per prompt each.")
    if not np.isfinite(c).all():
        raise ValueError("confidence contains NaN: route on a score every prompt has.")
    if not 0 < headline_fraction < 1 or not 0 <= escalate_fraction < 1:
        raise ValueError("headline_fraction must lie in (0, 1) and escalate_fraction in [0, 1).")
    fractions = sorted({float(f) for f in fractions} | {headline_fraction})
    adaptive, random, diff = [], [], None
    for f in fractions:
        mask = _least_confident(c, f)
        share = mask.mean()
        acc_a = np.where(mask, s, g)
        acc_r = (1 - share) * g + share * s  # expectation over random subsets of that size
        spp = 1 + share * (n_samples - 1)
        adaptive.append(RoutingPoint("adaptive", f, spp, float(np.where(mask, st, gt).mean()), bootstrap_ci(acc_a, n_boot=n_boot, seed=seed)))
        random.append(RoutingPoint("random", f, spp, float(((1 - share) * gt + share * st).mean()), bootstrap_ci(acc_r, n_boot=n_boot, seed=seed)))
        if f == headline_fraction:
            diff = paired_bootstrap_diff(acc_a, acc_r, n_boot=n_boot, seed=seed)
    uniform = [RoutingPoint("uniform", 1.0 if k > 1 else 0.0, float(k), float(np.mean(uniform_tokens[k])),
                            bootstrap_ci(np.asarray(uniform_correct[k], dtype=np.float64), n_boot=n_boot, seed=seed))
               for k in sorted(uniform_correct)]
    esc = _least_confident(c, escalate_fraction)
    kept = ~esc
    escalation = EscalationResult(
        escalate_fraction, int(esc.sum()),
        bootstrap_ci(1 - g[esc], n_boot=n_boot, seed=seed) if esc.any() else Interval(float("nan"), float("nan"), float("nan"), 0),
        float(1 - g.mean()), bootstrap_ci(g[kept], n_boot=n_boot, seed=seed), float(g.mean()))
    coverage = []
    for cov in np.linspace(0.1, 1.0, 10):
        keep = ~_least_confident(c, 1 - cov)
        coverage.append((float(cov), float(g[keep].mean()) if keep.any() else float("nan")))
    return RoutingResult(adaptive, random, uniform, headline_fraction, diff[0], diff[1], escalation, coverage, n_samples, selector)

