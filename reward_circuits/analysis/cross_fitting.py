"""Cross-fitted value traces: every rollout's values from a probe that never trained on it."""

from __future__ import annotations

import numpy as np
from jaxtyping import Float

from ..data.views import check_binary
from ..errors import ProbeError
from .probes import ValueProbe, ValueProbeConfig


def cross_fitted_value_traces(
    store, hook: str, cfg: ValueProbeConfig | None = None, n_folds: int = 5, seed: int = 0,
) -> list[Float[np.ndarray, " T"]]:
    """``V(s_0), .., V(s_T)`` of every rollout of ``store``, each from a probe that never trained on it.

    K-fold cross-fitting: the rollouts are split into ``n_folds`` folds stratified by reward; fold
    ``k``'s traces come from a ``ValueProbe(cfg)`` fitted on the other folds at ``hook``. Analyses
    that condition on the value itself (surprise = a confident ``V(s_0)`` and the opposite reward,
    TD errors along a rollout) need this: on its own training rollouts a probe's values are fitted
    to the reward, so surprises there are rarer than they are, and TD errors smaller.
    """
    from sklearn.model_selection import StratifiedKFold

    cfg = cfg or ValueProbeConfig()
    rewards = np.asarray(store.rewards)
    check_binary(rewards)
    counts = np.bincount(rewards.astype(int), minlength=2)
    if not isinstance(n_folds, int) or n_folds < 2:
        raise ProbeError(f"n_folds must be an int >= 2, got {n_folds!r}.")
    if counts.min() < n_folds:
        raise ProbeError(f"cross-fitting with {n_folds} folds needs >= {n_folds} rollouts of each reward; the store has "
                         f"{counts[0]} with reward 0 and {counts[1]} with reward 1. Use fewer folds or more rollouts.")
    traces: list = [None] * len(rewards)
    folds = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed).split(np.zeros(len(rewards)), rewards)
    for k, (train, held) in enumerate(folds):
        probe = ValueProbe(cfg.replace(seed=cfg.seed + k)).fit(store, hook, train, verbose=False)
        for i, trace in zip(held, probe.value_traces(store, hook, held)):
            traces[int(i)] = trace
    return traces
