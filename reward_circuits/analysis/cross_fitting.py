"""Cross-fitted value traces: every rollout's values from a probe that never trained on it, nor on its prompt."""

from __future__ import annotations

from typing import Hashable, Sequence

import numpy as np
from jaxtyping import Float

from ..data.views import check_binary
from .probes import ValueProbe, ValueProbeConfig
from .splits import grouped_stratified_folds, grouped_stratified_split


def cross_fitted_value_traces(
    store, hook: str, cfg: ValueProbeConfig | None = None, n_folds: int = 5, seed: int = 0,
    groups: Sequence[Hashable] | None = None,
) -> list[Float[np.ndarray, " T"]]:
    """``V(s_0), .., V(s_T)`` of every rollout of ``store``, each from a probe that never trained on it.

    K-fold cross-fitting: the rollouts are split into ``n_folds`` folds stratified by reward
    (:func:`~reward_circuits.analysis.splits.grouped_stratified_folds`); fold ``k``'s traces come
    from a ``ValueProbe(cfg)`` fitted on the other folds at ``hook``. ``groups[i]`` (e.g. rollout
    ``i``'s prompt token ids; ``None``: every rollout its own prompt) keeps a prompt's rollouts in
    one fold: greedy rollouts of a repeated prompt are copies, and a probe trained on a copy is not
    out-of-sample. The probe's early-stopping validation split is carved by prompt too.

    Analyses that condition on the value itself (surprise = a confident ``V(s_0)`` and the opposite
    reward, TD errors along a rollout) need this: on its own training rollouts a probe's values are
    fitted to the reward, so surprises there are rarer than they are, and TD errors smaller.
    """
    cfg = cfg or ValueProbeConfig()
    rewards = np.asarray(store.rewards)
    check_binary(rewards)
    traces: list = [None] * len(rewards)
    for k, (train, held) in enumerate(grouped_stratified_folds(rewards, groups, n_folds, seed)):
        cfg_k, fit_idx, val_idx = _fit_plan(rewards, groups, train, cfg.replace(seed=cfg.seed + k))
        probe = ValueProbe(cfg_k).fit(store, hook, fit_idx, validation_indices=val_idx, verbose=False)
        for i, trace in zip(held, probe.value_traces(store, hook, held)):
            traces[int(i)] = trace
    return traces


def _fit_plan(rewards: np.ndarray, groups: Sequence[Hashable] | None, train: np.ndarray,
              cfg: ValueProbeConfig) -> tuple[ValueProbeConfig, np.ndarray, np.ndarray | None]:
    """(config, rollouts to fit, validation rollouts) of one fold's probe. With repeated prompts the
    early-stopping validation split of ``train`` is by prompt (the probe's own split is by rollout);
    when it cannot hold both rewards on both sides the probe trains on all of ``train`` without
    validation (first weight decay), as the probe itself does then. Else ``(cfg, train, None)``:
    the probe's own split, which with distinct prompts is the same split."""
    keys = None if groups is None else list(groups)
    if keys is None or len(set(keys)) == len(keys) or not cfg.validation_fraction:
        return cfg, train, None
    fit_idx, val_idx = grouped_stratified_split(train, rewards, keys, cfg.validation_fraction, cfg.seed)
    if np.unique(rewards[val_idx]).size < 2 or np.unique(rewards[fit_idx]).size < 2:
        return cfg.replace(validation_fraction=0.0, weight_decay=cfg.weight_decays[0]), train, None
    return cfg, fit_idx, val_idx
