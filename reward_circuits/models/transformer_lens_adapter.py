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

    def __init__(self, model, name: str | None = None):
        if not (hasattr(model, "hook_dict") and hasattr(model, "run_with_hooks") and hasattr(model, "hooks")):
            raise TypeError("TransformerLensAdapter needs a HookedTransformer (or TransformerBridge); got "
                            f"{type(model).__name__}.")
        self.model = model
        self.name = name or getattr(model.cfg, "model_name", "hooked_transformer")
        self.tokenizer = model.tokenizer
        self.n_layers = model.cfg.n_layers
        self.d_model = model.cfg.d_model
        self.d_mlp = model.cfg.d_mlp
        self.device = torch.device(model.cfg.device or "cpu")

    @property
    def kv_width(self) -> int:
        cfg = self.model.cfg
        return int((getattr(cfg, "n_key_value_heads", None) or cfg.n_heads) * cfg.d_head)

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
        if fwd_hooks:
            self.validate_hooks([n for n, _ in fwd_hooks])
        store: dict[str, Tensor] = {}

        def make(name):
            def save(act, hook):
                store[name] = act.detach()

            return save

        hooks = list(fwd_hooks) + [(n, make(n)) for n in names]
        stop = self._stop_layer(names) if not fwd_hooks else None
        with torch.no_grad(), self.model.hooks(fwd_hooks=hooks):
            self.model(batch.input_ids, attention_mask=batch.attention_mask, return_type=None,
                       stop_at_layer=stop)
        return {n: store[n] for n in names}

    def forward(self, batch, fwd_hooks=()):
        if fwd_hooks:
            self.validate_hooks([n for n, _ in fwd_hooks])
        with torch.no_grad(), self.model.hooks(fwd_hooks=list(fwd_hooks)):
            return self.model(batch.input_ids, attention_mask=batch.attention_mask)

    @contextmanager
    def decoding_session(self, fwd_hooks):
        """TL's KV cache with the cached-rotary attention of :mod:`.tl_attention` (TL's own attention
        where it does not apply), ``fwd_hooks`` registered for the whole session."""
        from .tl_attention import cached_rotary_attention

        with torch.no_grad(), self.model.hooks(fwd_hooks=list(fwd_hooks)), cached_rotary_attention(self.model):
            yield _TLDecodingSession(self)

    def _prefill_last_logits(self, batch: TokenBatch, cache) -> Float[Tensor, "batch d_vocab"]:
        """Run the prompts into ``cache`` and return the next-token logits of the last position only.

        Like HF ``generate`` (``logits_to_keep=1``), the unembedding runs on the last position, not on
        all ``batch × pos`` positions (the 49152-wide unembedding of a 16×42-token prefill alone
        costs as much as ~40 decoding steps). Every hook point still fires: the blocks and
        ``ln_final.*`` on all positions, ``unembed.*`` on the last position (shape ``[batch, 1, …]``),
        exactly where HF's ``norm`` and ``lm_head`` fire on the nnsight backend.
        """
        from transformer_lens.utilities import apply_softcap  # noqa: PLC0415

        model = self.model
        resid = model(batch.input_ids, attention_mask=batch.attention_mask, past_kv_cache=cache,
                      stop_at_layer=model.cfg.n_layers)
        if model.cfg.normalization_type is not None:
            resid = model.ln_final(resid)
        return apply_softcap(model.unembed(resid[:, -1:]), model.cfg.output_logits_soft_cap)[:, -1]




class _TLDecodingSession:
    """One generation's TL KV cache: prefill, one-token steps, row selection."""

    def __init__(self, adapter: TransformerLensAdapter):
        self.adapter = adapter
        self.cache = None

    def prefill(self, batch: TokenBatch) -> Float[Tensor, "batch d_vocab"]:
        from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache

        model = self.adapter.model
        self.cache = TransformerLensKeyValueCache.init_cache(model.cfg, model.cfg.device, batch.input_ids.shape[0])
        return self.adapter._prefill_last_logits(batch, self.cache)

    def step(self, tokens: Int[Tensor, " batch"]) -> Float[Tensor, "batch d_vocab"]:
        ones = torch.ones_like(tokens)[:, None]
        return self.adapter.model(tokens[:, None], attention_mask=ones, past_kv_cache=self.cache)[:, -1]

    def select_rows(self, index: Int[Tensor, " rows"]) -> None:
        from .tl_attention import select_cache_rows

        select_cache_rows(self.cache, index)
