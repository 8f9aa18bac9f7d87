"""Causal interventions on hidden dimensions: ablation, steering, patching, and their position scopes.

The primitives of §2.4 of "Sparse Reward Subsystem in LLMs" (arXiv 2602.00986) - zero-ablating the
top 1% value neurons collapses reasoning accuracy while 1% random neurons barely matter - and of its
open question on *amplifying* value neurons; the studies themselves are
:mod:`reward_circuits.analysis.causal` (:func:`~reward_circuits.analysis.causal.ablation_study`,
:func:`~reward_circuits.analysis.causal.steering_study`).

Hook functions
--------------
Every factory returns a TransformerLens hook function ``fn(activation, hook) -> activation``
(activation ``[batch, pos, d]``, ``hook.name`` the hook point's name). It is an ordinary callable,
so it works with

* a raw ``HookedTransformer``: ``model.run_with_hooks(x, fwd_hooks=[(name, fn), ...])`` and
  ``with model.hooks(fwd_hooks=...)``, next to the user's own hooks;
* both :class:`~reward_circuits.models.ModelAdapter` backends (``forward``, ``capture``,
  ``generate`` - the nnsight adapter calls the same function inside its trace).

Hooks never edit the activation in place (TransformerLens hands the *same* tensor to e.g.
``blocks.3.hook_resid_post`` and ``blocks.4.hook_resid_pre``, and a cache taken earlier would be
silently changed); they return a new tensor.

``neurons`` is a :class:`~reward_circuits.neurons.NeuronSet` (which knows its hook point: the hook
checks it runs there), a list / tensor of dimension indices (any hook point of the right width),
or ``None`` (every dimension).

Positions: prompt vs generated during KV-cached generation
----------------------------------------------------------
Every factory takes ``positions=`` and ``prompt_len=``, turned into a :class:`PositionScope`. The
rule is stated on the activation each forward pass hands the hook:

* a forward whose activation has ``pos > 1`` is a *full-sequence* forward: the prefill of a
  generation or a plain / teacher-forced forward. Without ``prompt_len`` all of its positions are
  the prompt. With ``prompt_len`` (an int, or one int per row: the number of leading columns of the
  padded input that belong to the prompt) columns ``< prompt_len`` are prompt and the rest are
  generated (teacher forcing of prompt + response);
* a forward whose activation has ``pos == 1`` is one KV-cached decoding step: its single position
  is a *generated* token.

``"prompt"`` and ``"generated"`` select accordingly, ``"all"`` selects everything. Both adapters
left-pad, so the prefill holds exactly the (padded) prompts and every later forward one new token
per row; the rule is the same on both backends (tested). Limitation: a one-token prompt's prefill
is indistinguishable from a decoding step and counts as generated.

:func:`teacher_forced_prompt` sets ``prompt_len`` for every scope that has none for the duration of
a ``with`` block (used by :func:`~reward_circuits.interventions.scoring.rollout_states` and
:func:`~reward_circuits.analysis.confidence.next_token_confidence`), so hooks built
for generation (``positions="generated"``) mean the same tokens under teacher forcing.

An explicit ``slice`` / index tensor / bool mask indexes the ``pos`` dimension of each forward's
activation as it is; indices beyond a forward's length select nothing there (so during cached
generation ``tensor([3])`` acts on the prefill only and ``slice(-1, None)`` on the last token of
every forward).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Literal, Mapping, Sequence, Union

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from ..models import HookFn, ModelAdapter
from ..neurons import NeuronSet


PositionSpec = Union[Literal["all", "prompt", "generated"], slice, Tensor, Sequence[int], "PositionScope"]
NeuronSpec = Union[NeuronSet, Sequence[int], Tensor, None]


# ---------------------------------------------------------------------------------------------
# Positions
# ---------------------------------------------------------------------------------------------

# prompt_len used by scopes without their own, set by ``teacher_forced_prompt`` (a module global,
# not a ContextVar: nnsight may run hook code on another thread).
_PROMPT_LEN_OVERRIDE: list[Tensor] = []


@contextmanager
def teacher_forced_prompt(prompt_len: int | Sequence[int] | Int[Tensor, " batch"]) -> Iterator[None]:
    """Inside the block, scopes built without ``prompt_len`` use this one (per row of the batch).

    ``prompt_len[i]`` is the number of leading columns of row ``i`` of the *padded* input that are
    prompt (with left padding: padding + prompt length). Not thread-safe; nests.
    """
    _PROMPT_LEN_OVERRIDE.append(torch.as_tensor(prompt_len, dtype=torch.long).reshape(-1))
    try:
        yield
    finally:
        _PROMPT_LEN_OVERRIDE.pop()


_EVERYWHERE = None  # PositionScope.select result: every position
_NOWHERE = "nowhere"  # PositionScope.select result: no position


@dataclass(frozen=True, eq=False)
class PositionScope:
    """Which token positions of a hook's activation an intervention edits (see module docstring).

    Attributes:
        which: ``"all"``, ``"prompt"``, ``"generated"``, or an explicit ``slice`` / int index
            tensor / bool mask over the activation's ``pos`` dimension.
        prompt_len: for full-sequence forwards: number of leading (padded) columns that are prompt;
            an int or ``Int[Tensor, "batch"]``. ``None``: a full-sequence forward is all prompt.
    """

    which: Any = "all"
    prompt_len: int | Tensor | None = None

    def __post_init__(self):
        w = self.which
        if isinstance(w, str):
            if w not in ("all", "prompt", "generated"):
                raise ValueError(f"positions must be 'all', 'prompt', 'generated', a slice or an index tensor; got {w!r}.")
        elif isinstance(w, (list, tuple, range, np.ndarray)):
            object.__setattr__(self, "which", torch.as_tensor(list(w) if isinstance(w, range) else w))
        elif not isinstance(w, (slice, Tensor)):
            raise TypeError(f"positions must be 'all', 'prompt', 'generated', a slice or an index tensor; got {type(w).__name__}.")
        if isinstance(self.which, Tensor) and self.which.dtype not in (torch.bool, torch.long, torch.int32, torch.int64):
            raise TypeError(f"a position tensor must hold ints or bools, got {self.which.dtype}.")

    @classmethod
    def of(cls, positions: PositionSpec, prompt_len: int | Tensor | None = None) -> "PositionScope":
        if isinstance(positions, PositionScope):
            if prompt_len is not None:
                return PositionScope(positions.which, prompt_len)
            return positions
        return cls(positions, prompt_len)

    def describe(self) -> str:
        if isinstance(self.which, str):
            return self.which if self.prompt_len is None else f"{self.which}(prompt_len={_short(self.prompt_len)})"
        return f"explicit({_short(self.which)})"

    def _prompt_len(self) -> Tensor | int | None:
        if self.prompt_len is not None:
            return self.prompt_len
        return _PROMPT_LEN_OVERRIDE[-1] if _PROMPT_LEN_OVERRIDE else None

    def select(self, batch: int, pos: int, device: torch.device) -> Bool[Tensor, "batch pos"] | None | str:
        """``None``: every position; ``"nowhere"``: none; else a ``[batch, pos]`` bool mask."""
        w = self.which
        if isinstance(w, str):
            if w == "all":
                return _EVERYWHERE
            decode_step = pos == 1
            if decode_step:
                return _EVERYWHERE if w == "generated" else _NOWHERE
            plen = self._prompt_len()
            if plen is None:  # prefill: all prompt
                return _EVERYWHERE if w == "prompt" else _NOWHERE
            plen_t = torch.as_tensor(plen, dtype=torch.long, device=device).reshape(-1)
            if plen_t.numel() not in (1, batch):
                raise ValueError(f"prompt_len has {plen_t.numel()} entries but the batch has {batch} rows.")
            is_prompt = torch.arange(pos, device=device)[None, :] < plen_t[:, None]  # [batch|1, pos]
            mask = is_prompt if w == "prompt" else ~is_prompt
            return mask.expand(batch, pos)
        # explicit positions: built on the CPU (no device sync), then moved
        if isinstance(w, slice):
            cols = torch.zeros(pos, dtype=torch.bool)
            cols[w] = True
        elif w.dtype == torch.bool:
            if w.shape[-1] != pos:
                return _NOWHERE  # a mask written for another length (e.g. a decoding step)
            if w.ndim == 2:
                return w.to(device).expand(batch, pos)
            cols = w.cpu()
        else:
            idx = w.cpu().reshape(-1)
            idx = idx[(idx >= -pos) & (idx < pos)]
            cols = torch.zeros(pos, dtype=torch.bool)
            cols[idx] = True
        if not bool(cols.any()):
            return _NOWHERE
        return cols.to(device)[None, :].expand(batch, pos)


def _short(x) -> str:
    if isinstance(x, Tensor):
        return f"tensor{tuple(x.shape)}" if x.numel() > 6 else str(x.tolist())
    return repr(x)


# ---------------------------------------------------------------------------------------------
# Hook functions
# ---------------------------------------------------------------------------------------------


class InterventionHook:
    """Base of every hook here: a TransformerLens hook function ``(activation, hook) -> activation``.

    Subclasses implement :meth:`edit`, which maps the selected dimensions ``[batch, pos, k]`` to
    their new values; this class selects dimensions and positions and writes the result into a
    *new* tensor. ``hook_name`` is the NeuronSet's hook point when one was given, else ``None``.
    """

    kind = "hook"

    def __init__(self, neurons: NeuronSpec = None, positions: PositionSpec = "all",
                 prompt_len: int | Tensor | None = None):
        self.hook_name: str | None = None
        self.width: int | None = None
        if isinstance(neurons, NeuronSet):
            self.hook_name, self.width = neurons.hook_name, neurons.d
            indices = torch.as_tensor(neurons.indices, dtype=torch.long)
        elif neurons is None:
            indices = None
        else:
            indices = torch.as_tensor(neurons if isinstance(neurons, Tensor) else list(neurons))
            if indices.dtype == torch.bool:
                self.width = int(indices.numel())
                indices = torch.nonzero(indices.reshape(-1)).reshape(-1)
            indices = indices.to(torch.long).reshape(-1)
            if indices.numel() and int(indices.min()) < 0:
                raise ValueError("neuron indices must be >= 0.")
            if indices.unique().numel() != indices.numel():
                raise ValueError("neuron indices contain duplicates.")
        self.indices: Int[Tensor, " k"] | None = indices
        self.scope = PositionScope.of(positions, prompt_len)
        self._on_device: dict = {}
        self._validated: set = set()

    # -- helpers --------------------------------------------------------------------------------
    def __repr__(self) -> str:  # cheap: TransformerLens calls repr() on every add_hook
        n = "all" if self.indices is None else len(self.indices)
        where = f" @ {self.hook_name}" if self.hook_name else ""
        return f"{type(self).__name__}({self._params()}dims={n}, positions={self.scope.describe()}){where}"

    def _params(self) -> str:
        return ""

    def _cached(self, key: str, tensor: Tensor, like: Tensor) -> Tensor:
        """``tensor`` on ``like``'s device (and float dtype, unless it is an index), memoised."""
        k = (key, like.device, like.dtype)
        out = self._on_device.get(k)
        if out is None:
            out = tensor.to(like.device) if not tensor.is_floating_point() else tensor.to(like.device, like.dtype)
            self._on_device[k] = out
        return out

    def _per_dim(self, key: str, what: str, vector: Tensor, idx, hook, activation: Tensor) -> Tensor:
        """A ``[d]`` vector (means, direction) checked against the hook's width, on its device,
        restricted to the selected dims ``idx`` (all when None)."""
        if vector.numel() != activation.shape[-1]:
            raise ValueError(f"{what}: {key} has {vector.numel()} entries but hook "
                             f"{getattr(hook, 'name', None)!r} has d={activation.shape[-1]}.")
        v = self._cached(key, vector, activation)
        return v if idx is None else v.index_select(0, idx)

    def _check(self, activation: Tensor, hook) -> None:
        name = getattr(hook, "name", None)
        key = (name, activation.shape[-1], activation.ndim)
        if key in self._validated:  # checked once per hook point: no per-forward device sync
            return
        if self.hook_name is not None and name is not None and name != self.hook_name:
            raise ValueError(f"{type(self).__name__} was built for NeuronSet at {self.hook_name!r} but runs at {name!r}; "
                             "register it at its own hook point (Intervention / as_fwd_hooks do).")
        d = activation.shape[-1]
        if self.width is not None and self.width != d:
            raise ValueError(f"{type(self).__name__}: neuron set of width {self.width} but hook {name!r} has d={d}.")
        if self.indices is not None and self.indices.numel() and int(self.indices.max()) >= d:
            raise ValueError(f"{type(self).__name__}: neuron index {int(self.indices.max())} outside [0, {d}) at hook {name!r}.")
        if activation.ndim != 3:
            raise ValueError(f"{type(self).__name__} expects activations [batch, pos, d]; hook {name!r} gave {tuple(activation.shape)}.")
        self._validated.add(key)

    # -- the hook -------------------------------------------------------------------------------
    def __call__(self, activation: Float[Tensor, "batch pos d"], hook) -> Float[Tensor, "batch pos d"]:
        self._check(activation, hook)
        batch, pos, _ = activation.shape
        where = self.scope.select(batch, pos, activation.device)
        if isinstance(where, str):  # nowhere
            return activation
        idx = None if self.indices is None else self._cached("indices", self.indices, activation)
        selected = activation if idx is None else activation.index_select(-1, idx)
        new = self.edit(selected, idx, hook, activation)
        if where is not None:
            new = torch.where(where[..., None], new, selected)
        if idx is None:
            return new
        return activation.index_copy(-1, idx, new.to(activation.dtype))

    def edit(self, selected: Float[Tensor, "batch pos k"], idx: Int[Tensor, " k"] | None, hook,
             activation: Float[Tensor, "batch pos d"]) -> Float[Tensor, "batch pos k"]:
        raise NotImplementedError


