"""Causal interventions on hidden dimensions: ablation, steering, patching, and the studies of §2.4.

Reproduces §2.4 of "Sparse Reward Subsystem in LLMs" (arXiv 2602.00986) - zero-ablating the top 1%
value neurons collapses reasoning accuracy while 1% random neurons barely matter - and answers its
open question on *amplifying* value neurons (:func:`steering_study`).

Hook functions
--------------
Every factory returns a TransformerLens hook function ``fn(activation, hook) -> activation``
(activation ``[batch, pos, d]``, ``hook.name`` the hook point's name). It is an ordinary callable,
so it works with

* a raw ``HookedTransformer``: ``model.run_with_hooks(x, fwd_hooks=[(name, fn), ...])`` and
  ``with model.hooks(fwd_hooks=...)``, next to the user's own hooks;
* both :class:`~reward_circuits.model.ModelAdapter` backends (``forward``, ``capture``,
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
a ``with`` block (used by :func:`td_trace_under` and :func:`next_token_confidence`), so hooks built
for generation (``positions="generated"``) mean the same tokens under teacher forcing.

An explicit ``slice`` / index tensor / bool mask indexes the ``pos`` dimension of each forward's
activation as it is; indices beyond a forward's length select nothing there (so during cached
generation ``tensor([3])`` acts on the prefill only and ``slice(-1, None)`` on the last token of
every forward).
"""

from __future__ import annotations

import math
import re
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Literal, Mapping, Sequence, Union

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from .io import nan_to_none
from .model import Generation, GenerationConfig, HookFn, ModelAdapter, TokenBatch, layer_of
from .neurons import NeuronSet

PositionSpec = Union[Literal["all", "prompt", "generated"], slice, Tensor, Sequence[int], "PositionScope"]
NeuronSpec = Union[NeuronSet, Sequence[int], Tensor, None]

VERBALIZED_CONFIDENCE_PROMPT = (
    "How confident are you that this answer is correct? Reply with a number between 0 and 1."
)

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


# ---------------------------------------------------------------------------------------------
# Generation under intervention
# ---------------------------------------------------------------------------------------------


@dataclass
class ScoredRun:
    accuracy: float
    rewards: list[float]
    generations: list[Generation]

    def __iter__(self):  # (accuracy, rewards, generations) = generate_and_score(...)
        return iter((self.accuracy, self.rewards, self.generations))


def _examples_of(task, examples) -> list:
    ex = list(task.examples if examples is None else examples)
    if not ex:
        raise ValueError("no examples to evaluate.")
    return ex


def generate_and_score(adapter: ModelAdapter, task, examples=None, fwd_hooks: Iterable[InterventionLike] | None = (),
                       config: GenerationConfig | None = None) -> ScoredRun:
    """Generate an answer for every example (``task.render`` prompts, batched, progress bar) with
    ``fwd_hooks`` active on every forward, and score it with ``task.reward``.

    Returns ``(accuracy, rewards, generations)`` (a :class:`ScoredRun`, which unpacks).
    """
    examples = _examples_of(task, examples)
    config = config or GenerationConfig(max_new_tokens=getattr(task, "max_new_tokens", 64))
    prompts = [task.render(ex, adapter.tokenizer) for ex in examples]
    gens = adapter.generate(prompts, config, fwd_hooks=as_fwd_hooks(fwd_hooks))
    rewards = [float(task.reward(g.text, ex)) for g, ex in zip(gens, examples)]
    return ScoredRun(float(np.mean(rewards)), rewards, gens)


def _prompt_seqs(adapter: ModelAdapter, task, examples) -> list[list[int]]:
    return [adapter.tokenizer(task.render(ex, adapter.tokenizer), add_special_tokens=False)["input_ids"]
            for ex in examples]


