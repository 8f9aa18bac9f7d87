"""Train/test splits that keep repeated prompts on one side.

A task generator drawn with replacement repeats questions (``arithmetic:1`` with 300 examples
gave 155 distinct prompts; greedy decoding then gives every copy the same reward). Splitting by
rollout puts copies of one prompt on both sides, and any read-out that memorises ``s_0`` (a
cross-validated logistic regression most of all) scores the copies it has seen: a leaked AUC.
:func:`grouped_stratified_split` assigns each distinct prompt, with all its rollouts, to one side.
"""

from __future__ import annotations

from typing import Hashable, Mapping, Sequence

import numpy as np

from ..data.store import stratified_split
from ..errors import ProbeError


def grouped_stratified_split(indices: Sequence[int], rewards: np.ndarray, groups: Mapping[int, Hashable] | Sequence[Hashable],
                             fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held-out) like :func:`~reward_circuits.data.store.stratified_split`, but every group
    (e.g. a prompt's token ids) lands wholly on one side; groups are stratified by their majority
    reward. With all groups distinct it *is* ``stratified_split`` (same indices, same seed use)."""
    idx = np.asarray(list(indices), dtype=np.int64)
    rewards = np.asarray(rewards)
    keys = [groups[int(i)] for i in idx]
    if len(set(keys)) == len(keys):
        return stratified_split(idx, rewards, fraction, seed)
    members: dict[Hashable, list[int]] = {}
    for i, k in zip(idx.tolist(), keys):
        members.setdefault(k, []).append(i)
    units = list(members.values())
    unit_reward = np.array([float(np.mean(rewards[m]) >= 0.5) for m in units])
    keep_u, held_u = stratified_split(np.arange(len(units)), unit_reward, fraction, seed)
    keep = sorted(i for u in keep_u for i in units[int(u)])
    held = sorted(i for u in held_u for i in units[int(u)])
    return np.asarray(keep, dtype=np.int64), np.asarray(held, dtype=np.int64)


def n_groups(groups: Mapping[int, Hashable] | Sequence[Hashable], indices: Sequence[int]) -> int:
    """Distinct groups among ``indices``."""
    return len({groups[int(i)] for i in indices})


def resolve_indices(store, indices) -> np.ndarray:
    n = len(store)
    idx = np.arange(n, dtype=np.int64) if indices is None else np.asarray(list(indices), dtype=np.int64).reshape(-1)
    if idx.size == 0:
        raise ProbeError("no rollout indices given.")
    bad = idx[(idx < 0) | (idx >= n)]
    if bad.size:
        raise ProbeError(f"rollout indices {bad[:5].tolist()} outside [0, {n}) of this store.")
    if np.unique(idx).size != idx.size:
        raise ProbeError("rollout indices contain duplicates: each rollout may be used once.")
    return idx
