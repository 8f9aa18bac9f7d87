"""One small interface over a TransformerLens ``HookedTransformer`` and an nnsight ``LanguageModel``.

Every analysis talks to a :class:`ModelAdapter`. Hook points are always named by their canonical
TransformerLens names (``blocks.5.hook_resid_post``, ``blocks.5.mlp.hook_post``, ``hook_embed``,
...); the nnsight adapter maps them onto HF module paths. Interventions are TransformerLens hook
functions ``fn(activation, hook) -> activation | None`` on both backends, so a user's own
``run_with_hooks`` hooks and ours are the same kind of object.

Padding never changes results: batches are left-padded with explicit attention masks, and both
backends derive position ids from the mask (tested against unpadded single sequences).
"""

from __future__ import annotations

import difflib
from abc import ABC, abstractmethod
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Callable, Literal, Protocol, Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor

HookFn = Callable[..., "Tensor | None"]
FwdHooks = Sequence[tuple[str, HookFn]]
Backend = Literal["transformer_lens", "nnsight"]
DEFAULT_BACKEND: Backend = "transformer_lens"  # the one default of load_model, from_hf and `reward-circuits run`


@dataclass
class TokenBatch:
    input_ids: Int[Tensor, "batch pos"]
    attention_mask: Int[Tensor, "batch pos"]

    def to(self, device) -> "TokenBatch":
        return TokenBatch(self.input_ids.to(device), self.attention_mask.to(device))


from .generation import (  # noqa: E402,F401  (re-exported: models.base.GenerationConfig, ...)
    Generation, GenerationConfig, GenerationPlan, RowLabels, common_prefix_len, generation_config, sample_next,
    sample_with_uniforms,
)
from . import decoding  # noqa: E402  (the decoding engine; it needs TokenBatch above)


class DecodingSession(Protocol):
    """A backend's KV-cached decoding state for one :meth:`ModelAdapter.decode` call."""

    def prefill(self, batch: TokenBatch, start: Int[Tensor, " batch"] | None = None,
                base: Int[Tensor, " batch"] | None = None, on_rows: Callable | None = None) -> Float[Tensor, "batch d_vocab"]:
        """Run the prompts into a fresh KV cache; the next-token logits of each row's last position.

        ``start`` / ``base``: see :class:`GenerationPlan` (``prefill_start`` / ``prefill_base``);
        a session that runs the prefill in parts calls ``on_rows(rows)`` before each part."""

    def step(self, tokens: Int[Tensor, " batch"]) -> Float[Tensor, "batch d_vocab"]:
        """Feed one new token per running row; its next-token logits."""

    def select_rows(self, index: Int[Tensor, " rows"]) -> None:
        """Keep (and reorder or repeat) these rows of the running batch and its KV cache."""


from .hook_names import HookNameError
from .hooked_api import HookedAPI

# ---- the interface ----------------------------------------------------------------------------


