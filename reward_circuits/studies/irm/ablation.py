"""Which SAE features carry the learned reward, and does removing them lower it?

1. Relevance: every feature gets a score from a pluggable :class:`FeatureExplainer`. Marks et al.
   asked an external LLM to explain features and kept the sentiment-related ones; the offline
   default here, :class:`CorrelationExplainer`, scores a feature by the Pearson correlation between
   its mean activation over a completion's tokens and that completion's reward (on a *selection*
   set of prompts, disjoint from the evaluation prompts).
2. Ablation: the top features are removed during generation with
   :func:`reward_circuits.sae.remove_latents` (SAE latents zeroed, SAE error term kept, so
   removing nothing changes nothing) at every generated token.
3. Control: as many random features from the same hook points (excluding the selected ones),
   averaged over several draws; completions are sampled with the same seeds under every condition,
   so rewards are paired per prompt and compared with a paired bootstrap. Reward features are
   chosen because they are active, so uniform random latents (mostly near-dead) are no control:
   :func:`matched_random_features` matches every selected latent on its activation frequency and
   on its decoder norm × mean activation (:func:`latent_statistics`) by nearest neighbours, and the observed reward drop
   is ranked among the matched draws' drops (``p = (1 + #{draw drop >= observed}) / (k + 1)``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
from jaxtyping import Float

from ...neurons import random_dims
from ...analysis.stats import (
    Interval,
    bootstrap_ci,
    paired_bootstrap_diff,
    pearson_columns,
    rank_by_score,
)
from ...interventions.hooks import as_fwd_hooks
from ...models.base import Generation, GenerationConfig
from ...sae import remove_latents


class FeatureExplainer(Protocol):
    """Scores features by how reward-related they are (higher = more)."""

    def relevance(self, features: Float[np.ndarray, "n_texts n_features"], rewards: Float[np.ndarray, " n_texts"],
                  texts: Sequence[str]) -> Float[np.ndarray, " n_features"]: ...


@dataclass
class CorrelationExplainer:
    """Pearson correlation of each feature's mean activation with the reward (``sign=-1`` ranks
    features that fire on low-reward text first). Constant features score ``-inf``."""

    sign: int = 1

    def __post_init__(self):
        if self.sign not in (1, -1):
            raise ValueError("sign must be +1 or -1.")

    def relevance(self, features, rewards, texts=()) -> np.ndarray:
        r = pearson_columns(np.asarray(features, dtype=np.float64), np.asarray(rewards, dtype=np.float64)) * self.sign
        return np.where(np.isfinite(r), r, -np.inf)


@torch.no_grad()
def completion_features(adapter, generations: Sequence[Generation], saes: Mapping[str, object],
                        batch_size: int = 32) -> Float[np.ndarray, "n features"]:
    """Per completion, each SAE latent's mean activation over the completion's tokens (prompt and
    padding positions excluded), latents of all hook points concatenated in ``saes`` order."""
    hooks = adapter.validate_hooks(list(saes))
    rows = []
    for i in range(0, len(generations), batch_size):
        chunk = [g for g in generations[i:i + batch_size]]
        seqs = [g.prompt_ids + (g.response_ids or [adapter.tokenizer.eos_token_id]) for g in chunk]
        batch = adapter.pad(seqs, "left")
        acts = adapter.capture(batch, hooks)
        width = batch.input_ids.shape[1]
        mask = torch.zeros(batch.input_ids.shape, dtype=torch.float32)
        for r, g in enumerate(chunk):
            mask[r, width - max(len(g.response_ids), 1):] = 1.0
        parts = []
        for h in hooks:
            sae = saes[h]
            f = sae.encode(acts[h].to(sae.device, sae.dtype)).float().cpu()
            parts.append((f * mask[..., None]).sum(1) / mask.sum(1, keepdim=True))
        rows.append(torch.cat(parts, 1).numpy())
    return np.concatenate(rows)


def feature_index(saes: Mapping[str, object]) -> list[tuple[str, int]]:
    """``(hook_name, latent)`` of every column of :func:`completion_features`."""
    return [(h, i) for h, sae in saes.items() for i in range(int(sae.cfg.d_sae))]


def top_features(scores: np.ndarray, index: Sequence[tuple[str, int]], k: int) -> dict[str, list[int]]:
    """The ``k`` best-scoring features grouped by hook point."""
    out: dict[str, list[int]] = {}
    for j in rank_by_score(np.where(np.isfinite(scores), scores, -1e300))[:k]:
        h, i = index[j]
        out.setdefault(h, []).append(int(i))
    return out


def random_features_like(selected: Mapping[str, Sequence[int]], saes: Mapping[str, object], seed: int) -> dict[str, list[int]]:
    """As many random latents per hook point as ``selected`` has, never one of the selected."""
    rng = np.random.default_rng(seed)
    return {h: sorted(int(x) for x in random_dims(int(saes[h].cfg.d_sae), len(chosen), rng, exclude=chosen))
            for h, chosen in selected.items()}


@dataclass
class LatentStatistics:
    """Per latent (columns in :func:`feature_index` order): the fraction of completion tokens where it
    is active, its mean activation over those tokens (zeros included) and its decoder norm."""

    index: list[tuple[str, int]]
    frequency: Float[np.ndarray, " features"]
    mean_activation: Float[np.ndarray, " features"]
    decoder_norm: Float[np.ndarray, " features"]

    @property
    def effect(self) -> np.ndarray:
        """Decoder norm × mean activation: how much a latent writes into the stream on average."""
        return self.decoder_norm * self.mean_activation

    def of(self, latents: Mapping[str, Sequence[int]], what: str = "frequency") -> np.ndarray:
        col = {key: j for j, key in enumerate(self.index)}
        values = getattr(self, what)
        return np.array([values[col[(h, int(i))]] for h, idx in latents.items() for i in idx])


@torch.no_grad()
def latent_statistics(adapter, generations: Sequence[Generation], saes: Mapping[str, object],
                      batch_size: int = 32) -> LatentStatistics:
    """Activation frequency, mean activation and decoder norm of every latent of ``saes`` over the
    completion tokens of ``generations`` (prompt and padding positions excluded)."""
    hooks = adapter.validate_hooks(list(saes))
    active = {h: 0.0 for h in hooks}
    total = {h: 0.0 for h in hooks}
    n_tokens = 0
    for i in range(0, len(generations), batch_size):
        chunk = list(generations[i:i + batch_size])
        batch = adapter.pad([g.prompt_ids + (g.response_ids or [adapter.tokenizer.eos_token_id]) for g in chunk], "left")
        acts = adapter.capture(batch, hooks)
        width = batch.input_ids.shape[1]
        mask = torch.zeros(batch.input_ids.shape, dtype=torch.bool)
        for r, g in enumerate(chunk):
            mask[r, width - max(len(g.response_ids), 1):] = True
        n_tokens += int(mask.sum())
        for h in hooks:
            f = saes[h].encode(acts[h].to(saes[h].device, saes[h].dtype)).float().cpu()[mask]  # [tokens, d_sae]
            active[h] = active[h] + (f > 0).sum(0).double()
            total[h] = total[h] + f.sum(0).double()
    norms = [saes[h].W_dec.detach().float().norm(dim=1).cpu().double() for h in hooks]
    return LatentStatistics(feature_index({h: saes[h] for h in hooks}),
                            torch.cat([active[h] for h in hooks]).numpy() / max(n_tokens, 1),
                            torch.cat([total[h] for h in hooks]).numpy() / max(n_tokens, 1), torch.cat(norms).numpy())


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks of ``x`` scaled to [0, 1] (ties averaged)."""
    from scipy.stats import rankdata

    return (rankdata(x) - 1) / max(x.size - 1, 1)


