"""The activation store: the one caching layer every analysis reads.

Layout on disk (one directory)::

    manifest.json               model, hook points, dtype, shards, per-rollout records
    shard_00000.safetensors     {hook_name: Float16[n_states, d]} for a contiguous run of rollouts
    shard_00001.safetensors     ...

A *state* is the hidden state at one token position. For each rollout the store keeps the states
``s_0 .. s_T``: ``s_0`` is the prompt's last token (before any answer is generated) and ``s_t`` the
position of the t-th generated token (the default ``positions="response"``); with
``positions="all"`` every prompt position is kept too, and ``s0_index`` says where ``s_0`` is.

Writes are atomic (temp file + rename): a shard first, then the manifest that names it, so a killed
writer leaves a consistent store whose manifest says ``"complete": false``. Opening such a store
for reading raises :class:`IncompleteStoreError` (training on part of the data without a word is
the silent failure this prevents); re-running the writer (:func:`build_store`,
:func:`write_store_from_arrays`, ``reward-circuits run`` with the same ``--out``) resumes after the
last rollout the manifest names and first removes the temporary and unnamed shard files a killed
writer left behind. ``ActivationStore(path, allow_incomplete=True)`` reads the partial data on
purpose. Reads are memory-mapped (safetensors) and streamed in batches of whole rollouts, so RAM
stays flat as the store grows. Nothing is ever unpickled: shards are safetensors, the manifest JSON.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from .splits import rollout_order, stratified_split  # noqa: F401  (re-exported)
from ..errors import FormatVersionError, check_format_version
from ..io import SAFETENSORS_TEMP, atomic_path, atomic_write_json
from ..options import options_of
from ..reprs import store_repr

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
STORE_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}  # dtype name -> torch dtype
_DTYPES = STORE_DTYPES


_SHARD_FILE = re.compile(r"shard_\d{5}\.safetensors")
# left by io.atomic_path (".shard_00003.safetensors.XXXX.tmp"), and by safetensors' own writer, which
# writes a ".tmpXXXXXX" file (Rust's tempfile) beside the target and renames it (safetensors >= 0.6)
_TEMP_FILE = re.compile(r"\.(shard_\d{5}\.safetensors|manifest\.json)\..+\.tmp|" + SAFETENSORS_TEMP.pattern)


class StoreError(ValueError):
    """Bad input to the activation store (says what was wrong and how to fix it)."""


class StoreVersionError(StoreError, FormatVersionError):
    """The store was written in a format version this reward_circuits does not read."""


class IncompleteStoreError(StoreError):
    """The store's writer stopped before :meth:`ActivationStoreWriter.close` (killed, crashed, or still running)."""


def read_manifest(path: str | os.PathLike) -> dict:
    """The manifest of the store directory ``path``, checked: readable JSON, known format version.

    Raises :class:`FileNotFoundError` when there is no store, :class:`StoreError` naming the file
    and the fix when the manifest is truncated, not a store manifest, or from a newer version.
    """
    path = Path(path)
    mpath = path / MANIFEST
    if not mpath.exists():
        inside = sorted(str(d) for d in path.iterdir() if (d / MANIFEST).is_file()) if path.is_dir() else []
        if inside:
            raise FileNotFoundError(f"{path} is not an activation store but holds {len(inside)}: {', '.join(inside)} "
                                    "(one per task): pass one of them.")
        raise FileNotFoundError(
            f"No activation store at {path} (no {MANIFEST}). Build one with "
            "`reward-circuits run` or `build_store(...)`."
        )
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise StoreError(
            f"{mpath} is truncated or not valid JSON ({e}). The store's own writes are atomic, so the file was "
            "cut by a copy, a full disk or an edit: restore it from where the store came from, or delete "
            f"{path} and rebuild the store (`reward-circuits run` / `build_store(...)`)."
        ) from None
    if not isinstance(manifest, dict) or "format_version" not in manifest or "shards" not in manifest:
        raise StoreError(
            f"{mpath} is not an activation-store manifest (no format_version/shards). Point at the store "
            "directory that `reward-circuits run` or `build_store(...)` wrote."
        )
    check_format_version(mpath, manifest["format_version"], FORMAT_VERSION, "activation store",
                         rewrite=f"delete {path} and rebuild the store with this version "
                                 "(`reward-circuits run` / `build_store(...)`)", error=StoreVersionError)
    return manifest


