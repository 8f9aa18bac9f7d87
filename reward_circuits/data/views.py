"""In-memory and transformed views with the read API of :class:`~reward_circuits.data.store.ActivationStore`.

:class:`ArrayRollouts` holds rollouts in memory (tests, planted data, small experiments);
:class:`RotatedStore` applies a fixed orthogonal rotation to one hook (basis-alignment checks);
:class:`ConcatStore` reads several stores (e.g. two tasks) as one (pooled probes).
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

from .splits import rollout_order, stratified_split
from .store import StateBatch
from ..errors import ProbeError
from ..reprs import short_list

def check_binary(rewards: np.ndarray) -> None:
    bad = np.flatnonzero(~np.isin(rewards, (0.0, 1.0)))
    if bad.size:
        raise ProbeError(
            f"reward of rollout #{int(bad[0])} is {rewards[bad[0]]!r}; rewards must be binary (0 or 1). "
            "Threshold or binarise the reward first."
        )


class _RolloutIndex:
    """Length, rewards, ids and the stratified split of a view holding ``_rewards`` and ``_ids``
    (as :class:`ActivationStore`: a pooled view splits by reward, not by store)."""

    _rewards: np.ndarray
    _ids: list[str]

    def __len__(self) -> int:
        return int(len(self._rewards))

    @property
    def rewards(self) -> np.ndarray:
        return self._rewards.copy()

    @property
    def rollout_ids(self) -> list[str]:
        return list(self._ids)

    def split(self, test_fraction: float = 0.3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Stratified train/test split of rollout indices, as :meth:`ActivationStore.split`."""
        if not 0 < test_fraction < 1:
            raise ProbeError(f"test_fraction must be in (0, 1), got {test_fraction}.")
        return stratified_split(np.arange(len(self)), self.rewards, test_fraction, seed)