def matched_random_features(selected: Mapping[str, Sequence[int]], stats: LatentStatistics, n_draws: int,
                            seed: int = 0, n_candidates: int = 5) -> list[dict[str, list[int]]]:
    """``n_draws`` random feature sets matched to ``selected`` hook by hook: in every draw each
    selected latent (in random order) is replaced by one of the ``n_candidates`` unused, unselected
    latents of its hook nearest to it in activation-frequency rank (weight 1) and decoder norm × mean
    activation rank (weight 1/2), drawn uniformly.

    Nearest-neighbour rather than quantile strata (:func:`~reward_circuits.analysis.controls.matched_random_sets`):
    reward features are among a hook's busiest latents, and within a top-decile stratum of a
    heavy-tailed frequency distribution uniform draws still fire far less often (KS p ≈ 0.04 on the
    planted test)."""
    rng = np.random.default_rng(seed)
    draws: list[dict[str, list[int]]] = [{} for _ in range(n_draws)]
    for h, chosen in selected.items():
        cols = [j for j, (hh, _) in enumerate(stats.index) if hh == h]
        latent = np.array([stats.index[j][1] for j in cols])
        fr, er = _ranks(stats.frequency[cols]), _ranks(stats.effect[cols])
        pos = {int(l): j for j, l in enumerate(latent)}
        value = np.array([pos[int(i)] for i in chosen], dtype=np.int64)
        if latent.size - value.size < value.size:
            raise ValueError(f"{h}: {value.size} selected of {latent.size} latents leaves too few to match.")
        for d in range(n_draws):
            free = np.ones(latent.size, dtype=bool)
            free[value] = False
            picks = []
            for v in rng.permutation(value):
                cand = np.flatnonzero(free)
                dist = np.abs(fr[cand] - fr[v]) + 0.5 * np.abs(er[cand] - er[v])
                near = cand[np.argsort(dist, kind="stable")[:n_candidates]]
                j = int(rng.choice(near))
                free[j] = False
                picks.append(int(latent[j]))
            draws[d][h] = sorted(picks)
    return draws


