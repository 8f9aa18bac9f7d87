"""TransformerLens backend: a ``HookedTransformer`` (or TransformerBridge) behind :class:`ModelAdapter`."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor


from .base import Backend, ModelAdapter, TokenBatch
from .hook_names import layer_of

# ---- TransformerLens --------------------------------------------------------------------------


class TransformerLensAdapter(ModelAdapter):
    backend: Backend = "transformer_lens"

    def __init__(self, model, name: str | None = None, generation_eos: Sequence[int] | int | None = None):
        """``generation_eos``: the HF model's ``generation_config.eos_token_id`` (one id or several, e.g.
        Gemma's ``<end_of_turn>``): generation stops at these as well as the tokenizer's EOS, as on the
        nnsight backend (:func:`~reward_circuits.models.from_hf` passes it)."""
        if not (hasattr(model, "hook_dict") and hasattr(model, "run_with_hooks") and hasattr(model, "hooks")):
            raise TypeError("TransformerLensAdapter needs a HookedTransformer (or TransformerBridge); got "
                            f"{type(model).__name__}.")
        self.model = model
        self._gen_eos = [generation_eos] if isinstance(generation_eos, int) else list(generation_eos or [])
        self.name = name or getattr(model.cfg, "model_name", "hooked_transformer")
        self.tokenizer = model.tokenizer
        self.n_layers = model.cfg.n_layers
        self.d_model = model.cfg.d_model
        self.d_mlp = model.cfg.d_mlp
        self.d_vocab = model.cfg.d_vocab
        self.device = torch.device(model.cfg.device or "cpu")

    @property
    def context_length(self) -> int | None:
        return int(self.model.cfg.n_ctx)

    @property
    def kv_width(self) -> int:
        cfg = self.model.cfg
        return int((getattr(cfg, "n_key_value_heads", None) or cfg.n_heads) * cfg.d_head)

    @property
    def prefill_from_layer(self) -> bool:
        from transformer_lens import HookedTransformer

        return isinstance(self.model, HookedTransformer)  # start_at_layer with a KV cache

    @property
    def joins_rows(self) -> bool:
        return self.prefill_from_layer  # the same cache surgery: our sessions add rows to a running TL cache

    @property
    def shares_trunk(self) -> bool:
        return self.prefill_from_layer  # segments of blocks via start_at_layer / stop_at_layer (:mod:`.tl_trunk`)

    # True: greedy shared-trunk steps certify a row's argmax from its group's reference row where they can,
    # skipping its unembedding (:mod:`.certified_argmax`; same tokens). Off by default: on the 2-core CPU
    # it did not pay (bench row 8: an unembedding call costs about the same for fewer rows, and the
    # certificates cost the rest); the bench measures it on every machine it runs on.
    certifies_argmax: bool = False

    def hook_names(self) -> list[str]:
        return list(self.model.hook_dict)  # re-read every call: SAEs may replace hook points

    def _stop_layer(self, names: Sequence[str]) -> int | None:
        layers = [layer_of(n) for n in names]
        if any(l is None for l in layers):
            return None
        top = max(layers) + 1
        return top if top < self.n_layers else None

    def capture(self, batch, hook_names, fwd_hooks=()):
        names = self.validate_hooks(hook_names)
        fwd_hooks = self.check_fwd_hooks(fwd_hooks)
        store: dict[str, Tensor] = {}

        def make(name):
            def save(act, hook):
                store[name] = act.detach()

            return save

        hooks = list(fwd_hooks) + [(n, make(n)) for n in names]
        # stop after the last block anything acts at: every given hook still fires (a hook above the
        # captured points, or one without a block, e.g. ``ln_final``, runs the forward to the end)
        stop = self._stop_layer(list(names) + [name for name, _ in fwd_hooks])  # names checked by check_fwd_hooks
        with torch.no_grad(), self.model.hooks(fwd_hooks=hooks):
            self.model(batch.input_ids, attention_mask=batch.attention_mask, return_type=None,
                       stop_at_layer=stop)
        return {n: store[n] for n in names}

    def forward(self, batch, fwd_hooks=()):
        fwd_hooks = self.check_fwd_hooks(fwd_hooks)
        with torch.no_grad(), self.model.hooks(fwd_hooks=list(fwd_hooks)):
            return self.model(batch.input_ids, attention_mask=batch.attention_mask)

    @contextmanager
    def decoding_session(self, fwd_hooks):
        """TL's KV cache with the cached-rotary attention of :mod:`.tl_attention` (TL's own attention
        where it does not apply), ``fwd_hooks`` registered for the whole session."""
        from .tl_attention import cached_rotary_attention

        with torch.no_grad(), self.model.hooks(fwd_hooks=list(fwd_hooks)), cached_rotary_attention(self.model):
            yield _TLDecodingSession(self)

    def _prefill_last_logits(self, batch: TokenBatch, cache, resid: Float[Tensor, "batch pos d_model"] | None = None,
                             start_layer: int = 0) -> Float[Tensor, "batch d_vocab"]:
        """Run the prompts into ``cache`` and return the next-token logits of the last position only.

        Like HF ``generate`` (``logits_to_keep=1``), the unembedding runs on the last position, not on
        all ``batch × pos`` positions (the 49152-wide unembedding of a 16×42-token prefill alone
        costs as much as ~40 decoding steps). Every hook point still fires: the blocks and
        ``ln_final.*`` on all positions, ``unembed.*`` on the last position (shape ``[batch, 1, …]``),
        exactly where HF's ``norm`` and ``lm_head`` fire on the nnsight backend.

        With ``resid`` (the residual stream entering block ``start_layer``) only blocks
        ``start_layer..`` run; ``cache`` must already hold the layers below.
        """
        from transformer_lens.utilities import apply_softcap  # noqa: PLC0415

        model = self.model
        if resid is None:
            resid = model(batch.input_ids, attention_mask=batch.attention_mask, past_kv_cache=cache,
                          stop_at_layer=model.cfg.n_layers)
        else:
            # blocks from start_layer see the whole mask: a cached prefix's columns, then these
            mask = torch.cat([cache.previous_attention_mask.to(batch.attention_mask), batch.attention_mask], 1)
            resid = model(resid, start_at_layer=start_layer, attention_mask=mask,
                          past_kv_cache=cache, stop_at_layer=model.cfg.n_layers)
            cache.previous_attention_mask = mask.to(cache.previous_attention_mask)
        if model.cfg.normalization_type is not None:
            resid = model.ln_final(resid)
        return apply_softcap(model.unembed(resid[:, -1:]), model.cfg.output_logits_soft_cap)[:, -1]


class _TLDecodingSession:
    """One generation's TL KV cache: prefill, one-token steps, row selection."""

    def __init__(self, adapter: TransformerLensAdapter):
        self.adapter = adapter
        self.cache = None
        self.trunk = None  # a TrunkCache once share_trunk was called: steps share the blocks below the hooks

    def share_trunk(self, rows, row_labels=None, argmax_only: bool = False) -> None:
        """From now on the running rows (one :class:`~.tl_trunk.TrunkRows` entry each) share the blocks
        below their trunk layers while their tokens agree (:class:`~.tl_trunk.TrunkCache`).
        ``argmax_only`` (greedy decoding): a step's logits need only their argmax, which a row may get
        certified from its group's reference row instead of its own unembedding (:mod:`.certified_argmax`)."""
        from .tl_trunk import TrunkCache

        self.trunk = TrunkCache(self.adapter.model, self.cache, rows, row_labels)
        self.trunk.argmax_only = argmax_only and self.adapter.certifies_argmax

    prefix = None  # the cache of set_prefix: prompt prefix rows later prefills continue

    def set_prefix(self, batch: TokenBatch, start: Int[Tensor, " batch"] | None = None,
                   base: Int[Tensor, " batch"] | None = None, on_rows=None) -> None:
        """Encode prompt prefixes once (as :meth:`prefill`; e.g. one row per condition): a later
        prefill with ``prefix_rows`` continues them instead of encoding them again."""
        self.prefix = self._fill(batch, start, base, on_rows)[1]

    def prefill(self, batch: TokenBatch, start: Int[Tensor, " batch"] | None = None,
                base: Int[Tensor, " batch"] | None = None, on_rows=None,
                prefix_rows: Int[Tensor, " batch"] | None = None) -> Float[Tensor, "batch d_vocab"]:
        logits, self.cache = self._fill(batch, start, base, on_rows, prefix_rows)
        self.trunk = None
        return logits

    def add_rows(self, batch: TokenBatch, source: Int[Tensor, " rows"], start: Int[Tensor, " batch"] | None = None,
                 base: Int[Tensor, " batch"] | None = None, on_rows=None,
                 prefix_rows: Int[Tensor, " batch"] | None = None, trunk_rows=None) -> Float[Tensor, "rows d_vocab"]:
        """Prefill new prompts (as :meth:`prefill`) and append decoding rows ``source`` of them to the
        running batch, after its rows; the next-token logits of the new rows. The two caches are
        left-padded to one width (masked positions, so positions and attention are unchanged).
        With a shared trunk, ``trunk_rows`` gives the new rows' groups, trunk layers and labels."""
        from .tl_attention import append_cache_rows, select_cache_rows
        from .tl_trunk import TrunkCache

        logits, cache = self._fill(batch, start, base, on_rows, prefix_rows)
        select_cache_rows(cache, source)
        if self.trunk is not None:
            if trunk_rows is None:
                raise ValueError("rows joining a shared-trunk batch need trunk_rows (groups, trunk layers, labels).")
            self.trunk.append(TrunkCache(self.adapter.model, cache, trunk_rows))
        else:
            append_cache_rows(self.cache, cache)
        return logits.index_select(0, source.to(logits.device))

    def _start_cache(self, rows: Int[Tensor, " k"], prefix_rows: Int[Tensor, " batch"] | None):
        """A cache for prefill rows ``rows``: empty, or holding the prefix row each continues."""
        from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache

        from .tl_attention import copy_cache_layers

        cfg = self.adapter.model.cfg
        cache = TransformerLensKeyValueCache.init_cache(cfg, cfg.device, rows.numel())
        if prefix_rows is not None:
            if self.prefix is None:
                raise RuntimeError("prefix_rows given before set_prefix: encode the prefixes first.")
            src = prefix_rows[rows.cpu()]
            copy_cache_layers(self.prefix, cache, src, len(cache.entries))
            mask = self.prefix.previous_attention_mask
            cache.previous_attention_mask = mask.index_select(0, src.to(mask.device))
        return cache

    def _fill(self, batch: TokenBatch, start, base, on_rows, prefix_rows=None):
        from .tl_attention import copy_cache_layers, merge_caches

        adapter, model = self.adapter, self.adapter.model
        n = batch.input_ids.shape[0]
        on_rows = on_rows or (lambda rows: None)
        if prefix_rows is not None:
            prefix_rows = torch.as_tensor(prefix_rows, dtype=torch.long).reshape(-1).cpu()
        if start is None or not adapter.prefill_from_layer or not bool((start > 0).any()):
            cache = self._start_cache(torch.arange(n), prefix_rows)
            return adapter._prefill_last_logits(batch, cache), cache
        # 1. the rows that run the whole prompt, keeping the residual stream entering each start layer
        layers = sorted({int(l) for l in start.tolist() if l > 0})
        full = torch.nonzero(start == 0).reshape(-1)
        saved: dict[int, Tensor] = {}

        def keep(layer):
            def fn(act, hook):
                saved[layer] = act
            return fn

        def sub(rows: Int[Tensor, " k"]) -> TokenBatch:
            return TokenBatch(batch.input_ids[rows.to(batch.input_ids.device)],
                              batch.attention_mask[rows.to(batch.attention_mask.device)])

        on_rows(full)
        parts, caches, logits = [full], [], []
        cache = self._start_cache(full, prefix_rows)
        with model.hooks(fwd_hooks=[(f"blocks.{l}.hook_resid_pre", keep(l)) for l in layers]):
            logits.append(adapter._prefill_last_logits(sub(full), cache))
        caches.append(cache)
        where_in_full = torch.full((n,), -1, dtype=torch.long)
        where_in_full[full] = torch.arange(full.numel())
        # 2. each start layer's rows: the shared rows' stream and cache below it, their own above
        for layer in layers:
            rows = torch.nonzero(start == layer).reshape(-1)
            src = where_in_full[base[rows]]
            cache = self._start_cache(rows, prefix_rows)  # (its own prefix row above the start layer)
            copy_cache_layers(caches[0], cache, src, layer)
            resid = saved[layer].index_select(0, src.to(saved[layer].device))
            on_rows(rows)
            logits.append(adapter._prefill_last_logits(sub(rows), cache, resid=resid, start_layer=layer))
            parts.append(rows)
            caches.append(cache)
        order = torch.argsort(torch.cat(parts))  # back to prefill-row order
        out = torch.cat(logits)
        return out.index_select(0, order.to(out.device)), merge_caches(caches, order)

    def step(self, tokens: Int[Tensor, " batch"]) -> Float[Tensor, "batch d_vocab"]:
        if self.trunk is not None:
            return self.trunk.step(tokens)
        ones = torch.ones_like(tokens)[:, None]
        return self.adapter.model(tokens[:, None], attention_mask=ones, past_kv_cache=self.cache)[:, -1]

    def select_rows(self, index: Int[Tensor, " rows"]) -> None:
        from .tl_attention import select_cache_rows

        if self.trunk is not None:
            self.trunk.select_rows(index)
            return
        select_cache_rows(self.cache, index)

    def trim(self) -> None:
        """Drop the leading cache columns no running row attends to (left by rows that joined later)."""
        from .tl_attention import trim_cache

        if self.trunk is not None:
            self.trunk.trim()
            return
        trim_cache(self.cache)
