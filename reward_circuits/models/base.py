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


from .generation import (  # noqa: E402,F401  (re-exported: models.base.GenerationConfig, ...)
    Generation, GenerationConfig, GenerationPlan, RowLabels, common_prefix_len, generation_config, sample_next,
    sample_with_uniforms,
)

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

    def generate(self, prompts: Sequence[str] | TokenBatch, config: GenerationConfig | None = None,
                 fwd_hooks: FwdHooks = (), **overrides) -> list[Generation]:
        """Generate for every prompt, in batches, with ``fwd_hooks`` active on every forward.

        Rows that finish (EOS or a stop string) leave the running batch and its KV cache
        (``config.drop_finished``), so a few long answers do not hold the whole batch.
        """
        config = generation_config(config, overrides)
        fwd_hooks = self.check_fwd_hooks(fwd_hooks)
        if isinstance(prompts, str):  # one prompt, not a list of one-character prompts
            prompts = [prompts]
        if isinstance(prompts, TokenBatch):
            seqs = [row[m.bool()].tolist() for row, m in zip(prompts.input_ids, prompts.attention_mask)]
        else:
            prompts = list(prompts)
            if not prompts:
                raise ValueError("no prompts to generate from.")
            seqs = [self.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        if (config.refill and self.joins_rows and not config.do_sample and config.drop_finished and not fwd_hooks
                and not self.has_attached_hooks() and len(seqs) > 1):  # the shared prefix is hook-free
            return self._generate_streamed(seqs, config)
        out: list[Generation] = []
        bar = tqdm(range(0, len(seqs), config.batch_size), desc=f"generate ({self.backend})",
                   disable=not config.progress, leave=False)
        for b, start in enumerate(bar):
            chunk = seqs[start : start + config.batch_size]
            batch = self.pad(chunk, "left")
            new_tokens = self._generate_batch(batch, config, list(fwd_hooks), seed=config.seed + b)
            for prompt_ids, row in zip(chunk, new_tokens):
                out.append(self.finish_generation(prompt_ids, row, config))
        return out

    def _generate_streamed(self, seqs: list[list[int]], config: GenerationConfig) -> list[Generation]:
        """Greedy, no hooks, on a backend that joins rows: prompts in small plans that join one
        running batch of ``config.batch_size`` rows as rows finish (:meth:`decode_stream`), the
        token prefix all prompts share encoded once. Same tokens as one batch at a time, up to
        float reduction order."""
        cut = common_prefix_len(seqs)
        step = max(1, config.batch_size // 8)
        plans = [GenerationPlan(self.pad([s[cut:] for s in seqs[i:i + step]], "left"),
                                prefix_rows=torch.zeros(len(seqs[i:i + step]), dtype=torch.long) if cut else None)
                 for i in range(0, len(seqs), step)]
        prefix = GenerationPlan(self.pad([seqs[0][:cut]], "left")) if cut else None
        rows = self.decode_stream(plans, config, [], max_rows=config.batch_size, prefix=prefix,
                                  desc=f"generate ({self.backend})")
        return [self.finish_generation(seq, new, config)
                for seq, new in zip(seqs, (r for plan_rows in rows for r in plan_rows))]

    def generate_plan(self, plan: "GenerationPlan", config: GenerationConfig, fwd_hooks: FwdHooks = (), *,
                      seed: int | None = None, row_labels: "RowLabels | None" = None) -> list[Generation]:
        """One cached generation of ``plan`` (prefill rows, then decoding rows that each continue one
        prefill row), with ``fwd_hooks`` active on every forward; one :class:`Generation` per decoding row.

        ``row_labels`` (optional) is kept up to date with the label of every row the model runs at
        each moment (``plan.prefill_labels`` during the prefill, ``plan.decode_labels`` of the rows
        still running afterwards), so row-scoped hooks know which rows are theirs.
        """
        fwd_hooks = self.check_fwd_hooks(fwd_hooks)
        new_tokens = self.decode(plan, config, list(fwd_hooks), config.seed if seed is None else seed, row_labels)
        prompts = plan.prompt_ids()
        return [self.finish_generation(prompts[int(src)], row, config) for src, row in zip(plan.sources(), new_tokens)]

    def _generate_batch(self, batch: TokenBatch, config: GenerationConfig, fwd_hooks: list, seed: int) -> list[list[int]]:
        """New token ids per row (may stop at EOS or a stop string; :meth:`finish_generation` cuts)."""
        return self.decode(GenerationPlan(batch), config, fwd_hooks, seed)

    prefill_from_layer: bool = False  # whether decoding sessions reuse a shared prompt below a layer

    @abstractmethod
    def decoding_session(self, fwd_hooks: list) -> "AbstractContextManager[DecodingSession]":
        """A context manager yielding this backend's :class:`DecodingSession` with ``fwd_hooks`` active
        on every forward inside it (removed on exit, also on an exception)."""

    @torch.no_grad()
    def decode(self, plan: "GenerationPlan", config: GenerationConfig, fwd_hooks: list, seed: int,
               row_labels: "RowLabels | None" = None) -> list[list[int]]:
        """The decoding loop shared by both backends: new token ids per decoding row of ``plan``.

        Greedy or seeded sampling (one CPU generator per call; every step draws for *all* rows of
        the plan, finished or not, so the draws of a row do not depend on which rows left). A row
        stops at EOS or when its decoded text contains a stop string; with ``config.drop_finished``
        it then leaves the running batch and the KV cache.
        """
        gen = torch.Generator(device="cpu").manual_seed(seed)
        key_gens: dict[int, torch.Generator] = {}

        def key_uniforms(keys: Int[Tensor, " rows"]) -> Float[Tensor, " rows"]:
            """One uniform number per key and step from the key's own generator (seeded by
            ``seed`` and the key): rows with one key share it, whatever else is in the batch."""
            draws = {}
            for k in keys.unique().tolist():
                if k not in key_gens:
                    key_gens[k] = torch.Generator(device="cpu").manual_seed((seed * 1_000_003 + k * 7_919 + 1) % (2**63 - 1))
                draws[k] = float(torch.rand(1, generator=key_gens[k]))
            return torch.tensor([draws[k] for k in keys.tolist()])
        eos = torch.tensor(sorted(self.eos_ids), dtype=torch.long)
        sources = plan.sources()
        n_rows = int(sources.numel())
        decode_labels = plan.decode_labels
        tokens: list[list[int]] = [[] for _ in range(n_rows)]
        active = torch.arange(n_rows)  # plan rows in the running batch, in batch order
        finished = torch.zeros(n_rows, dtype=torch.bool)  # only used when finished rows stay
        pad_id = self.tokenizer.pad_token_id
        with self.decoding_session(fwd_hooks) as session:
            logits = session.prefill(plan.prefill, **self._prefill_kwargs(plan, row_labels))  # the prefill may run in parts
            if plan.source is not None:
                session.select_rows(sources.to(logits.device))
                logits = logits.index_select(0, sources.to(logits.device))
            if row_labels is not None:
                row_labels.set(decode_labels if decode_labels is not None else sources.new_full((n_rows,), -1))
            for step in range(config.max_new_tokens):
                if config.do_sample and plan.row_keys is not None:  # common random numbers per key
                    nxt = sample_with_uniforms(logits, config, key_uniforms(plan.row_keys[active])).cpu()
                else:
                    nxt = self._next_tokens(logits, active, n_rows, config, gen)
                rows = active.tolist()
                new = nxt.tolist()
                done = torch.isin(nxt, eos)
                for j, (r, t) in enumerate(zip(rows, new)):
                    if finished[r]:
                        new[j] = pad_id
                        nxt[j] = pad_id
                        continue
                    tokens[r].append(t)
                    if config.stop_strings and not done[j] and self._hits_stop(tokens[r], config.stop_strings):
                        done[j] = True
                if step == config.max_new_tokens - 1:
                    break
                if config.drop_finished:
                    if bool(done.all()):
                        break
                    if bool(done.any()):
                        keep = torch.nonzero(~done).reshape(-1)
                        session.select_rows(keep.to(logits.device))
                        active, nxt = active[keep], nxt[keep]
                        if row_labels is not None and decode_labels is not None:
                            row_labels.set(decode_labels[active])
                else:
                    finished[active[done]] = True
                    if bool(finished.all()):
                        break
                logits = session.step(nxt.to(logits.device))
        return tokens

    joins_rows: bool = False  # whether decoding sessions can add rows to a running batch (add_rows)

    @staticmethod
    def _prefill_kwargs(plan: "GenerationPlan", row_labels: "RowLabels | None") -> dict:
        """Publish ``plan``'s prefill labels (now, and per part of a prefill run in parts); the
        session's start / base arguments when some rows start at a later layer."""
        sources = plan.sources()
        p_labels = plan.prefill_labels if plan.prefill_labels is not None else sources.new_full(
            (plan.prefill.input_ids.shape[0],), -1)

        def on_rows(rows):
            if row_labels is not None:
                row_labels.set(p_labels[rows.cpu()])

        on_rows(torch.arange(p_labels.numel()))
        if plan.prefill_start is not None and bool((plan.prefill_start > 0).any()):
            return dict(start=plan.prefill_start, base=plan.prefill_base, on_rows=on_rows)
        return {}

    @torch.no_grad()
    def decode_stream(self, plans: Sequence["GenerationPlan"], config: GenerationConfig, fwd_hooks: list, *,
                      max_rows: int, row_labels: "RowLabels | None" = None, desc: str = "generate",
                      prefix: "GenerationPlan | None" = None) -> list[list[list[int]]]:
        """Greedy decoding of many plans through one running batch (continuous batching): the rows
        of the next plan join as soon as rows that finished have left room for them (at most
        ``max_rows`` rows run at once), so the batch stays full instead of draining to its
        longest row. New token ids per decoding row of each plan, as :meth:`decode` gives them;
        under greedy decoding each row computes what it computes in :meth:`decode` (up to float
        reduction order: the batch around it differs). Needs a backend whose sessions can add rows
        (:attr:`joins_rows`).

        ``prefix``: prompt prefixes encoded once before any plan (its prefill rows, labels and
        starts as in a plan; e.g. the prefix every prompt shares, one row per condition); each
        plan's prefill rows then hold only the rest of their prompts and ``plan.prefix_rows``
        says which prefix row each continues."""
        if not self.joins_rows:
            raise NotImplementedError(f"the {self.backend} backend cannot add rows to a running batch: "
                                      "decode one plan at a time (generate_plan).")
        if config.do_sample:
            raise ValueError("decode_stream is greedy only: rows joining at different steps would change sampled draws.")
        if max_rows < 1:
            raise ValueError(f"max_rows must be >= 1, got {max_rows}.")
        plans = list(plans)
        eos = torch.tensor(sorted(self.eos_ids), dtype=torch.long)
        tokens = [[[] for _ in range(int(p.sources().numel()))] for p in plans]
        running: list[tuple[int, int]] = []  # (plan, row) of each batch row, in batch order
        labels: list[int] = []
        logits = None
        nxt_plan = 0
        bar = tqdm(total=sum(len(t) for t in tokens), desc=desc, disable=not config.progress, leave=False)
        with self.decoding_session(fwd_hooks) as session:
            if prefix is not None:
                if any(p.prefix_rows is None for p in plans):
                    raise ValueError("with a prefix, every plan needs prefix_rows (the prefix row each prefill row continues).")
                kw = self._prefill_kwargs(prefix, row_labels)
                session.set_prefix(prefix.prefill, **kw)
            while True:
                while nxt_plan < len(plans) and (not running or len(running) + len(tokens[nxt_plan]) <= max_rows):
                    plan = plans[nxt_plan]
                    sources = plan.sources()
                    kw = self._prefill_kwargs(plan, row_labels)
                    if prefix is not None:
                        kw["prefix_rows"] = plan.prefix_rows
                    if not running:
                        new = session.prefill(plan.prefill, **kw)
                        session.select_rows(sources.to(new.device))
                        new = new.index_select(0, sources.to(new.device))
                        logits = new
                    else:
                        new = session.add_rows(plan.prefill, sources, **kw)
                        logits = torch.cat([logits, new.to(logits.device)])
                    running += [(nxt_plan, r) for r in range(int(sources.numel()))]
                    d_labels = plan.decode_labels if plan.decode_labels is not None else sources.new_full((sources.numel(),), -1)
                    labels += d_labels.tolist()
                    nxt_plan += 1
                if not running:
                    break
                nxt = self._next_tokens(logits, torch.arange(len(running)), len(running), config, None)  # greedy
                done = torch.isin(nxt, eos)
                for j, ((p, r), t) in enumerate(zip(running, nxt.tolist())):
                    row = tokens[p][r]
                    row.append(t)
                    if len(row) >= config.max_new_tokens or (
                            config.stop_strings and not done[j] and self._hits_stop(row, config.stop_strings)):
                        done[j] = True
                if bool(done.any()):
                    bar.update(int(done.sum()))
                    keep = torch.nonzero(~done).reshape(-1)
                    running = [running[j] for j in keep.tolist()]
                    labels = [labels[j] for j in keep.tolist()]
                    nxt = nxt[keep]
                    if not running:
                        logits = None
                        continue
                    session.select_rows(keep.to(logits.device))
                    session.trim()
                if row_labels is not None:
                    row_labels.set(labels)
                logits = session.step(nxt.to(logits.device))
        bar.close()
        return tokens

    @staticmethod
    def _next_tokens(logits: Float[Tensor, "batch vocab"], active: Int[Tensor, " batch"], n_rows: int,
                     config: GenerationConfig, gen: torch.Generator) -> Int[Tensor, " batch"]:
        if not config.do_sample:
            return logits.argmax(-1).cpu()
        if active.numel() == n_rows:
            return sample_next(logits, config, gen).cpu()
        full = logits.new_zeros((n_rows, logits.shape[-1]))  # rows that left draw from a uniform dummy
        full[active.to(logits.device)] = logits
        return sample_next(full, config, gen).cpu()[active]

    def _hits_stop(self, row: list[int], stops: tuple[str, ...]) -> bool:
        text = self.tokenizer.decode(row, skip_special_tokens=True)
        return any(s in text for s in stops)

    @property
    def eos_ids(self) -> set[int]:
        ids = {self.tokenizer.eos_token_id}
        extra = getattr(getattr(self, "_gen_eos", None), "__iter__", None)
        if extra:
            ids |= set(self._gen_eos)
        return {i for i in ids if i is not None}

    def finish_generation(self, prompt_ids: Sequence[int], new: Sequence[int], config: GenerationConfig) -> Generation:
        """A :class:`Generation` from new token ids: cut after the first EOS and at the first stop string."""
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