def ablation_hooks(saes: Mapping[str, object], latents: Mapping[str, Sequence[int]]):
    """TransformerLens-style ``fwd_hooks`` removing ``latents`` of each SAE at its hook point."""
    return as_fwd_hooks([remove_latents(saes[h], idx, hook_name=h) for h, idx in latents.items()])


def rewards_per_prompt(adapter, prompts: Sequence[str], reward_fn, config: GenerationConfig, samples_per_prompt: int = 1,
                       fwd_hooks=()) -> tuple[np.ndarray, list[Generation]]:
    """Mean reward of ``samples_per_prompt`` seeded completions per prompt (same seeds on every call,
    so two calls with different hooks are paired), and the completions."""
    expanded = [p for p in prompts for _ in range(samples_per_prompt)]
    gens = adapter.generate(expanded, config, fwd_hooks=fwd_hooks)
    r = np.asarray(reward_fn([g.text for g in gens]), dtype=np.float64).reshape(len(prompts), samples_per_prompt)
    return r.mean(1), gens


@dataclass
class AblationResult:
    """Mean reward per condition (intervals over prompts) and the paired differences."""

    selected: dict[str, list[int]]
    random_draws: list[dict[str, list[int]]]
    reward_none: Interval
    reward_ablated: Interval
    reward_random: Interval
    ablated_minus_none: Interval
    ablated_minus_none_p: float
    ablated_minus_random: Interval
    ablated_minus_random_p: float
    per_prompt: dict[str, list[float]]
    draw_drops: list[float] = field(default_factory=list)  # mean reward drop (none − draw) per random draw
    control: str = "uniform"

    @property
    def n_features(self) -> int:
        return sum(len(v) for v in self.selected.values())

    @property
    def observed_drop(self) -> float:
        """Mean reward without ablation minus with the selected features ablated."""
        return float(np.mean(self.per_prompt["none"]) - np.mean(self.per_prompt["ablated"]))

    @property
    def rank_p(self) -> float:
        """Rank of the observed drop among the random draws' drops: ``(1 + #{draw >= observed}) / (k + 1)``
        (one-sided; a control of k draws cannot give less than 1 / (k + 1))."""
        if not self.draw_drops:
            return float("nan")
        return (1 + sum(d >= self.observed_drop for d in self.draw_drops)) / (len(self.draw_drops) + 1)


