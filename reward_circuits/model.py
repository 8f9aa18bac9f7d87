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

import re
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Callable, Iterator, Literal, Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm

HookFn = Callable[..., "Tensor | None"]
FwdHooks = Sequence[tuple[str, HookFn]]
Backend = Literal["transformer_lens", "nnsight"]


class HookNameError(KeyError):
    """An unknown hook point name."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0])


@dataclass
class TokenBatch:
    input_ids: Int[Tensor, "batch pos"]
    attention_mask: Int[Tensor, "batch pos"]

    def to(self, device) -> "TokenBatch":
        return TokenBatch(self.input_ids.to(device), self.attention_mask.to(device))


@dataclass
class GenerationConfig:
    """How to generate. ``do_sample=False`` is greedy; sampling is seeded per call."""

    max_new_tokens: int = 64
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    stop_strings: tuple[str, ...] = ()
    batch_size: int = 32
    progress: bool = True

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}.")
        if self.do_sample and self.temperature <= 0:
            raise ValueError("temperature must be > 0 when sampling; use do_sample=False for greedy decoding.")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}.")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}.")
        self.stop_strings = tuple(self.stop_strings)


@dataclass
class Generation:
    prompt_ids: list[int]
    response_ids: list[int]  # generated tokens, including a final EOS if one was generated
    text: str  # decoded response without special tokens, cut at a stop string
    finish_reason: Literal["eos", "stop_string", "length"] = "length"


# ---- hook names ---------------------------------------------------------------------------------

_LAYER_HOOK = re.compile(r"^blocks\.(\d+)\.(.+)$")
# within-block execution order, and the HF module path / side for the nnsight mapping
_BLOCK_SITES: dict[str, tuple[int, str, str]] = {
    "hook_resid_pre": (0, "", "input"),
    "hook_attn_out": (1, ".self_attn", "output0"),
    "hook_resid_mid": (2, ".post_attention_layernorm", "input"),
    "mlp.hook_post": (3, ".mlp.down_proj", "input"),
    "hook_mlp_out": (4, ".mlp", "output"),
    "hook_resid_post": (5, "", "output"),
}


def layer_of(hook_name: str) -> int | None:
    """``"blocks.5.hook_resid_post"`` → 5; ``"hook_embed"`` / ``"hook_pos_embed"`` → -1 (surface); else None."""
    m = _LAYER_HOOK.match(hook_name)
    if m:
        return int(m.group(1))
    return -1 if hook_name in ("hook_embed", "hook_pos_embed") else None


def execution_order(hook_name: str) -> tuple[int, int]:
    if hook_name == "hook_embed":
        return (-1, 0)
    if hook_name.startswith("ln_final"):
        return (10**9, 0)
    m = _LAYER_HOOK.match(hook_name)
    if not m:
        return (10**9, 1)
    return (int(m.group(1)), _BLOCK_SITES.get(m.group(2), (9, "", ""))[0])


def resid_hooks(n_layers: int, site: str = "hook_resid_post") -> list[str]:
    return [f"blocks.{l}.{site}" for l in range(n_layers)]


# ---- the interface ----------------------------------------------------------------------------


class ModelAdapter(ABC):
    """What every analysis needs from a model, whichever library runs it."""

    backend: Backend
    name: str
    tokenizer: object
    n_layers: int
    d_model: int
    d_mlp: int
    device: torch.device

    @abstractmethod
    def hook_names(self) -> list[str]:
        """Canonical TransformerLens names of the hook points this adapter can capture and edit."""

    def hook_width(self, hook_name: str) -> int:
        if hook_name.endswith("mlp.hook_post") or hook_name.endswith("mlp.hook_pre"):
            return self.d_mlp
        return self.d_model

    def validate_hooks(self, names: Sequence[str]) -> list[str]:
        names = [names] if isinstance(names, str) else list(names)
        if not names:
            raise HookNameError("no hook names given: name at least one, e.g. 'blocks.0.hook_resid_post'.")
        known = set(self.hook_names())
        bad = [n for n in names if n not in known]
        if bad:
            canonical = ["hook_resid_pre", "hook_resid_post", "hook_attn_out", "hook_mlp_out", "mlp.hook_post"]
            examples = [f"blocks.0.{c}" for c in canonical if f"blocks.0.{c}" in known]
            raise HookNameError(
                f"unknown hook point(s) {bad} for {self.name} ({self.backend}). Use TransformerLens names, "
                f"e.g. {examples + ['hook_embed']}; layers run 0..{self.n_layers - 1}. "
                "`adapter.hook_names()` lists them all."
            )
        return names

    # ---- tokenization -------------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str] | str, padding_side: Literal["left", "right"] = "left",
                 add_special_tokens: bool = False) -> TokenBatch:
        texts = [texts] if isinstance(texts, str) else list(texts)
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
        return TokenBatch(ids, mask).to(self.device)

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

    def generate(self, prompts: Sequence[str] | TokenBatch, config: GenerationConfig | None = None,
                 fwd_hooks: FwdHooks = (), **overrides) -> list[Generation]:
        """Generate for every prompt, in batches, with ``fwd_hooks`` active on every forward."""
        config = config or GenerationConfig()
        if overrides:
            config = GenerationConfig(**{**config.__dict__, **overrides})
        if fwd_hooks:
            self.validate_hooks([n for n, _ in fwd_hooks])
        if isinstance(prompts, TokenBatch):
            seqs = [row[m.bool()].tolist() for row, m in zip(prompts.input_ids, prompts.attention_mask)]
        else:
            prompts = list(prompts)
            if not prompts:
                raise ValueError("no prompts to generate from.")
            seqs = [self.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        out: list[Generation] = []
        bar = tqdm(range(0, len(seqs), config.batch_size), desc=f"generate ({self.backend})",
                   disable=not config.progress, leave=False)
        for b, start in enumerate(bar):
            chunk = seqs[start : start + config.batch_size]
            batch = self.pad(chunk, "left")
            new_tokens = self._generate_batch(batch, config, list(fwd_hooks), seed=config.seed + b)
            for prompt_ids, row in zip(chunk, new_tokens):
                out.append(self._finish(prompt_ids, row, config))
        return out

    @abstractmethod
    def _generate_batch(self, batch: TokenBatch, config: GenerationConfig, fwd_hooks: list, seed: int) -> list[list[int]]:
        """New token ids per row (may run past EOS; :meth:`_finish` cuts)."""

    @property
    def eos_ids(self) -> set[int]:
        ids = {self.tokenizer.eos_token_id}
        extra = getattr(getattr(self, "_gen_eos", None), "__iter__", None)
        if extra:
            ids |= set(self._gen_eos)
        return {i for i in ids if i is not None}

    def _finish(self, prompt_ids: list[int], new: list[int], config: GenerationConfig) -> Generation:
        eos = self.eos_ids
        resp: list[int] = []
        reason = "length"
        for t in new:
            resp.append(int(t))
            if t in eos:
                reason = "eos"
                break
        text = self.tokenizer.decode(resp, skip_special_tokens=True)
        if config.stop_strings:
            cut = min((text.find(s) for s in config.stop_strings if s in text), default=-1)
            if cut >= 0:
                stop = next(s for s in config.stop_strings if text.find(s) == cut)
                # keep the fewest tokens whose decoding reaches the stop string
                for k in range(1, len(resp) + 1):
                    if stop in self.tokenizer.decode(resp[:k], skip_special_tokens=True):
                        resp = resp[:k]
                        break
                text = text[:cut]
                reason = "stop_string"
        return Generation(list(map(int, prompt_ids)), resp, text, reason)


def _sample(logits: Float[Tensor, "batch vocab"], config: GenerationConfig, gen: torch.Generator) -> Int[Tensor, " batch"]:
    if not config.do_sample:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / config.temperature, -1)
    if config.top_p < 1.0:
        sp, si = probs.sort(-1, descending=True)
        keep = sp.cumsum(-1) - sp < config.top_p
        sp = sp * keep
        probs = torch.zeros_like(probs).scatter(-1, si, sp)
    return torch.multinomial(probs / probs.sum(-1, keepdim=True), 1, generator=gen).squeeze(-1)


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

    def _generate_batch(self, batch, config, fwd_hooks, seed):
        from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache

        from .tl_attention import cached_rotary_attention

        model = self.model
        bsz = batch.input_ids.shape[0]
        cache = TransformerLensKeyValueCache.init_cache(model.cfg, model.cfg.device, bsz)
        gen = torch.Generator(device="cpu").manual_seed(seed)
        eos = torch.tensor(sorted(self.eos_ids), device=self.device)
        finished = torch.zeros(bsz, dtype=torch.bool, device=self.device)
        tokens: list[Tensor] = []
        with torch.no_grad(), model.hooks(fwd_hooks=fwd_hooks), cached_rotary_attention(model):
            logits = self._prefill_last_logits(batch, cache)
            for _ in range(config.max_new_tokens):
                nxt = _sample(logits, config, gen).to(self.device)
                nxt = torch.where(finished, torch.full_like(nxt, self.tokenizer.pad_token_id), nxt)
                tokens.append(nxt)
                finished |= torch.isin(nxt, eos)
                if finished.all() or len(tokens) == config.max_new_tokens:
                    break
                if config.stop_strings:
                    done = torch.stack(tokens, 1).tolist()
                    for i, row in enumerate(done):
                        if not finished[i]:
                            text = self.tokenizer.decode(row, skip_special_tokens=True)
                            if any(s in text for s in config.stop_strings):
                                finished[i] = True
                    if finished.all():
                        break
                logits = model(nxt[:, None], attention_mask=torch.ones_like(nxt)[:, None], past_kv_cache=cache)[:, -1]
        return torch.stack(tokens, 1).tolist()

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


# ---- nnsight ------------------------------------------------------------------------------------


def hf_site(hook_name: str, module_prefix: str = "model") -> tuple[str, str]:
    """(HF module path, 'input' | 'output' | 'output0') of a TransformerLens hook name."""
    if hook_name == "hook_embed":
        return f"{module_prefix}.embed_tokens", "output"
    m = _LAYER_HOOK.match(hook_name)
    if m and m.group(2) in _BLOCK_SITES:
        _, suffix, side = _BLOCK_SITES[m.group(2)]
        return f"{module_prefix}.layers.{m.group(1)}{suffix}", side
    raise HookNameError(f"no HF module mapping for hook {hook_name!r}.")


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
        self.n_layers = c.num_hidden_layers
        self.d_model = c.hidden_size
        self.d_mlp = getattr(c, "intermediate_size", 4 * c.hidden_size)
        self.device = next(hf.parameters()).device
        self.remote = remote
        gen_eos = getattr(hf.generation_config, "eos_token_id", None)
        self._gen_eos = [gen_eos] if isinstance(gen_eos, int) else list(gen_eos or [])
        # ln_final.hook_normalized is not offered: TransformerLens takes it before the RMSNorm weight,
        # HF's model.norm output is after it, so no module output matches it.
        self._names = ["hook_embed"] + [f"blocks.{l}.{s}" for l in range(self.n_layers) for s in _BLOCK_SITES]

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
            path, side = hf_site(name)
            env = self._envoy(path)
            if fn is None:
                saved[name] = self._read(env, side).save()
            else:
                act = self._read(env, side)
                new = fn(act, hook=SimpleNamespace(name=name))
                if new is not None:
                    self._write(env, side, new)

    def _inputs(self, batch: TokenBatch) -> dict:
        return {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}

    def capture(self, batch, hook_names, fwd_hooks=()):
        names = self.validate_hooks(hook_names)
        if fwd_hooks:
            self.validate_hooks([n for n, _ in fwd_hooks])
        saved: dict = {}
        with torch.no_grad():
            with self.lm.trace(self._inputs(batch), remote=self.remote) as tracer:
                self._apply_hooks(fwd_hooks, names, saved)
                tracer.stop()  # no logits needed
        return {n: _as_tensor(saved[n]).detach() for n in names}

    def forward(self, batch, fwd_hooks=()):
        if fwd_hooks:
            self.validate_hooks([n for n, _ in fwd_hooks])
        with torch.no_grad():
            with self.lm.trace(self._inputs(batch), remote=self.remote):
                self._apply_hooks(fwd_hooks)
                logits = self.lm.lm_head.output.save()
        return _as_tensor(logits)

    def _generate_batch(self, batch, config, fwd_hooks, seed):
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
            with self.lm.generate(self._inputs(batch), remote=self.remote, streamer=collector, **kwargs) as tracer:
                if fwd_hooks:
                    for _step in tracer.iter[0 : config.max_new_tokens]:
                        self._apply_hooks(fwd_hooks)
        return collector.new_tokens()


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


# ---- construction -----------------------------------------------------------------------------


def from_hf(hf_model, tokenizer, backend: Backend = "transformer_lens", name: str | None = None,
            remote: bool = False) -> ModelAdapter:
    """Wrap an already loaded HF causal LM (both backends run the same weights)."""
    from .loading import hooked_transformer_from_hf, prepare_tokenizer

    prepare_tokenizer(tokenizer)
    if backend == "transformer_lens":
        device = str(next(hf_model.parameters()).device)
        return TransformerLensAdapter(hooked_transformer_from_hf(hf_model, tokenizer, device=device), name=name)
    if backend == "nnsight":
        from nnsight import LanguageModel
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lm = LanguageModel(hf_model, tokenizer=tokenizer)
        return NNsightAdapter(lm, name=name, remote=remote)
    raise ValueError(f"unknown backend {backend!r}: use 'transformer_lens' or 'nnsight'.")


def load_model(name: str = "default", backend: Backend = "transformer_lens", device: str = "cpu",
               remote: bool = False, **hf_kwargs) -> ModelAdapter:
    """Load ``default`` (packaged SmolLM2-135M-Instruct, offline), a local HF directory or a hub id.

    ``remote=True`` (nnsight) runs on NDIF; ``device_map="auto"`` (nnsight) spreads a big model.
    """
    from .loading import DEFAULT_MODEL, is_default, load_hf

    if backend not in ("transformer_lens", "nnsight"):
        raise ValueError(f"unknown backend {backend!r}: use 'transformer_lens' or 'nnsight'.")
    if remote and backend != "nnsight":
        raise ValueError("remote=True needs backend='nnsight' (NDIF).")
    hf, tok = load_hf(name, device=device, **hf_kwargs)
    display = DEFAULT_MODEL if is_default(name) else name
    return from_hf(hf, tok, backend=backend, name=display, remote=remote)
