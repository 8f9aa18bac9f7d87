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

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, Literal, Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm

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


def sample_next(logits: Float[Tensor, "batch vocab"], config: GenerationConfig, gen: torch.Generator) -> Int[Tensor, " batch"]:
    if not config.do_sample:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / config.temperature, -1)
    if config.top_p < 1.0:
        sp, si = probs.sort(-1, descending=True)
        keep = sp.cumsum(-1) - sp < config.top_p
        sp = sp * keep
        probs = torch.zeros_like(probs).scatter(-1, si, sp)
    return torch.multinomial(probs / probs.sum(-1, keepdim=True), 1, generator=gen).squeeze(-1)