class _Zero(InterventionHook):
    kind = "zero"

    def edit(self, selected, idx, hook, activation):
        return torch.zeros_like(selected)


class _Mean(InterventionHook):
    kind = "mean"

    def __init__(self, neurons, means: Float[Tensor, " d"], positions="all", prompt_len=None):
        super().__init__(neurons, positions, prompt_len)
        self.means = torch.as_tensor(means).detach().reshape(-1)
        if self.width is not None and self.means.numel() != self.width:
            raise ValueError(f"means has {self.means.numel()} entries but the neuron set has width {self.width}.")

    def edit(self, selected, idx, hook, activation):
        return self._per_dim("means", "mean_ablate", self.means, idx, hook, activation).expand_as(selected).clone()


class _Resample(InterventionHook):
    kind = "resample"

    def __init__(self, neurons, source: Float[Tensor, "n d"], seed: int = 0, positions="all", prompt_len=None):
        super().__init__(neurons, positions, prompt_len)
        self.source = torch.as_tensor(source).detach()
        if self.source.ndim != 2 or self.source.shape[0] == 0:
            raise ValueError(f"resample_ablate: source must be [n >= 1, d], got {tuple(self.source.shape)}.")
        self.seed = int(seed)
        self._gen = torch.Generator().manual_seed(self.seed)

    def _params(self) -> str:
        return f"n_source={self.source.shape[0]}, seed={self.seed}, "

    def edit(self, selected, idx, hook, activation):
        if self.source.shape[1] != activation.shape[-1]:
            raise ValueError(f"resample_ablate: source has d={self.source.shape[1]} but hook "
                             f"{getattr(hook, 'name', None)!r} has d={activation.shape[-1]}.")
        b, p = selected.shape[:2]
        # one source row per (batch, position), drawn on the CPU generator: same draws on every backend
        rows = torch.randint(0, self.source.shape[0], (b * p,), generator=self._gen)
        src = self._cached("source", self.source, activation)
        src = src if idx is None else src.index_select(1, idx)
        return src.index_select(0, rows.to(src.device)).reshape(b, p, -1)


