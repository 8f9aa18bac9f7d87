"""Which rollouts a pass visits and how they are split: seeded order, stratified train/test splits."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def rollout_order(n: int, indices: Sequence[int] | None, shuffle_seed: int | None) -> np.ndarray:
    """The rollouts a streamed pass visits: ``indices`` (all by default), permuted when ``shuffle_seed`` is set."""
    idx = np.arange(n) if indices is None else np.asarray(list(indices), dtype=np.int64)
    return idx if shuffle_seed is None else np.random.default_rng(shuffle_seed).permutation(idx)


def stratified_split(indices: np.ndarray, rewards: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split ``indices`` into (kept, held-out) with ``fraction`` of each reward class held out.

    Each class keeps at least one member on both sides when it has two or more.
    """
    rng = np.random.default_rng(seed)
    keep, held = [], []
    for cls in (0.0, 1.0):
        members = rng.permutation(indices[rewards[indices] == cls])
        k = int(round(len(members) * fraction))
        if len(members) >= 2:
            k = min(max(k, 1), len(members) - 1)
        held.extend(members[:k].tolist())
        keep.extend(members[k:].tolist())
    return np.sort(np.asarray(keep, dtype=np.int64)), np.sort(np.asarray(held, dtype=np.int64))

