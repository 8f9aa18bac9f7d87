"""Train/test splits that keep repeated prompts on one side.

A task generator drawn with replacement repeats questions (``arithmetic:1`` with 300 examples
gave 155 distinct prompts; greedy decoding then gives every copy the same reward). Splitting by
rollout puts copies of one prompt on both sides, and any read-out that memorises ``s_0`` (a
cross-validated logistic regression most of all) scores the copies it has seen: a leaked AUC.
:func:`grouped_stratified_split` assigns each distinct prompt, with all its rollouts, to one side.

This module is the one home of every split of rollouts:

- :func:`grouped_stratified_split`: one (kept, held-out) split by prompt;
- :func:`task_split` / :class:`TaskSplit`: the value stage's fit / validation / test protocol;
- :func:`grouped_stratified_folds`: k folds by prompt (cross-fitting, cross-validation);
- :func:`write_split_file` / :func:`read_split_file`: the value stage's split saved in the run
  directory (``value/splits.json``), so every later reader (resume, ``compare``) scores the same
  held-out rollouts instead of re-splitting.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Hashable, Mapping, Sequence

import numpy as np
from jaxtyping import Int

from ..data.store import stratified_split
from ..errors import ProbeError, check_format_version

SPLIT_FILE = "splits.json"
SPLIT_FORMAT_VERSION = 1
SPLIT_NAMES = ("fit", "validation", "test")
RERUN_VALUE_STAGE = "re-run the value stage, which writes it: `reward-circuits run --stages value --out DIR`"


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


def _group_keys(groups: Sequence[Hashable] | None, n: int) -> list:
    if groups is None:
        return list(range(n))
    keys = list(groups)
    if len(keys) != n:
        raise ProbeError(f"groups has {len(keys)} entries for {n} rollouts; give one group (e.g. the prompt) per rollout.")
    return keys


def grouped_stratified_folds(rewards: np.ndarray, groups: Sequence[Hashable] | None, n_folds: int,
                             seed: int) -> list[tuple[Int[np.ndarray, " n_train"], Int[np.ndarray, " n_held"]]]:
    """``n_folds`` (train, held-out) pairs of positions ``0..n-1``: every group (``groups[i]``, e.g.
    rollout ``i``'s prompt; ``None``: every rollout its own) lies wholly in one held-out fold, folds
    stratified by reward (scikit-learn's ``StratifiedGroupKFold``). With all groups distinct these are
    ``StratifiedKFold``'s folds (same seed use). Raises :class:`ProbeError` when a reward has fewer
    distinct groups than folds, or a training side would lack a reward."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    y = np.asarray(rewards).reshape(-1).astype(int)
    keys = _group_keys(groups, y.size)
    if isinstance(n_folds, bool) or not isinstance(n_folds, (int, np.integer)) or n_folds < 2:
        raise ProbeError(f"n_folds must be an int >= 2, got {n_folds!r}.")
    per_reward = distinct_groups_per_reward(y, keys)
    if min(per_reward) < n_folds:
        raise ProbeError(f"{n_folds} folds grouped by prompt need >= {n_folds} distinct prompts with each reward; there are "
                         f"{per_reward[0]} with reward 0 and {per_reward[1]} with reward 1 ({y.size} rollouts). "
                         "Use fewer folds or more distinct prompts.")
    x = np.zeros(y.size)
    if len(set(keys)) == len(keys):
        pairs = StratifiedKFold(n_splits=int(n_folds), shuffle=True, random_state=seed).split(x, y)
    else:
        from .stats import group_ids

        pairs = StratifiedGroupKFold(n_splits=int(n_folds), shuffle=True, random_state=seed).split(x, y, group_ids(keys))
    folds = [(np.sort(tr).astype(np.int64), np.sort(te).astype(np.int64)) for tr, te in pairs]
    for k, (train, _) in enumerate(folds):
        if np.unique(y[train]).size < 2:
            raise ProbeError(f"fold {k}'s training side holds one reward only (prompts too unevenly split by reward); "
                             "use fewer folds or more distinct prompts.")
    return folds


def distinct_groups_per_reward(rewards: np.ndarray, groups: Sequence[Hashable]) -> tuple[int, int]:
    """(distinct groups with a reward-0 rollout, distinct groups with a reward-1 rollout)."""
    y = np.asarray(rewards).reshape(-1)
    keys = list(groups)
    return (len({keys[i] for i in np.flatnonzero(y == 0)}), len({keys[i] for i in np.flatnonzero(y == 1)}))


@dataclass
class TaskSplit:
    """Rollout indices of one task's store: probe training, validation (early stopping), held-out test."""

    fit: np.ndarray
    val: np.ndarray
    test: np.ndarray
    grouped_by_prompt: bool = False

    def counts(self) -> dict:
        return {"train": int(self.fit.size), "val": int(self.val.size), "test": int(self.test.size),
                "grouped_by_prompt": self.grouped_by_prompt}


def task_split(store, test_fraction: float, val_fraction: float, seed: int,
               groups: Sequence[Hashable] | None = None) -> TaskSplit:
    """The value stage's protocol on one store: ``test_fraction`` held out (stratified by reward; by
    prompt when ``groups[i]`` names rollout ``i``'s prompt), then ``val_fraction`` of the rest."""
    rewards = np.asarray(store.rewards)
    if groups is not None:
        train_all, test = grouped_stratified_split(np.arange(len(store)), rewards, groups, test_fraction, seed)
        fit, val = grouped_stratified_split(train_all, rewards, groups, val_fraction, seed + 1)
    else:
        train_all, test = store.split(test_fraction, seed=seed)
        fit, val = stratified_split(train_all, rewards, val_fraction, seed + 1)
    return TaskSplit(np.asarray(fit), np.asarray(val), np.asarray(test), groups is not None)


def _split_record(store, split: TaskSplit) -> dict:
    ids = list(store.rollout_ids)
    parts = dict(zip(SPLIT_NAMES, (split.fit, split.val, split.test)))
    return {"store": str(getattr(store, "path", "")), "n_rollouts": len(ids), "grouped_by_prompt": split.grouped_by_prompt,
            **{name: {"indices": [int(i) for i in idx], "rollout_ids": [ids[int(i)] for i in idx]}
               for name, idx in parts.items()}}


def write_split_file(path: str | os.PathLike, splits: Mapping[str, tuple[object, TaskSplit]], *, seed: int,
                     test_fraction: float, val_fraction: float) -> Path:
    """Save the value stage's splits (atomically) as JSON: ``splits[name] = (store, TaskSplit)``, name
    ``"primary"`` and optionally ``"second"``. Per store: its path, ``n_rollouts``, ``grouped_by_prompt``
    and, for ``fit`` / ``validation`` / ``test``, the store ``indices`` and their ``rollout_ids``."""
    from ..io import atomic_write_json

    path = Path(path)
    atomic_write_json(path, {"format": "reward_circuits value-stage splits", "format_version": SPLIT_FORMAT_VERSION,
                             "seed": int(seed), "test_fraction": float(test_fraction), "val_fraction": float(val_fraction),
                             "stores": {name: _split_record(st, sp) for name, (st, sp) in splits.items()}})
    return path


def read_split_file(path: str | os.PathLike, store=None, name: str = "primary") -> TaskSplit:
    """The split ``name`` saved by :func:`write_split_file`. With ``store`` its rollout ids at the saved
    indices must equal the saved ids (else :class:`ProbeError`: the store is not the one split). A missing
    file raises ``FileNotFoundError`` naming the fix (re-run the value stage): never a silent re-split."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: this run directory has no saved value-stage split (written by "
                                f"runs before splits were saved), and re-splitting could score rollouts the probe trained "
                                f"on. To fix: {RERUN_VALUE_STAGE}.")
    data = json.loads(path.read_text())
    check_format_version(path, data.get("format_version"), SPLIT_FORMAT_VERSION, "value-stage split",
                         rewrite=RERUN_VALUE_STAGE)
    if name not in data.get("stores", {}):
        raise KeyError(f"{path} holds the splits of {sorted(data.get('stores', {}))}, not {name!r}.")
    rec = data["stores"][name]
    idx = {part: np.asarray(rec[part]["indices"], dtype=np.int64) for part in SPLIT_NAMES}
    if store is not None:
        _check_split_matches(path, name, rec, idx, store)
    return TaskSplit(idx["fit"], idx["validation"], idx["test"], bool(rec.get("grouped_by_prompt", False)))


def _check_split_matches(path: Path, name: str, rec: Mapping, idx: Mapping[str, np.ndarray], store) -> None:
    ids = list(store.rollout_ids)
    if len(ids) != int(rec["n_rollouts"]):
        raise ProbeError(f"{path} splits a {name} store of {rec['n_rollouts']} rollouts, but the store given "
                         f"({getattr(store, 'path', store)}) holds {len(ids)}: it is not the store the value stage "
                         f"split. Give that store, or {RERUN_VALUE_STAGE}.")
    for part in SPLIT_NAMES:
        found = [ids[int(i)] if 0 <= int(i) < len(ids) else None for i in idx[part]]
        bad = [(int(i), s, f) for i, s, f in zip(idx[part], rec[part]["rollout_ids"], found) if s != f]
        if bad:
            i, saved, got = bad[0]
            raise ProbeError(f"{path}: the {name} store's {part} split names rollout {saved!r} at index {i}, but the "
                             f"store holds {got!r} there ({len(bad)} mismatches): the store was rebuilt or reordered "
                             f"since the value stage ran. Give the store it split, or {RERUN_VALUE_STAGE}.")