@torch.no_grad()
def activation_means(adapter: ModelAdapter, prompts: Sequence[str] | Sequence[Sequence[int]], hooks: Sequence[str],
                     batch_size: int = 16) -> dict[str, Float[Tensor, " d"]]:
    """Mean activation ``[d]`` of each hook over every non-padding token of ``prompts`` (for
    :func:`mean_ablate`)."""
    seqs = [adapter.tokenizer(p, add_special_tokens=False)["input_ids"] if isinstance(p, str) else list(p) for p in prompts]
    sums: dict[str, Tensor] = {}
    count = 0
    for start in range(0, len(seqs), batch_size):
        batch = adapter.pad(seqs[start:start + batch_size], "left")
        acts = adapter.capture(batch, list(hooks))
        m = batch.attention_mask.bool()
        for h, a in acts.items():
            s = a[m].double().sum(0)
            sums[h] = s if h not in sums else sums[h] + s
        count += int(m.sum())
    return {h: (s / count).float() for h, s in sums.items()}


# ---------------------------------------------------------------------------------------------
# Studies
# ---------------------------------------------------------------------------------------------


def _draw_seed(seed: int, *parts: int) -> int:
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, *[int(p) & 0xFFFFFFFF for p in parts]]).generate_state(1)[0])


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample std (ddof=1; 0.0 for a single value, NaN for none)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return math.nan, math.nan
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def ablation_study(adapter: ModelAdapter, task, examples, neuron_sets: Mapping[Any, NeuronSet], n_random_draws: int = 3,
                   seed: int = 0, mode: Literal["zero", "mean"] = "zero", means: Mapping[str, Tensor] | None = None,
                   config: GenerationConfig | None = None, baseline: ScoredRun | None = None,
                   positions: PositionSpec = "all") -> dict[str, dict]:
    """Accuracy with each layer's value neurons ablated vs ``n_random_draws`` random sets of the same
    size (drawn with seeds derived from ``seed``, layer and draw, excluding the value neurons).

    The baseline (no intervention) is generated once (or taken from ``baseline``). ``mode="mean"``
    needs ``means[hook_name]`` (computed over the examples' prompts with :func:`activation_means`
    when ``means`` is None). Returns, per layer key (``str(layer)``): ``baseline_acc``,
    ``value_acc``, ``random_acc_mean``, ``random_acc_std`` (sample std over draws), ``random_accs``,
    ``n_neurons``, ``hook_name``, ``mode``, ``random_seeds``.
    """
    examples = _examples_of(task, examples)
    if n_random_draws < 0:
        raise ValueError("n_random_draws must be >= 0.")
    if mode == "mean" and means is None:
        means = activation_means(adapter, _prompt_seqs(adapter, task, examples),
                                 sorted({ns.hook_name for ns in neuron_sets.values()}))
    if baseline is None:
        baseline = generate_and_score(adapter, task, examples, (), config)
    out: dict[str, dict] = {}
    bar = tqdm(list(neuron_sets.items()), desc=f"ablation ({mode})", leave=False,
               disable=not (config.progress if config else True))
    for layer, ns in bar:
        value = generate_and_score(adapter, task, examples, ablation_interventions(ns, mode, means, positions), config)
        lay = layer_of(ns.hook_name) if ns.layer is None else ns.layer
        seeds = [_draw_seed(seed, -1 if lay is None else lay, draw) for draw in range(n_random_draws)]
        random_accs = []
        for s in seeds:
            rnd = NeuronSet.random(ns.hook_name, ns.d, len(ns), seed=s, layer=ns.layer, exclude=ns.indices)
            random_accs.append(generate_and_score(adapter, task, examples,
                                                  ablation_interventions(rnd, mode, means, positions), config).accuracy)
        mean, std = _mean_std(random_accs)
        out[str(layer)] = {
            "hook_name": ns.hook_name, "mode": mode, "n_neurons": len(ns), "d": ns.d,
            "baseline_acc": baseline.accuracy, "value_acc": value.accuracy,
            "random_acc_mean": mean, "random_acc_std": std, "random_accs": random_accs, "random_seeds": seeds,
            "n_examples": len(examples),
        }
    return out


