"""Two checks of the value stage that feed the claim registry, run after its other steps (they
consume no seed or RNG state the earlier steps use, so every earlier number stays as it was):

* :func:`iou_over_probe_seeds`: the cross-task IoU of the value neurons at the best layer over
  several probe seed pairs (task A's probe of seed ``s + 2j``, task B's of ``s + 2j + 1``; pair 0 is
  the stage's own two probes), against joint random relabellings of B's dims, uniform and within
  magnitude strata (:func:`~reward_circuits.analysis.resampling.overlap_vs_relabelling`);
* :func:`value_length_control`: V(s_t) against the rollout's reward on the probe's held-out test
  rollouts, raw and with position and tokens-to-end partialled out
  (:func:`~reward_circuits.analysis.resampling.length_controlled_correlation`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ...analysis.controls import magnitude_strata
from ...analysis.probes import ValueProbe, ValueProbeConfig
from ...analysis.pruning import n_kept
from ...analysis.resampling import length_controlled_correlation, overlap_vs_relabelling
from ...analysis.splits import TaskSplit
from ...analysis.stats import rank_by_score
from ...data.protocol import Store
from ...neurons import expected_random_iou, iou


def _top(probe: ValueProbe, hook: str, k: int) -> list[int]:
    return rank_by_score(probe.input_weight_norms(hook).numpy())[:k].tolist()


def _fit_one(cfg: ValueProbeConfig, seed: int, store: Store, hook: str, split: TaskSplit) -> ValueProbe:
    return ValueProbe(cfg.replace(seed=seed)).fit(store, [hook], split.fit, verbose=False,
                                                  validation_indices=split.val if cfg.validation_fraction else None)


def iou_over_probe_seeds(pair: tuple[ValueProbe, ValueProbe], stores: tuple[Store, Store], splits: tuple[TaskSplit, TaskSplit],
                         hook: str, cfg: ValueProbeConfig, magnitudes: np.ndarray | None, n_pairs: int = 3,
                         quick: bool = False) -> dict:
    """IoU of the two tasks' 99%-pruned value sets at ``hook`` over ``n_pairs`` probe seed pairs
    (``pair``: the stage's own probes of both tasks), with the uniform and the magnitude-matched
    relabelling tests: ``{hook, n_kept, seeds, iou, random, vs_random, vs_matched}``."""
    d = int(stores[0].d(hook))
    k = n_kept(d, 0.99)
    seed = int(cfg.seed)
    sets_a, sets_b = [_top(pair[0], hook, k)], [_top(pair[1], hook, k)]
    seeds = [[seed, int(pair[1].cfg.seed)]]
    for j in range(1, n_pairs):
        sa, sb = seed + 2 * j, seed + 2 * j + 1
        sets_a.append(_top(_fit_one(cfg, sa, stores[0], hook, splits[0]), hook, k))
        sets_b.append(_top(_fit_one(cfg, sb, stores[1], hook, splits[1]), hook, k))
        seeds.append([sa, sb])
    n_draws = 499 if quick else 1999
    out = {"hook": hook, "n_kept": k, "seeds": seeds, "iou": [iou(a, b) for a, b in zip(sets_a, sets_b)],
           "random": expected_random_iou(d, k),
           "vs_random": overlap_vs_relabelling(sets_a, sets_b, d, n_draws, seed).to_dict()}
    if magnitudes is not None:
        strata = magnitude_strata(np.asarray(magnitudes))
        out["vs_matched"] = overlap_vs_relabelling(sets_a, sets_b, d, n_draws, seed, strata=strata).to_dict()
    return out


def value_length_control(probe: ValueProbe, store: Store, hook: str, indices: Sequence[int], seed: int = 0,
                         n_boot: int = 1000) -> dict | None:
    """V(s_t) vs the reward over the states of the held-out rollouts ``indices``, raw and
    length-controlled (cluster bootstrap over rollouts); None with fewer than 5 rollouts."""
    idx = [int(i) for i in indices]
    if len(idx) < 5:
        return None
    traces = probe.value_traces(store, hook, idx)
    rewards = np.asarray(store.rewards, dtype=np.float64)[idx]
    value = np.concatenate([np.asarray(t, dtype=np.float64).reshape(-1) for t in traces])
    pos = np.concatenate([np.arange(len(t)) for t in traces])
    to_end = np.concatenate([len(t) - 1 - np.arange(len(t)) for t in traces])
    rollout = np.concatenate([np.full(len(t), j) for j, t in enumerate(traces)])
    lc = length_controlled_correlation(value, rewards[rollout], pos, to_end, rollout.tolist(), n_boot=n_boot, seed=seed)
    return {"hook": hook, "n_rollouts": len(idx), "n_states": int(value.size), **lc.to_dict()}