def remove_stale_files(path: str | os.PathLike, manifest: dict | None) -> list[str]:
    """Delete what a killed writer left in a store directory; returns the removed names.

    That is the temporary files of unfinished atomic writes (``.shard_00003.safetensors.*.tmp``,
    ``.manifest.json.*.tmp``) and shard files the manifest does not name (written, then killed
    before the manifest was updated). Files of any other name are never touched.
    """
    path = Path(path)
    named = {s["file"] for s in (manifest or {}).get("shards", [])}
    removed = []
    for f in sorted(path.iterdir()) if path.is_dir() else []:
        stale_shard = _SHARD_FILE.fullmatch(f.name) and f.name not in named
        if f.is_file() and (stale_shard or _TEMP_FILE.fullmatch(f.name)):
            f.unlink()
            removed.append(f.name)
    return removed


@dataclass
class RolloutRecord:
    """Where one rollout's states live, and what it earned."""

    id: str
    shard: int
    offset: int  # first row of this rollout inside its shard
    length: int  # number of stored states
    s0_index: int  # index (within this rollout's states) of s_0, the prompt's last token
    reward: float
    meta: dict = field(default_factory=dict)

    @property
    def n_steps(self) -> int:
        """Number of states from s_0 on (s_0 .. s_T), i.e. T + 1."""
        return self.length - self.s0_index


@dataclass
class StateBatch:
    """A batch of states from whole rollouts, flattened along one ``state`` axis.

    ``acts[hook]`` rows are ordered rollout by rollout and, inside one rollout, by step, so
    ``acts[hook][i + 1]`` is the successor of ``acts[hook][i]`` unless ``is_last[i]``.
    """

    acts: dict[str, Float[Tensor, "state d"]]
    rollout: Int[Tensor, " state"]  # index of the rollout in the store
    step: Int[Tensor, " state"]  # t: 0 for s_0, negative for prompt positions before s_0
    is_last: Bool[Tensor, " state"]  # s_T, the rollout's final state
    reward: Float[Tensor, " state"]  # the final reward of the state's rollout

    def __len__(self) -> int:
        return int(self.rollout.numel())


def _as_tensor(a, hook: str, rollout_id) -> Tensor:
    """One rollout's activations as a tensor (numpy arrays and nested lists are converted)."""
    if isinstance(a, Tensor):
        return a
    try:
        return torch.as_tensor(np.asarray(a, dtype=np.float32))
    except (TypeError, ValueError) as e:
        raise StoreError(f"hook {hook!r}, rollout {rollout_id!r}: activations must be a [T, d] tensor or array, "
                         f"got {type(a).__name__} ({e}).") from None


def _check_rewards(rewards: Sequence[float]) -> list[float]:
    out = []
    for i, r in enumerate(rewards):
        r = float(r)
        if r not in (0.0, 1.0):
            raise StoreError(
                f"reward of rollout #{i} is {r!r}; rewards must be binary (0 or 1). "
                "Threshold or binarise your reward before storing it."
            )
        out.append(r)
    return out