def dose_response(adapter: ModelAdapter, task, examples, scores: Float[Tensor, " d"], hook: str,
                  fractions: Sequence[float] = (0.005, 0.01, 0.02, 0.05, 0.1), modes: Sequence[str] = ("zero", "mean"),
                  n_random_draws: int = 3, seed: int = 0, means: Mapping[str, Tensor] | None = None,
                  config: GenerationConfig | None = None, baseline: ScoredRun | None = None,
                  positions: PositionSpec = "all") -> dict:
    """Accuracy as the top-``fraction`` dimensions of ``hook`` by ``scores`` (higher = more
    value-like; ``-inf`` never chosen) are ablated, for each mode, vs random sets of the same size.

    ``k = max(1, round(fraction · d))``. Returns ``{hook, fractions, n_neurons, baseline_acc,
    curves: {mode: {value_acc: [...], random_acc_mean: [...], random_acc_std: [...]}}}`` (lists
    aligned with ``fractions``; fractions needing more ranked dims than exist are dropped, noted).
    """
    examples = _examples_of(task, examples)
    scores = torch.as_tensor(scores, dtype=torch.float64).reshape(-1)
    d = int(scores.numel())
    n_ranked = int(torch.isfinite(scores).sum())
    order = torch.argsort(torch.nan_to_num(scores, nan=-math.inf, posinf=math.inf), descending=True, stable=True)
    kept, ks, notes = [], [], []
    for f in fractions:
        k = max(1, int(round(float(f) * d)))
        if k > n_ranked:
            notes.append(f"fraction {f} needs {k} ranked dims but only {n_ranked} have a score; skipped.")
            continue
        if k in ks:
            notes.append(f"fraction {f} gives the same {k} dims as fraction {kept[ks.index(k)]}; skipped.")
            continue
        kept.append(float(f))
        ks.append(k)
    if "mean" in modes and means is None:
        means = activation_means(adapter, _prompt_seqs(adapter, task, examples), [hook])
    if baseline is None:
        baseline = generate_and_score(adapter, task, examples, (), config)
    curves = {}
    lay = layer_of(hook)
    todo = [(m, i) for m in modes for i in range(len(ks))]
    bar = tqdm(todo, desc="dose-response", leave=False, disable=not (config.progress if config else True))
    results: dict[tuple[str, int], tuple[float, list[float]]] = {}
    for mode, i in bar:
        k = ks[i]
        top = NeuronSet(hook, order[:k].tolist(), d, kind="value", layer=lay, provenance={"fraction": kept[i]})
        v = generate_and_score(adapter, task, examples, ablation_interventions(top, mode, means, positions), config).accuracy
        r = []
        for draw in range(n_random_draws):
            rnd = NeuronSet.random(hook, d, k, seed=_draw_seed(seed, k, draw), layer=lay, exclude=top.indices)
            r.append(generate_and_score(adapter, task, examples, ablation_interventions(rnd, mode, means, positions), config).accuracy)
        results[(mode, i)] = (v, r)
    for mode in modes:
        stats = [_mean_std(results[(mode, i)][1]) for i in range(len(ks))]
        curves[mode] = {
            "value_acc": [results[(mode, i)][0] for i in range(len(ks))],
            "random_acc_mean": [s[0] for s in stats], "random_acc_std": [s[1] for s in stats],
            "random_accs": [results[(mode, i)][1] for i in range(len(ks))],
        }
    return {"hook": hook, "d": d, "fractions": kept, "n_neurons": ks, "baseline_acc": baseline.accuracy,
            "n_random_draws": n_random_draws, "curves": curves, "notes": notes, "n_examples": len(examples)}


def _resolve_probe_hook(probe, probe_hook: str | None, fallback: str | None) -> str:
    if probe_hook is not None:
        return probe_hook
    names = list(getattr(probe, "hook_names", []) or [])
    if fallback is not None and fallback in names:
        return fallback
    if len(names) == 1:
        return names[0]
    raise ValueError(f"say which of the probe's hooks to read: probe_hook= one of {names}.")


@torch.no_grad()
def initial_values(adapter: ModelAdapter, probe, probe_hook: str, prompt_seqs: Sequence[Sequence[int]],
                   fwd_hooks: Iterable[InterventionLike] | None = (), batch_size: int = 16) -> Float[np.ndarray, " n"]:
    """The probe's ``V(s_0)`` (state at each prompt's last token) with ``fwd_hooks`` active during
    the prompt's forward. The capture sees the activation *after* the hooks, also when they edit
    ``probe_hook`` itself."""
    hooks = as_fwd_hooks(fwd_hooks)
    out = []
    for start in range(0, len(prompt_seqs), batch_size):
        batch = adapter.pad(prompt_seqs[start:start + batch_size], "left")
        acts = adapter.capture(batch, [probe_hook], fwd_hooks=hooks)[probe_hook]
        out.append(probe.predict_value(acts[:, -1].float(), hook=probe_hook).reshape(-1).cpu().numpy())
    return np.concatenate(out).astype(np.float64)