class _Scale(InterventionHook):
    kind = "scale"

    def __init__(self, neurons, factor: float, positions="all", prompt_len=None):
        super().__init__(neurons, positions, prompt_len)
        self.factor = float(factor)

    def _params(self) -> str:
        return f"factor={self.factor:g}, "

    def edit(self, selected, idx, hook, activation):
        return selected * self.factor


class _AddDirection(InterventionHook):
    kind = "add_direction"

    def __init__(self, vector: Float[Tensor, " d"], alpha: float, neurons=None, positions="all", prompt_len=None):
        super().__init__(neurons, positions, prompt_len)
        self.vector = torch.as_tensor(vector).detach().reshape(-1)
        self.alpha = float(alpha)

    def _params(self) -> str:
        return f"alpha={self.alpha:g}, "

    def edit(self, selected, idx, hook, activation):
        return selected + self.alpha * self._per_dim("vector", "add_direction", self.vector, idx, hook, activation)


class _Patch(InterventionHook):
    kind = "patch"

    def __init__(self, cache: Mapping[str, Float[Tensor, "batch pos d"]], neurons=None, positions="all", prompt_len=None):
        super().__init__(neurons, positions, prompt_len)
        if not isinstance(cache, Mapping) or not cache:
            raise ValueError("patch_from needs a non-empty dict {hook_name: activation [batch, pos, d]}.")
        self.cache = {k: torch.as_tensor(v).detach() for k, v in cache.items()}

    def _params(self) -> str:
        return f"hooks={len(self.cache)}, "

    def edit(self, selected, idx, hook, activation):
        name = getattr(hook, "name", None)
        if name not in self.cache:
            raise KeyError(f"patch_from: no cached activation for hook {name!r}; the cache holds {sorted(self.cache)}.")
        clean = self.cache[name]
        if tuple(clean.shape) != tuple(activation.shape):
            raise ValueError(
                f"patch_from: cached activation for {name!r} has shape {tuple(clean.shape)} but this run's has "
                f"{tuple(activation.shape)}. Positions are aligned one to one: run inputs of the same batch size "
                "and padded length as the clean run (during cached generation patch only positions='prompt')."
            )
        clean = self._cached(f"cache:{name}", clean, activation)
        return clean.clone() if idx is None else clean.index_select(-1, idx)


