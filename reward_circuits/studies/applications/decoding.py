"""Value-guided decoding: best-of-N ranked by the value at each candidate's last token, and early
abort of a sample whose value drops; accuracy against compute next to greedy decoding, majority
vote and random choice at equal numbers of samples.

Everything here works on a :class:`CandidateSet` (``P`` prompts × ``K`` sampled candidates with
their rewards, extracted answers, lengths and value traces), so the selection rules are pure
functions that tests can drive with planted data.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from jaxtyping import Float

from ...analysis.stats import Interval, bootstrap_ci, paired_bootstrap_diff
from ...report import Table, new_figure, save_figure

Method = Literal["value", "value_abort", "majority", "random", "oracle"]
METHODS: tuple[str, ...] = ("value", "value_abort", "majority", "random", "oracle")
METHOD_LABELS = {
    "value": "best-of-k by value at last token",
    "value_abort": "best-of-k by value, early abort",
    "majority": "majority vote",
    "random": "random choice (expected)",
    "oracle": "oracle (pass@k, upper bound)",
    "greedy": "greedy (1 sample)",
}


# ---------------------------------------------------------------------------------------------
# answers
# ---------------------------------------------------------------------------------------------
def answer_key(task, text: str) -> str | None:
    """The answer a response commits to, normalised so equal answers compare equal (majority vote):
    the number for numeric tasks, the letter for multiple choice, the normalised LaTeX for MATH,
    otherwise the stripped lower-cased text. ``None`` when no answer can be extracted."""
    from ...tasks.base import choice_reward, math_reward, numeric_reward
    from ...tasks.grading import (
        extract_choice,
        extract_math_answer,
        extract_number,
        normalize_math_answer,
        to_fraction,
    )

    fn = getattr(task, "reward_fn", None)
    if fn is numeric_reward:
        x = to_fraction(extract_number(text))
        return None if x is None else str(x)
    if fn is choice_reward:
        letters = str(task.examples[0].meta.get("letters", "ABCD")) if task.examples else "ABCD"
        return extract_choice(text, letters)
    if fn is math_reward:
        a = extract_math_answer(text)
        return None if a is None else normalize_math_answer(a)
    t = (text or "").strip().lower()
    return t or None


# ---------------------------------------------------------------------------------------------
# candidates
# ---------------------------------------------------------------------------------------------
@dataclass
class CandidateSet:
    """``K`` sampled candidates for each of ``P`` prompts.

    Attributes:
        prompt_ids: one id per prompt.
        rewards: ``[P, K]`` 0/1 correctness of each candidate.
        values: ``[P, K]`` the scorer's value at each candidate's last token.
        answers: ``P`` lists of ``K`` answer keys (``None``: no answer extracted).
        lengths: ``[P, K]`` generated tokens of each candidate.
        traces: ``P`` lists of ``K`` value traces ``V(s_0) .. V(s_T)`` (for early abort), or empty.
        greedy_rewards: ``[P]`` correctness of the greedy answer, if generated.
        greedy_lengths: ``[P]`` its length in tokens.
    """

    prompt_ids: list[str]
    rewards: Float[np.ndarray, "P K"]
    values: Float[np.ndarray, "P K"]
    answers: list[list[str | None]]
    lengths: Float[np.ndarray, "P K"]
    traces: list[list[np.ndarray]] = field(default_factory=list)
    greedy_rewards: Float[np.ndarray, " P"] | None = None
    greedy_lengths: Float[np.ndarray, " P"] | None = None

    def __post_init__(self):
        self.rewards = np.asarray(self.rewards, dtype=np.float64)
        self.values = np.asarray(self.values, dtype=np.float64)
        self.lengths = np.asarray(self.lengths, dtype=np.float64)
        if self.rewards.ndim != 2:
            raise ValueError(f"rewards must be [prompt, candidate], got shape {self.rewards.shape}.")
        p, k = self.rewards.shape
        if self.values.shape != (p, k) or self.lengths.shape != (p, k):
            raise ValueError(f"rewards {self.rewards.shape}, values {self.values.shape} and lengths {self.lengths.shape} must agree.")
        if len(self.prompt_ids) != p or len(self.answers) != p or any(len(a) != k for a in self.answers):
            raise ValueError(f"give one prompt id and {k} answers for each of the {p} prompts.")
        if not np.isin(self.rewards, (0.0, 1.0)).all():
            raise ValueError("rewards must be 0 or 1.")
        if self.traces and (len(self.traces) != p or any(len(t) != k for t in self.traces)):
            raise ValueError(f"traces must be {p} lists of {k} value traces (or empty).")
        for name in ("greedy_rewards", "greedy_lengths"):
            v = getattr(self, name)
            if v is not None:
                v = np.asarray(v, dtype=np.float64).reshape(-1)
                if v.size != p:
                    raise ValueError(f"{name} has {v.size} entries for {p} prompts.")
                setattr(self, name, v)

    @property
    def n_prompts(self) -> int:
        return self.rewards.shape[0]

    @property
    def n_samples(self) -> int:
        return self.rewards.shape[1]


# ---------------------------------------------------------------------------------------------
# selection rules
# ---------------------------------------------------------------------------------------------
def majority_choice(answers: Sequence[str | None], values: Sequence[float] | None = None) -> int:
    """Index of a candidate carrying the most frequent extracted answer (``None`` answers vote only
    when nothing else does); ties go to the answer seen first."""
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return 0
    best = max(counts.values())
    for i, a in enumerate(answers):
        if a is not None and counts[a] == best:
            return i
    return 0  # unreachable


@dataclass(frozen=True)
class AbortRule:
    """Abort a sample at the first state ``t ≥ min_steps`` whose value fell ``drop`` below the
    highest value seen so far in that sample, or below ``floor`` (either test may be off: ``None``)."""

    drop: float | None = 0.3
    floor: float | None = None
    min_steps: int = 1

    def __post_init__(self):
        if self.drop is None and self.floor is None:
            raise ValueError("an AbortRule needs drop or floor (or both); both are None.")
        if self.drop is not None and not self.drop > 0:
            raise ValueError(f"drop must be > 0, got {self.drop}.")
        if self.floor is not None and not 0 <= self.floor <= 1:
            raise ValueError(f"floor must lie in [0, 1], got {self.floor}.")
        if self.min_steps < 1:
            raise ValueError(f"min_steps must be >= 1 (s_0 is the prompt), got {self.min_steps}.")

    def abort_step(self, trace: Sequence[float]) -> int | None:
        """First state index ``t`` (``s_t``, after ``t`` generated tokens) at which the rule fires, or ``None``."""
        v = np.asarray(trace, dtype=np.float64).reshape(-1)
        peak = -math.inf
        for t, x in enumerate(v):
            if t >= self.min_steps and ((self.drop is not None and x <= peak - self.drop)
                                        or (self.floor is not None and x < self.floor)):
                return t
            peak = max(peak, x)
        return None


def surviving_candidates(abort_steps: Sequence[int | None], trace_values: Sequence[Sequence[float]]) -> list[bool]:
    """Which candidates run to the end when samples generated in parallel are aborted at their
    ``abort_steps``, never aborting the last one still running (then the one with the higher value
    at that step carries on). Causal: decided in time order, from values seen so far."""
    alive = [True] * len(abort_steps)
    events = sorted((s, i) for i, s in enumerate(abort_steps) if s is not None)
    by_time: dict[int, list[int]] = {}
    for s, i in events:
        by_time.setdefault(s, []).append(i)
    for s in sorted(by_time):
        group = sorted(by_time[s], key=lambda i: float(trace_values[i][min(s, len(trace_values[i]) - 1)]))
        for i in group:
            if sum(alive) > 1:
                alive[i] = False
    return alive


def select(cands: CandidateSet, method: Method, k: int, abort: AbortRule | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per prompt: (reward of the selected answer, tokens generated) using the first ``k`` candidates.

    ``random`` is the exact expectation of a uniformly random pick (mean reward of the k)."""
    if not 1 <= k <= cands.n_samples:
        raise ValueError(f"k must lie in [1, {cands.n_samples}], got {k}.")
    r, v, ln = cands.rewards[:, :k], cands.values[:, :k], cands.lengths[:, :k]
    tokens = ln.sum(1)
    if method == "value":
        return r[np.arange(len(r)), v.argmax(1)], tokens
    if method == "oracle":
        return r.max(1), tokens
    if method == "random":
        return r.mean(1), tokens
    if method == "majority":
        picks = [majority_choice(a[:k]) for a in cands.answers]
        return r[np.arange(len(r)), picks], tokens
    if method == "value_abort":
        if abort is None or not cands.traces:
            raise ValueError("value_abort needs an AbortRule and the candidates' value traces.")
        out, spent = np.empty(len(r)), np.empty(len(r))
        for p in range(len(r)):
            traces = cands.traces[p][:k]
            steps = [abort.abort_step(t) for t in traces]
            alive = surviving_candidates(steps, traces)
            cost = [ln[p, i] if alive[i] else min(steps[i], ln[p, i]) for i in range(k)]
            live = [i for i in range(k) if alive[i]]
            out[p] = r[p, max(live, key=lambda i: v[p, i])]
            spent[p] = float(sum(cost))
        return out, spent
    raise ValueError(f"unknown method {method!r}; choose from {METHODS}.")


