"""Planted ground truth for the value-probe pipeline.

:func:`planted_value_store` writes a small activation store in which a known set of ``k``
dimensions carries the value signal; everything else is noise with heterogeneous scales and
offsets (like a residual stream). Tests check that the probe reaches the Bayes ceiling on the
signal hook, chance on the noise hook, and that pruning recovers the planted dimensions.

Generative model, per rollout ``i``:

* length ``T_i + 1`` states (``T_i`` uniform in ``T_range``, inclusive);
* latent ``z_0 ~ N(0, I_k)`` in the value dimensions of ``s_0``; success probability
  ``p_i = sigmoid(signal_scale · Σ z_0 / √k)`` and reward ``r_i ~ Bernoulli(p_i)``
  (``random_reward=True``: ``p_i = 0.5`` and ``r_i`` independent of the states);
* along the rollout the value dimensions drift toward the outcome, as a value signal should (the
  model grows more certain): ``z_t = z_0 + (t/T) · drift · (2r − 1) + noise · √(t/T) · ε_t``,
  with no noise at ``t = 0`` so that ``p_i`` is exactly the posterior ``P(r = 1 | s_0)``;
* every other dimension: ``0.7 · u_i + 0.7 · ε_t`` (a per-rollout and a per-step part);
* finally every dimension ``j`` is mapped to ``offset_j + scale_j · x_j`` with ``scale_j``
  log-uniform in [0.1, 10] (so raw L1 of un-standardised weights would be misleading).

The noise hook is drawn the same way with no value dimensions and no drift.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from ..options import options_of
from .store import ActivationStore, write_store_from_arrays


@dataclass
class PlantedInfo:
    """What was planted: value dims, hooks, the true success probabilities, and the ceiling AUC."""

    value_dims: list[int]
    signal_hook: str
    noise_hooks: list[str]
    p: np.ndarray  # [n_rollouts] true P(r = 1 | s_0)
    rewards: np.ndarray  # [n_rollouts]
    lengths: np.ndarray  # [n_rollouts] number of states s_0..s_T
    d: int
    random_reward: bool
    params: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        return (f"PlantedInfo(value_dims={self.value_dims}, signal_hook={self.signal_hook!r}, "
                f"{len(self.noise_hooks)} noise hooks, {len(self.rewards)} rollouts, d={self.d}, "
                f"success={float(np.mean(self.rewards)):.3g}{', random reward' if self.random_reward else ''})")

    @property
    def noise_hook(self) -> str:
        return self.noise_hooks[0]

    @property
    def ceiling_auc(self) -> float:
        """Bayes-ceiling AUC of V(s_0) on all rollouts: AUC of the true ``p`` vs reward."""
        return self.ceiling_auc_on(None)

    def ceiling_auc_on(self, indices: Sequence[int] | None) -> float:
        """Bayes-ceiling AUC on some rollouts (e.g. the test split)."""
        idx = np.arange(len(self.rewards)) if indices is None else np.asarray(indices)
        r, p = self.rewards[idx], self.p[idx]
        if np.unique(r).size < 2:
            raise ValueError("only one reward class among these rollouts: AUC undefined.")
        return float(roc_auc_score(r, p))


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


@dataclass
class PlantedSpec:
    """What :func:`planted_rollouts` / :func:`planted_value_store` generate (fields in their positional order).

    ``n_rollouts`` rollouts of ``T ~ U(T_range)`` steps at ``hooks`` (the first carries the signal) of
    width ``d``; ``k`` value dims (or the given ``value_dims``) follow a latent drifting by ``drift``
    towards the reward, with ``noise``; ``signal_scale`` sets how well ``V(s_0)`` predicts the reward
    (``random_reward``: not at all); ``dtype``: the store's (:func:`planted_value_store` only)."""

    n_rollouts: int = 400
    d: int = 64
    k: int = 4
    T_range: tuple[int, int] = (5, 20)
    noise: float = 0.5
    seed: int = 0
    hooks: Sequence[str] = ("blocks.0.hook_resid_post", "blocks.1.hook_resid_post")
    random_reward: bool = False
    signal_scale: float = 2.0
    drift: float = 2.0
    value_dims: Sequence[int] | None = None
    dtype: str = "float32"


_ROLLOUT_FIELDS = ("n_rollouts", "d", "k", "T_range", "noise", "seed", "hooks", "random_reward", "signal_scale", "drift",
                   "value_dims")


