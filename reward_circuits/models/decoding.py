"""The decoding engine: generation loops over any :class:`~.base.ModelAdapter`.

The adapter supplies the model-facing protocol (``decoding_session``, ``pad``, ``tokenizer``,
``eos_ids``, ``joins_rows``, hook checks); this module owns what is done with it:

- :func:`generate`: prompts in batches, or (greedy, hook-free, on a backend that joins rows)
  through one refilled running batch with the shared prompt prefix encoded once
  (:func:`generate_streamed`);
- :func:`decode`: one :class:`GenerationPlan`, greedy or seeded sampling, stop strings, finished
  rows leaving the batch; paired sampling (common random numbers per ``plan.row_keys``) through
  :class:`KeyUniforms`;
- :func:`decode_stream`: many plans through one running batch (continuous batching), with an
  optional prefix encoded once;
- :func:`finish_generation`: new token ids → :class:`Generation` (cut at EOS / a stop string).

``ModelAdapter.generate`` / ``generate_plan`` / ``decode`` / ``decode_stream`` /
``finish_generation`` delegate here with the same signatures.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from .base import TokenBatch
from .generation import (
    Generation,
    GenerationConfig,
    GenerationPlan,
    RowLabels,
    common_prefix_len,
    generation_config,
    sample_next,
    sample_with_uniforms,
)

if TYPE_CHECKING:
    from .base import FwdHooks, ModelAdapter


# ---- generate: prompts in, Generations out -------------------------------------------------------


def generate(adapter: ModelAdapter, prompts: Sequence[str] | TokenBatch, config: GenerationConfig | None = None,
             fwd_hooks: FwdHooks = (), **overrides) -> list[Generation]:
    """See :meth:`ModelAdapter.generate`."""
    config = generation_config(config, overrides)
    fwd_hooks = adapter.check_fwd_hooks(fwd_hooks)
    if isinstance(prompts, str):  # one prompt, not a list of one-character prompts
        prompts = [prompts]
    if isinstance(prompts, TokenBatch):
        seqs = [row[m.bool()].tolist() for row, m in zip(prompts.input_ids, prompts.attention_mask)]
    else:
        prompts = list(prompts)
        if not prompts:
            raise ValueError("no prompts to generate from.")
        seqs = [adapter.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    if (config.refill and adapter.joins_rows and not config.do_sample and config.drop_finished and not fwd_hooks
            and not adapter.has_attached_hooks() and len(seqs) > 1):  # the shared prefix is hook-free
        return generate_streamed(adapter, seqs, config)
    out: list[Generation] = []
    bar = tqdm(range(0, len(seqs), config.batch_size), desc=f"generate ({adapter.backend})",
               disable=not config.progress, leave=False)
    for b, start in enumerate(bar):
        chunk = seqs[start : start + config.batch_size]
        batch = adapter.pad(chunk, "left")
        new_tokens = adapter._generate_batch(batch, config, list(fwd_hooks), seed=config.seed + b)
        for prompt_ids, row in zip(chunk, new_tokens):
            out.append(adapter.finish_generation(prompt_ids, row, config))
    return out


def generate_streamed(adapter: ModelAdapter, seqs: list[list[int]], config: GenerationConfig) -> list[Generation]:
    """Greedy, no hooks, on a backend that joins rows: prompts in small plans that join one
    running batch of ``config.batch_size`` rows as rows finish (:func:`decode_stream`), the
    token prefix all prompts share encoded once. Same tokens as one batch at a time, up to
    float reduction order."""
    plans, prefix = stream_plans(adapter, seqs, config)
    rows = decode_stream(adapter, plans, config, [], max_rows=config.batch_size, prefix=prefix,
                         desc=f"generate ({adapter.backend})")
    return [adapter.finish_generation(seq, new, config)
            for seq, new in zip(seqs, (r for plan_rows in rows for r in plan_rows))]


def stream_plans(adapter: ModelAdapter, seqs: list[list[int]], config: GenerationConfig,
                 capture: bool = False) -> tuple[list[GenerationPlan], GenerationPlan | None]:
    """The plans (``config.batch_size // 8`` prompts each) and the shared-prefix plan (``None``: no
    prefix of two tokens or more) that :func:`generate_streamed` runs. ``capture``: each prompt's
    rows labelled by its index (prefill and decoding) and every last token fed once more
    (:func:`generate_capturing`); the prefix rows keep label -1."""
    cut = common_prefix_len(seqs)
    step = max(1, config.batch_size // 8)
    plans = []
    for i in range(0, len(seqs), step):
        part = seqs[i:i + step]
        rows = torch.arange(i, i + len(part)) if capture else None
        plans.append(GenerationPlan(adapter.pad([s[cut:] for s in part], "left"),
                                    prefix_rows=torch.zeros(len(part), dtype=torch.long) if cut else None,
                                    prefill_labels=rows, decode_labels=rows, feed_last=capture))
    prefix = GenerationPlan(adapter.pad([seqs[0][:cut]], "left")) if cut else None
    return plans, prefix


def generate_plan(adapter: ModelAdapter, plan: GenerationPlan, config: GenerationConfig, fwd_hooks: FwdHooks = (), *,
                  seed: int | None = None, row_labels: RowLabels | None = None) -> list[Generation]:
    """See :meth:`ModelAdapter.generate_plan`."""
    fwd_hooks = adapter.check_fwd_hooks(fwd_hooks)
    new_tokens = adapter.decode(plan, config, list(fwd_hooks), config.seed if seed is None else seed, row_labels)
    prompts = plan.prompt_ids()
    return [adapter.finish_generation(prompts[int(src)], row, config) for src, row in zip(plan.sources(), new_tokens)]


# ---- states captured while generating -----------------------------------------------------------------


class StateRecorder:
    """Hook functions that record, at every forward of one :func:`decode` or :func:`decode_stream`
    (the shared prefix, each prefill, each step), the activations at ``names`` of the rows running
    then, by row label (a :class:`RowLabels` the decoding loop keeps up to date), on the CPU in
    ``dtype``.

    A row's first forward is its prefill: its prompt (after the shared prefix), left-padded, so its
    own positions are the last ``own_lens[label]``; each later forward feeds it one token (at most
    ``max_fed``). A forward whose rows all carry label -1 is the shared prefix's.
    ``prompt_states="last"`` keeps only each prompt's last state (s_0: all a store of response
    states needs). The states go into one buffer per name, ``[rows, kept prompt states + max_fed, d]``,
    written in place at every forward (one copy of the states, no small tensors per token; the
    pages of positions a row never reaches are never touched)."""

    def __init__(self, names: Sequence[str], labels: RowLabels, own_lens: Sequence[int], max_fed: int, *,
                 prompt_states: Literal["all", "last"] = "all", dtype: torch.dtype = torch.float32):
        if prompt_states not in ("all", "last"):
            raise ValueError(f"prompt_states must be 'all' or 'last', got {prompt_states!r}.")
        self.names, self.labels, self.prompt_states, self.dtype = list(names), labels, prompt_states, dtype
        self.own_lens = torch.as_tensor(list(own_lens), dtype=torch.long).reshape(-1)
        first = self.own_lens if prompt_states == "all" else torch.ones_like(self.own_lens)
        self.width = int(first.max()) + int(max_fed) if first.numel() else 0
        self.buffers: dict[str, Tensor] = {}
        self.count = {n: torch.zeros(self.own_lens.numel(), dtype=torch.long) for n in self.names}
        self.prefix: dict[str, Tensor] = {}

    def __repr__(self) -> str:
        started = int((self.count[self.names[0]] > 0).sum()) if self.names else 0
        return (f"StateRecorder({self.names}, {self.own_lens.numel()} rows, {started} with states, "
                f"prompt_states={self.prompt_states!r})")

    def fwd_hooks(self) -> list[tuple[str, object]]:
        def make(name):
            def record(act, hook):
                self._record(name, act.detach())
            return record

        return [(n, make(n)) for n in self.names]

    def _record(self, name: str, act: Float[Tensor, "batch pos d"]) -> None:
        labels = self.labels.labels
        keep = torch.nonzero(labels >= 0).reshape(-1)
        if keep.numel() == 0:
            if self.prompt_states == "all":
                self.prefix[name] = self._cast(name, act[0]).clone()
            return
        rows, count = labels[keep], self.count[name]
        fresh = count[rows] == 0
        if bool(fresh.any()) != bool(fresh.all()):
            raise RuntimeError("one forward holds both prefills and decoding steps: the recorder cannot place its states.")
        if not bool(fresh.all()) or self.prompt_states == "last":
            act = act[:, -1:]  # a step feeds one token; of a prefill only the prompt's last state is kept
        block = self._cast(name, act).index_select(0, keep)  # one transfer per forward
        buf = self.buffers.get(name)
        if buf is None:
            buf = self.buffers[name] = torch.empty(self.own_lens.numel(), self.width, block.shape[-1], dtype=self.dtype)
        if bool(fresh.all()) and self.prompt_states == "all":
            width = block.shape[1]
            for j, (r, n) in enumerate(zip(rows.tolist(), self.own_lens[rows].tolist())):
                buf[r, :n] = block[j, width - n:]
            count[rows] = self.own_lens[rows]
            return
        if int(count[rows].max()) >= self.width:
            raise RuntimeError(f"more states at {name} than the recorder holds ({self.width} per row): "
                               "max_fed must be the generation's max_new_tokens.")
        buf[rows, count[rows]] = block[:, 0]
        count[rows] += 1

    def _cast(self, name: str, part: Float[Tensor, "*rows pos d"]) -> Float[Tensor, "*rows pos d"]:
        """``part`` on the CPU in the recorder's dtype (maybe ``part`` itself: callers copy what they keep)."""
        out = part.to("cpu", self.dtype)
        if out.dtype != part.dtype and not bool(torch.isfinite(out).all()) and bool(torch.isfinite(part).all()):
            raise ValueError(f"activations at {name} up to {float(part.abs().max()):.4g} are beyond the range of "
                             f"{self.dtype}: record them in torch.float32 (a store: dtype='float32' or 'bfloat16').")
        return out

    def pop(self, label: int) -> dict[str, Float[Tensor, "pos d"]]:
        """Row ``label``'s states ``{name: [n, d]}`` (``prompt_states="all"``: shared prefix, prompt, then
        one per token fed; ``"last"``: the prompt's last state, then one per token fed): views of the
        buffers (``"all"`` with a shared prefix: a copy)."""
        out = {}
        for name in self.names:
            n = int(self.count[name][label])
            if n == 0:
                raise RuntimeError(f"no activation was recorded at {name!r} for row {label}: was the recorder's hook active?")
            states = self.buffers[name][label, :n]
            if self.prompt_states == "all" and name in self.prefix:
                states = torch.cat([self.prefix[name], states])
            out[name] = states
        return out

    def states(self) -> list[dict[str, Float[Tensor, "pos d"]]]:
        """Every row's states, in label order."""
        return [self.pop(r) for r in range(self.own_lens.numel())]