# ---------------------------------------------------------------------------------------------
# accuracy vs compute
# ---------------------------------------------------------------------------------------------
@dataclass
class ComputePoint:
    method: str
    k: int
    accuracy: Interval
    mean_tokens: float

    def to_dict(self) -> dict:
        return {"method": self.method, "k": self.k, "accuracy": self.accuracy.to_dict(), "mean_tokens": self.mean_tokens}


@dataclass
class BestOfNResult:
    """Accuracy-vs-compute curves of value-guided decoding and its baselines on the same candidates."""

    points: list[ComputePoint]
    greedy: ComputePoint | None
    value_minus_majority: Interval
    value_minus_majority_p: float
    value_minus_random: Interval
    value_minus_random_p: float
    value_minus_greedy: Interval | None
    abort_rule: AbortRule | None
    abort_token_saving: float | None
    n_prompts: int
    n_samples: int

    def curve(self, method: str) -> list[ComputePoint]:
        return [p for p in self.points if p.method == method]

    def at(self, method: str, k: int) -> ComputePoint:
        return next(p for p in self.points if p.method == method and p.k == k)

    def to_summary(self) -> dict:
        n = self.n_samples
        return {
            "n_prompts": self.n_prompts, "n_samples": n,
            "accuracy_at_n": {m: self.at(m, n).accuracy.to_dict() for m in {p.method for p in self.points}},
            "greedy": self.greedy.to_dict() if self.greedy else None,
            "value_minus_majority_at_n": {**self.value_minus_majority.to_dict(), "p_value": self.value_minus_majority_p},
            "value_minus_random_at_n": {**self.value_minus_random.to_dict(), "p_value": self.value_minus_random_p},
            "value_minus_greedy_at_n": self.value_minus_greedy.to_dict() if self.value_minus_greedy else None,
            "abort_rule": vars(self.abort_rule) if self.abort_rule else None,
            "abort_token_saving_at_n": self.abort_token_saving,
            "curves": [p.to_dict() for p in self.points],
        }

    def plot(self, path) -> str:
        fig, (ax1, ax2) = new_figure(11, 4.2, 1, 2)
        for m in dict.fromkeys(p.method for p in self.points):
            pts = self.curve(m)
            ks = [p.k for p in pts]
            acc = [p.accuracy.estimate for p in pts]
            err = [[p.accuracy.estimate - p.accuracy.low for p in pts], [p.accuracy.high - p.accuracy.estimate for p in pts]]
            style = "--" if m == "oracle" else "-"
            ax1.errorbar(ks, acc, yerr=err, fmt="o" + style, capsize=3, label=METHOD_LABELS.get(m, m))
            ax2.plot([p.mean_tokens for p in pts], acc, "o" + style, label=METHOD_LABELS.get(m, m))
        if self.greedy:
            g = self.greedy
            ax1.errorbar([1], [g.accuracy.estimate], yerr=[[g.accuracy.estimate - g.accuracy.low], [g.accuracy.high - g.accuracy.estimate]],
                         fmt="k*", ms=12, capsize=3, label=METHOD_LABELS["greedy"])
            ax2.plot([g.mean_tokens], [g.accuracy.estimate], "k*", ms=12, label=METHOD_LABELS["greedy"])
        ax1.set_xlabel("samples per prompt (k)")
        ax1.set_ylabel(f"accuracy (n={self.n_prompts} prompts, 95% bootstrap)")
        ax1.set_xscale("log", base=2)
        ax1.set_title("Best-of-k: accuracy vs samples")
        ax2.set_xlabel("generated tokens per prompt (mean)")
        ax2.set_title("Accuracy vs generated tokens")
        ax1.legend(fontsize=7)
        return save_figure(fig, path)

    def section_parts(self, figure: str | None) -> tuple[list[Table], list[str]]:
        n = self.n_samples
        rows = [[METHOD_LABELS.get(p.method, p.method), p.k, p.accuracy.estimate, p.accuracy.low, p.accuracy.high, p.mean_tokens]
                for p in self.points if p.k in (1, n) or p.k == 2 ** int(math.log2(p.k))]
        if self.greedy:
            g = self.greedy
            rows.insert(0, [METHOD_LABELS["greedy"], 1, g.accuracy.estimate, g.accuracy.low, g.accuracy.high, g.mean_tokens])
        table = Table(f"Best-of-k on {self.n_prompts} prompts (accuracy with 95% bootstrap interval over prompts)",
                      ["method", "k", "accuracy", "low", "high", "tokens / prompt"], rows)
        d = self.value_minus_majority
        notes = [(f"Value-guided best-of-{n} minus majority vote: {d.estimate:+.3f} [{d.low:+.3f}, {d.high:+.3f}] "
                 f"(paired bootstrap over n={d.n} prompts, p={self.value_minus_majority_p:.3g}); minus random choice: "
                 f"{self.value_minus_random.estimate:+.3f} [{self.value_minus_random.low:+.3f}, {self.value_minus_random.high:+.3f}].")]
        if self.abort_token_saving is not None:
            notes.append(f"Early abort ({vars(self.abort_rule)}) saves {100 * self.abort_token_saving:.1f}% of the generated "
                         f"tokens at k={n}; accuracy {self.at('value_abort', n).accuracy} vs {self.at('value', n).accuracy} without abort.")
        return [table], notes