def zero_ablate(neurons: NeuronSpec = None, *, positions: PositionSpec = "all",
                prompt_len: int | Tensor | None = None) -> InterventionHook:
    """Set the ``neurons`` dimensions to 0 at the selected positions."""
    return _Zero(neurons, positions, prompt_len)


def mean_ablate(neurons: NeuronSpec, means: Float[Tensor, " d"], *, positions: PositionSpec = "all",
                prompt_len: int | Tensor | None = None) -> InterventionHook:
    """Replace the ``neurons`` dimensions by ``means[dim]`` (``means``: the full-width ``[d]`` mean,
    e.g. from :func:`activation_means`)."""
    return _Mean(neurons, means, positions, prompt_len)


def resample_ablate(neurons: NeuronSpec, source: Float[Tensor, "n d"], seed: int = 0, *,
                    positions: PositionSpec = "all", prompt_len: int | Tensor | None = None) -> InterventionHook:
    """Replace the ``neurons`` dimensions at each (row, position) by those of a row of ``source``
    (activations of the same hook on other inputs, ``[n, d]``) drawn uniformly with a seeded CPU
    generator. The generator advances with every call: a fresh hook replays the same draws."""
    return _Resample(neurons, source, seed, positions, prompt_len)


def scale(neurons: NeuronSpec, factor: float, *, positions: PositionSpec = "all",
          prompt_len: int | Tensor | None = None) -> InterventionHook:
    """Multiply the ``neurons`` dimensions by ``factor`` (0 = zero-ablation, 1 = identity, >1 amplifies)."""
    return _Scale(neurons, factor, positions, prompt_len)