class ModelAdapter(HookedAPI, ABC):
    """What every analysis needs from a model, whichever library runs it."""

    backend: Backend
    name: str
    tokenizer: object
    n_layers: int
    d_model: int
    d_mlp: int
    d_vocab: int  # rows of the embedding matrix: token ids run 0..d_vocab-1
    device: torch.device

    @abstractmethod
    def hook_names(self) -> list[str]:
        """Canonical TransformerLens names of the hook points this adapter can capture and edit."""

    @property
    def kv_width(self) -> int:
        """Width of one position's cached keys (= values) per layer: KV heads × head dim."""
        return self.d_model

    @property
    def context_length(self) -> int | None:
        """The longest sequence (in tokens) the model takes; ``None`` when the model does not say."""
        return None

    def check_context(self, n_tokens: int, what: str = "the input") -> None:
        """Raise a clear error when ``n_tokens`` is longer than :attr:`context_length`."""
        limit = self.context_length
        if limit is not None and n_tokens > limit:
            raise ValueError(f"{what} is {n_tokens} tokens long; {self.name} takes at most {limit} tokens. "
                             "Shorten it (e.g. fewer episodes per experiment, shorter prompts or fewer new tokens).")

    def hook_width(self, hook_name: str) -> int:
        if hook_name.endswith("mlp.hook_post") or hook_name.endswith("mlp.hook_pre"):
            return self.d_mlp
        return self.d_model

    def validate_hooks(self, names: Sequence[str]) -> list[str]:
        names = [names] if isinstance(names, str) else list(names)
        if not names:
            raise HookNameError("no hook names given: name at least one, e.g. 'blocks.0.hook_resid_post'.")
        known = self.hook_names()
        known_set = set(known)
        bad = [n for n in names if not isinstance(n, str) or n not in known_set]
        if bad:
            canonical = ["hook_resid_pre", "hook_resid_post", "hook_attn_out", "hook_mlp_out", "mlp.hook_post"]
            examples = [f"blocks.0.{c}" for c in canonical if f"blocks.0.{c}" in known_set]
            close = {n: difflib.get_close_matches(n, known, n=3, cutoff=0.75) for n in bad if isinstance(n, str)}
            hint = "; ".join((f"for {n!r}, d" if len(close) > 1 else "D") + f"id you mean {' or '.join(map(repr, c))}?"
                             for n, c in close.items() if c)
            not_str = [n for n in bad if not isinstance(n, str)]
            raise HookNameError(
                f"unknown hook point(s) {bad} for {self.name} ({self.backend}). "
                + (f"{hint} " if hint else "")
                + (f"Hook names are strings, not {sorted({type(n).__name__ for n in not_str})}. " if not_str else "")
                + f"Use TransformerLens names, e.g. {examples + ['hook_embed']}; layers run 0..{self.n_layers - 1}. "
                "`adapter.hook_names()` lists them all."
            )
        return names

    # ---- tokenization -------------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str] | str, padding_side: Literal["left", "right"] = "left",
                 add_special_tokens: bool = False) -> TokenBatch:
        texts = [texts] if isinstance(texts, str) else list(texts) if isinstance(texts, Iterable) else texts
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise TypeError(f"tokenize takes a string or a list of strings, got {type(texts).__name__} {str(texts)[:60]!r}: "
                            "pass token ids straight to forward / run_with_hooks, or str(...) your input.")
        if not texts:
            raise ValueError("no texts to tokenize.")
        tok = self.tokenizer
        old = tok.padding_side
        tok.padding_side = padding_side
        try:
            enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=add_special_tokens)
        finally:
            tok.padding_side = old
        return TokenBatch(enc["input_ids"], enc["attention_mask"]).to(self.device)

    def pad(self, sequences: Sequence[Sequence[int]], padding_side: Literal["left", "right"] = "left") -> TokenBatch:
        """Pad token id lists into a batch with an attention mask."""
        if not sequences or any(len(s) == 0 for s in sequences):
            raise ValueError("cannot pad an empty batch or an empty sequence.")
        width = max(len(s) for s in sequences)
        self.check_context(width, "the longest sequence of this batch")
        pad_id = self.tokenizer.pad_token_id
        ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(sequences), width), dtype=torch.long)
        for i, s in enumerate(sequences):
            t = torch.as_tensor(list(s), dtype=torch.long)
            if padding_side == "left":
                ids[i, width - len(s):] = t
                mask[i, width - len(s):] = 1
            else:
                ids[i, : len(s)] = t
                mask[i, : len(s)] = 1
        batch = TokenBatch(ids, mask)
        self.check_token_ids(batch)
        return batch.to(self.device)

    def chat_prompt(self, messages: list[dict]) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    # ---- running --------------------------------------------------------------------------------
    @abstractmethod
    def capture(self, batch: TokenBatch, hook_names: Sequence[str], fwd_hooks: FwdHooks = ()) -> dict[str, Float[Tensor, "batch pos d"]]:
        """Forward pass returning the activations of exactly ``hook_names`` (no logits computed).

        ``fwd_hooks`` (TransformerLens-style) are applied during the same pass; captures see the
        activation after those hooks ran.
        """

    @abstractmethod
    def forward(self, batch: TokenBatch, fwd_hooks: FwdHooks = ()) -> Float[Tensor, "batch pos d_vocab"]:
        """Logits with the given hook functions active (removed afterwards, also on an exception)."""

    # ---- decoding (the engine lives in :mod:`.decoding`; these delegate with the same signatures) ----
    def generate(self, prompts: Sequence[str] | TokenBatch, config: GenerationConfig | None = None,
                 fwd_hooks: FwdHooks = (), **overrides) -> list[Generation]:
        """Generate for every prompt, in batches, with ``fwd_hooks`` active on every forward.

        Rows that finish (EOS or a stop string) leave the running batch and its KV cache
        (``config.drop_finished``), so a few long answers do not hold the whole batch. Greedy,
        hook-free generation on a backend that joins rows keeps one batch full (``config.refill``)
        and encodes the prompt prefix all prompts share once.
        """
        return decoding.generate(self, prompts, config, fwd_hooks, **overrides)

    def generate_plan(self, plan: GenerationPlan, config: GenerationConfig, fwd_hooks: FwdHooks = (), *,
                      seed: int | None = None, row_labels: RowLabels | None = None) -> list[Generation]:
        """One cached generation of ``plan`` (prefill rows, then decoding rows that each continue one
        prefill row), with ``fwd_hooks`` active on every forward; one :class:`Generation` per decoding row.

        ``row_labels`` (optional) is kept up to date with the label of every row the model runs at
        each moment (``plan.prefill_labels`` during the prefill, ``plan.decode_labels`` of the rows
        still running afterwards), so row-scoped hooks know which rows are theirs.
        """
        return decoding.generate_plan(self, plan, config, fwd_hooks, seed=seed, row_labels=row_labels)

    def _generate_batch(self, batch: TokenBatch, config: GenerationConfig, fwd_hooks: list, seed: int) -> list[list[int]]:
        """New token ids per row (may stop at EOS or a stop string; :meth:`finish_generation` cuts).
        A backend may override it (nnsight's remote models run HF ``generate``)."""
        return self.decode(GenerationPlan(batch), config, fwd_hooks, seed)

    prefill_from_layer: bool = False  # whether decoding sessions reuse a shared prompt below a layer
    joins_rows: bool = False  # whether decoding sessions can add rows to a running batch (add_rows)
    # whether decoding sessions can share the blocks below each row's hooks across agreeing rows
    # (share_trunk; GenerationPlan.trunk_layers). nnsight: no - its trace runs HF's forward whole,
    # one batch for all layers, so rows cannot run some blocks once per group and others per row.
    shares_trunk: bool = False

    @abstractmethod
    def decoding_session(self, fwd_hooks: list) -> "AbstractContextManager[DecodingSession]":
        """A context manager yielding this backend's :class:`DecodingSession` with ``fwd_hooks`` active
        on every forward inside it (removed on exit, also on an exception)."""

    def decode(self, plan: GenerationPlan, config: GenerationConfig, fwd_hooks: list, seed: int,
               row_labels: RowLabels | None = None) -> list[list[int]]:
        """The decoding loop shared by both backends (:func:`.decoding.decode`): new token ids per
        decoding row of ``plan``.

        Greedy or seeded sampling (one CPU generator per call; every step draws for *all* rows of
        the plan, finished or not, so the draws of a row do not depend on which rows left; with
        ``plan.row_keys``, common random numbers per key). A row stops at EOS or when its decoded
        text contains a stop string; with ``config.drop_finished`` it then leaves the running batch
        and the KV cache.
        """
        return decoding.decode(self, plan, config, fwd_hooks, seed, row_labels)

    def decode_stream(self, plans: Sequence[GenerationPlan], config: GenerationConfig, fwd_hooks: list, *,
                      max_rows: int, row_labels: RowLabels | None = None, desc: str = "generate",
                      prefix: GenerationPlan | None = None) -> list[list[list[int]]]:
        """Greedy decoding of many plans through one running batch (continuous batching,
        :func:`.decoding.decode_stream`): the rows of the next plan join as soon as rows that
        finished have left room for them (at most ``max_rows`` rows run at once), so the batch
        stays full instead of draining to its longest row. New token ids per decoding row of each
        plan, as :meth:`decode` gives them; under greedy decoding each row computes what it
        computes in :meth:`decode` (up to float reduction order: the batch around it differs).
        Needs a backend whose sessions can add rows (:attr:`joins_rows`).

        ``prefix``: prompt prefixes encoded once before any plan (its prefill rows, labels and
        starts as in a plan; e.g. the prefix every prompt shares, one row per condition); each
        plan's prefill rows then hold only the rest of their prompts and ``plan.prefix_rows``
        says which prefix row each continues. Plans with ``feed_last`` (all or none of them) feed
        every row's last token once more before the row leaves (capture while generating)."""
        return decoding.decode_stream(self, plans, config, fwd_hooks, max_rows=max_rows, row_labels=row_labels,
                                      desc=desc, prefix=prefix)

    @property
    def eos_ids(self) -> set[int]:
        ids = {self.tokenizer.eos_token_id}
        extra = getattr(getattr(self, "_gen_eos", None), "__iter__", None)
        if extra:
            ids |= set(self._gen_eos)
        return {i for i in ids if i is not None}

    def finish_generation(self, prompt_ids: Sequence[int], new: Sequence[int], config: GenerationConfig) -> Generation:
        """A :class:`Generation` from new token ids: cut after the first EOS and at the first stop string."""
        return decoding.finish_generation(self.tokenizer, self.eos_ids, prompt_ids, new, config)