def steering_study(adapter: ModelAdapter, task, examples, neurons: NeuronSet,
                   factors: Sequence[float] = (0, 0.5, 1.5, 2, 4), probe=None, probe_hook: str | None = None,
                   config: GenerationConfig | None = None, baseline: ScoredRun | None = None,
                   positions: PositionSpec = "all") -> dict:
    """Scale the ``neurons`` by each factor throughout generation: accuracy and the mean change of
    the probe's ``V(s_0)`` against no intervention (``mean_value_shift``; NaN without a probe).

    Factor 1 is the identity, so its entry is the baseline (not regenerated). Returns
    ``{hook_name, n_neurons, baseline_acc, baseline_value, factors: {str(factor): {factor,
    accuracy, mean_value, mean_value_shift}}}``.
    """
    examples = _examples_of(task, examples)
    if baseline is None:
        baseline = generate_and_score(adapter, task, examples, (), config)
    seqs = _prompt_seqs(adapter, task, examples)
    if probe is not None:
        probe_hook = _resolve_probe_hook(probe, probe_hook, neurons.hook_name)
        v0 = initial_values(adapter, probe, probe_hook, seqs)
    out = {}
    for f in tqdm(list(factors), desc="steering", leave=False, disable=not (config.progress if config else True)):
        hooks = [Intervention(neurons.hook_name, scale(neurons, f, positions=positions))]
        acc = baseline.accuracy if float(f) == 1.0 else generate_and_score(adapter, task, examples, hooks, config).accuracy
        entry = {"factor": float(f), "accuracy": acc, "mean_value": math.nan, "mean_value_shift": math.nan}
        if probe is not None:
            v = v0 if float(f) == 1.0 else initial_values(adapter, probe, probe_hook, seqs, hooks)
            entry["mean_value"] = float(v.mean())
            entry["mean_value_shift"] = float((v - v0).mean())
        out[f"{float(f):g}"] = entry
    return {"hook_name": neurons.hook_name, "n_neurons": len(neurons), "probe_hook": probe_hook,
            "baseline_acc": baseline.accuracy, "baseline_value": float(v0.mean()) if probe is not None else math.nan,
            "positions": PositionScope.of(positions).describe(), "factors": out, "n_examples": len(examples)}


# ---------------------------------------------------------------------------------------------
# Confidence: value neurons vs next-token probability vs verbalized confidence
# ---------------------------------------------------------------------------------------------


def _prompt_ends(batch: TokenBatch, prompt_lens: Sequence[int], total_lens: Sequence[int]) -> Int[Tensor, " batch"]:
    width = batch.input_ids.shape[1]
    return torch.as_tensor([width - t + p for p, t in zip(prompt_lens, total_lens)], dtype=torch.long)


def _teacher_forced_batches(adapter: ModelAdapter, pairs, batch_size: int):
    """Yield ``(start, chunk, batch, prompt_ends)`` for prompt+response pairs, left-padded ``batch_size`` at a time."""
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start:start + batch_size]
        seqs = [p + r for p, r in chunk]
        batch = adapter.pad(seqs, "left")
        yield start, chunk, batch, _prompt_ends(batch, [len(p) for p, _ in chunk], [len(s) for s in seqs])


def _rollout_pairs(rollouts) -> list[tuple[list[int], list[int]]]:
    pairs = []
    for r in rollouts:
        if isinstance(r, Generation):
            pairs.append((list(r.prompt_ids), list(r.response_ids)))
        else:
            p, resp = r
            pairs.append((list(map(int, p)), list(map(int, resp))))
        if not pairs[-1][0]:
            raise ValueError("a rollout has an empty prompt: s_0 (the prompt's last token) is undefined.")
    return pairs


