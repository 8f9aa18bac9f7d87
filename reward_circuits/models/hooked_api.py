"""The TransformerLens habits a notebook user expects, on both backends.

:class:`HookedAPI` is mixed into :class:`~reward_circuits.models.base.ModelAdapter`, so
``adapter.run_with_hooks(...)``, ``with adapter.hooks(...):`` and ``adapter.run_with_cache(...,
names_filter=...)`` work the same whether a TransformerLens ``HookedTransformer`` or an nnsight
``LanguageModel`` runs the model. Every entry point takes a string, a list of strings, token ids
(a 1-D or 2-D tensor, or lists of ints) or a :class:`~reward_circuits.models.base.TokenBatch`.

``hooks(fwd_hooks)`` keeps the hooks attached for everything run inside the block (forward,
capture, generation): on TransformerLens through the model's own ``hooks()``; on nnsight the
adapter applies them inside every trace it opens, at the sites the hook names map to. Both are
removed on exit, also when an exception is raised inside the block.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence, Union

import torch
from jaxtyping import Float
from torch import Tensor

ModelInput = Union[str, Sequence[str], Tensor, Sequence[Sequence[int]], "TokenBatch"]  # noqa: F821
NamesFilter = Union[str, Sequence[str], Callable[[str], bool], None]


class HookedAPI:
    """``run_with_hooks`` / ``hooks`` / ``run_with_cache`` over an adapter's ``forward`` and ``capture``."""

    def to_batch(self, inputs: ModelInput):
        """A left-padded :class:`TokenBatch` from any accepted input form (strings are tokenized
        without special tokens, as the chat prompts of :meth:`chat_prompt` already contain them)."""
        from .base import TokenBatch

        if isinstance(inputs, TokenBatch):
            batch = inputs.to(self.device)
        elif isinstance(inputs, str):
            batch = self.tokenize([inputs])
        elif isinstance(inputs, Tensor):
            if inputs.is_floating_point() or inputs.is_complex() or inputs.dtype == torch.bool:
                raise TypeError(f"token ids must be an integer tensor, got {inputs.dtype}: give token ids "
                                "(adapter.tokenize(texts).input_ids) or strings; to feed activations, use a hook.")
            ids = inputs.long()
            if ids.ndim == 1:
                ids = ids[None]
            if ids.ndim != 2:
                raise ValueError(f"token ids must be [pos] or [batch, pos], got shape {tuple(inputs.shape)}.")
            batch = TokenBatch(ids, torch.ones_like(ids)).to(self.device)
        elif isinstance(inputs, (Mapping, bytes)) or not isinstance(inputs, Iterable):
            raise TypeError(f"inputs must be a string, a list of strings, token ids (tensor or lists of ints) or a "
                            f"TokenBatch; got {_describe(inputs)}.")
        else:
            batch = self._batch_from_items(list(inputs))
        self.check_token_ids(batch)
        return batch

    def _batch_from_items(self, items: list):
        if not items:
            raise ValueError("empty input: give a string, a list of strings, or token ids.")
        if all(isinstance(x, str) for x in items):
            return self.tokenize(items)
        if all(isinstance(x, int) for x in items):
            return self.pad([items])
        if all(not isinstance(x, str) and hasattr(x, "__len__") for x in items):
            return self.pad([list(map(int, x)) for x in items])
        raise TypeError("inputs must be a string, a list of strings, token ids (tensor or lists of ints) or a TokenBatch; "
                        f"got a list of {sorted({type(x).__name__ for x in items})}.")

    def check_token_ids(self, batch) -> None:
        """Raise if ``batch`` has no positions or a token id outside this model's vocabulary."""
        if batch.input_ids.shape[-1] == 0:
            raise ValueError("the input has no tokens (an empty string?): give at least one token per row.")
        d_vocab = getattr(self, "d_vocab", None)
        live = batch.input_ids[batch.attention_mask.bool()]
        if d_vocab and live.numel() and (int(live.min()) < 0 or int(live.max()) >= d_vocab):
            bad = int(live.min()) if int(live.min()) < 0 else int(live.max())
            raise ValueError(f"token id {bad} is out of range for {self.name}'s vocabulary (ids 0..{d_vocab - 1}): "
                             "tokenize text with this model's tokenizer (adapter.tokenize) instead of reusing ids "
                             "(or rollouts) from another model.")

    def check_fwd_hooks(self, fwd_hooks) -> list[tuple[str, Callable]]:
        """``fwd_hooks`` as a list of TransformerLens ``(hook_name, fn)`` pairs, checked: a list (not a
        dict, a string or one bare pair), known hook names, and callables ``fn(activation, hook)``.
        Raises :class:`TypeError` / :class:`~reward_circuits.models.HookNameError` naming the problem and the fix."""
        example = "fwd_hooks=[('blocks.0.hook_resid_post', fn)]"
        if fwd_hooks is None:
            return []
        if isinstance(fwd_hooks, Mapping):
            raise TypeError(f"fwd_hooks is a dict; give a list of (hook_name, fn) pairs: list(d.items()), e.g. {example}.")
        if isinstance(fwd_hooks, (str, bytes)) or not isinstance(fwd_hooks, Iterable):
            raise TypeError(f"fwd_hooks must be a list of (hook_name, fn) pairs, got {_describe(fwd_hooks)}: e.g. {example}.")
        if isinstance(fwd_hooks, (tuple, list)) and len(fwd_hooks) == 2 and isinstance(fwd_hooks[0], str) and callable(fwd_hooks[1]):
            raise TypeError(f"fwd_hooks is one (hook_name, fn) pair, not a list of pairs: wrap it in a list, "
                            f"fwd_hooks=[({fwd_hooks[0]!r}, fn)].")
        pairs = []
        for i, item in enumerate(fwd_hooks):
            if isinstance(item, (str, bytes)) or not isinstance(item, (tuple, list)) or len(item) != 2:
                raise TypeError(f"fwd_hooks[{i}] is {_describe(item)}, not a (hook_name, fn) pair: e.g. {example}.")
            name, fn = item
            if callable(name) and isinstance(fn, str):
                raise TypeError(f"fwd_hooks[{i}] is (fn, {fn!r}): the pairs are (hook_name, fn), name first; swap them.")
            if not isinstance(name, str):
                raise TypeError(f"fwd_hooks[{i}] names its hook point with {_describe(name)}: hook names are strings, "
                                f"e.g. {example}; `adapter.hook_names()` lists them.")
            if not callable(fn):
                raise TypeError(f"the hook fn for {name!r} (fwd_hooks[{i}]) is {_describe(fn)}, not callable: give a "
                                "function fn(activation, hook) returning the new activation or None.")
            _check_hook_signature(name, fn)
            pairs.append((name, fn))
        if pairs:
            self.validate_hooks([n for n, _ in pairs])
        return pairs

    def run_with_hooks(self, inputs: ModelInput, fwd_hooks: Sequence[tuple[str, Callable]] = ()) -> Float[Tensor, "batch pos d_vocab"]:
        """Logits with ``fwd_hooks`` (TransformerLens ``(name, fn(activation, hook))`` pairs) active for
        this call only; they compose with hooks attached by :meth:`hooks`."""
        return self.forward(self.to_batch(inputs), self.check_fwd_hooks(fwd_hooks))

    def resolve_names(self, names_filter: NamesFilter) -> list[str]:
        """The hook names a TransformerLens-style ``names_filter`` selects (None: every hook point)."""
        known = self.hook_names()
        if names_filter is None:
            return known
        if isinstance(names_filter, str):
            return self.validate_hooks([names_filter])
        if callable(names_filter):
            chosen = []
            for n in known:
                try:
                    keep = names_filter(n)
                except Exception as e:
                    raise TypeError(f"names_filter raised {type(e).__name__} when called with {n!r}: it is called with each "
                                    "hook name (a str) and must return True to keep it, e.g. "
                                    "names_filter=lambda name: name.endswith('resid_post').") from e
                if keep:
                    chosen.append(n)
            if not chosen:
                raise ValueError("names_filter selected no hook point; `adapter.hook_names()` lists them all.")
            return chosen
        if isinstance(names_filter, (set, tuple)):
            raise TypeError("names_filter must be a str, a list of str or a callable (as in TransformerLens); "
                            f"got a {type(names_filter).__name__}: pass list(...) instead.")
        if isinstance(names_filter, Mapping) or not isinstance(names_filter, Iterable):
            raise TypeError(f"names_filter must be None, a hook name, a list of hook names or a callable name -> bool "
                            f"(as in TransformerLens); got {_describe(names_filter)}. e.g. "
                            "names_filter=['blocks.0.hook_resid_post'] or names_filter=lambda name: 'resid' in name.")
        return self.validate_hooks(list(names_filter))

    def run_with_cache(self, inputs: ModelInput, names_filter: NamesFilter = None,
                       fwd_hooks: Sequence[tuple[str, Callable]] = ()) -> tuple[Tensor, dict[str, Tensor]]:
        """``(logits, cache)`` from one forward pass; ``cache[name]`` is ``[batch, pos, d]`` for every hook
        ``names_filter`` selects (always filter on a real model: an unfiltered cache costs memory, not time).
        Cached activations are those after any ``fwd_hooks`` at the same site ran."""
        names = self.resolve_names(names_filter)
        fwd_hooks = self.check_fwd_hooks(fwd_hooks)
        cache: dict[str, Tensor] = {}

        def recorder(activation, hook):
            cache[hook.name] = activation.detach().clone()

        logits = self.forward(self.to_batch(inputs), list(fwd_hooks) + [(n, recorder) for n in names])
        missing = [n for n in names if n not in cache]
        if missing:  # a backend that could not hand real tensors to an observing hook: capture separately
            cache.update(self.capture(self.to_batch(inputs), missing, fwd_hooks=list(fwd_hooks)))
        return logits, {n: cache[n] for n in names}

    @contextmanager
    def hooks(self, fwd_hooks: Sequence[tuple[str, Callable]]) -> Iterator["HookedAPI"]:
        """Attach ``fwd_hooks`` for everything run inside the ``with`` block; removed on exit (also on an exception)."""
        fwd_hooks = self.check_fwd_hooks(fwd_hooks)
        if self.backend == "transformer_lens":
            with self.model.hooks(fwd_hooks=fwd_hooks):
                yield self
            return
        # nnsight: the adapter applies these inside every trace it opens (forward, capture, generate)
        stack = self.__dict__.setdefault("_context_hooks", [])
        stack.append(fwd_hooks)
        try:
            yield self
        finally:
            stack.remove(fwd_hooks)

    def has_attached_hooks(self) -> bool:
        """Whether hooks attached outside the call are active: :meth:`hooks` / ``intervene(...)`` blocks,
        or the user's own ``model.hooks(...)`` / ``add_hook`` on the TransformerLens model. Shortcuts
        that encode a shared prompt prefix once (and so would hand a position-specific hook the wrong
        positions) must see these as well as the call's ``fwd_hooks``."""
        if self.__dict__.get("_context_hooks"):
            return True
        try:
            hook_dict = getattr(self.model, "hook_dict", None) if self.backend == "transformer_lens" else None
        except AttributeError:
            hook_dict = None
        return any(getattr(hp, "fwd_hooks", None) for hp in (hook_dict or {}).values())

    def active_hooks(self, fwd_hooks: Sequence[tuple[str, Callable]] = ()) -> list[tuple[str, Callable]]:
        """Hooks attached by enclosing :meth:`hooks` blocks (outermost first), then ``fwd_hooks``."""
        stack = self.__dict__.get("_context_hooks", [])
        return [h for level in stack for h in level] + list(fwd_hooks)


def _describe(x) -> str:
    """``a float (3.5)``: the type and a short repr of a bad argument, for error messages."""
    text, kind = repr(x), type(x).__name__
    return f"{'an' if kind[0] in 'aeiouAEIOU' else 'a'} {kind} ({text[:60] + '...' if len(text) > 60 else text})"


def _check_hook_signature(name: str, fn: Callable) -> None:
    """Both backends call ``fn(activation, hook=hook)``; say so before a forward fails inside the model."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # builtins and C callables: nothing to check
        return
    try:
        sig.bind(None, hook=None)
    except TypeError:
        raise TypeError(f"the hook fn for {name!r} has signature {getattr(fn, '__name__', type(fn).__name__)}{sig}; "
                        "hook fns are called as fn(activation, hook=hook) (TransformerLens): define it as "
                        "def fn(activation, hook): ... returning the new activation or None.") from None