class ArrayRollouts(_RolloutIndex):
    """Rollouts held in memory with the read API of :class:`~reward_circuits.store.ActivationStore`.

    ``acts[hook][i]`` is rollout ``i``'s states ``s_0 .. s_T`` (``[T + 1, d]``). Checks rewards are
    binary, every rollout has at least one state, lengths agree across hooks, values are finite
    and ids are unique.
    """

    def __init__(
        self,
        acts: Mapping[str, Sequence[Float[Tensor, "T d"] | np.ndarray]],
        rewards: Sequence[float] | np.ndarray,
        ids: Sequence[str] | None = None,
    ):
        if not acts:
            raise ProbeError("acts is empty: give {hook_name: [states of rollout 0, ...]}.")
        rewards = np.asarray(rewards, dtype=np.float64).reshape(-1)
        check_binary(rewards)
        n = len(rewards)
        if n == 0:
            raise ProbeError("no rollouts given.")
        ids = [f"r{i:06d}" for i in range(n)] if ids is None else [str(i) for i in ids]
        if len(ids) != n:
            raise ProbeError(f"{len(ids)} rollout ids for {n} rewards: give one id per rollout.")
        if len(set(ids)) != n:
            raise ProbeError("rollout ids are not unique.")
        self._acts: dict[str, Tensor] = {}
        self._d: dict[str, int] = {}
        lengths = None
        for hook, seqs in acts.items():
            if len(seqs) != n:
                raise ProbeError(f"hook {hook!r}: {len(seqs)} activation sequences for {n} rewards.")
            tens = [torch.as_tensor(np.asarray(a) if not isinstance(a, Tensor) else a).to(torch.float32) for a in seqs]
            ls = []
            for i, a in enumerate(tens):
                if a.ndim != 2:
                    raise ProbeError(f"hook {hook!r}, rollout {ids[i]!r}: expected [T+1, d] states, got shape {tuple(a.shape)}.")
                if a.shape[0] == 0:
                    raise ProbeError(f"rollout {ids[i]!r} has 0 states (length 0): every rollout needs at least s_0.")
                ls.append(int(a.shape[0]))
            if lengths is None:
                lengths = ls
            elif ls != lengths:
                raise ProbeError(f"hook {hook!r}: rollout lengths differ from those of hook {next(iter(acts))!r}.")
            widths = {int(a.shape[1]) for a in tens}
            if len(widths) != 1:
                raise ProbeError(f"hook {hook!r}: rollouts have different widths {sorted(widths)}.")
            cat = torch.cat(tens)
            if not torch.isfinite(cat).all():
                raise ProbeError(f"hook {hook!r}: activations contain NaN or inf.")
            self._acts[hook] = cat
            self._d[hook] = widths.pop()
        self._rewards = rewards.astype(np.float32)
        self._ids = ids
        self._lengths = np.asarray(lengths, dtype=np.int64)
        self._offsets = np.concatenate([[0], np.cumsum(self._lengths)[:-1]]).astype(np.int64)

    def __repr__(self) -> str:
        return (f"ArrayRollouts({len(self)} rollouts, {int(self._lengths.sum())} states, "
                f"hooks={short_list(list(self._acts), 2)}, success={float(self._rewards.mean()):.3g})")

    @classmethod
    def from_store(cls, store, hooks: Sequence[str] | str, indices: Sequence[int] | None = None) -> "ArrayRollouts":
        """Load some rollouts of a store (or wrapper) into memory, e.g. to train several probes on them."""
        hooks = [hooks] if isinstance(hooks, str) else list(hooks)
        idx = list(range(len(store))) if indices is None else [int(i) for i in indices]
        acts = {h: [store.get(i, h) for i in idx] for h in hooks}
        return cls(acts, store.rewards[idx], [store.rollout_ids[i] for i in idx])

    @classmethod
    def cached_for_epochs(cls, store, hooks: Sequence[str], indices: np.ndarray,
                          budget_mb: float) -> tuple[object, np.ndarray, torch.dtype | None]:
        """``(source, indices, dtype)`` to stream ``indices`` of ``store`` from many times: the rollouts
        in RAM as float32 (re-numbered ``0..n-1``; the seeded batch order is the same, as a
        permutation depends only on the count) when they fit ``budget_mb``, else ``store`` itself."""
        idx = np.asarray(indices, dtype=np.int64)
        if isinstance(store, ArrayRollouts) or budget_mb <= 0 or idx.size == 0:
            return store, idx, None
        if hasattr(store, "records"):  # ActivationStore
            n_states = sum(store.records[int(i)].n_steps for i in idx)
        elif hasattr(store, "rollout_lengths"):
            n_states = int(np.asarray(store.rollout_lengths())[idx].sum())
        else:  # another view: only in-memory views are cheap to measure, and they need no cache
            return store, idx, None
        if n_states * sum(int(store.d(h)) for h in hooks) * 4 > budget_mb * 2**20:
            return store, idx, None
        # one preallocated float32 block per hook, filled rollout by rollout: the peak is the
        # budget plus one rollout (no list of per-rollout copies concatenated at the end)
        view = cls.__new__(cls)
        lengths = np.empty(idx.size, dtype=np.int64)
        view._acts, view._d = {}, {}
        native = {"dtype": store.storage_dtype} if hasattr(store, "storage_dtype") else {}
        for h in hooks:
            block, row = torch.empty(n_states, int(store.d(h)), dtype=torch.float32), 0
            for j, i in enumerate(idx):
                a = store.get(int(i), h, **native)  # the store's dtype: one cast, into the block
                block[row:row + a.shape[0]].copy_(a)
                lengths[j], row = a.shape[0], row + a.shape[0]
            if row != n_states:
                raise ProbeError(f"hook {h!r}: the store's rollouts hold {row} states, its records say {n_states}.")
            view._acts[h], view._d[h] = block, int(store.d(h))
        view._rewards = np.asarray(store.rewards, dtype=np.float32)[idx]
        view._ids = [store.rollout_ids[int(i)] for i in idx]
        view._lengths = lengths
        view._offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        return view, np.arange(idx.size), torch.float32

    @property
    def hook_names(self) -> list[str]:
        return list(self._acts)

    def d(self, hook: str) -> int:
        self._check_hook(hook)
        return self._d[hook]

    def _check_hook(self, hook: str) -> None:
        if hook not in self._acts:
            raise KeyError(f"hook {hook!r} is not among the given hooks {self.hook_names}.")

    def state_block(self, hook: str) -> Float[Tensor, "state d"]:
        """Every state of every rollout, rollout after rollout (a view of the held block, not a copy)."""
        self._check_hook(hook)
        return self._acts[hook]

    def rollout_of_states(self) -> Int[Tensor, " state"]:
        """The rollout number of each row of :meth:`state_block`."""
        return torch.repeat_interleave(torch.arange(len(self)), torch.as_tensor(self._lengths))

    def get(self, index: int, hook: str, *, from_s0: bool = True) -> Float[Tensor, "T d"]:
        self._check_hook(hook)
        a = int(self._offsets[index])
        return self._acts[hook][a : a + int(self._lengths[index])]

    def initial_states(self, hook: str, indices: Sequence[int] | None = None) -> Float[Tensor, "n d"]:
        self._check_hook(hook)
        idx = np.arange(len(self)) if indices is None else np.asarray(list(indices), dtype=np.int64)
        return self._acts[hook][torch.as_tensor(self._offsets[idx])]

    def iter_batches(self, hooks, *, batch_states: int = 8192, indices=None, include_prompt: bool = False,
                     shuffle_seed: int | None = None, dtype: torch.dtype = torch.float32, reuse_buffers: bool = False):
        """Same batching and (seeded) rollout order as :meth:`ActivationStore.iter_batches`.

        ``reuse_buffers=True`` gathers every batch's states into the same per-hook buffers: no fresh
        pages per batch (an epoch of training loops), but a batch's ``acts`` are overwritten by the
        next one, so use each batch before asking for the next."""
        hooks = [hooks] if isinstance(hooks, str) else list(hooks)
        for h in hooks:
            self._check_hook(h)
        idx = rollout_order(len(self), indices, shuffle_seed)
        buffers: dict[str, Tensor] | None = {} if reuse_buffers else None
        group, count = [], 0
        for i in idx:
            group.append(int(i))
            count += int(self._lengths[i])
            if count >= batch_states:
                yield self._read_group(group, hooks, dtype, buffers)
                group, count = [], 0
        if group:
            yield self._read_group(group, hooks, dtype, buffers)

    def _gather(self, hook: str, rows: Tensor, dtype, buffers: dict[str, Tensor] | None) -> Tensor:
        if buffers is None or dtype != self._acts[hook].dtype:
            return torch.index_select(self._acts[hook], 0, rows).to(dtype)  # 4x faster than [rows]
        buf = buffers.get(hook)
        if buf is None or buf.shape[0] < rows.numel():
            buf = buffers[hook] = torch.empty(rows.numel(), self._d[hook], dtype=dtype)
        return torch.index_select(self._acts[hook], 0, rows, out=buf[: rows.numel()])

    def _read_group(self, group: list[int], hooks: list[str], dtype, buffers: dict[str, Tensor] | None = None) -> StateBatch:
        g = np.asarray(group)
        lengths = torch.as_tensor(self._lengths[g])
        rows = torch.cat([torch.arange(int(o), int(o) + int(l)) for o, l in zip(self._offsets[g], self._lengths[g])])
        ends = torch.cumsum(lengths, 0) - 1
        is_last = torch.zeros(int(lengths.sum()), dtype=torch.bool)
        is_last[ends] = True
        return StateBatch(
            acts={h: self._gather(h, rows, dtype, buffers) for h in hooks},
            rollout=torch.repeat_interleave(torch.as_tensor(g), lengths),
            step=torch.cat([torch.arange(int(l)) for l in lengths]),
            is_last=is_last,
            reward=torch.repeat_interleave(torch.as_tensor(self._rewards[g]), lengths),
        )