def best_of_n(cands: CandidateSet, ks: Sequence[int] | None = None, abort: AbortRule | None = None,
              n_boot: int = 1000, seed: int = 0) -> BestOfNResult:
    """Accuracy (bootstrap over prompts) and mean generated tokens of every selection rule at each
    ``k`` (default 1, 2, 4, ... up to ``K``), plus the paired differences at ``k = K``."""
    n = cands.n_samples
    if ks is None:
        ks = sorted({min(2 ** i, n) for i in range(int(math.log2(n)) + 1)} | {n})
    methods = [m for m in METHODS if m != "value_abort" or (abort is not None and cands.traces)]
    points, at_n = [], {}
    for m in methods:
        for k in ks:
            acc, tok = select(cands, m, k, abort)
            points.append(ComputePoint(m, k, bootstrap_ci(acc, n_boot=n_boot, seed=seed), float(tok.mean())))
            if k == n:
                at_n[m] = (acc, tok)
    greedy = vg = None
    if cands.greedy_rewards is not None:
        gl = cands.greedy_lengths if cands.greedy_lengths is not None else np.full(cands.n_prompts, np.nan)
        greedy = ComputePoint("greedy", 1, bootstrap_ci(cands.greedy_rewards, n_boot=n_boot, seed=seed), float(np.nanmean(gl)))
        vg, _ = paired_bootstrap_diff(at_n["value"][0], cands.greedy_rewards, n_boot=n_boot, seed=seed)
    vm, vm_p = paired_bootstrap_diff(at_n["value"][0], at_n["majority"][0], n_boot=n_boot, seed=seed)
    vr, vr_p = paired_bootstrap_diff(at_n["value"][0], at_n["random"][0], n_boot=n_boot, seed=seed)
    saving = None
    if "value_abort" in at_n:
        saving = float(1.0 - at_n["value_abort"][1].sum() / max(at_n["value"][1].sum(), 1e-12))
    return BestOfNResult(points, greedy, vm, vm_p, vr, vr_p, vg, abort if "value_abort" in at_n else None, saving,
                         cands.n_prompts, n)