class ActivationStoreWriter:
    """Append rollouts' activations to a store directory, one shard per call to :meth:`write`.

    Opening an existing directory resumes it: :meth:`has` tells which rollouts are already in.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        hook_names: Sequence[str],
        *,
        model: str = "unknown",
        dtype: str = "float16",
        positions: str = "response",
        meta: dict | None = None,
    ):
        if not hook_names:
            raise StoreError("hook_names is empty: name at least one hook point to store.")
        if dtype not in _DTYPES:
            raise StoreError(f"dtype {dtype!r} not supported; use one of {sorted(_DTYPES)}.")
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        manifest_path = self.path / MANIFEST
        if manifest_path.exists():
            self.manifest = read_manifest(self.path)
            if list(self.manifest["hook_names"]) != list(hook_names):
                raise StoreError(
                    f"{self.path} already holds hook points {self.manifest['hook_names']}, "
                    f"not {list(hook_names)}: use another --out directory or delete this one."
                )
            for key, value in (("positions", positions), ("dtype", dtype)):
                if self.manifest.get(key) != value:
                    raise StoreError(
                        f"{self.path} was written with {key}={self.manifest.get(key)!r}, not {value!r}: "
                        "resuming would mix layouts; use another directory or delete this one."
                    )
            self.manifest["complete"] = False  # being extended: complete again only after close()
            if self.manifest["model"] != model:
                raise StoreError(
                    f"{self.path} holds activations of model {self.manifest['model']!r}, not "
                    f"{model!r}: use another directory."
                )
        else:
            self.manifest = {
                "format_version": FORMAT_VERSION,
                "model": model,
                "hook_names": list(hook_names),
                "d": {},
                "dtype": dtype,
                "positions": positions,
                "meta": meta or {},
                "shards": [],
                "rollouts": [],
                "complete": False,
            }
        self._ids = {r["id"] for r in self.manifest["rollouts"]}
        # a killed writer's leftovers: temp files and shards written but never named by the manifest
        self.removed_stale_files = remove_stale_files(self.path, self.manifest)

    def has(self, rollout_id: str) -> bool:
        return rollout_id in self._ids

    @property
    def n_rollouts(self) -> int:
        return len(self.manifest["rollouts"])

    def write(
        self,
        ids: Sequence[str],
        rewards: Sequence[float],
        acts: dict[str, Sequence[Float[Tensor, "T d"]]],
        s0_index: Sequence[int] | None = None,
        metas: Sequence[dict] | None = None,
    ) -> None:
        """Write one shard holding the given rollouts (all of their states, for every hook)."""
        n = len(ids)
        if n == 0:
            return
        hooks = self.manifest["hook_names"]
        if set(acts) != set(hooks):
            missing, extra = set(hooks) - set(acts), set(acts) - set(hooks)
            raise StoreError(f"acts keys do not match the store's hook points: missing {sorted(missing)}, extra {sorted(extra)}.")
        rewards = _check_rewards(rewards)
        if len(rewards) != n:
            raise StoreError(f"{n} rollout ids but {len(rewards)} rewards: give one reward per rollout.")
        s0_index = list(s0_index) if s0_index is not None else [0] * n
        metas = list(metas) if metas is not None else [{} for _ in range(n)]
        if len(s0_index) != n or len(metas) != n:
            raise StoreError(f"{n} rollout ids but {len(s0_index)} s0 indices / {len(metas)} metas.")
        dup = [i for i in ids if i in self._ids]
        if dup or len(set(ids)) != n:
            raise StoreError(f"rollout ids already in the store or repeated: {dup[:5] or list(ids)[:5]}; ids must be unique.")
        acts = {h: [_as_tensor(a, h, ids[i] if i < n else i) for i, a in enumerate(v)] for h, v in acts.items()}
        lengths = None
        for hook in hooks:
            seqs = acts[hook]
            if len(seqs) != n:
                raise StoreError(f"hook {hook!r}: {len(seqs)} activation sequences for {n} rollout ids.")
            ls = [int(a.shape[0]) for a in seqs]
            if lengths is None:
                lengths = ls
            elif ls != lengths:
                raise StoreError(f"hook {hook!r}: sequence lengths {ls[:8]} differ from {lengths[:8]} of {hooks[0]!r}.")
            for i, a in enumerate(seqs):
                if a.ndim != 2:
                    raise StoreError(f"hook {hook!r}, rollout {ids[i]!r}: expected [T, d] activations, got shape {tuple(a.shape)}.")
                if a.shape[0] == 0:
                    raise StoreError(f"rollout {ids[i]!r} has 0 states: every rollout needs at least s_0 (the prompt's last token).")
                d = self.manifest["d"].setdefault(hook, int(a.shape[1]))
                if a.shape[1] != d:
                    raise StoreError(f"hook {hook!r}: width {a.shape[1]} but the store holds width {d}.")
        for i, (s0, length) in enumerate(zip(s0_index, lengths)):
            if not 0 <= s0 < length:
                raise StoreError(f"rollout {ids[i]!r}: s0_index {s0} outside its {length} states.")
        dtype = _DTYPES[self.manifest["dtype"]]
        tensors = {}
        for hook in hooks:
            cat = torch.cat([a.detach().to("cpu", torch.float32) for a in acts[hook]], dim=0)
            if not torch.isfinite(cat).all():
                raise StoreError(f"hook {hook!r}: activations contain NaN or inf; check the model's dtype (use float32) and inputs.")
            stored = cat.to(dtype).contiguous()
            if not torch.isfinite(stored).all():
                big = float(cat.abs().max())
                raise StoreError(
                    f"hook {hook!r}: activations up to {big:.4g} are beyond the range of {self.manifest['dtype']} "
                    f"(max {torch.finfo(dtype).max:.4g}) and would be stored as inf; store with dtype='float32' "
                    "(or 'bfloat16' for values up to 3e38)."
                )
            tensors[hook] = stored
        shard_idx = len(self.manifest["shards"])
        fname = f"shard_{shard_idx:05d}.safetensors"
        with atomic_path(self.path / fname) as tmp:
            save_file(tensors, str(tmp))
        offset = 0
        for i in range(n):
            self.manifest["rollouts"].append(
                {"id": str(ids[i]), "shard": shard_idx, "offset": offset, "length": lengths[i],
                 "s0_index": int(s0_index[i]), "reward": rewards[i], "meta": metas[i]}
            )
            offset += lengths[i]
        self.manifest["shards"].append({"file": fname, "n_states": offset, "n_rollouts": n})
        self._ids.update(str(i) for i in ids)
        atomic_write_json(self.path / MANIFEST, self.manifest)

    def close(self) -> "ActivationStore":
        """Mark the store complete and open it for reading."""
        self.manifest["complete"] = True
        atomic_write_json(self.path / MANIFEST, self.manifest)
        return ActivationStore(self.path)


class ActivationStore:
    """Read-only, memory-mapped view of a store directory.

    >>> store = ActivationStore("runs/default/store")
    >>> store.initial_states("blocks.5.hook_resid_post").shape   # [n_rollouts, d_model]
    >>> for batch in store.iter_batches(["blocks.5.hook_resid_post"], batch_states=8192): ...
    """
    __repr__ = store_repr  # ActivationStore('…/store', model=…, 400 rollouts, …, hooks=[…], dtype=float16)

    def __init__(self, path: str | os.PathLike, *, allow_incomplete: bool = False):
        self.path = Path(path)
        self.manifest = read_manifest(self.path)
        self.complete = bool(self.manifest.get("complete", False))
        if not self.complete and not allow_incomplete:
            raise IncompleteStoreError(
                f"the activation store at {self.path} is incomplete: its writer stopped after "
                f"{len(self.manifest['rollouts'])} rollouts ({len(self.manifest['shards'])} shards) without "
                "finishing (killed, crashed, or still running), so analyses would silently see only part of the "
                "data. Fix: re-run the command that writes it with the same output directory (`reward-circuits "
                "run --out ...`, `build_store(...)` or `write_store_from_arrays(...)`), which resumes where it "
                "stopped; or open it with `ActivationStore(path, allow_incomplete=True)` to read the partial data "
                "on purpose."
            )
        missing = [s["file"] for s in self.manifest["shards"] if not (self.path / s["file"]).is_file()]
        if missing:
            raise StoreError(
                f"the activation store at {self.path} names shard files that are missing: {missing[:3]} "
                f"({len(missing)} in all). Copy the whole directory, or delete it and rebuild the store."
            )
        self.records = [RolloutRecord(**r) for r in self.manifest["rollouts"]]
        self._handles: dict[int, object] = {}

    # ---- metadata -------------------------------------------------------------------------
    @property
    def hook_names(self) -> list[str]:
        return list(self.manifest["hook_names"])

    @property
    def model(self) -> str:
        return self.manifest["model"]

    @property
    def meta(self) -> dict:
        return self.manifest.get("meta", {})

    def d(self, hook: str) -> int:
        self._check_hook(hook)
        return int(self.manifest["d"][hook])

    def __len__(self) -> int:
        return len(self.records)

    @property
    def rollout_ids(self) -> list[str]:
        return [r.id for r in self.records]

    @property
    def rewards(self) -> np.ndarray:
        return np.array([r.reward for r in self.records], dtype=np.float32)

    @property
    def n_states(self) -> int:
        return sum(r.length for r in self.records)

    def nbytes(self) -> int:
        return sum((self.path / s["file"]).stat().st_size for s in self.manifest["shards"])

    def index_of(self, ids: Sequence[str]) -> list[int]:
        """Store indices of the given rollout ids (raises on unknown ids)."""
        pos = {r.id: i for i, r in enumerate(self.records)}
        missing = [i for i in ids if i not in pos]
        if missing:
            raise StoreError(f"rollout ids not in this store: {missing[:5]} ({len(missing)} in all).")
        return [pos[i] for i in ids]

    def _check_hook(self, hook: str) -> None:
        if hook not in self.manifest["hook_names"]:
            raise KeyError(
                f"hook {hook!r} is not in the store at {self.path}; it holds "
                f"{self.manifest['hook_names']}. Rebuild the store with that hook point."
            )

    def _record(self, index) -> RolloutRecord:
        if isinstance(index, (bool, float)) or not 0 <= int(index) < len(self.records) or int(index) != index:
            raise IndexError(
                f"rollout index {index.item() if hasattr(index, 'item') else index!r} is out of range: the store at {self.path} holds {len(self.records)} rollouts, "
                f"indexed 0..{len(self.records) - 1}. Use store.index_of(ids) to find rollouts by id."
            )
        return self.records[int(index)]

    def _handle(self, shard: int):
        h = self._handles.get(shard)
        if h is None:
            h = safe_open(str(self.path / self.manifest["shards"][shard]["file"]), framework="pt")
            self._handles[shard] = h
        return h

    @property
    def storage_dtype(self) -> torch.dtype:
        """The dtype of the shards (reads in it skip a cast)."""
        return _DTYPES[self.manifest["dtype"]]

    # ---- reads ----------------------------------------------------------------------------
    def get(self, index: int, hook: str, *, from_s0: bool = True, dtype: torch.dtype = torch.float32) -> Float[Tensor, "T d"]:
        """States of one rollout (float32, or ``dtype``: the store's own skips a cast), from s_0 on by default."""
        self._check_hook(hook)
        r = self._record(index)
        start = r.offset + (r.s0_index if from_s0 else 0)
        return self._handle(r.shard).get_slice(hook)[start : r.offset + r.length].to(dtype)

    def initial_states(self, hook: str, indices: Sequence[int] | None = None) -> Float[Tensor, "n d"]:
        """s_0 (the prompt's last token) of each rollout: what the paper evaluates the value at."""
        self._check_hook(hook)
        idx = range(len(self)) if indices is None else indices
        rows = []
        for i in idx:
            r = self._record(i)
            row = r.offset + r.s0_index
            rows.append(self._handle(r.shard).get_slice(hook)[row : row + 1])
        if not rows:
            return torch.zeros(0, self.d(hook))
        return torch.cat(rows).to(torch.float32)

    def iter_batches(
        self,
        hooks: Sequence[str] | str,
        *,
        batch_states: int = 8192,
        indices: Sequence[int] | None = None,
        include_prompt: bool = False,
        shuffle_seed: int | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> Iterator[StateBatch]:
        """Stream whole rollouts in batches of about ``batch_states`` states.

        ``indices`` restricts to some rollouts (e.g. a train split); ``shuffle_seed`` shuffles
        the rollout order (for SGD); ``include_prompt`` also yields prompt states before s_0.
        """
        hooks = [hooks] if isinstance(hooks, str) else list(hooks)
        for h in hooks:
            self._check_hook(h)
        if not batch_states > 0:
            raise StoreError(f"batch_states must be > 0 (about that many states per batch), got {batch_states!r}.")
        idx = rollout_order(len(self), indices, shuffle_seed)
        for i in idx[(idx < 0) | (idx >= len(self))][:1]:
            self._record(i)  # raises, naming the valid range
        if shuffle_seed is None:
            # group by shard for sequential reads
            idx = idx[np.argsort([self.records[i].shard * 10**9 + self.records[i].offset for i in idx], kind="stable")]
        group: list[int] = []
        count = 0
        for i in idx:
            r = self.records[int(i)]
            group.append(int(i))
            count += r.length if include_prompt else r.n_steps
            if count >= batch_states:
                yield self._read_group(group, hooks, include_prompt, dtype)
                group, count = [], 0
        if group:
            yield self._read_group(group, hooks, include_prompt, dtype)

    def _read_group(self, group: list[int], hooks: list[str], include_prompt: bool, dtype) -> StateBatch:
        acts: dict[str, list[Tensor]] = {h: [] for h in hooks}
        rollout, step, is_last, reward = [], [], [], []
        for i in group:
            r = self.records[i]
            start = 0 if include_prompt else r.s0_index
            n = r.length - start
            for h in hooks:
                acts[h].append(self._handle(r.shard).get_slice(h)[r.offset + start : r.offset + r.length])
            rollout.append(torch.full((n,), i, dtype=torch.long))
            step.append(torch.arange(start, r.length, dtype=torch.long) - r.s0_index)
            last = torch.zeros(n, dtype=torch.bool)
            last[-1] = True
            is_last.append(last)
            reward.append(torch.full((n,), r.reward, dtype=torch.float32))
        return StateBatch(
            acts={h: torch.cat(v).to(dtype) for h, v in acts.items()},
            rollout=torch.cat(rollout),
            step=torch.cat(step),
            is_last=torch.cat(is_last),
            reward=torch.cat(reward),
        )

    def states(self, hook: str, indices: Sequence[int] | None = None) -> StateBatch:
        """All states from s_0 on of the chosen rollouts in one batch (for small stores)."""
        return next(self.iter_batches(hook, batch_states=math.inf, indices=indices))

    def split(self, test_fraction: float = 0.3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Stratified train/test split of rollout indices (both classes in both halves when possible)."""
        if not 0 < test_fraction < 1:
            raise StoreError(f"test_fraction must be in (0, 1), got {test_fraction}.")
        return stratified_split(np.arange(len(self)), self.rewards, test_fraction, seed)






@dataclass(kw_only=True)
class ArrayStoreOptions:
    """Settings of :func:`write_store_from_arrays`, passed as its keywords (or one ``options=``): the
    rollouts' ``ids`` (default ``r000000``...) and ``s0_index`` (default 0), the ``model`` name, the
    stored ``dtype``, ``rollouts_per_shard`` and extra manifest ``meta``."""

    ids: Sequence[str] | None = None
    s0_index: Sequence[int] | None = None
    model: str = "arrays"
    dtype: str = "float16"
    rollouts_per_shard: int = 256
    meta: dict | None = None


def write_store_from_arrays(
    path: str | os.PathLike,
    acts: dict[str, Sequence[Float[Tensor, "T d"]]],
    rewards: Sequence[float],
    **options,
) -> ActivationStore:
    """Build a store from in-memory per-rollout activations (your own, or planted test data).

    Into a directory a killed call left partly written, the same call resumes: the rollouts already
    stored are checked against the given ones (reward, s_0 index and every stored value, at the
    store's dtype) and only the rest are written, on the same shard grid, so the result equals an
    uninterrupted write. A directory holding other data is refused with a message naming the fix.
    ``options``: the fields of :class:`ArrayStoreOptions` (``ids``, ``s0_index``, ``model="arrays"``,
    ``dtype="float16"``, ``rollouts_per_shard=256``, ``meta``) as keywords, or ``options=``.
    """
    o = options_of(ArrayStoreOptions, (), options, where="write_store_from_arrays")
    ids, s0_index, rollouts_per_shard = o.ids, o.s0_index, o.rollouts_per_shard
    hooks = list(acts)
    if not hooks:
        raise StoreError("acts is empty: give {hook_name: [activations of each rollout, shape [T, d]]}.")
    if isinstance(rollouts_per_shard, bool) or not isinstance(rollouts_per_shard, int) or rollouts_per_shard < 1:
        raise StoreError(f"rollouts_per_shard must be a positive int, got {rollouts_per_shard!r}.")
    n = len(rewards)
    ids = [f"r{i:06d}" for i in range(n)] if ids is None else [str(i) for i in ids]
    if len(ids) != n:
        raise StoreError(f"{len(ids)} ids for {n} rewards: give one id per rollout.")
    s0 = list(s0_index) if s0_index is not None else [0] * n
    if len(s0) != n:
        raise StoreError(f"{len(s0)} s0 indices for {n} rewards: give one s0_index per rollout.")
    for h in hooks:
        if len(acts[h]) != n:
            raise StoreError(f"hook {h!r} has {len(acts[h])} activation sequences but there are {n} rewards: "
                             "give one sequence per rollout.")
    acts = {h: [_as_tensor(a, h, ids[i]) for i, a in enumerate(acts[h])] for h in hooks}
    writer = ActivationStoreWriter(path, hooks, model=o.model, dtype=o.dtype, meta=o.meta)
    if writer.n_rollouts:
        _check_resumable(writer, acts, rewards, ids, s0)
    for a in range(0, n, rollouts_per_shard):
        todo = [i for i in range(a, min(a + rollouts_per_shard, n)) if not writer.has(ids[i])]
        if todo:
            writer.write([ids[i] for i in todo], [rewards[i] for i in todo], {h: [acts[h][i] for i in todo] for h in hooks},
                         [s0[i] for i in todo])
    return writer.close()


def _check_resumable(writer: ActivationStoreWriter, acts, rewards, ids: list[str], s0: list[int]) -> None:
    """Refuse to resume ``writer``'s directory unless what it holds is a prefix of this very data."""
    where = {rid: i for i, rid in enumerate(ids)}
    stored = writer.manifest["rollouts"]
    fix = (f"use another directory, or delete {writer.path} to write this data from scratch "
           "(a partly written directory is resumed only by the same call that started it).")
    foreign = [r["id"] for r in stored if r["id"] not in where]
    if foreign:
        raise StoreError(f"{writer.path} already holds {len(stored)} rollouts, {len(foreign)} of them with ids not in "
                         f"this call (e.g. {foreign[:3]}): it holds other data. Fix: {fix}")
    dtype = _DTYPES[writer.manifest["dtype"]]
    handles: dict[int, object] = {}
    for r in stored:
        i = where[r["id"]]
        if float(rewards[i]) != r["reward"] or int(s0[i]) != r["s0_index"] or int(acts[writer.manifest["hook_names"][0]][i].shape[0]) != r["length"]:
            raise StoreError(f"{writer.path}: rollout {r['id']!r} is stored with another reward, s0_index or length "
                             f"than given now. Fix: {fix}")
        if r["shard"] not in handles:
            handles[r["shard"]] = safe_open(str(writer.path / writer.manifest["shards"][r["shard"]]["file"]), framework="pt")
        shard = handles[r["shard"]]
        for h in writer.manifest["hook_names"]:
            got = shard.get_slice(h)[r["offset"] : r["offset"] + r["length"]]
            want = acts[h][i].detach().to("cpu", torch.float32).to(dtype)
            if got.shape != want.shape or not torch.equal(got, want):
                raise StoreError(f"{writer.path}: the stored activations of rollout {r['id']!r} at {h!r} differ from "
                                 f"the ones given now. Fix: {fix}")