def planted_rollouts(*args, **options) -> tuple[dict[str, list[torch.Tensor]], np.ndarray, PlantedInfo]:
    """In-memory planted rollouts: ``({hook: [states [T+1, d]]}, rewards, info)``.

    The first hook carries the signal, the others are pure-noise controls. ``value_dims`` fixes
    the planted dims (e.g. the same dims in two "datasets"); by default ``k`` are drawn.
    ``args``/``options``: the fields of :class:`PlantedSpec` but ``dtype`` (by position or keyword), or ``options=``.
    """
    spec = options_of(PlantedSpec, args, options, where="planted_rollouts", names=_ROLLOUT_FIELDS)
    n_rollouts, d, k, T_range, noise, seed = spec.n_rollouts, spec.d, spec.k, spec.T_range, spec.noise, spec.seed
    random_reward, signal_scale, drift, value_dims = spec.random_reward, spec.signal_scale, spec.drift, spec.value_dims
    hooks = list(spec.hooks)
    if len(hooks) < 1:
        raise ValueError("give at least one hook name (the first carries the signal).")
    if not 1 <= k <= d:
        raise ValueError(f"k={k} value dims must be in [1, d={d}].")
    lo, hi = T_range
    if not 0 <= lo <= hi:
        raise ValueError(f"T_range {T_range} must satisfy 0 <= lo <= hi.")
    rng = np.random.default_rng(seed)
    drawn = np.sort(rng.choice(d, size=k, replace=False))
    if value_dims is None:
        value_dims = drawn
    else:
        value_dims = np.sort(np.asarray(list(value_dims), dtype=np.int64))
        if value_dims.size != k or np.unique(value_dims).size != k or value_dims.min() < 0 or value_dims.max() >= d:
            raise ValueError(f"value_dims must be {k} distinct dims in [0, {d}), got {value_dims.tolist()}.")
    hook_scale = {h: np.exp(rng.uniform(np.log(0.1), np.log(10.0), size=d)) for h in hooks}
    hook_offset = {h: rng.normal(0.0, 3.0, size=d) * hook_scale[h] for h in hooks}
    acts: dict[str, list[torch.Tensor]] = {h: [] for h in hooks}
    p_all, r_all, len_all = [], [], []
    for _ in range(n_rollouts):
        T = int(rng.integers(lo, hi + 1))
        n_states = T + 1
        z0 = rng.standard_normal(k)
        if random_reward:
            p = 0.5
        else:
            p = float(_sigmoid(signal_scale * z0.sum() / np.sqrt(k)))
        r = float(rng.random() < p)
        frac = np.arange(n_states) / max(T, 1)
        z = z0[None, :] + frac[:, None] * drift * (2 * r - 1) + noise * np.sqrt(frac)[:, None] * rng.standard_normal((n_states, k))
        for j, h in enumerate(hooks):
            x = 0.7 * rng.standard_normal(d)[None, :] + 0.7 * rng.standard_normal((n_states, d))
            if j == 0:
                x[:, value_dims] = z
            x = hook_offset[h] + hook_scale[h] * x
            acts[h].append(torch.from_numpy(x.astype(np.float32)))
        p_all.append(p)
        r_all.append(r)
        len_all.append(n_states)
    rewards = np.asarray(r_all, dtype=np.float32)
    info = PlantedInfo(
        value_dims=value_dims.tolist(), signal_hook=hooks[0], noise_hooks=hooks[1:], p=np.asarray(p_all),
        rewards=rewards, lengths=np.asarray(len_all), d=d, random_reward=random_reward,
        params=dict(n_rollouts=n_rollouts, d=d, k=k, T_range=list(T_range), noise=noise, seed=seed,
                    signal_scale=signal_scale, drift=drift),
    )
    return acts, rewards, info


def planted_value_store(path: str | os.PathLike, *args, **options) -> tuple[ActivationStore, PlantedInfo]:
    """Write planted rollouts (see module doc) as an activation store at ``path``.

    ``args``/``options``: the fields of :class:`PlantedSpec` (by position or keyword), or ``options=``."""
    spec = options_of(PlantedSpec, args, options, where="planted_value_store")
    acts, rewards, info = planted_rollouts(options=spec)  # dtype is the store's, not the rollouts'
    store = write_store_from_arrays(path, acts, rewards.tolist(), model="planted", dtype=spec.dtype,
                                    meta={"planted": {**info.params, "value_dims": info.value_dims}})
    return store, info


def planted_prompt_tokens(
    rewards: Sequence[float],
    vocab_size: int = 50,
    length_range: tuple[int, int] = (5, 15),
    signal_token: int = 7,
    p_signal_if_success: float = 0.8,
    p_signal_if_failure: float = 0.2,
    seed: int = 0,
) -> list[list[int]]:
    """Prompts whose token ``signal_token`` predicts the reward (for the bag-of-tokens baseline).

    Other tokens are uniform over the vocabulary minus ``signal_token``.
    """
    rng = np.random.default_rng(seed)
    others = np.setdiff1d(np.arange(vocab_size), [signal_token])
    prompts = []
    for r in rewards:
        n = int(rng.integers(length_range[0], length_range[1] + 1))
        toks = rng.choice(others, size=n).tolist()
        if rng.random() < (p_signal_if_success if r == 1 else p_signal_if_failure):
            toks[int(rng.integers(0, n))] = signal_token
        prompts.append(toks)
    return prompts