def add_direction(vector: Float[Tensor, " d"], alpha: float = 1.0, *, neurons: NeuronSpec = None,
                  positions: PositionSpec = "all", prompt_len: int | Tensor | None = None) -> InterventionHook:
    """Add ``alpha · vector`` (full width ``[d]``; restricted to ``neurons`` if given) - activation steering."""
    return _AddDirection(vector, alpha, neurons, positions, prompt_len)


def patch_from(cache: Mapping[str, Float[Tensor, "batch pos d"]], *, neurons: NeuronSpec = None,
               positions: PositionSpec = "all", prompt_len: int | Tensor | None = None) -> InterventionHook:
    """Activation patching: write ``cache[hook.name]`` (e.g. from ``adapter.capture`` on a clean
    input) into the run, position by position. Shapes must match exactly (clear error otherwise).
    One hook serves every hook point in the cache: see :func:`patch_interventions`."""
    return _Patch(cache, neurons, positions, prompt_len)


# ---------------------------------------------------------------------------------------------
# Interventions: (hook_name, hook_fn)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Intervention:
    """A hook function at a hook point. Unpacks like a ``(name, fn)`` pair, so a list of
    interventions can be passed straight to ``model.run_with_hooks(fwd_hooks=...)``."""

    hook_name: str
    hook_fn: HookFn

    def __iter__(self) -> Iterator:
        yield self.hook_name
        yield self.hook_fn

    @classmethod
    def of(cls, hook_fn: HookFn, hook_name: str | None = None) -> "Intervention":
        """Pair ``hook_fn`` with ``hook_name``, or with the hook point its NeuronSet carries."""
        name = hook_name or getattr(hook_fn, "hook_name", None)
        if name is None:
            raise ValueError(f"{hook_fn!r} does not know its hook point: pass hook_name=.")
        return cls(name, hook_fn)