def generate_capturing(adapter: ModelAdapter, prompts: Sequence[str], config: GenerationConfig | None,
                       hook_names: Sequence[str], *, prompt_states: Literal["all", "last"] = "all",
                       dtype: torch.dtype = torch.float32) -> tuple[list[Generation], list[dict[str, Tensor]]]:
    """Generate as :func:`generate` does (greedy and hook-free on a backend that joins rows: one running
    batch refilled as rows finish, :func:`generate_streamed`'s plans; else one batch of
    ``config.batch_size`` prompts at a time, seed ``config.seed + b`` for batch ``b``: the same draws)
    and take the activations at ``hook_names`` from the generation's own forwards (prefix, prefills,
    every decoding step; each row's last token is fed once more), instead of a second forward over
    prompt + response. Per prompt: its :class:`Generation` and ``{name: [n, d]}`` states in ``dtype``
    on the CPU: ``prompt_states="all"``: ``n = prompt_len + n_fed``; ``"last"``: ``1 + n_fed`` (the
    prompt's last state, then the fed tokens'). ``n_fed`` >= the response's tokens: a response cut
    at a stop string keeps its first states."""
    config = generation_config(config)
    names = adapter.validate_hooks(hook_names)
    if isinstance(prompts, str):
        prompts = [prompts]
    seqs = [adapter.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    if not seqs:
        raise ValueError("no prompts to generate from.")
    if (config.refill and adapter.joins_rows and not config.do_sample and config.drop_finished
            and not adapter.has_attached_hooks() and len(seqs) > 1):  # the rows generate() streams
        plans, prefix = stream_plans(adapter, seqs, config, capture=True)
        cut = common_prefix_len(seqs)
        labels = RowLabels()
        recorder = StateRecorder(names, labels, [len(s) - cut for s in seqs], config.max_new_tokens,
                                 prompt_states=prompt_states, dtype=dtype)
        rows = decode_stream(adapter, plans, config, recorder.fwd_hooks(), max_rows=config.batch_size,
                             row_labels=labels, prefix=prefix, desc=f"generate + capture ({adapter.backend})")
        new = [r for plan_rows in rows for r in plan_rows]
        return [adapter.finish_generation(s, row, config) for s, row in zip(seqs, new)], recorder.states()
    gens: list[Generation] = []
    states: list[dict[str, Tensor]] = []
    for b, start in enumerate(tqdm(range(0, len(seqs), config.batch_size), desc=f"generate + capture ({adapter.backend})",
                                   disable=not config.progress, leave=False)):
        chunk = seqs[start:start + config.batch_size]
        rows = torch.arange(len(chunk))
        labels = RowLabels()
        recorder = StateRecorder(names, labels, [len(p) for p in chunk], config.max_new_tokens,
                                 prompt_states=prompt_states, dtype=dtype)
        plan = GenerationPlan(adapter.pad(chunk, "left"), prefill_labels=rows, decode_labels=rows, feed_last=True)
        new = adapter.decode(plan, config, recorder.fwd_hooks(), config.seed + b, labels)
        gens += [adapter.finish_generation(p, row, config) for p, row in zip(chunk, new)]
        states += recorder.states()
    return gens, states


# ---- sampling helpers ------------------------------------------------------------------------------


class KeyUniforms:
    """Paired sampling (common random numbers): one uniform number per key and step from the key's
    own generator (seeded by ``seed`` and the key), so rows with one key share it, whatever else
    is in the batch."""

    def __init__(self, seed: int):
        self.seed = seed
        self.gens: dict[int, torch.Generator] = {}

    def __call__(self, keys: Int[Tensor, " rows"]) -> Float[Tensor, " rows"]:
        draws = {}
        for k in keys.unique().tolist():
            if k not in self.gens:
                self.gens[k] = torch.Generator(device="cpu").manual_seed((self.seed * 1_000_003 + k * 7_919 + 1) % (2**63 - 1))
            draws[k] = float(torch.rand(1, generator=self.gens[k]))
        return torch.tensor([draws[k] for k in keys.tolist()])


def next_tokens(logits: Float[Tensor, "batch vocab"], active: Int[Tensor, " batch"], n_rows: int,
                config: GenerationConfig, gen: torch.Generator | None) -> Int[Tensor, " batch"]:
    """Greedy, or one seeded draw for *every* row of the plan (rows that left draw from a uniform
    dummy), so the draws of a row do not depend on which rows left."""
    if not config.do_sample:
        return logits.argmax(-1).cpu()
    if active.numel() == n_rows:
        return sample_next(logits, config, gen).cpu()
    full = logits.new_zeros((n_rows, logits.shape[-1]))
    full[active.to(logits.device)] = logits
    return sample_next(full, config, gen).cpu()[active]


def hits_stop(tokenizer, row: list[int], stops: tuple[str, ...]) -> bool:
    text = tokenizer.decode(row, skip_special_tokens=True)
    return any(s in text for s in stops)


def prefill_kwargs(plan: GenerationPlan, row_labels: RowLabels | None) -> dict:
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


def trunk_rows(adapter: ModelAdapter, plan: GenerationPlan, some_above_0: bool = True):
    """The :class:`~.tl_trunk.TrunkRows` of ``plan``'s decoding rows when the session should share the
    trunk (``plan.trunk_layers`` given, the backend can, no hooks attached outside the call, some row
    has a trunk layer above 0, unless ``some_above_0`` is False); else ``None``. Groups: ``plan.row_keys`` (else the source rows)."""
    if plan.trunk_layers is None or not adapter.shares_trunk or adapter.has_attached_hooks():
        return None
    if some_above_0 and not bool((plan.trunk_layers > 0).any()):
        return None
    from .tl_trunk import TrunkRows

    sources = plan.sources()
    labels = plan.decode_labels if plan.decode_labels is not None else sources.new_full((sources.numel(),), -1)
    return TrunkRows(plan.row_keys if plan.row_keys is not None else sources, plan.trunk_layers, labels)


# ---- decode: one plan ------------------------------------------------------------------------------


@torch.no_grad()
def decode(adapter: ModelAdapter, plan: GenerationPlan, config: GenerationConfig, fwd_hooks: list, seed: int,
           row_labels: RowLabels | None = None) -> list[list[int]]:
    """See :meth:`ModelAdapter.decode`."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    key_uniforms = KeyUniforms(seed)
    eos = torch.tensor(sorted(adapter.eos_ids), dtype=torch.long)
    sources = plan.sources()
    n_rows = int(sources.numel())
    decode_labels = plan.decode_labels
    tokens: list[list[int]] = [[] for _ in range(n_rows)]
    active = torch.arange(n_rows)  # plan rows in the running batch, in batch order
    finished = torch.zeros(n_rows, dtype=torch.bool)  # only used when finished rows stay
    pad_id = adapter.tokenizer.pad_token_id
    trunk = trunk_rows(adapter, plan)
    with adapter.decoding_session(fwd_hooks) as session:
        logits = session.prefill(plan.prefill, **prefill_kwargs(plan, row_labels))  # the prefill may run in parts
        if plan.source is not None:
            session.select_rows(sources.to(logits.device))
            logits = logits.index_select(0, sources.to(logits.device))
        if trunk is not None:
            session.share_trunk(trunk, row_labels, argmax_only=not config.do_sample)
        if row_labels is not None:
            row_labels.set(decode_labels if decode_labels is not None else sources.new_full((n_rows,), -1))
        for step in range(config.max_new_tokens):
            if config.do_sample and plan.row_keys is not None:  # common random numbers per key
                nxt = sample_with_uniforms(logits, config, key_uniforms(plan.row_keys[active])).cpu()
            else:
                nxt = next_tokens(logits, active, n_rows, config, gen)
            rows = active.tolist()
            new = nxt.tolist()
            done = torch.isin(nxt, eos)
            for j, (r, t) in enumerate(zip(rows, new)):
                if finished[r]:
                    new[j] = pad_id
                    nxt[j] = pad_id
                    continue
                tokens[r].append(t)
                if config.stop_strings and not done[j] and hits_stop(adapter.tokenizer, tokens[r], config.stop_strings):
                    done[j] = True
            if plan.feed_last:  # the step feeds every row's token (its state), then finished rows leave
                logits = session.step(nxt.to(logits.device))
                if step == config.max_new_tokens - 1 or _all_done(done, finished, active, config):
                    break
                if config.drop_finished and bool(done.any()):
                    keep = torch.nonzero(~done).reshape(-1)
                    session.select_rows(keep.to(logits.device))
                    active, logits = active[keep], logits.index_select(0, keep.to(logits.device))
                    if row_labels is not None and decode_labels is not None:
                        row_labels.set(decode_labels[active])
                continue
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


def _all_done(done: Tensor, finished: Tensor, active: Tensor, config: GenerationConfig) -> bool:
    """Whether every row has finished (rows that stay in the batch are marked in ``finished``)."""
    if config.drop_finished:
        return bool(done.all())
    finished[active[done]] = True
    return bool(finished.all())


# ---- decode_stream: many plans through one running batch -------------------------------------------


class _Stream:
    """The running batch of :func:`decode_stream`: which (plan, row) each batch row is, its label,
    the last logits, and the plans still waiting to join."""

    def __init__(self, plans: list[GenerationPlan], row_labels: RowLabels | None, prefix: GenerationPlan | None,
                 trunks: list | None = None):
        self.plans, self.row_labels, self.prefix = plans, row_labels, prefix
        self.trunks = trunks  # per plan: its TrunkRows (a shared trunk), or None
        self.tokens = [[[] for _ in range(int(p.sources().numel()))] for p in plans]
        self.running: list[tuple[int, int]] = []  # (plan, row) of each batch row, in batch order
        self.labels: list[int] = []
        self.logits: Tensor | None = None
        self.next_plan = 0

    def admit(self, session, max_rows: int) -> None:
        """Let waiting plans join while their rows fit (the first joins an empty batch whatever its size)."""
        while self.next_plan < len(self.plans) and (
                not self.running or len(self.running) + len(self.tokens[self.next_plan]) <= max_rows):
            plan = self.plans[self.next_plan]
            sources = plan.sources()
            kw = prefill_kwargs(plan, self.row_labels)
            if self.prefix is not None:
                kw["prefix_rows"] = plan.prefix_rows
            trunk = self.trunks[self.next_plan] if self.trunks else None
            if not self.running:
                new = session.prefill(plan.prefill, **kw)
                session.select_rows(sources.to(new.device))
                self.logits = new.index_select(0, sources.to(new.device))
                if trunk is not None:
                    session.share_trunk(trunk, self.row_labels, argmax_only=True)  # decode_stream is greedy
            else:
                if trunk is not None:
                    kw["trunk_rows"] = trunk
                new = session.add_rows(plan.prefill, sources, **kw)
                self.logits = torch.cat([self.logits, new.to(self.logits.device)])
            self.running += [(self.next_plan, r) for r in range(int(sources.numel()))]
            d_labels = plan.decode_labels if plan.decode_labels is not None else sources.new_full((sources.numel(),), -1)
            self.labels += d_labels.tolist()
            self.next_plan += 1

    def keep(self, keep: Int[Tensor, " rows"]) -> None:
        self.running = [self.running[j] for j in keep.tolist()]
        self.labels = [self.labels[j] for j in keep.tolist()]


@torch.no_grad()
def decode_stream(adapter: ModelAdapter, plans: Sequence[GenerationPlan], config: GenerationConfig, fwd_hooks: list, *,
                  max_rows: int, row_labels: RowLabels | None = None, desc: str = "generate",
                  prefix: GenerationPlan | None = None) -> list[list[list[int]]]:
    """See :meth:`ModelAdapter.decode_stream`."""
    if not adapter.joins_rows:
        raise NotImplementedError(f"the {adapter.backend} backend cannot add rows to a running batch: "
                                  "decode one plan at a time (generate_plan).")
    if config.do_sample:
        raise ValueError("decode_stream is greedy only: rows joining at different steps would change sampled draws.")
    if max_rows < 1:
        raise ValueError(f"max_rows must be >= 1, got {max_rows}.")
    plans = list(plans)
    feed_last = any(p.feed_last for p in plans)
    if feed_last and not all(p.feed_last for p in plans):
        raise ValueError("feed_last must be the same for every plan of a stream (they share the running batch).")
    trunks = [trunk_rows(adapter, p, some_above_0=False) for p in plans]
    sharing = all(t is not None for t in trunks) and any(bool((t.layers > 0).any()) for t in trunks)
    st = _Stream(plans, row_labels, prefix, trunks if sharing else None)
    eos = torch.tensor(sorted(adapter.eos_ids), dtype=torch.long)
    bar = tqdm(total=sum(len(t) for t in st.tokens), desc=desc, disable=not config.progress, leave=False)
    with adapter.decoding_session(fwd_hooks) as session:
        if prefix is not None:
            if any(p.prefix_rows is None for p in st.plans):
                raise ValueError("with a prefix, every plan needs prefix_rows (the prefix row each prefill row continues).")
            session.set_prefix(prefix.prefill, **prefill_kwargs(prefix, row_labels))
        while True:
            st.admit(session, max_rows)
            if not st.running:
                break
            nxt = next_tokens(st.logits, torch.arange(len(st.running)), len(st.running), config, None)  # greedy
            done = torch.isin(nxt, eos)
            for j, ((p, r), t) in enumerate(zip(st.running, nxt.tolist())):
                row = st.tokens[p][r]
                row.append(t)
                if len(row) >= config.max_new_tokens or (
                        config.stop_strings and not done[j] and hits_stop(adapter.tokenizer, row, config.stop_strings)):
                    done[j] = True
            if feed_last:  # every row's token is fed (its state), then the finished rows leave
                if row_labels is not None:
                    row_labels.set(st.labels)
                st.logits = session.step(nxt.to(st.logits.device))
            if bool(done.any()):
                bar.update(int(done.sum()))
                keep = torch.nonzero(~done).reshape(-1)
                st.keep(keep)
                nxt = nxt[keep]
                if not st.running:
                    st.logits = None
                    continue
                session.select_rows(keep.to(st.logits.device))
                if feed_last:
                    st.logits = st.logits.index_select(0, keep.to(st.logits.device))
                session.trim()
            if not feed_last:
                if row_labels is not None:
                    row_labels.set(st.labels)
                st.logits = session.step(nxt.to(st.logits.device))
    bar.close()
    return st.tokens


# ---- finishing ---------------------------------------------------------------------------------------


def finish_generation(tokenizer, eos_ids: set[int], prompt_ids: Sequence[int], new: Sequence[int],
                      config: GenerationConfig) -> Generation:
    """A :class:`Generation` from new token ids: cut after the first EOS and at the first stop string."""
    resp: list[int] = []
    reason = "length"
    for t in new:
        resp.append(int(t))
        if t in eos_ids:
            reason = "eos"
            break
    text = tokenizer.decode(resp, skip_special_tokens=True)
    if config.stop_strings:
        cut = min((text.find(s) for s in config.stop_strings if s in text), default=-1)
        if cut >= 0:
            stop = next(s for s in config.stop_strings if text.find(s) == cut)
            # keep the fewest tokens whose decoding reaches the stop string
            for k in range(1, len(resp) + 1):
                if stop in tokenizer.decode(resp[:k], skip_special_tokens=True):
                    resp = resp[:k]
                    break
            text = text[:cut]
            reason = "stop_string"
    return Generation(list(map(int, prompt_ids)), resp, text, reason)
