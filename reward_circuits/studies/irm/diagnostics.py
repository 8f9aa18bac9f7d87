"""Is the fine-tuned model a reward hack? Diagnostics of a fine-tune and the guard that reads them.

A fine-tune that drives the VADER reward to its clip (10) does so with completions made of little
but strong sentiment words; every later measurement (divergence, SAEs, IRM, ablation) would then
describe that degenerate policy, not a model that *learned* a reward. Before the analyses run we
measure, on held-out prompts (base and fine-tuned completions sampled with the same seeds):

- the mean reward of both models (and how close the fine-tuned one is to the clip);
- ``distinct-2``: distinct word bigrams / all word bigrams over the completions (Li et al. 2016);
  a policy repeating a handful of words collapses it toward 0;
- the per-token KL(fine-tuned ‖ base) on the fine-tuned completions (a Monte-Carlo estimate of the
  sequence KL per token, sampled from the fine-tuned model) and the perplexity of those completions
  under the base model;
- a few sample completions of both models on the same prompts.

:func:`check_not_reward_hack` refuses (``RewardHackError``) a model at the reward clip or with
collapsed distinct-2 unless forced; the study then records that it was forced.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from .reward import words


class RewardHackError(RuntimeError):
    """The fine-tuned model looks like a reward hack (reward at the clip or collapsed completions)."""


def distinct_n(texts: Sequence[str], n: int = 2) -> float:
    """Distinct word n-grams over all word n-grams of ``texts`` (words as the reward reads them);
    NaN when the texts hold no n-gram."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}.")
    grams = [tuple(w[i:i + n]) for t in texts for w in [words(t)] for i in range(len(w) - n + 1)]
    return len(set(grams)) / len(grams) if grams else float("nan")


@torch.no_grad()
def response_logprobs(adapter, generations, batch_size: int = 16) -> list[torch.Tensor]:
    """Per generation, ``log p(·)`` over the vocabulary at every response token's position under
    ``adapter`` (a ``[n_response_tokens, d_vocab]`` tensor of log-probabilities, float32, CPU)."""
    out = []
    for i in range(0, len(generations), batch_size):
        chunk = [g for g in generations[i:i + batch_size] if g.response_ids]
        if not chunk:
            out.extend(torch.empty(0, 0) for _ in generations[i:i + batch_size])
            continue
        batch = adapter.pad([g.prompt_ids + g.response_ids for g in chunk], "left")
        logp = torch.log_softmax(adapter.forward(batch).float(), -1).cpu()
        width = batch.input_ids.shape[1]
        rows = iter(range(len(chunk)))
        for g in generations[i:i + batch_size]:
            if not g.response_ids:
                out.append(torch.empty(0, 0))
                continue
            r, n = next(rows), len(g.response_ids)
            out.append(logp[r, width - n - 1:width - 1])  # the logits that predicted each response token
    return out


def kl_and_base_perplexity(tuned, base, generations) -> tuple[float, float]:
    """Mean per-token KL(tuned ‖ base) over the response positions of ``generations`` (sampled from
    ``tuned``: the exact KL of the next-token distributions, averaged over visited positions) and the
    perplexity of the sampled tokens under ``base`` (exp of the mean negative log-likelihood)."""
    kls, nlls = [], []
    for g, lt, lb in zip(generations, response_logprobs(tuned, generations), response_logprobs(base, generations)):
        if not g.response_ids:
            continue
        kls.append((lt.exp() * (lt - lb)).sum(-1))
        nlls.append(-lb.gather(1, torch.as_tensor(g.response_ids)[:, None])[:, 0])
    if not kls:
        return float("nan"), float("nan")
    return float(torch.cat(kls).mean()), float(math.exp(float(torch.cat(nlls).mean())))


@dataclass
class FinetuneDiagnostics:
    """What the guard reads, for the base and the fine-tuned model on the same held-out prompts."""

    reward_base: float
    reward_finetuned: float
    reward_clip: float
    distinct2_base: float
    distinct2_finetuned: float
    kl_to_base: float  # mean per-token KL(fine-tuned ‖ base) on fine-tuned completions
    perplexity_base: float  # base model's perplexity of its own completions
    perplexity_finetuned_under_base: float  # base model's perplexity of the fine-tuned completions
    samples: list[dict] = field(default_factory=list)  # {"prompt", "base", "finetuned"}
    forced: bool = False
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class GuardConfig:
    """When the analyses refuse a fine-tuned model: its mean reward is within ``clip_margin`` (a
    fraction of the clip) of the clip, or its distinct-2 is below ``min_distinct2`` or below
    ``min_distinct2_ratio`` × the base's."""

    clip_margin: float = 0.1
    min_distinct2: float = 0.3
    min_distinct2_ratio: float = 0.5

    def __post_init__(self):
        if not 0 < self.clip_margin < 1 or not 0 <= self.min_distinct2 <= 1 or not 0 <= self.min_distinct2_ratio <= 1:
            raise ValueError("clip_margin must be in (0, 1); min_distinct2 and min_distinct2_ratio in [0, 1].")


def reward_hack_problems(d: FinetuneDiagnostics, guard: GuardConfig = GuardConfig()) -> list[str]:
    """The reasons ``d`` looks like a reward hack (empty when it does not)."""
    problems = []
    if d.reward_finetuned >= (1 - guard.clip_margin) * d.reward_clip:
        problems.append(f"mean reward {d.reward_finetuned:.2f} is at the clip ({d.reward_clip:g})")
    floor = max(guard.min_distinct2, guard.min_distinct2_ratio * d.distinct2_base
                if np.isfinite(d.distinct2_base) else guard.min_distinct2)
    if not np.isfinite(d.distinct2_finetuned) or d.distinct2_finetuned < floor:
        problems.append(f"distinct-2 of the completions collapsed to {d.distinct2_finetuned:.3f} "
                        f"(base {d.distinct2_base:.3f}; floor {floor:.3f})")
    return problems


def check_not_reward_hack(d: FinetuneDiagnostics, guard: GuardConfig = GuardConfig(), force: bool = False) -> FinetuneDiagnostics:
    """Raise :class:`RewardHackError` when ``d`` looks like a reward hack, unless ``force``; records
    the problems (and whether they were forced through) on ``d``."""
    d.problems = reward_hack_problems(d, guard)
    if d.problems and not force:
        raise RewardHackError(
            "the fine-tuned model looks like a reward hack: " + "; ".join(d.problems) + ". The IRM, SAE and "
            "ablation analyses would describe a degenerate policy. Fine-tune in the paper's regime (lower "
            "learning rate, fewer steps or a larger beta), or pass --force-reward-hack to analyse it anyway.")
    d.forced = bool(d.problems) and force
    return d