InterventionLike = Union[Intervention, tuple, InterventionHook]


def as_fwd_hooks(interventions: Iterable[InterventionLike] | InterventionLike | None) -> list[tuple[str, HookFn]]:
    """``[(hook_name, fn), ...]`` for ``run_with_hooks`` / ``model.hooks`` / adapter ``fwd_hooks``.

    Accepts :class:`Intervention` objects, ``(name, fn)`` pairs and hooks built from a NeuronSet.
    """
    if interventions is None:
        return []
    if isinstance(interventions, (Intervention, InterventionHook)) or (
            isinstance(interventions, tuple) and len(interventions) == 2 and isinstance(interventions[0], str)):
        interventions = [interventions]
    out: list[tuple[str, HookFn]] = []
    for item in interventions:
        if isinstance(item, Intervention):
            out.append((item.hook_name, item.hook_fn))
        elif isinstance(item, InterventionHook):
            out.append(tuple(Intervention.of(item)))
        elif isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str) and callable(item[1]):
            out.append((item[0], item[1]))
        elif isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str):
            raise TypeError(f"the hook fn for {item[0]!r} is {type(item[1]).__name__} ({item[1]!r:.40}), not callable: "
                            "give a function fn(activation, hook) returning the new activation or None.")
        else:
            raise TypeError(f"cannot use {item!r} as a forward hook: give an Intervention, a (hook_name, fn) pair, "
                            "or a hook built from a NeuronSet.")
    return out


