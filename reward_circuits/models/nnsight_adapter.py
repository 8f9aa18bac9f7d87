"""nnsight backend: a ``LanguageModel`` behind :class:`ModelAdapter` (local, ``device_map`` or NDIF ``remote=True``)."""

from __future__ import annotations

from contextlib import contextmanager
from types import SimpleNamespace
from typing import Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor


from .base import Backend, FwdHooks, ModelAdapter, TokenBatch
from .hook_names import BLOCK_SITES, execution_order, hf_layout, hf_site

# ---- nnsight ------------------------------------------------------------------------------------


class NNsightAdapter(ModelAdapter):
    """nnsight ``LanguageModel`` backend: captures with ``trace`` + ``.save()``, edits module outputs.

    ``remote=True`` sends traces to NDIF (models that need it); big local models are loaded with HF
    ``device_map`` (``load_model(..., device_map="auto")``).
    """

    backend: Backend = "nnsight"

    def __init__(self, lm, name: str | None = None, remote: bool = False):
        self.lm = lm
        hf = lm._model if hasattr(lm, "_model") else lm
        self.hf = hf
        c = hf.config
        self.name = name or getattr(c, "_name_or_path", "") or type(hf).__name__
        self.tokenizer = lm.tokenizer
        self.layout = hf_layout(getattr(c, "model_type", ""))
        self.n_layers = c.num_hidden_layers
        self.d_model = c.hidden_size
        self.d_mlp = getattr(c, "intermediate_size", None) or getattr(c, "n_inner", None) or 4 * c.hidden_size
        self.d_vocab = hf.get_input_embeddings().num_embeddings
        self.device = next(hf.parameters()).device
        self.remote = remote
        gen_eos = getattr(hf.generation_config, "eos_token_id", None)
        self._gen_eos = [gen_eos] if isinstance(gen_eos, int) else list(gen_eos or [])
        # ln_final.hook_normalized is not offered: TransformerLens takes it before the RMSNorm weight,
        # HF's model.norm output is after it, so no module output matches it.
        self._names = ["hook_embed"] + [f"blocks.{l}.{s}" for l in range(self.n_layers) for s in BLOCK_SITES]

    @property
    def context_length(self) -> int | None:
        c = self.hf.config
        n = getattr(c, "max_position_embeddings", None) or getattr(c, "n_positions", None)
        return int(n) if n else None

    @property
    def kv_width(self) -> int:
        c = self.hf.config
        heads = getattr(c, "num_attention_heads", 1)
        head_dim = getattr(c, "head_dim", None) or self.d_model // heads
        return int((getattr(c, "num_key_value_heads", None) or heads) * head_dim)

    def hook_names(self) -> list[str]:
        return list(self._names)

    def _envoy(self, path: str):
        env = self.lm
        for part in path.split("."):
            env = env[int(part)] if part.isdigit() else getattr(env, part)
        return env

    @staticmethod
    def _read(env, side: str):
        if side == "input":
            return env.input
        out = env.output
        if side == "output0" or isinstance(out, tuple):
            return out[0]
        return out

    @staticmethod
    def _write(env, side: str, value):
        if side == "input":
            env.input = value
        elif side == "output0":
            out = env.output
            if isinstance(out, tuple):
                env.output = (value,) + tuple(out[1:])
            else:
                env.output = value
        else:
            env.output = value

    def _apply_hooks(self, fwd_hooks: FwdHooks, saves: Sequence[str] = (), saved: dict | None = None) -> None:
        """Inside an open trace/edit: run hook fns at their sites in forward order.

        Sites named in ``saves`` are saved into ``saved``, a dict created *outside* the trace
        (nnsight does not hand back containers built inside the block).
        """
        events: list[tuple[tuple[int, int], int, str, object]] = []
        for i, (name, fn) in enumerate(fwd_hooks):
            events.append((execution_order(name), i, name, fn))
        for j, name in enumerate(saves):
            events.append((execution_order(name), len(fwd_hooks) + j, name, None))
        events.sort(key=lambda e: (e[0], e[1]))
        for _, _, name, fn in events:
            path, side = hf_site(name, self.layout)
            env = self._envoy(path)
            if fn is None:
                saved[name] = self._read(env, side).save()
            else:
                act = self._read(env, side)
                new = fn(act, hook=SimpleNamespace(name=name))
                if new is not None:
                    self._write(env, side, new)

    def _inputs(self, batch: TokenBatch, positions: bool = True) -> dict:
        """A trace's inputs. Position ids come from the attention mask (a left-padded row's first real
        token is position 0): HF models with absolute position embeddings (GPT-2, OPT, ...) otherwise
        count the pads (nnsight 0.8.1 mishandles left padding there, upstream issue 672); rotary models
        are unchanged by the offset. HF ``generate`` computes its own (``positions=False``)."""
        inputs = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
        if positions:
            inputs["position_ids"] = (batch.attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        return inputs

    def capture(self, batch, hook_names, fwd_hooks=()):
        names = self.validate_hooks(hook_names)
        fwd_hooks = self.active_hooks(self.check_fwd_hooks(fwd_hooks))
        saved: dict = {}
        with torch.no_grad():
            with self.lm.trace(self._inputs(batch), remote=self.remote) as tracer:
                self._apply_hooks(fwd_hooks, names, saved)
                tracer.stop()  # no logits needed
        return {n: _as_tensor(saved[n]).detach() for n in names}

    def forward(self, batch, fwd_hooks=()):
        fwd_hooks = self.active_hooks(self.check_fwd_hooks(fwd_hooks))
        with torch.no_grad():
            with self.lm.trace(self._inputs(batch), remote=self.remote):
                self._apply_hooks(fwd_hooks)
                logits = self.lm.lm_head.output.save()
        return _as_tensor(logits)

    def _generate_batch(self, batch, config, fwd_hooks, seed):
        if not self.remote:
            return super()._generate_batch(batch, config, fwd_hooks, seed)
        return self._hf_generate_batch(batch, config, fwd_hooks, seed)

    @contextmanager
    def decoding_session(self, fwd_hooks):
        """Our own KV-cached decoding loop: one nnsight ``trace`` per forward (the hook functions run
        inside it, as in :meth:`forward`) over an HF ``DynamicCache`` that rows can leave. Without
        hooks the HF model is called directly (no trace to set up). Local models only: NDIF
        (``remote=True``) cannot keep a cache between traces, there HF ``generate`` runs instead."""
        if self.remote:
            raise NotImplementedError("remote (NDIF) models decode with HF generate: use adapter.generate; "
                                      "row-scoped sweeps need a local model.")
        with torch.no_grad():
            yield _NNsightDecodingSession(self, self.active_hooks(fwd_hooks))

    def _hf_generate_batch(self, batch, config, fwd_hooks, seed):
        """HF ``generate`` inside an nnsight generation (finished rows stay in the batch)."""
        fwd_hooks = self.active_hooks(fwd_hooks)
        kwargs = dict(max_new_tokens=config.max_new_tokens, do_sample=config.do_sample,
                      pad_token_id=self.tokenizer.pad_token_id, eos_token_id=sorted(self.eos_ids))
        if config.do_sample:
            kwargs.update(temperature=config.temperature, top_p=config.top_p, top_k=0)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if config.stop_strings:
            kwargs.update(stop_strings=list(config.stop_strings), tokenizer=self.tokenizer)
        # New tokens are collected by our own streamer, not read from tracer.result: nnsight skips
        # code placed after a bounded ``tracer.iter`` when every row stops before the bound.
        # (``model.edit()`` is no substitute: its edits fire on the first forward only.)
        collector = _TokenCollector()
        torch.manual_seed(seed)
        with torch.no_grad():
            with self.lm.generate(self._inputs(batch, positions=False), remote=self.remote, streamer=collector, **kwargs) as tracer:
                if fwd_hooks:
                    for _step in tracer.iter[0 : config.max_new_tokens]:
                        self._apply_hooks(fwd_hooks)
        return collector.new_tokens()


class _NNsightDecodingSession:
    """One generation's HF ``DynamicCache``, position ids from the attention mask (left padding)."""

    def __init__(self, adapter: NNsightAdapter, fwd_hooks: list):
        from transformers import DynamicCache

        self.adapter, self.hooks = adapter, fwd_hooks
        self.cache = DynamicCache()
        self.mask: Tensor | None = None

    def _run(self, inputs: dict, **kwargs) -> Float[Tensor, "batch d_vocab"]:
        a = self.adapter
        if not self.hooks:
            return a.hf(**inputs, cache=self.cache, use_cache=True, **kwargs).logits[:, -1]
        with a.lm.trace(inputs, cache=self.cache, use_cache=True, **kwargs):
            a._apply_hooks(self.hooks)
            logits = a.lm.lm_head.output.save()
        return _as_tensor(logits)[:, -1]

    def prefill(self, batch: TokenBatch, start=None, base=None, on_rows=None) -> Float[Tensor, "batch d_vocab"]:
        # no forward from a layer here: rows with a prefill_start run the whole prompt (same result)
        self.mask = batch.attention_mask.to(self.adapter.device)
        positions = (self.mask.long().cumsum(-1) - 1).clamp(min=0)
        inputs = {"input_ids": batch.input_ids.to(self.adapter.device), "attention_mask": self.mask,
                  "position_ids": positions}
        return self._run(inputs, logits_to_keep=1)

    def step(self, tokens: Int[Tensor, " batch"]) -> Float[Tensor, "batch d_vocab"]:
        self.mask = torch.cat([self.mask, self.mask.new_ones((self.mask.shape[0], 1))], dim=1)
        positions = self.mask.long().sum(-1, keepdim=True) - 1
        return self._run({"input_ids": tokens[:, None], "attention_mask": self.mask, "position_ids": positions})

    def select_rows(self, index: Int[Tensor, " rows"]) -> None:
        self.cache.batch_select_indices(index.to(self.adapter.device))
        self.mask = self.mask.index_select(0, index.to(self.mask.device))


class _TokenCollector:
    """An HF streamer that keeps every step's new tokens (the first ``put`` is the prompt)."""

    def __init__(self):
        self._steps: list[Tensor] = []
        self._seen_prompt = False

    def put(self, value: Tensor) -> None:
        if not self._seen_prompt:
            self._seen_prompt = True
            return
        self._steps.append(value.detach().reshape(-1).cpu())

    def end(self) -> None:
        pass

    def new_tokens(self) -> list[list[int]]:
        if not self._steps:
            return []
        return torch.stack(self._steps, 1).tolist()


def _as_tensor(x) -> Tensor:
    return x.value if hasattr(x, "value") and not isinstance(x, Tensor) else x


