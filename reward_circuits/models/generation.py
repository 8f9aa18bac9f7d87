"""What a generation is asked for and what it gives: :class:`GenerationConfig`, :class:`Generation`,
:class:`GenerationPlan` (prefill rows and the decoding rows continuing them), :class:`RowLabels`
(the label of every running row, for row-scoped hooks), and the sampling helpers."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Literal, Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor

from ..reprs import short_text
from .base import TokenBatch

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
    drop_finished: bool = True  # finished rows leave the running batch and its KV cache
    refill: bool = True  # greedy generate() without hooks on a backend that joins rows: keep the batch full

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


def generation_config(config: GenerationConfig | None, overrides: dict | None = None) -> GenerationConfig:
    """``config`` (default: ``GenerationConfig()``) with ``overrides`` applied, checked: a config
    object, and override names that are its fields (a typo is named, with the closest field)."""
    if config is None:
        config = GenerationConfig()
    if not isinstance(config, GenerationConfig):
        hint = "GenerationConfig(**config)" if isinstance(config, dict) else "GenerationConfig(max_new_tokens=...)"
        raise TypeError(f"config must be a GenerationConfig, got {type(config).__name__}: pass {hint}, "
                        "or give options as keywords, e.g. generate(prompts, max_new_tokens=32).")
    if not overrides:
        return config
    fields = list(config.__dataclass_fields__)
    unknown = [k for k in overrides if k not in fields]
    if unknown:
        close = {k: difflib.get_close_matches(k, fields, n=1, cutoff=0.6) for k in unknown}
        hint = "; ".join(f"{k!r}: did you mean {c[0]!r}?" for k, c in close.items() if c)
        raise TypeError(f"unknown generation option(s) {unknown}. {hint + ' ' if hint else ''}"
                        f"GenerationConfig's options are {fields}.")
    return GenerationConfig(**{**config.__dict__, **overrides})


@dataclass
class Generation:
    prompt_ids: list[int]
    response_ids: list[int]  # generated tokens, including a final EOS if one was generated
    text: str  # decoded response without special tokens, cut at a stop string
    finish_reason: Literal["eos", "stop_string", "length"] = "length"

    def __repr__(self) -> str:
        return (f"Generation(text={short_text(self.text, 60)}, n_tokens={len(self.response_ids)}, "
                f"finish={self.finish_reason!r}, prompt_tokens={len(self.prompt_ids)})")


@dataclass
class GenerationPlan:
    """What one cached generation runs: ``prefill`` (left-padded prompt rows), then decoding rows
    that each continue one prefill row: decoding row ``r`` starts from the KV cache and last
    logits of prefill row ``source[r]`` (``None``: row ``r`` continues prefill row ``r``).

    Several decoding rows may share a prefill row: the prompt is encoded once and its cache is
    copied to each of them. ``prefill_labels`` / ``decode_labels`` (one int per row, e.g. a sweep
    condition; ``-1``: none) are published through :class:`RowLabels` while the rows run.

    ``prefill_start[p] > 0`` says prefill row ``p`` is the prompt of prefill row ``prefill_base[p]``
    (same tokens, ``prefill_start`` 0, untouched by hooks) up to layer ``prefill_start[p]``: a
    backend that can start a forward at a layer (:attr:`ModelAdapter.prefill_from_layer`) reuses
    that row's residual stream and KV cache below it instead of recomputing them; others run the
    whole prompt.
    """

    prefill: TokenBatch
    source: Int[Tensor, " rows"] | None = None
    prefill_labels: Int[Tensor, " prefill"] | None = None
    decode_labels: Int[Tensor, " rows"] | None = None
    prefill_start: Int[Tensor, " prefill"] | None = None
    prefill_base: Int[Tensor, " prefill"] | None = None
    prefix_rows: Int[Tensor, " prefill"] | None = None  # with decode_stream(prefix=...): the prefix row each continues
    # sampling: each key has its own generator (seeded by the decode seed and the key); rows with the
    # same key draw the same uniform number at every step and sample by inverse CDF (common random
    # numbers: the conditions of a sweep compared on one example are paired, whatever the batch)
    row_keys: Int[Tensor, " rows"] | None = None
    # shared trunk (backends with ``shares_trunk``): the first block each decoding row's hooks act at
    # (``n_layers``: none). Rows with the same key (else the same source row) share the blocks below
    # it while their tokens agree (:mod:`.tl_trunk`); their prompt caches must agree there. Only
    # row-scoped hooks may run (a hook for every row would see a shared row once).
    trunk_layers: Int[Tensor, " rows"] | None = None
    # every generated token is fed to the model once more before its row leaves (one extra step
    # at the end): hooks see the state at every token of every row (capture while generating)
    feed_last: bool = False

    def __post_init__(self):
        n_prefill = int(self.prefill.input_ids.shape[0])
        if self.source is not None:
            self.source = torch.as_tensor(self.source, dtype=torch.long).reshape(-1).cpu()
            if self.source.numel() == 0:
                raise ValueError("a generation plan needs at least one decoding row.")
            if int(self.source.min()) < 0 or int(self.source.max()) >= n_prefill:
                raise ValueError(f"source rows must index the {n_prefill} prefill rows.")
        for name, want in (("prefill_labels", n_prefill), ("decode_labels", int(self.sources().numel()))):
            labels = getattr(self, name)
            if labels is not None:
                labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1).cpu()
                if labels.numel() != want:
                    raise ValueError(f"{name} has {labels.numel()} entries for {want} rows.")
                setattr(self, name, labels)
        if self.row_keys is not None:
            self.row_keys = torch.as_tensor(self.row_keys, dtype=torch.long).reshape(-1).cpu()
            if self.row_keys.numel() != int(self.sources().numel()) or int(self.row_keys.min()) < 0:
                raise ValueError("row_keys needs one key >= 0 per decoding row.")
        if self.trunk_layers is not None:
            self.trunk_layers = torch.as_tensor(self.trunk_layers, dtype=torch.long).reshape(-1).cpu()
            if self.trunk_layers.numel() != int(self.sources().numel()) or int(self.trunk_layers.min()) < 0:
                raise ValueError("trunk_layers needs one layer >= 0 per decoding row.")
        if self.prefix_rows is not None:
            self.prefix_rows = torch.as_tensor(self.prefix_rows, dtype=torch.long).reshape(-1).cpu()
            if self.prefix_rows.numel() != n_prefill:
                raise ValueError(f"prefix_rows has {self.prefix_rows.numel()} entries for {n_prefill} prefill rows.")
        if (self.prefill_start is None) != (self.prefill_base is None):
            raise ValueError("give prefill_start and prefill_base together (or neither).")
        if self.prefill_start is not None:
            self.prefill_start = torch.as_tensor(self.prefill_start, dtype=torch.long).reshape(-1).cpu()
            self.prefill_base = torch.as_tensor(self.prefill_base, dtype=torch.long).reshape(-1).cpu()
            if self.prefill_start.numel() != n_prefill or self.prefill_base.numel() != n_prefill:
                raise ValueError(f"prefill_start and prefill_base need one entry per prefill row ({n_prefill}).")
            later = torch.nonzero(self.prefill_start > 0).reshape(-1)
            if later.numel():
                base = self.prefill_base[later]
                if int(base.min()) < 0 or int(base.max()) >= n_prefill or bool((self.prefill_start[base] != 0).any()):
                    raise ValueError("a row with prefill_start > 0 needs a prefill_base row that runs the whole prompt.")
                ids, mask = self.prefill.input_ids.cpu(), self.prefill.attention_mask.cpu()
                if not (torch.equal(ids[later], ids[base]) and torch.equal(mask[later], mask[base])):
                    raise ValueError("a row and its prefill_base must hold the same prompt.")

    def sources(self) -> Int[Tensor, " rows"]:
        return torch.arange(self.prefill.input_ids.shape[0]) if self.source is None else self.source

    def prompt_ids(self) -> list[list[int]]:
        """The unpadded prompt of every prefill row."""
        ids, mask = self.prefill.input_ids.cpu(), self.prefill.attention_mask.cpu().bool()
        return [row[m].tolist() for row, m in zip(ids, mask)]


class RowLabels:
    """The label of every row of the batch the model is running right now (for row-scoped hooks).

    The decoding loop calls :meth:`set` before the prefill and whenever rows leave the batch;
    :meth:`rows` gives the batch rows that carry a label (memoised until the next :meth:`set`).
    A plain object, not a ContextVar: nnsight runs hook code on another thread.
    """

    def __init__(self, labels: Int[Tensor, " batch"] | Sequence[int] | None = None):
        self.labels: Int[Tensor, " batch"] | None = None
        self._rows: dict[tuple[int, torch.device], Tensor] = {}
        if labels is not None:
            self.set(labels)

    def set(self, labels: Int[Tensor, " batch"] | Sequence[int]) -> None:
        self.labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1).cpu()
        self._rows = {}

    def rows(self, label: int, device: torch.device | str = "cpu") -> Int[Tensor, " k"]:
        if self.labels is None:
            raise RuntimeError("no row labels set: run row-scoped hooks through generate_plan / sweep, "
                               "or call RowLabels.set(labels) before the forward.")
        key = (int(label), torch.device(device))
        out = self._rows.get(key)
        if out is None:
            out = torch.nonzero(self.labels == int(label)).reshape(-1).to(device)
            self._rows[key] = out
        return out


def common_prefix_len(seqs: Sequence[Sequence[int]], keep: int = 2) -> int:
    """Tokens every sequence starts with, leaving each at least ``keep`` of its own (a one-token
    forward looks like a decoding step to position scopes); 0 below two tokens."""
    first, p = seqs[0], 0
    limit = min(len(s) for s in seqs) - keep
    while p < limit and all(s[p] == first[p] for s in seqs):
        p += 1
    return p if p >= 2 else 0


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


def sample_with_uniforms(logits: Float[Tensor, "batch vocab"], config: GenerationConfig,
                         u: Float[Tensor, " batch"]) -> Int[Tensor, " batch"]:
    """Sample each row by inverse CDF from its own uniform number ``u`` (same temperature and top-p
    as :func:`sample_next`): rows given the same ``u`` and the same distribution draw the same token."""
    probs = torch.softmax(logits.float() / config.temperature, -1)
    order = None
    if config.top_p < 1.0:
        probs, order = probs.sort(-1, descending=True)
        probs = probs * (probs.cumsum(-1) - probs < config.top_p)
    cdf = probs.cumsum(-1)
    idx = torch.searchsorted(cdf, (u.to(cdf) * cdf[:, -1]).unsqueeze(-1), right=True).clamp_max(cdf.shape[-1] - 1)
    return (idx if order is None else order.gather(-1, idx)).squeeze(-1)