@torch.no_grad()
def next_token_confidence(adapter: ModelAdapter, generations: Sequence[Generation] | Sequence[tuple],
                          fwd_hooks: Iterable[InterventionLike] | None = (), batch_size: int = 4) -> Float[np.ndarray, " n"]:
    """Mean probability the model gave each of its own response tokens (teacher-forced forward on
    prompt + response; NaN for an empty response). Small batches: full-vocab logits are large."""
    pairs = _rollout_pairs(generations)
    hooks = as_fwd_hooks(fwd_hooks)
    out = np.full(len(pairs), np.nan)
    for start, chunk, batch, ends in _teacher_forced_batches(adapter, pairs, batch_size):
        with teacher_forced_prompt(ends):
            logits = adapter.forward(batch, hooks)
        width = batch.input_ids.shape[1]
        for j, (p, r) in enumerate(chunk):
            if not r:
                continue
            first = int(ends[j])  # column of the first response token
            pred = logits[j, first - 1: width - 1].float().log_softmax(-1)
            tok = batch.input_ids[j, first:width].to(pred.device)
            out[start + j] = float(pred.gather(-1, tok[:, None]).exp().mean())
    return out


_NUMBER = re.compile(r"(?<![\w.])([-+]?(?:\d+(?:\.\d*)?|\.\d+))(\s*%)?")


def parse_confidence(text: str) -> float:
    """First number in ``text`` clipped to [0, 1] (``"85%"`` → 0.85); NaN when there is none."""
    m = _NUMBER.search(text or "")
    if not m:
        return math.nan
    try:
        x = float(m.group(1))
    except ValueError:
        return math.nan
    if m.group(2):
        x /= 100.0
    return float(min(1.0, max(0.0, x)))


def verbalized_confidence(adapter: ModelAdapter, task, examples, generations: Sequence[Generation],
                          config: GenerationConfig | None = None, question: str = VERBALIZED_CONFIDENCE_PROMPT
                          ) -> tuple[Float[np.ndarray, " n"], list[str]]:
    """Ask the model (chat: task prompt, its own answer, then ``question``) how confident it is.

    Returns (parsed confidences with NaN where unparseable, raw replies)."""
    examples = _examples_of(task, examples)
    if len(examples) != len(generations):
        raise ValueError(f"{len(examples)} examples but {len(generations)} generations.")
    prompts = []
    for ex, g in zip(examples, generations):
        msgs = list(task.format_prompt(ex)) + [{"role": "assistant", "content": g.text},
                                               {"role": "user", "content": question}]
        prompts.append(adapter.chat_prompt(msgs))
    base = config or GenerationConfig()
    cfg = GenerationConfig(**{**base.__dict__, "max_new_tokens": min(base.max_new_tokens, 12), "do_sample": False,
                              "stop_strings": ()})
    replies = [g.text for g in adapter.generate(prompts, cfg)]
    return np.asarray([parse_confidence(t) for t in replies], dtype=np.float64), replies


def score_vs_reward(scores: Sequence[float], rewards: Sequence[float]) -> dict:
    """Spearman ρ (``scipy.stats.spearmanr``) and AUC (``roc_auc_score``) of ``scores`` against
    binary ``rewards``, over the pairs with a finite score. Never raises on degenerate data:
    undefined metrics are NaN and ``note`` says why."""
    from scipy.stats import spearmanr
    from sklearn.metrics import roc_auc_score

    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    r = np.asarray(rewards, dtype=np.float64).reshape(-1)
    if s.shape != r.shape:
        raise ValueError(f"{s.size} scores but {r.size} rewards.")
    ok = np.isfinite(s) & np.isfinite(r)
    s, r = s[ok], r[ok]
    out = {"spearman": math.nan, "spearman_p": math.nan, "auc": math.nan, "n": int(s.size),
           "n_total": int(ok.size), "note": ""}
    notes = []
    if s.size < 2:
        notes.append(f"only {s.size} usable pairs")
    elif np.unique(r).size < 2:
        notes.append(f"all usable rewards equal {r[0]:g}: Spearman and AUC undefined")
    elif np.unique(s).size < 2:
        notes.append("scores are constant: Spearman undefined, AUC 0.5 by ties")
        out["auc"] = float(roc_auc_score(r, s))
    else:
        rho, p = spearmanr(s, r)
        out["spearman"], out["spearman_p"] = float(rho), float(p)
        out["auc"] = float(roc_auc_score(r, s))
    out["note"] = "; ".join(notes)
    return out


