"""Online error detection: while a rollout is generated, flag it as soon as the value ``V(s_t)``
falls below a threshold or the TD error ``δ_t = γ·V(s_t) − V(s_{t−1})`` (:mod:`analysis.td`)
falls below ``−threshold``; then measure precision and recall of the flags for wrong answers and
how early they come.

:class:`ValueMonitor` is a TransformerLens-style observing hook (``fn(activation, hook)``
returning ``None``) that records the value at every decoding step of ``adapter.generate``; it
composes with any other hooks. On a causal model its trace equals the teacher-forced
:meth:`ValueScorer.value_traces` (minus the last state, which generation never computes), so
offline evaluation of a flag rule on teacher-forced traces is exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from ...analysis.probes import ValueProbe
from ...analysis.stats import Interval, bootstrap_ci
from ...analysis.td import td_errors
from ...report import Table, new_figure, save_figure


class ValueMonitor:
    """Records ``V(s_t)`` of every row at every forward of a generation (prefill gives ``s_0``).

    >>> monitor = ValueMonitor(scorer.scoring_probe, scorer.hook_name)
    >>> gens = adapter.generate(prompts, cfg, fwd_hooks=monitor.fwd_hooks)
    >>> traces = monitor.traces(gens)           # V(s_0) .. V(s_{T-1}) per generation
    """

    def __init__(self, probe: ValueProbe, hook: str):
        probe.probe_index(hook)
        self.probe = probe
        self.hook = hook
        self.reset()

    def reset(self) -> None:
        self._batches: list[list[Tensor]] = []

    @property
    def fwd_hooks(self) -> list[tuple[str, ValueMonitor]]:
        return [(self.hook, self)]

    @torch.no_grad()
    def __call__(self, activation: Float[Tensor, "batch pos d"], hook=None) -> None:
        last = activation[:, -1].detach().float()
        value = self.probe.predict_value(last, hook=self.hook).cpu()
        if activation.shape[1] > 1 or not self._batches:  # a prefill: a new generation batch starts
            self._batches.append([])
        self._batches[-1].append(value)

    def traces(self, generations: Sequence) -> list[Float[np.ndarray, " T"]]:
        """Per generation (in the order generated), ``V(s_0) .. V(s_{T−1})`` cut at its response length."""
        rows = []
        for steps in self._batches:
            grid = torch.stack(steps, 1).numpy().astype(np.float64)  # [batch, steps]
            rows.extend(list(grid))
        if len(rows) != len(generations):
            raise ValueError(f"the monitor saw {len(rows)} rows but {len(generations)} generations were given; "
                             "call reset() before each generate call.")
        return [row[: max(1, len(g.response_ids))] for row, g in zip(rows, generations)]


@dataclass(frozen=True)
class FlagRule:
    """Flag at the first state ``t ≥ min_steps`` with ``V(s_t) < value_threshold`` or TD error
    ``γ·V(s_t) − V(s_{t−1}) < −td_threshold`` (a rule with ``None`` is off)."""

    value_threshold: float | None = 0.3
    td_threshold: float | None = None
    gamma: float = 0.99
    min_steps: int = 1

    def __post_init__(self):
        if self.value_threshold is None and self.td_threshold is None:
            raise ValueError("a FlagRule needs value_threshold or td_threshold; both are None.")
        if self.td_threshold is not None and self.td_threshold <= 0:
            raise ValueError(f"td_threshold is a size of drop and must be > 0, got {self.td_threshold}.")
        if self.min_steps < 0:
            raise ValueError("min_steps must be >= 0.")

    def first_flag(self, trace: Sequence[float]) -> int | None:
        v = np.asarray(trace, dtype=np.float64).reshape(-1)
        hit = np.zeros(v.size, dtype=bool)
        if self.value_threshold is not None:
            hit |= v < self.value_threshold
        if self.td_threshold is not None and v.size > 1:
            td = td_errors(v, 0.0, self.gamma, align="arrival")  # [NaN, δ_1, ..]; the reward is not read
            hit[1:] |= td[1:] < -self.td_threshold
        hit[: self.min_steps] = False
        idx = np.flatnonzero(hit)
        return int(idx[0]) if idx.size else None


@dataclass
class DetectionResult:
    rule: FlagRule
    n_rollouts: int
    n_wrong: int
    n_flagged: int
    precision: Interval
    recall: Interval
    false_flag_rate: Interval
    base_error_rate: float
    flag_position: Interval | None  # fraction of the response generated when a wrong rollout is flagged
    tokens_before_flag: Interval | None
    sweep: dict[str, list[dict]]

    def to_summary(self) -> dict:
        return {"rule": vars(self.rule), "n_rollouts": self.n_rollouts, "n_wrong": self.n_wrong, "n_flagged": self.n_flagged,
                "precision": self.precision.to_dict(), "recall": self.recall.to_dict(),
                "false_flag_rate": self.false_flag_rate.to_dict(), "base_error_rate": self.base_error_rate,
                "flag_position_fraction": self.flag_position.to_dict() if self.flag_position else None,
                "tokens_before_flag": self.tokens_before_flag.to_dict() if self.tokens_before_flag else None,
                "sweep": self.sweep}

    def plot(self, path) -> str:
        fig, ax = new_figure(6.0, 4.2)
        for name, pts in self.sweep.items():
            ax.plot([p["recall"] for p in pts], [p["precision"] for p in pts], "o-", ms=3, label=f"{name} rule (threshold sweep)")
        ax.axhline(self.base_error_rate, color="gray", ls="--", label=f"base error rate {self.base_error_rate:.2f} (flag at random)")
        ax.plot([self.recall.estimate], [self.precision.estimate], "k*", ms=12, label="configured rule")
        ax.set_xlabel("recall (wrong rollouts flagged)")
        ax.set_ylabel("precision (flagged rollouts that are wrong)")
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.02)
        ax.set_title(f"Online error detection (n={self.n_rollouts} rollouts)")
        ax.legend(fontsize=7)
        return save_figure(fig, path)

    def section_parts(self) -> tuple[list[Table], list[str]]:
        rows = [["precision", self.precision.estimate, self.precision.low, self.precision.high, self.precision.n],
                ["recall", self.recall.estimate, self.recall.low, self.recall.high, self.recall.n],
                ["false-flag rate (right rollouts flagged)", self.false_flag_rate.estimate, self.false_flag_rate.low,
                 self.false_flag_rate.high, self.false_flag_rate.n]]
        if self.flag_position:
            f = self.flag_position
            rows.append(["flag position (fraction of response, wrong rollouts)", f.estimate, f.low, f.high, f.n])
        if self.tokens_before_flag:
            t = self.tokens_before_flag
            rows.append(["tokens before the flag (wrong rollouts)", t.estimate, t.low, t.high, t.n])
        table = Table(f"Error detection with {vars(self.rule)} (95% bootstrap over prompts)", ["metric", "estimate", "low", "high", "n"], rows)
        notes = [(f"Flagged {self.n_flagged} of {self.n_rollouts} rollouts; {self.n_wrong} are wrong (base error rate "
                 f"{self.base_error_rate:.3f}, the precision of flagging at random). Thresholds are presets, not tuned on these data.")]
        return [table], notes


def _cluster_ratio(num: np.ndarray, den: np.ndarray, groups: np.ndarray, n_boot: int, seed: int) -> Interval:
    """Σnum/Σden with a bootstrap over groups (rollouts of one prompt resampled together)."""
    keys, inv = np.unique(groups, return_inverse=True)
    per = np.zeros((keys.size, 2))
    np.add.at(per, inv, np.c_[num, den])
    if per[:, 1].sum() == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0)
    iv = bootstrap_ci(per, lambda x: x[:, 0].sum() / x[:, 1].sum() if x[:, 1].sum() else np.nan, n_boot=n_boot, seed=seed)
    return Interval(iv.estimate, iv.low, iv.high, int(den.sum()), iv.level)


def _pr(flags: np.ndarray, wrong: np.ndarray) -> tuple[float, float]:
    tp = float((flags & wrong).sum())
    return (tp / flags.sum() if flags.sum() else float("nan"), tp / wrong.sum() if wrong.sum() else float("nan"))


def detect_errors(traces: Sequence[Sequence[float]], rewards: Sequence[float], rule: FlagRule,
                  groups: Sequence | None = None, n_boot: int = 1000, seed: int = 0,
                  sweep_thresholds: Sequence[float] = tuple(np.round(np.linspace(0.05, 0.95, 19), 3))) -> DetectionResult:
    """Precision/recall of ``rule``'s flags for wrong rollouts (``rewards == 0``), how early wrong ones
    are flagged, and a threshold sweep of the value rule and the TD rule (descriptive)."""
    r = np.asarray(rewards, dtype=np.float64).reshape(-1)
    if len(traces) != r.size:
        raise ValueError(f"{len(traces)} traces but {r.size} rewards.")
    g = np.arange(r.size) if groups is None else np.asarray(list(groups))
    first = [rule.first_flag(t) for t in traces]
    flags = np.array([f is not None for f in first])
    wrong = r == 0
    precision = _cluster_ratio((flags & wrong).astype(float), flags.astype(float), g, n_boot, seed)
    recall = _cluster_ratio((flags & wrong).astype(float), wrong.astype(float), g, n_boot, seed)
    false_flags = _cluster_ratio((flags & ~wrong).astype(float), (~wrong).astype(float), g, n_boot, seed)
    caught = [i for i in range(r.size) if flags[i] and wrong[i]]
    pos = tok = None
    if caught:
        steps = np.array([first[i] for i in caught], dtype=np.float64)
        lengths = np.array([max(len(traces[i]) - 1, 1) for i in caught], dtype=np.float64)
        pos = bootstrap_ci(np.minimum(steps / lengths, 1.0), statistic=np.median, n_boot=n_boot, seed=seed)
        tok = bootstrap_ci(steps, statistic=np.median, n_boot=n_boot, seed=seed)
    sweep: dict[str, list[dict]] = {"value": [], "td": []}
    for th in sweep_thresholds:
        for name, fr in (("value", FlagRule(value_threshold=float(th), gamma=rule.gamma, min_steps=rule.min_steps)),
                         ("td", FlagRule(value_threshold=None, td_threshold=float(th), gamma=rule.gamma, min_steps=rule.min_steps))):
            f = np.array([fr.first_flag(t) is not None for t in traces])
            p, rc = _pr(f, wrong)
            sweep[name].append({"threshold": float(th), "precision": p, "recall": rc, "flagged": int(f.sum())})
    return DetectionResult(rule, int(r.size), int(wrong.sum()), int(flags.sum()), precision, recall, false_flags,
                           float(wrong.mean()), pos, tok, sweep)