def random_orthogonal(d: int, seed: int) -> Float[Tensor, "d d"]:
    """A Haar-random orthogonal matrix: QR of a seeded Gaussian, with the sign fix of R's diagonal."""
    g = torch.Generator().manual_seed(int(seed))
    q, r = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    return (q * torch.sign(torch.diagonal(r))[None, :]).to(torch.float32)


class RotatedStore:
    """Wraps a store (or any source with its read API) and rotates states on the fly: ``s ↦ s Q``.

    ``hooks`` limits the rotation to some hook points (default: all); each hook gets its own
    ``Q`` (seeded by ``seed`` and the hook's position).
    """

    def __init__(self, store, seed: int = 0, hooks: Sequence[str] | None = None):
        self.inner = store
        self.seed = seed
        rotated = list(store.hook_names) if hooks is None else list(hooks)
        for h in rotated:
            store.d(h)  # raises on unknown hooks
        self.rotations: dict[str, Tensor] = {
            h: random_orthogonal(int(store.d(h)), seed * 1000 + i) for i, h in enumerate(rotated)
        }

    def __repr__(self) -> str:
        return (f"RotatedStore({len(self)} rollouts, seed={self.seed}, rotated={short_list(self.rotations, 2)}, "
                f"inner={type(self.inner).__name__})")

    # read API ------------------------------------------------------------------------------
    @property
    def hook_names(self) -> list[str]:
        return list(self.inner.hook_names)

    def d(self, hook: str) -> int:
        return self.inner.d(hook)

    def __len__(self) -> int:
        return len(self.inner)

    @property
    def rewards(self) -> np.ndarray:
        return self.inner.rewards

    @property
    def rollout_ids(self) -> list[str]:
        return self.inner.rollout_ids

    def split(self, test_fraction: float = 0.3, seed: int = 0):
        return self.inner.split(test_fraction, seed)

    def _rotate(self, hook: str, x: Tensor) -> Tensor:
        q = self.rotations.get(hook)
        return x if q is None else x.to(torch.float32) @ q

    def get(self, index: int, hook: str, *, from_s0: bool = True) -> Tensor:
        return self._rotate(hook, self.inner.get(index, hook, from_s0=from_s0))

    def initial_states(self, hook: str, indices=None) -> Tensor:
        return self._rotate(hook, self.inner.initial_states(hook, indices))

    def iter_batches(self, hooks, **kwargs):
        kwargs["dtype"] = torch.float32
        for b in self.inner.iter_batches(hooks, **kwargs):
            yield StateBatch({h: self._rotate(h, a) for h, a in b.acts.items()}, b.rollout, b.step, b.is_last, b.reward)



