"""Value neurons as a confidence signal, against next-token probability and verbalized confidence."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import torch
from jaxtyping import Float
from tqdm.auto import tqdm

from ..interventions.hooks import InterventionLike, as_fwd_hooks, teacher_forced_prompt
from ..interventions.scoring import examples_of, rollout_pairs, teacher_forced_batches
from ..interventions.sweep import sweep
from ..models import Generation, GenerationConfig, ModelAdapter
from ..options import options_of
from .resampling import paired_auc_test
from .stats import binary_auc

VERBALIZED_CONFIDENCE_PROMPT = (
    "How confident are you that this answer is correct? Reply with a number between 0 and 1."
)


@torch.no_grad()
def next_token_confidence(adapter: ModelAdapter, generations: Sequence[Generation] | Sequence[tuple],
                          fwd_hooks: Iterable[InterventionLike] | None = (), batch_size: int = 4,
                          progress: bool = True) -> Float[np.ndarray, " n"]:
    """Mean probability the model gave each of its own response tokens (teacher-forced forward on
    prompt + response; NaN for an empty response). Small batches: full-vocab logits are large.
    ``progress`` shows a bar over the batches (minutes at the paper profile's 200 examples)."""
    pairs = rollout_pairs(generations)
    hooks = as_fwd_hooks(fwd_hooks)
    out = np.full(len(pairs), np.nan)
    batches = tqdm(teacher_forced_batches(adapter, pairs, batch_size), total=-(-len(pairs) // batch_size),
                   desc="next-token confidence", disable=not progress, leave=False)
    for start, chunk, batch, ends in batches:
        with teacher_forced_prompt(ends):
            logits = adapter.forward(batch, hooks)
        width = batch.input_ids.shape[1]
        for j, (p, r) in enumerate(chunk):
            if not r:
                continue
            first = int(ends[j])  # column of the first response token
            pred = logits[j, first - 1: width - 1].float().log_softmax(-1)
            tok = batch.input_ids[j, first:width].to(pred.device)
            out[start + j] = float(pred.gather(-1, tok[:, None]).exp().mean())
    return out


_NUMBER = re.compile(r"(?<![\w.])([-+]?(?:\d+(?:\.\d*)?|\.\d+))(\s*%)?")


def parse_confidence(text: str) -> float:
    """First number in ``text`` clipped to [0, 1] (``"85%"`` → 0.85); NaN when there is none."""
    m = _NUMBER.search(text or "")
    if not m:
        return math.nan
    try:
        x = float(m.group(1))
    except ValueError:
        return math.nan
    if m.group(2):
        x /= 100.0
    return float(min(1.0, max(0.0, x)))


def verbalized_confidence(adapter: ModelAdapter, task, examples, generations: Sequence[Generation],
                          config: GenerationConfig | None = None, question: str = VERBALIZED_CONFIDENCE_PROMPT
                          ) -> tuple[Float[np.ndarray, " n"], list[str]]:
    """Ask the model (chat: task prompt, its own answer, then ``question``; a base model without a
    chat template: its few-shot prompt, its answer, then ``Question: <question>``) how confident it is.

    Returns (parsed confidences with NaN where unparseable, raw replies)."""
    examples = examples_of(task, examples)
    if len(examples) != len(generations):
        raise ValueError(f"{len(examples)} examples but {len(generations)} generations.")
    prompts = []
    # a base model (no chat template) gets the question as one more few-shot turn after its answer
    chat = getattr(adapter.tokenizer, "chat_template", None) is not None
    for ex, g in zip(examples, generations):
        if chat:
            msgs = list(task.format_prompt(ex)) + [{"role": "assistant", "content": g.text},
                                                   {"role": "user", "content": question}]
            prompts.append(adapter.chat_prompt(msgs))
        else:
            prompts.append(f"{task.render(ex, adapter.tokenizer)}{g.text}\n\nQuestion: {question}\nAnswer:")
    base = config or GenerationConfig()
    cfg = GenerationConfig(**{**base.__dict__, "max_new_tokens": min(base.max_new_tokens, 12), "do_sample": False,
                              "stop_strings": () if chat else ("\nQuestion:",)})
    replies = [g.text for g in sweep(adapter, prompts, {"verbalized": []}, cfg)["verbalized"].generations]
    return np.asarray([parse_confidence(t) for t in replies], dtype=np.float64), replies


def score_vs_reward(scores: Sequence[float], rewards: Sequence[float]) -> dict:
    """Spearman ρ (``scipy.stats.spearmanr``) and AUC (:func:`~reward_circuits.analysis.stats.binary_auc`)
    of ``scores`` against binary ``rewards``, over the pairs with a finite score. Never raises on degenerate data:
    undefined metrics are NaN and ``note`` says why."""
    from scipy.stats import spearmanr

    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    r = np.asarray(rewards, dtype=np.float64).reshape(-1)
    if s.shape != r.shape:
        raise ValueError(f"{s.size} scores but {r.size} rewards.")
    ok = np.isfinite(s) & np.isfinite(r)
    s, r = s[ok], r[ok]
    out = {"spearman": math.nan, "spearman_p": math.nan, "auc": math.nan, "n": int(s.size),
           "n_total": int(ok.size), "note": ""}
    notes = []
    if s.size < 2:
        notes.append(f"only {s.size} usable pairs")
    elif np.unique(r).size < 2:
        notes.append(f"all usable rewards equal {r[0]:g}: Spearman and AUC undefined")
    elif np.unique(s).size < 2:
        notes.append("scores are constant: Spearman undefined, AUC 0.5 by ties")
        out["auc"] = binary_auc(r, s, what="confidence scores")
    else:
        rho, p = spearmanr(s, r)
        out["spearman"], out["spearman_p"] = float(rho), float(p)
        out["auc"] = binary_auc(r, s, what="confidence scores")
    out["note"] = "; ".join(notes)
    return out


@dataclass
class PrecomputedConfidence:
    """Confidence signals of :func:`confidence_study` already computed (each skips its model calls):
    the mean probability of each answer's own tokens, and the parsed verbalized confidence."""

    next_token_probs: Sequence[float] | None = None
    verbalized: Sequence[float] | None = None


def confidence_study(adapter: ModelAdapter, task, examples, rewards: Sequence[float],
                     value_scores: Sequence[float] | None, generations: Sequence[Generation],
                     config: GenerationConfig | None = None, **precomputed) -> dict:
    """Which confidence signal tracks correctness best: value neurons (the probe's ``V(s_0)``,
    given as ``value_scores``), the mean probability of the model's own answer tokens, or the
    model's verbalized confidence. Each: ``{spearman, auc, n, note, ...}`` against ``rewards``;
    ``verbalized`` also has ``parse_rate`` and a few ``examples`` of replies; ``paired`` holds
    V(s_0) against each other signal on the same examples (:func:`paired_confidence_tests`).

    ``next_token_probs`` / ``verbalized`` may be passed precomputed, as keywords (the fields of
    :class:`PrecomputedConfidence`, or ``options=``); then no model call is made for them.
    """
    given = options_of(PrecomputedConfidence, (), precomputed, where="confidence_study")
    next_token_probs, verbalized = given.next_token_probs, given.verbalized
    examples = examples_of(task, examples)
    n = len(examples)
    if not (len(rewards) == len(generations) == n):
        raise ValueError(f"{n} examples, {len(rewards)} rewards, {len(generations)} generations: they must match.")
    if value_scores is not None and len(value_scores) != n:
        raise ValueError(f"{len(value_scores)} value scores for {n} examples.")
    out: dict = {}
    if value_scores is None:
        out["value_neurons"] = {**score_vs_reward([math.nan] * n, rewards), "note": "no value probe given"}
    else:
        out["value_neurons"] = score_vs_reward(value_scores, rewards)
    ntp = next_token_confidence(adapter, generations) if next_token_probs is None else np.asarray(next_token_probs, float)
    out["next_token_prob"] = score_vs_reward(ntp, rewards)
    replies: list[str] = []
    if verbalized is None:
        verbal, replies = verbalized_confidence(adapter, task, examples, generations, config)
    else:
        verbal = np.asarray(verbalized, dtype=np.float64)
    out["verbalized"] = score_vs_reward(verbal, rewards)
    out["verbalized"]["parse_rate"] = float(np.isfinite(verbal).mean()) if n else math.nan
    if replies:
        out["verbalized"]["examples"] = replies[:5]
    out["mean_reward"] = float(np.mean(rewards))
    if value_scores is not None:
        out["paired"] = paired_confidence_tests(rewards, value_scores, {"next_token": ntp, "verbalized": verbal})
    return out


def paired_confidence_tests(rewards: Sequence[float], value_scores: Sequence[float],
                            others: dict[str, Sequence[float]], seed: int = 0) -> dict:
    """``AUC(V(s_0)) − AUC(other)`` for each other signal on the same examples, paired
    (:func:`~reward_circuits.analysis.resampling.paired_auc_test`: a bootstrap from 20 examples, an
    exact permutation test below): ``{"value_minus_<name>": SignedTest dict}``; empty for non-binary rewards."""
    r = np.asarray(rewards, dtype=np.float64)
    if not np.isin(r[np.isfinite(r)], (0.0, 1.0)).all():
        return {}
    return {f"value_minus_{name}": paired_auc_test(r, value_scores, scores, seed=seed, unit="prompts").to_dict()
            for name, scores in others.items()}


# ---------------------------------------------------------------------------------------------