def confidence_study(adapter: ModelAdapter, task, examples, rewards: Sequence[float],
                     value_scores: Sequence[float] | None, generations: Sequence[Generation],
                     config: GenerationConfig | None = None, *, next_token_probs: Sequence[float] | None = None,
                     verbalized: Sequence[float] | None = None) -> dict:
    """Which confidence signal tracks correctness best: value neurons (the probe's ``V(s_0)``,
    given as ``value_scores``), the mean probability of the model's own answer tokens, or the
    model's verbalized confidence. Each: ``{spearman, auc, n, note, ...}`` against ``rewards``;
    ``verbalized`` also has ``parse_rate`` and a few ``examples`` of replies.

    ``next_token_probs`` / ``verbalized`` may be passed precomputed (then no model call is made).
    """
    examples = _examples_of(task, examples)
    n = len(examples)
    if not (len(rewards) == len(generations) == n):
        raise ValueError(f"{n} examples, {len(rewards)} rewards, {len(generations)} generations: they must match.")
    if value_scores is not None and len(value_scores) != n:
        raise ValueError(f"{len(value_scores)} value scores for {n} examples.")
    out: dict = {}
    if value_scores is None:
        out["value_neurons"] = {**score_vs_reward([math.nan] * n, rewards), "note": "no value probe given"}
    else:
        out["value_neurons"] = score_vs_reward(value_scores, rewards)
    ntp = next_token_confidence(adapter, generations) if next_token_probs is None else np.asarray(next_token_probs, float)
    out["next_token_prob"] = score_vs_reward(ntp, rewards)
    replies: list[str] = []
    if verbalized is None:
        verbal, replies = verbalized_confidence(adapter, task, examples, generations, config)
    else:
        verbal = np.asarray(verbalized, dtype=np.float64)
    out["verbalized"] = score_vs_reward(verbal, rewards)
    out["verbalized"]["parse_rate"] = float(np.isfinite(verbal).mean()) if n else math.nan
    if replies:
        out["verbalized"]["examples"] = replies[:5]
    out["mean_reward"] = float(np.mean(rewards))
    return out


# ---------------------------------------------------------------------------------------------
# Causal check for dopamine neurons
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def td_trace_under(adapter: ModelAdapter, probe, hook: str, rollout_token_ids: Sequence[Generation] | Sequence[tuple],
                   fwd_hooks: Iterable[InterventionLike] | None = (), gamma: float = 0.99, *,
                   what: Literal["td", "value"] = "td", batch_size: int = 8) -> list[Float[np.ndarray, " T_plus_1"]]:
    """Teacher-force each rollout (prompt + response ids: a :class:`Generation` or a
    ``(prompt_ids, response_ids)`` pair) with ``fwd_hooks`` active, read ``hook`` at the states
    ``s_0`` (prompt's last token) .. ``s_T`` (last response token) and return per rollout

    * ``what="value"``: ``V(s_0) .. V(s_T)``;
    * ``what="td"`` (default): arrival-aligned TD errors ``[NaN, γV(s_1)−V(s_0), .., γV(s_T)−V(s_{T−1})]``
      (the convention of :func:`reward_circuits.dopamine.td_errors`, ready for ``td_trace_change``).

    Position scopes without ``prompt_len`` see the true prompt/response split (via
    :func:`teacher_forced_prompt`), so ``positions="generated"`` means the response tokens here too.
    """
    pairs = _rollout_pairs(rollout_token_ids)
    hooks = as_fwd_hooks(fwd_hooks)
    traces: list[np.ndarray] = []
    for start, chunk, batch, ends in _teacher_forced_batches(adapter, pairs, batch_size):
        with teacher_forced_prompt(ends):
            acts = adapter.capture(batch, [hook], fwd_hooks=hooks)[hook]
        for j in range(len(chunk)):
            states = acts[j, int(ends[j]) - 1:].float()  # s_0 .. s_T
            v = probe.predict_value(states, hook=hook).reshape(-1).cpu().numpy().astype(np.float64)
            if what == "value":
                traces.append(v)
            elif what == "td":
                td = np.full_like(v, np.nan)
                td[1:] = gamma * v[1:] - v[:-1]
                traces.append(td)
            else:
                raise ValueError(f"what must be 'td' or 'value', got {what!r}.")
    return traces