class ConcatStore(_RolloutIndex):
    """Several stores of one model read as one (e.g. two tasks' rollouts, to train one pooled probe).

    Rollout ``i`` of the view is rollout ``local_index(i)`` of store ``source(i)``: the rollouts of
    ``stores[0]`` first, then those of ``stores[1]``, and so on. Only hooks that every store holds
    (with the same width) are exposed. Rollout ids stay as they are when unique across the stores,
    else each is prefixed with its store's name (``"name/id"``).

    >>> pooled = ConcatStore({"arithmetic": store_a, "word_problems": store_b})
    >>> test = np.r_[pooled.global_indices("arithmetic", test_a), pooled.global_indices("word_problems", test_b)]
    """

    def __init__(self, stores: Mapping[str, object] | Sequence[object]):
        named = dict(stores) if isinstance(stores, Mapping) else {str(k): s for k, s in enumerate(stores)}
        if not named:
            raise ProbeError("ConcatStore needs at least one store.")
        self.names = [str(n) for n in named]
        self.stores = list(named.values())
        first = self.stores[0]
        self._hooks = [h for h in first.hook_names
                       if all(h in s.hook_names and int(s.d(h)) == int(first.d(h)) for s in self.stores[1:])]
        if not self._hooks:
            raise ProbeError(f"the stores {self.names} share no hook point of the same width: nothing to read as one.")
        sizes = np.asarray([len(s) for s in self.stores], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        self._source = np.repeat(np.arange(len(self.stores)), sizes)
        ids = [str(r) for s in self.stores for r in s.rollout_ids]
        if len(set(ids)) != len(ids):
            ids = [f"{n}/{r}" for n, s in zip(self.names, self.stores) for r in s.rollout_ids]
        self._ids = ids
        self._rewards = np.concatenate([np.asarray(s.rewards, dtype=np.float32) for s in self.stores])
        self._lengths: np.ndarray | None = None

    def __repr__(self) -> str:
        sizes = ", ".join(f"{n!r}: {len(s)}" for n, s in list(zip(self.names, self.stores))[:4])
        more = f", … +{len(self.names) - 4}" if len(self.names) > 4 else ""
        return f"ConcatStore({len(self)} rollouts from {{{sizes}{more}}}, hooks={short_list(self._hooks, 2)})"

    # ---- where each rollout comes from ----------------------------------------------------
    def source(self, index: int) -> int:
        """Position (in ``names``) of the store rollout ``index`` comes from."""
        return int(self._source[self._check_index(index)])

    def local_index(self, index: int) -> int:
        """Index of rollout ``index`` inside its own store."""
        i = self._check_index(index)
        return i - int(self.offsets[self._source[i]])

    def global_indices(self, name: str | int, local: Sequence[int]) -> np.ndarray:
        """View indices of rollouts ``local`` of the store ``name`` (its name or position)."""
        k = self.names.index(str(name)) if str(name) in self.names else int(name)
        local = np.asarray(list(local), dtype=np.int64)
        if local.size and (local.min() < 0 or local.max() >= len(self.stores[k])):
            raise IndexError(f"local indices outside [0, {len(self.stores[k])}) of store {self.names[k]!r}.")
        return local + int(self.offsets[k])

    def _check_index(self, index) -> int:
        if not 0 <= int(index) < len(self):
            raise IndexError(f"rollout index {index} is out of range: the view holds {len(self)} rollouts.")
        return int(index)

    # ---- read API ---------------------------------------------------------------------------
    @property
    def hook_names(self) -> list[str]:
        return list(self._hooks)

    def d(self, hook: str) -> int:
        self._check_hook(hook)
        return int(self.stores[0].d(hook))

    def _check_hook(self, hook: str) -> None:
        if hook not in self._hooks:
            raise KeyError(f"hook {hook!r} is not held by every store of the view; shared hooks: {self._hooks}.")

    def state_block(self, hook: str) -> Float[Tensor, "state d"]:
        """Every state of every rollout, rollout after rollout (a view of the held block, not a copy)."""
        self._check_hook(hook)
        return self._acts[hook]

    def rollout_of_states(self) -> Int[Tensor, " state"]:
        """The rollout number of each row of :meth:`state_block`."""
        return torch.repeat_interleave(torch.arange(len(self)), torch.as_tensor(self._lengths))

    def get(self, index: int, hook: str, *, from_s0: bool = True) -> Float[Tensor, "T d"]:
        self._check_hook(hook)
        return self.stores[self.source(index)].get(self.local_index(index), hook, from_s0=from_s0)

    def _by_source(self, idx: np.ndarray) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """``(store, positions in idx, local indices)`` for every store that ``idx`` touches."""
        src = self._source[idx]
        return [(int(k), np.flatnonzero(src == k), idx[src == k] - self.offsets[k]) for k in np.unique(src)]

    def initial_states(self, hook: str, indices: Sequence[int] | None = None) -> Float[Tensor, "n d"]:
        self._check_hook(hook)
        idx = np.arange(len(self)) if indices is None else np.asarray(list(indices), dtype=np.int64).reshape(-1)
        for i in idx[(idx < 0) | (idx >= len(self))][:1]:
            self._check_index(i)
        out = torch.zeros(idx.size, self.d(hook))
        for k, pos, local in self._by_source(idx):
            out[torch.as_tensor(pos)] = self.stores[k].initial_states(hook, local.tolist()).to(torch.float32)
        return out

    def rollout_lengths(self) -> np.ndarray:
        """States ``s_0 .. s_T`` of every rollout (one read pass over the first hook, then cached)."""
        if self._lengths is None:
            lengths = []
            for s in self.stores:
                counts = np.zeros(len(s), dtype=np.int64)
                for b in s.iter_batches(self._hooks[0], batch_states=1 << 16):
                    counts += np.bincount(b.rollout.numpy(), minlength=len(s))
                lengths.append(counts)
            self._lengths = np.concatenate(lengths)
        return self._lengths

    def iter_batches(self, hooks, *, batch_states: int = 8192, indices=None, include_prompt: bool = False,
                     shuffle_seed: int | None = None, dtype: torch.dtype = torch.float32):
        """Whole rollouts in batches of about ``batch_states`` states, in the (seeded) order of
        :func:`~reward_circuits.data.store.rollout_order` over the pooled rollouts; a batch may mix
        stores (each store's rollouts of a batch are read in one call)."""
        hooks = [hooks] if isinstance(hooks, str) else list(hooks)
        for h in hooks:
            self._check_hook(h)
        idx = rollout_order(len(self), indices, shuffle_seed)
        for i in idx[(idx < 0) | (idx >= len(self))][:1]:
            self._check_index(i)
        lengths = self.rollout_lengths()
        group, count = [], 0
        for i in idx:
            group.append(int(i))
            count += int(lengths[i])
            if count >= batch_states:
                yield self._read_group(np.asarray(group), hooks, include_prompt, dtype)
                group, count = [], 0
        if group:
            yield self._read_group(np.asarray(group), hooks, include_prompt, dtype)

    def _read_group(self, group: np.ndarray, hooks: list[str], include_prompt: bool, dtype) -> StateBatch:
        parts = []
        for k, _, local in self._by_source(group):
            (b,) = list(self.stores[k].iter_batches(hooks, batch_states=math.inf, indices=local.tolist(),
                                                    include_prompt=include_prompt, dtype=dtype))
            parts.append(StateBatch({h: a.to(dtype) for h, a in b.acts.items()}, b.rollout + int(self.offsets[k]),
                                    b.step, b.is_last, b.reward))
        if len(parts) == 1:
            return parts[0]
        return StateBatch({h: torch.cat([p.acts[h] for p in parts]) for h in hooks},
                          torch.cat([p.rollout for p in parts]), torch.cat([p.step for p in parts]),
                          torch.cat([p.is_last for p in parts]), torch.cat([p.reward for p in parts]))
