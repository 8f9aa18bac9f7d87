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
            return inputs.to(self.device)
        if isinstance(inputs, str):
            return self.tokenize([inputs])
        if isinstance(inputs, Tensor):
            ids = inputs.long()
            if ids.ndim == 1:
                ids = ids[None]
            if ids.ndim != 2:
                raise ValueError(f"token ids must be [pos] or [batch, pos], got shape {tuple(inputs.shape)}.")
            return TokenBatch(ids, torch.ones_like(ids)).to(self.device)
        items = list(inputs)
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

    def run_with_hooks(self, inputs: ModelInput, fwd_hooks: Sequence[tuple[str, Callable]] = ()) -> Float[Tensor, "batch pos d_vocab"]:
        """Logits with ``fwd_hooks`` (TransformerLens ``(name, fn(activation, hook))`` pairs) active for
        this call only; they compose with hooks attached by :meth:`hooks`."""
        return self.forward(self.to_batch(inputs), list(fwd_hooks))

    def resolve_names(self, names_filter: NamesFilter) -> list[str]:
        """The hook names a TransformerLens-style ``names_filter`` selects (None: every hook point)."""
        known = self.hook_names()
        if names_filter is None:
            return known
        if isinstance(names_filter, str):
            return self.validate_hooks([names_filter])
        if callable(names_filter):
            chosen = [n for n in known if names_filter(n)]
            if not chosen:
                raise ValueError("names_filter selected no hook point; `adapter.hook_names()` lists them all.")
            return chosen
        if isinstance(names_filter, (set, tuple)):
            raise TypeError("names_filter must be a str, a list of str or a callable (as in TransformerLens); "
                            f"got a {type(names_filter).__name__}: pass list(...) instead.")
        return self.validate_hooks(list(names_filter))

    def run_with_cache(self, inputs: ModelInput, names_filter: NamesFilter = None,
                       fwd_hooks: Sequence[tuple[str, Callable]] = ()) -> tuple[Tensor, dict[str, Tensor]]:
        """``(logits, cache)`` from one forward pass; ``cache[name]`` is ``[batch, pos, d]`` for every hook
        ``names_filter`` selects (always filter on a real model: an unfiltered cache costs memory, not time).
        Cached activations are those after any ``fwd_hooks`` at the same site ran."""
        names = self.resolve_names(names_filter)
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
        fwd_hooks = list(fwd_hooks)
        self.validate_hooks([n for n, _ in fwd_hooks])
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

    def active_hooks(self, fwd_hooks: Sequence[tuple[str, Callable]] = ()) -> list[tuple[str, Callable]]:
        """Hooks attached by enclosing :meth:`hooks` blocks (outermost first), then ``fwd_hooks``."""
        stack = self.__dict__.get("_context_hooks", [])
        return [h for level in stack for h in level] + list(fwd_hooks)