def ablation_interventions(neuron_sets: NeuronSet | Iterable[NeuronSet], mode: Literal["zero", "mean"] = "zero",
                           means: Mapping[str, Tensor] | None = None, positions: PositionSpec = "all",
                           prompt_len=None) -> list[Intervention]:
    """One zero- or mean-ablation per NeuronSet (``means[hook_name]`` for mean mode)."""
    sets = [neuron_sets] if isinstance(neuron_sets, NeuronSet) else list(neuron_sets)
    out = []
    for ns in sets:
        if mode == "zero":
            fn = zero_ablate(ns, positions=positions, prompt_len=prompt_len)
        elif mode == "mean":
            if means is None or ns.hook_name not in means:
                raise ValueError(f"mean ablation needs means[{ns.hook_name!r}] (see activation_means).")
            fn = mean_ablate(ns, means[ns.hook_name], positions=positions, prompt_len=prompt_len)
        else:
            raise ValueError(f"mode must be 'zero' or 'mean', got {mode!r}.")
        out.append(Intervention(ns.hook_name, fn))
    return out


def patch_interventions(cache: Mapping[str, Tensor], **kwargs) -> list[Intervention]:
    """One :func:`patch_from` intervention per hook point of ``cache``."""
    fn = patch_from(cache, **kwargs)
    return [Intervention(name, fn) for name in cache]


class _InterventionView:
    """An adapter whose ``forward`` / ``capture`` / ``generate`` add fixed hooks (for nnsight,
    which has no persistent hook registration)."""

    def __init__(self, adapter: ModelAdapter, fwd_hooks: list[tuple[str, HookFn]]):
        self._adapter, self._hooks = adapter, fwd_hooks

    def __getattr__(self, name):
        return getattr(self._adapter, name)

    def forward(self, batch, fwd_hooks=()):
        return self._adapter.forward(batch, self._hooks + list(fwd_hooks))

    def capture(self, batch, hook_names, fwd_hooks=()):
        return self._adapter.capture(batch, hook_names, self._hooks + list(fwd_hooks))

    def generate(self, prompts, config=None, fwd_hooks=(), **overrides):
        return self._adapter.generate(prompts, config, self._hooks + list(fwd_hooks), **overrides)


@contextmanager
def intervene(target, interventions: Iterable[InterventionLike] | InterventionLike):
    """Run ``target`` under ``interventions`` inside the block; hooks are removed on exit, also when
    an exception escapes.

    * raw ``HookedTransformer``: ``with model.hooks(...)``; yields the model (so ``model(...)``,
      ``run_with_hooks`` with more hooks, ``run_with_cache`` all see the interventions);
    * TransformerLens adapter: the same on ``adapter.model``; yields the adapter;
    * nnsight adapter: yields a view of the adapter whose ``forward`` / ``capture`` / ``generate``
      add the hooks (nnsight has no persistent hooks: use the yielded object).
    """
    hooks = as_fwd_hooks(interventions)
    if isinstance(target, ModelAdapter):
        if hooks:
            target.validate_hooks([n for n, _ in hooks])
        model = getattr(target, "model", None) if target.backend == "transformer_lens" else None
        if model is not None:
            with model.hooks(fwd_hooks=hooks):
                yield target
        else:
            yield _InterventionView(target, hooks)
        return
    if hasattr(target, "hooks") and hasattr(target, "hook_dict"):
        unknown = [n for n, _ in hooks if n not in target.hook_dict]
        if unknown:
            raise KeyError(f"unknown hook point(s) {unknown}.")
        with target.hooks(fwd_hooks=hooks):
            yield target
        return
    raise TypeError(f"intervene() needs a HookedTransformer or a ModelAdapter, got {type(target).__name__}; "
                    "wrap an nnsight LanguageModel with reward_circuits.model.NNsightAdapter.")


