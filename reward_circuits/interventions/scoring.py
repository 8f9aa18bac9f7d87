"""Generation and teacher-forced passes under intervention: generate-and-score, activation means,
initial values V(s_0), and the states s_0 .. s_T of teacher-forced rollouts under a hook (the
probe's TD trace under a hook, built on them, is :func:`reward_circuits.analysis.causal.td_trace_under`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

from ..models import Generation, GenerationConfig, ModelAdapter, TokenBatch
from .hooks import InterventionLike, as_fwd_hooks, teacher_forced_prompt
from .sweep import sweep

# ---------------------------------------------------------------------------------------------
# Generation under intervention
# ---------------------------------------------------------------------------------------------


@dataclass
class ScoredRun:
    accuracy: float
    rewards: list[float]
    generations: list[Generation]

    def __iter__(self):  # (accuracy, rewards, generations) = generate_and_score(...)
        return iter((self.accuracy, self.rewards, self.generations))


def examples_of(task, examples) -> list:
    ex = list(task.examples if examples is None else examples)
    if not ex:
        raise ValueError("no examples to evaluate.")
    return ex


def generate_and_score(adapter: ModelAdapter, task, examples=None, fwd_hooks: Iterable[InterventionLike] | None = (),
                       config: GenerationConfig | None = None, *, sweep_config=None) -> ScoredRun:
    """Generate an answer for every example (``task.render`` prompts, batched, progress bar) with
    ``fwd_hooks`` active on every forward, and score it with ``task.reward``.

    A one-condition :func:`~reward_circuits.interventions.sweep.sweep` (finished rows leave the
    batch; ``sweep_config`` sizes the passes). To compare several interventions, sweep them
    together instead: one batched generation instead of one per intervention.

    Returns ``(accuracy, rewards, generations)`` (a :class:`ScoredRun`, which unpacks).
    """
    examples = examples_of(task, examples)
    config = config or GenerationConfig(max_new_tokens=getattr(task, "max_new_tokens", 64))
    result = sweep(adapter, task, {"run": as_fwd_hooks(fwd_hooks)}, config, examples=examples, sweep_config=sweep_config)
    return result["run"].scored_run()


def prompt_seqs(adapter: ModelAdapter, task, examples) -> list[list[int]]:
    return [adapter.tokenizer(task.render(ex, adapter.tokenizer), add_special_tokens=False)["input_ids"]
            for ex in examples]


@torch.no_grad()
def activation_means(adapter: ModelAdapter, prompts: Sequence[str] | Sequence[Sequence[int]], hooks: Sequence[str],
                     batch_size: int = 16) -> dict[str, Float[Tensor, " d"]]:
    """Mean activation ``[d]`` of each hook over every non-padding token of ``prompts`` (for
    :func:`mean_ablate`)."""
    seqs = [adapter.tokenizer(p, add_special_tokens=False)["input_ids"] if isinstance(p, str) else list(p) for p in prompts]
    sums: dict[str, Tensor] = {}
    count = 0
    for start in range(0, len(seqs), batch_size):
        batch = adapter.pad(seqs[start:start + batch_size], "left")
        acts = adapter.capture(batch, list(hooks))
        m = batch.attention_mask.bool()
        for h, a in acts.items():
            s = a[m].double().sum(0)
            sums[h] = s if h not in sums else sums[h] + s
        count += int(m.sum())
    return {h: (s / count).float() for h, s in sums.items()}


# ---------------------------------------------------------------------------------------------


def prompt_ends(batch: TokenBatch, prompt_lens: Sequence[int], total_lens: Sequence[int]) -> Int[Tensor, " batch"]:
    width = batch.input_ids.shape[1]
    return torch.as_tensor([width - t + p for p, t in zip(prompt_lens, total_lens)], dtype=torch.long)


def teacher_forced_batches(adapter: ModelAdapter, pairs, batch_size: int):
    """Yield ``(start, chunk, batch, prompt_ends)`` for prompt+response pairs, left-padded ``batch_size`` at a time."""
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start:start + batch_size]
        seqs = [p + r for p, r in chunk]
        batch = adapter.pad(seqs, "left")
        yield start, chunk, batch, prompt_ends(batch, [len(p) for p, _ in chunk], [len(s) for s in seqs])


def rollout_pairs(rollouts) -> list[tuple[list[int], list[int]]]:
    pairs = []
    for r in rollouts:
        if isinstance(r, Generation):
            pairs.append((list(r.prompt_ids), list(r.response_ids)))
        else:
            p, resp = r
            pairs.append((list(map(int, p)), list(map(int, resp))))
        if not pairs[-1][0]:
            raise ValueError("a rollout has an empty prompt: s_0 (the prompt's last token) is undefined.")
    return pairs


# Teacher-forced states under intervention
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def rollout_states(adapter: ModelAdapter, hook: str, rollout_token_ids: Sequence[Generation] | Sequence[tuple],
                   fwd_hooks: Iterable[InterventionLike] | None = (), *, batch_size: int = 8) -> list[Float[Tensor, "T_plus_1 d"]]:
    """Teacher-force each rollout (prompt + response ids) with ``fwd_hooks`` active and return its
    states ``s_0 .. s_T`` at ``hook`` (float32; the forward stops at ``hook``'s block).

    Position scopes without ``prompt_len`` see the true prompt/response split (via
    :func:`teacher_forced_prompt`), so ``positions="generated"`` means the response tokens here too."""
    pairs = rollout_pairs(rollout_token_ids)
    hooks = as_fwd_hooks(fwd_hooks)
    out: list[Tensor] = []
    for start, chunk, batch, ends in teacher_forced_batches(adapter, pairs, batch_size):
        with teacher_forced_prompt(ends):
            acts = adapter.capture(batch, [hook], fwd_hooks=hooks)[hook]
        out.extend(acts[j, int(ends[j]) - 1:].float() for j in range(len(chunk)))
    return out


def resolve_probe_hook(probe, probe_hook: str | None, fallback: str | None) -> str:
    if probe_hook is not None:
        return probe_hook
    names = list(getattr(probe, "hook_names", []) or [])
    if fallback is not None and fallback in names:
        return fallback
    if len(names) == 1:
        return names[0]
    raise ValueError(f"say which of the probe's hooks to read: probe_hook= one of {names}.")


@torch.no_grad()
def initial_values(adapter: ModelAdapter, probe, probe_hook: str, prompt_seqs: Sequence[Sequence[int]],
                   fwd_hooks: Iterable[InterventionLike] | None = (), batch_size: int = 16) -> Float[np.ndarray, " n"]:
    """The probe's ``V(s_0)`` (state at each prompt's last token) with ``fwd_hooks`` active during
    the prompt's forward. The capture sees the activation *after* the hooks, also when they edit
    ``probe_hook`` itself."""
    hooks = as_fwd_hooks(fwd_hooks)
    out = []
    for start in range(0, len(prompt_seqs), batch_size):
        batch = adapter.pad(prompt_seqs[start:start + batch_size], "left")
        acts = adapter.capture(batch, [probe_hook], fwd_hooks=hooks)[probe_hook]
        out.append(probe.predict_value(acts[:, -1].float(), hook=probe_hook).reshape(-1).cpu().numpy())
    return np.concatenate(out).astype(np.float64)