@dataclass
class AblationSettings:
    """How :func:`run_ablation` measures, passed as its keywords (or ``settings=``): completions per
    prompt, random-feature control draws, seed and bootstrap resamples."""

    samples_per_prompt: int = 1
    n_random: int = 3
    seed: int = 0
    n_boot: int = 2000
    random_draws: list | None = None  # pre-drawn control sets (e.g. matched_random_features); else uniform


def run_ablation(adapter, saes: Mapping[str, object], selected: Mapping[str, Sequence[int]], prompts: Sequence[str],
                 reward_fn, config: GenerationConfig, *args, **settings) -> AblationResult:
    """Reward with ``selected`` features removed vs no removal vs random features of the same count.

    ``settings``: the fields of :class:`AblationSettings` as keywords (``samples_per_prompt=1``,
    ``n_random=3``, ``seed=0``, ``n_boot=2000``, ``random_draws=None``; also positionally, in that
    order), or one ``settings=AblationSettings(...)``. With ``random_draws`` (e.g.
    :func:`matched_random_features`) those sets are the control and ``n_random`` is their number.

    All conditions run as one :func:`~reward_circuits.interventions.sweep` (row-scoped hooks): with
    sampling, every condition of a (prompt, sample) draws the same uniform numbers, so the
    per-prompt differences are paired by construction."""
    s = settings["settings"] if set(settings) == {"settings"} and not args else AblationSettings(*args, **settings)
    samples_per_prompt, n_random, seed, n_boot = s.samples_per_prompt, s.n_random, s.seed, s.n_boot
    if not any(len(v) for v in selected.values()):
        raise ValueError("no features selected to ablate.")
    from ...interventions.sweep import sweep

    draws = list(s.random_draws) if s.random_draws is not None else [
        random_features_like(selected, saes, seed + 1000 + d) for d in range(n_random)]
    n_random = len(draws)
    conds = {"none": [], "ablated": ablation_hooks(saes, selected)}
    conds.update({f"random/{d}": ablation_hooks(saes, dr) for d, dr in enumerate(draws)})
    expanded = [p for p in prompts for _ in range(samples_per_prompt)]
    swept = sweep(adapter, expanded, conds, config)

    def per_prompt(name: str) -> np.ndarray:
        r = np.asarray(reward_fn([g.text for g in swept[name].generations]), dtype=np.float64)
        return r.reshape(len(prompts), samples_per_prompt).mean(1)

    baseline, ablated = per_prompt("none"), per_prompt("ablated")
    per_draw = [per_prompt(f"random/{d}") for d in range(n_random)]
    rand = np.mean(per_draw, axis=0) if n_random else np.full_like(baseline, np.nan)
    d_none, p_none = paired_bootstrap_diff(ablated, baseline, n_boot=n_boot, seed=seed)
    d_rand, p_rand = paired_bootstrap_diff(ablated, rand, n_boot=n_boot, seed=seed)
    return AblationResult(
        selected={h: list(map(int, v)) for h, v in selected.items()}, random_draws=draws,
        reward_none=bootstrap_ci(baseline, n_boot=n_boot, seed=seed), reward_ablated=bootstrap_ci(ablated, n_boot=n_boot, seed=seed),
        reward_random=bootstrap_ci(rand, n_boot=n_boot, seed=seed), ablated_minus_none=d_none, ablated_minus_none_p=p_none,
        ablated_minus_random=d_rand, ablated_minus_random_p=p_rand,
        per_prompt={"none": baseline.tolist(), "ablated": ablated.tolist(), "random": rand.tolist()},
        draw_drops=[float(baseline.mean() - r.mean()) for r in per_draw],
        control="given" if s.random_draws is not None else "uniform",
    )
