"""Intervention sweeps as one batched generation: K conditions × N examples in one running batch.

A *condition* is a list of ``(hook_name, fn)`` pairs, as everywhere else (the empty list is the
baseline). :func:`sweep` generates every example under every condition and scores it, in as few
generation passes as the row budget allows:

* **Row-scoped hooks.** The running batch holds the rows of all conditions; at each hook point one
  :class:`RowScopedHooks` hands each condition's hook functions the rows of that condition only
  (``activation[rows]``) and writes their result back into a copy of the activation. Other rows are
  never touched. The hook functions themselves are unchanged: any TransformerLens hook function
  (ours or a user's) works, on both backends (the nnsight adapter calls the same dispatcher inside
  its trace). :func:`rows_only` is the same wrapper for a fixed set of rows, for a user's own
  ``run_with_hooks``.
* **Shared prompt work.** A condition that does not touch prompt positions - the empty condition
  and every condition whose hooks are all our hooks with ``positions="generated"`` (no
  ``prompt_len``) - leaves the prompt's forward pass unchanged, so the prompt of each example is
  encoded once and its KV cache copied to all those conditions' rows. A condition with any hook that
  may edit prompt positions (``positions="all"`` - the default -, ``"prompt"``, explicit positions,
  a ``prompt_len``, or any function that is not one of our hooks, unless it sets
  ``touches_prompt = False``) encodes its own prompt rows, inside the same prefill forward.
  :func:`touches_prompt` says which is which; ``Condition(touches_prompt=...)`` overrides it.
  On the TransformerLens backend (``adapter.prefill_from_layer``) such a condition's prompt rows
  still reuse the shared prompt's forward *below* the first block its hooks sit in
  (:attr:`Condition.first_layer`: ``blocks.15.*`` hooks recompute blocks 15.. only); the nnsight
  backend recomputes the whole prompt for them.
* **Shared trunk.** While the rows of one example under different conditions generate the same
  tokens, the blocks below each condition's first hooked block compute the same thing for all of
  them: on the TransformerLens backend (``adapter.shares_trunk``) they run once per example and
  share their KV cache, and a row forks (its cache rows copied) at the first step where its token
  differs (:mod:`reward_circuits.models.tl_trunk`; ``SweepConfig(share_trunk=False)``: every row
  runs every block, the path before). An ablation at block 28 of 30 computes blocks 0-27 once for
  the baseline and all its controls until they part. With ``adapter.certifies_argmax = True`` (off by
  default: no gain on our CPU), a greedy row that agrees with its example's reference row skips its
  unembedding where a bound certifies its argmax (:mod:`reward_circuits.models.certified_argmax`). The nnsight backend stays on the unshared
  path: its trace runs HF's forward whole, one batch through all layers, so some rows cannot run
  some blocks once per group and others per row without re-implementing HF's decoder loop.
* **Finished rows leave.** Rows that reach EOS or a stop string leave the running batch and its
  KV cache (``GenerationConfig.drop_finished``), so one rambling condition does not hold the rest.
* **Chunked to a memory budget.** Rows are generated ``SweepConfig.max_rows`` at a time (by default
  as many as the KV cache of ``SweepConfig.memory_gb`` holds), whole examples × condition groups,
  so every chunk shares its prompts.

Equivalence: under greedy decoding each row computes what one pass per condition computes; tokens
are identical up to float reduction order (a batch of another size may flip a near-tie of two
logits: token-identical on the tiny test model, the share of identical tokens on the real model is
measured by ``bench/bench_interventions.py``). Limits: a hook that depends on the batch as a whole
(a per-row ``prompt_len`` tensor, :func:`patch_from` with a batch-shaped cache, the draws of
:func:`resample_ablate`) sees only its condition's rows, which changes or breaks it: run those with
``SweepConfig(strategy="per_condition")``. Sampled sweeps are seeded and *paired*: at every step
all conditions of an example draw the same uniform number (inverse-CDF sampling, common random
numbers), so they differ only through their hooks; the draws are not those of one ``generate``
pass per condition.
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Literal, Mapping, Sequence

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from ..models import Generation, GenerationConfig, GenerationPlan, HookFn, ModelAdapter, RowLabels, layer_of
from ..models.base import common_prefix_len
from ..reprs import short_dict, short_list, short_text
from .hooks import InterventionHook, as_fwd_hooks

Strategy = Literal["batched", "per_condition"]

# ---------------------------------------------------------------------------------------------
# Row-scoped hooks
# ---------------------------------------------------------------------------------------------


def _apply_to_rows(activation: Float[Tensor, "batch ..."], hook, groups: Iterable[tuple[Tensor, HookFn]]
                   ) -> Float[Tensor, "batch ..."] | None:
    """Apply each ``fn`` to ``activation[rows]`` only; ``None`` when no function edited anything."""
    out = None
    for rows, fn in groups:
        if rows.numel() == 0:
            continue
        source = activation if out is None else out  # a condition's second hook at a site sees its first's edit
        new = fn(source.index_select(0, rows), hook=hook)
        if new is None:
            continue
        if new.shape[0] != rows.numel():
            raise ValueError(f"a row-scoped hook at {getattr(hook, 'name', None)!r} returned {new.shape[0]} rows "
                             f"for {rows.numel()} rows in.")
        if out is None:
            out = activation.clone()  # never edit the incoming activation in place
        out.index_copy_(0, rows, new.to(out.dtype))
    return out


class RowScopedHooks:
    """At one hook point: each label's hook functions on the rows that carry that label (read from
    a :class:`~reward_circuits.models.RowLabels` at every forward, so rows may leave the batch)."""

    def __init__(self, labels: RowLabels, entries: Sequence[tuple[int, HookFn]]):
        self.labels = labels
        self.entries = list(entries)

    def __repr__(self) -> str:  # cheap: TransformerLens calls repr() on every add_hook
        return f"RowScopedHooks({len(self.entries)} hooks over {len({l for l, _ in self.entries})} labels)"

    def __call__(self, activation: Float[Tensor, "batch ..."], hook) -> Float[Tensor, "batch ..."] | None:
        return _apply_to_rows(activation, hook,
                              ((self.labels.rows(label, activation.device), fn) for label, fn in self.entries))


class _FixedRows:
    def __init__(self, fn: HookFn, rows: Int[Tensor, " k"]):
        self.fn, self.rows = fn, rows
        self.touches_prompt = touches_prompt([("", fn)])

    def __repr__(self) -> str:
        return f"rows_only({self.fn!r}, rows={self.rows.tolist()})"

    def __call__(self, activation, hook):
        return _apply_to_rows(activation, hook, [(self.rows.to(activation.device), self.fn)])


def rows_only(fn: HookFn, rows: Sequence[int] | Int[Tensor, " k"]) -> HookFn:
    """A hook function that applies ``fn`` to batch rows ``rows`` only (others are never touched).

    For a user's own ``run_with_hooks`` / adapter ``forward`` on a batch laid out by hand; sweeps
    use :class:`RowScopedHooks`, which follow rows as they leave a generation.
    """
    rows_t = torch.as_tensor(list(rows) if not isinstance(rows, Tensor) else rows, dtype=torch.long).reshape(-1)
    if rows_t.numel() and int(rows_t.min()) < 0:
        raise ValueError("rows must be >= 0.")
    return _FixedRows(fn, rows_t)


def touches_prompt(hooks: Iterable[tuple[str, HookFn]]) -> bool:
    """Whether any of these hooks may edit a prompt position during generation (so the prompt's
    forward under them differs from the plain one). ``False`` only for our hooks with
    ``positions="generated"`` and no ``prompt_len``, and for functions that set
    ``touches_prompt = False``; anything else counts as touching the prompt."""
    for _, fn in hooks:
        declared = getattr(fn, "touches_prompt", None)
        if isinstance(declared, bool):
            if declared:
                return True
            continue
        if not isinstance(fn, InterventionHook):
            return True
        scope = fn.scope
        if not (isinstance(scope.which, str) and scope.which == "generated" and scope.prompt_len is None):
            return True
    return False


# ---------------------------------------------------------------------------------------------
# Conditions, config, results
# ---------------------------------------------------------------------------------------------


@dataclass
class Condition:
    """A named list of ``(hook_name, fn)`` pairs applied together (empty: no intervention).

    ``touches_prompt=None`` infers from the hooks (:func:`touches_prompt`)."""

    name: str
    hooks: Any = ()
    touches_prompt: bool | None = None

    def __post_init__(self):
        self.name = str(self.name)
        self.hooks = as_fwd_hooks(self.hooks)
        if self.touches_prompt is None:
            self.touches_prompt = touches_prompt(self.hooks)

    @property
    def first_layer(self) -> int:
        """The first block any of the hooks sits in (0 for ``hook_embed`` and names outside blocks):
        the prompt's forward below it is the plain one."""
        layers = [layer_of(name) for name, _ in self.hooks]
        return 0 if not layers or any(l is None for l in layers) else min(layers)


ConditionsLike = Mapping[str, Any] | Sequence[Condition | Any]


def conditions_of(conditions: ConditionsLike) -> list[Condition]:
    """A list of :class:`Condition` from ``{name: hooks}``, a list of Conditions, or a list of hook
    lists (named ``"0"``, ``"1"``, ...). Names must be unique."""
    if isinstance(conditions, Mapping):
        out = [c if isinstance(c, Condition) and c.name == str(k) else Condition(str(k), c.hooks if isinstance(c, Condition) else c)
               for k, c in conditions.items()]
    else:
        out = [c if isinstance(c, Condition) else Condition(str(i), c) for i, c in enumerate(conditions)]
    if not out:
        raise ValueError("no conditions to sweep: give at least one (the empty list [] is the baseline).")
    names = [c.name for c in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"condition names must be unique; repeated: {dup}.")
    return out


_DEFAULT_STRATEGY: list[Strategy] = []


@contextmanager
def per_condition_passes() -> Iterator[None]:
    """Inside the block, sweeps that do not set ``strategy`` run one generation pass per condition
    (the reference the batched sweep is checked and benchmarked against)."""
    _DEFAULT_STRATEGY.append("per_condition")
    try:
        yield
    finally:
        _DEFAULT_STRATEGY.pop()


@dataclass
class SweepConfig:
    """How a sweep batches its rows.

    Attributes:
        max_rows: rows (examples × conditions) per generation pass; ``None``: as many as the KV
            cache of ``memory_gb`` holds at full length, at most ``row_cap``.
        memory_gb: KV-cache budget used when ``max_rows`` is None.
        row_cap: upper bound on the rows of one pass when ``max_rows`` is None.
        share_prompt: encode each prompt once for the conditions that do not touch it.
        refill: on backends that can add rows to a running batch (``adapter.joins_rows``: the
            TransformerLens backend), greedy sweeps keep the batch full: the rows of the next few
            examples join (their prompts prefilled, their caches left-padded to the running
            width) as soon as finished rows have left room. ``False``: one chunk at a time.
        share_prefix: with refill, the token prefix every prompt starts with (a chat template's
            system prompt) is encoded once per condition instead of once per row, when every
            condition's hooks act on all prompt positions alike (:func:`_prefix_safe`).
        share_trunk: on backends that can (``adapter.shares_trunk``: the TransformerLens backend),
            the rows of one example under different conditions compute the blocks below each
            condition's first hooked block once while their generated tokens agree, and fork (copy
            their KV cache) at the first step where a token differs (:mod:`~reward_circuits.models.tl_trunk`).
            ``False``: every row runs every block (the path before shared trunks; same tokens).
        strategy: ``"batched"`` (one running batch for all conditions) or ``"per_condition"`` (one
            ``adapter.generate`` per condition, today's way); ``None``: batched, unless inside
            :func:`per_condition_passes`.
    """

    max_rows: int | None = None
    memory_gb: float = 1.5
    row_cap: int = 256
    share_prompt: bool = True
    strategy: Strategy | None = None
    refill: bool = True
    share_prefix: bool = True
    share_trunk: bool = True

    def __post_init__(self):
        if self.max_rows is not None and self.max_rows < 1:
            raise ValueError(f"max_rows must be >= 1 (or None for the memory budget), got {self.max_rows}.")
        if self.memory_gb <= 0:
            raise ValueError(f"memory_gb must be > 0, got {self.memory_gb}.")
        if self.row_cap < 1:
            raise ValueError(f"row_cap must be >= 1, got {self.row_cap}.")
        if self.strategy not in (None, "batched", "per_condition"):
            raise ValueError(f"strategy must be 'batched' or 'per_condition', got {self.strategy!r}.")

    def resolved_strategy(self) -> Strategy:
        if self.strategy is not None:
            return self.strategy
        return _DEFAULT_STRATEGY[-1] if _DEFAULT_STRATEGY else "batched"

    def rows_for(self, adapter: ModelAdapter, prompt_len: int, max_new_tokens: int) -> int:
        if self.max_rows is not None:
            return self.max_rows
        kv_width = int(getattr(adapter, "kv_width", adapter.d_model))
        per_row = adapter.n_layers * 2 * kv_width * 4 * (prompt_len + max_new_tokens) * 2  # ×2: the step's copy
        return int(max(1, min(self.row_cap, self.memory_gb * 2**30 // max(per_row, 1))))


@dataclass
class ConditionResult:
    """One condition's generations (in example order) and, with a task, their rewards."""

    name: str
    generations: list[Generation]
    rewards: list[float] | None = None
    touched_prompt: bool = True
    prompt_from_layer: int = 0  # its prompt rows reused the shared prompt's forward below this block

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.rewards)) if self.rewards else math.nan

    def __repr__(self) -> str:
        scored = f", accuracy={self.accuracy:.3g}" if self.rewards else ""
        first = f", first={short_text(self.generations[0].text, 40)}" if self.generations else ""
        return f"ConditionResult({self.name!r}, {len(self.generations)} generations{scored}{first})"

    def scored_run(self):
        """This condition as a :class:`~reward_circuits.interventions.ScoredRun` (needs a task)."""
        from .scoring import ScoredRun

        if self.rewards is None:
            raise ValueError(f"condition {self.name!r} was swept over prompts, not a task: there are no rewards.")
        return ScoredRun(self.accuracy, list(self.rewards), list(self.generations))


@dataclass
class SweepResult:
    """Per-condition results of :func:`sweep`, plus what the sweep cost."""

    conditions: dict[str, ConditionResult]
    n_examples: int
    strategy: Strategy
    n_rows: int = 0  # decoding rows generated (examples × conditions)
    n_prefill_rows: int = 0  # prompt rows encoded (shared prompts count once)
    n_passes: int = 0  # generation plans (chunks; with refill, plans that joined one running batch)
    refilled: bool = False  # rows of later plans joined the running batch as rows left
    shared_prefix_tokens: int = 0  # prompt tokens every example shares, encoded once per condition
    n_new_tokens: int = 0
    prefill_row_layers: int = 0  # prompt rows × blocks run in the prefills (the prefill's compute)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def __getitem__(self, name: str) -> ConditionResult:
        return self.conditions[str(name)]

    def __repr__(self) -> str:
        scored = any(c.rewards for c in self.conditions.values())
        what = f"accuracy={short_dict(self.accuracies(), 4)}" if scored else f"conditions={short_list(self.conditions, 4)}"
        return (f"SweepResult({len(self)} conditions × {self.n_examples} examples, {what}, "
                f"{self.strategy}, {self.seconds:.1f} s)")

    def __iter__(self):
        return iter(self.conditions.values())

    def __len__(self) -> int:
        return len(self.conditions)

    def subset(self, prefix: str, *, keep: Sequence[str] = ("baseline",)) -> "SweepResult":
        """The conditions named ``prefix + name`` as ``name`` (plus the ``keep`` ones as they are):
        one study's view of a sweep shared by several studies, for their ``swept=`` argument."""
        conds = {k[len(prefix):]: c for k, c in self.conditions.items() if k.startswith(prefix)}
        conds.update({k: self.conditions[k] for k in keep if k in self.conditions and k not in conds})
        return SweepResult(conds, self.n_examples, self.strategy, notes=[f"the {prefix!r} conditions of a shared sweep"])

    def accuracies(self) -> dict[str, float]:
        return {k: c.accuracy for k, c in self.conditions.items()}

    def summary(self) -> dict:
        return {"n_examples": self.n_examples, "strategy": self.strategy, "n_rows": self.n_rows,
                "n_prefill_rows": self.n_prefill_rows, "prefill_row_layers": self.prefill_row_layers, "n_passes": self.n_passes, "refilled": self.refilled,
                "shared_prefix_tokens": self.shared_prefix_tokens, "n_new_tokens": self.n_new_tokens,
                "seconds": self.seconds, "accuracy": self.accuracies(),
                "shared_prompt": [k for k, c in self.conditions.items() if not c.touched_prompt]}

    def section(self, key: str = "sweep", title: str = "Intervention sweep"):
        """A report :class:`~reward_circuits.report.Section`: accuracy per condition."""
        from ..io import nan_to_none
        from ..report import Section, Table

        def encoding(c: ConditionResult) -> str:
            if not c.touched_prompt:
                return "shared"
            return f"own from block {c.prompt_from_layer}" if c.prompt_from_layer else "own"

        rows = [[k, c.accuracy, len(c.generations), encoding(c)] for k, c in self.conditions.items()]
        notes = [(f"{self.n_examples} examples × {len(self)} conditions = {self.n_rows} rows in {self.n_passes} "
                  f"generation pass(es) ({self.strategy}); {self.n_prefill_rows} prompt rows encoded.")] + self.notes
        return Section(key, title, nan_to_none(self.summary()),
                       [Table("Accuracy per condition", ["condition", "accuracy", "n", "prompt encoding"], rows)],
                       [], notes)


# ---------------------------------------------------------------------------------------------
# The sweep
# ---------------------------------------------------------------------------------------------


def sweep(adapter: ModelAdapter, task_or_prompts, conditions: ConditionsLike, config: GenerationConfig | None = None,
          *, examples=None, sweep_config: SweepConfig | None = None) -> SweepResult:
    """Generate every example under every condition, batched across conditions, and score it.

    Args:
        task_or_prompts: a task (``task.render`` prompts, ``task.reward`` scores; ``examples``
            default to ``task.examples``) or a list of prompt strings (no scores).
        conditions: ``{name: [(hook_name, fn), ...]}``, a list of :class:`Condition`, or a list of
            hook lists; ``[]`` is the baseline.
        config: generation settings (``batch_size`` is ignored by the batched strategy, which
            sizes passes with ``sweep_config``).

    Returns a :class:`SweepResult`: ``result[name].generations`` / ``.rewards`` / ``.accuracy``.
    """
    t0 = time.perf_counter()
    conds = conditions_of(conditions)
    sweep_config = sweep_config or SweepConfig()
    prompts, task, examples = _prompts_of(adapter, task_or_prompts, examples)
    config = config or GenerationConfig(max_new_tokens=getattr(task, "max_new_tokens", 64))
    for c in conds:
        if c.hooks:
            adapter.validate_hooks([n for n, _ in c.hooks])
    strategy = sweep_config.resolved_strategy()
    if strategy == "per_condition":
        result = _per_condition(adapter, prompts, conds, config)
    else:
        result = _batched(adapter, prompts, conds, config, sweep_config)
    if task is not None:
        for c in result.conditions.values():
            c.rewards = [float(task.reward(g.text, ex)) for g, ex in zip(c.generations, examples)]
    result.n_new_tokens = sum(len(g.response_ids) for c in result.conditions.values() for g in c.generations)
    result.seconds = time.perf_counter() - t0
    return result


def _prompts_of(adapter: ModelAdapter, task_or_prompts, examples) -> tuple[list[str], Any, list | None]:
    if hasattr(task_or_prompts, "render") and hasattr(task_or_prompts, "reward"):
        task = task_or_prompts
        examples = list(task.examples if examples is None else examples)
        if not examples:
            raise ValueError("no examples to evaluate.")
        return [task.render(ex, adapter.tokenizer) for ex in examples], task, examples
    if isinstance(task_or_prompts, str):
        task_or_prompts = [task_or_prompts]
    prompts = list(task_or_prompts)
    if not prompts or not all(isinstance(p, str) for p in prompts):
        raise TypeError("sweep needs a task (with render and reward) or a non-empty list of prompt strings.")
    if examples is not None:
        raise ValueError("examples= goes with a task; with prompt strings, pass the prompts only.")
    return prompts, None, None


def _per_condition(adapter, prompts, conds: list[Condition], config) -> SweepResult:
    out = {}
    for c in tqdm(conds, desc="sweep (per condition)", leave=False, disable=not config.progress):
        out[c.name] = ConditionResult(c.name, adapter.generate(prompts, config, fwd_hooks=c.hooks), None, True)
    n = len(prompts)
    return SweepResult(out, n, "per_condition", n_rows=n * len(conds), n_prefill_rows=n * len(conds),
                       n_passes=len(conds) * math.ceil(n / config.batch_size),
                       prefill_row_layers=n * len(conds) * adapter.n_layers)


def _row_scoped_hooks(conds: Sequence[Condition], labels: RowLabels) -> list[tuple[str, HookFn]]:
    """One :class:`RowScopedHooks` per hook point, in the order hook points first appear."""
    by_site: dict[str, list[tuple[int, HookFn]]] = {}
    for k, c in enumerate(conds):
        for name, fn in c.hooks:
            by_site.setdefault(name, []).append((k, fn))
    return [(name, RowScopedHooks(labels, entries)) for name, entries in by_site.items()]


def _batched(adapter: ModelAdapter, prompts: list[str], conds: list[Condition], config: GenerationConfig,
             sweep_config: SweepConfig) -> SweepResult:
    seqs = [adapter.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    if any(len(s) == 0 for s in seqs):
        raise ValueError("an empty prompt: nothing to condition the generation on.")
    n, k_all = len(seqs), len(conds)
    max_rows = sweep_config.rows_for(adapter, max(len(s) for s in seqs), config.max_new_tokens)
    group = min(k_all, max_rows)
    per_chunk = max(1, max_rows // group)
    # a backend that can add rows to a running batch gets small plans that join as rows leave
    # (the batch stays full); others run one chunk of max_rows at a time
    streaming = sweep_config.refill and adapter.joins_rows and not config.do_sample and config.drop_finished
    per_plan = max(1, per_chunk // 4) if streaming else per_chunk
    results: dict[str, list[Generation | None]] = {c.name: [None] * n for c in conds}
    shared_used = {c.name: False for c in conds}
    from_layer = {c.name: 0 for c in conds}
    stats = {"rows": 0, "prefill": 0, "passes": 0, "prefill_layers": 0}
    # the prompt prefix every example shares (chat template, system prompt) is encoded once per
    # condition, not once per row, when every condition's hooks treat all prompt positions alike
    # (hooks attached outside the sweep, e.g. a user's `with adapter.hooks(...)`, may be position-specific)
    cut = (_shared_prefix_len(seqs, conds)
           if streaming and sweep_config.share_prefix and not adapter.has_attached_hooks() else 0)
    prefix, prefix_row_of = _prefix_plan(adapter, seqs[0][:cut], conds, sweep_config) if cut else (None, {})
    planning = _Planning(adapter, seqs, conds, sweep_config, shared_used, from_layer, stats, cut, prefix_row_of)
    plans, owners, seeds = [], [], []
    for g0 in range(0, k_all, group):
        for e0 in range(0, n, per_plan):
            # sampled sweeps: one key per example (its own generator, seeded by config.seed and
            # the key), so every condition of an example draws the same uniform numbers
            seeds.append(config.seed)
            plan, own = _plan(planning, g0, group, list(range(e0, min(n, e0 + per_plan))))
            plans.append(plan)
            owners.append(own)
    labels = RowLabels()
    hooks = _row_scoped_hooks(conds, labels)
    if streaming:
        prompts_of = [[seqs[e] for _, e in own] for own in owners]  # full prompts, by decoding row
        rows = adapter.decode_stream(plans, config, hooks, max_rows=max_rows, row_labels=labels,
                                     desc=f"sweep ({k_all} conditions × {n} examples)", prefix=prefix)
        for own, new, ps in zip(owners, rows, prompts_of):
            for (name, e), prompt, row in zip(own, ps, new):
                results[name][e] = adapter.finish_generation(prompt, row, config)
        stats["passes"] = len(plans)  # plans that joined one running batch
    else:
        bar = tqdm(plans, desc=f"sweep ({k_all} conditions × {n} examples)", leave=False,
                   disable=not config.progress)
        for plan, own, seed in zip(bar, owners, seeds):
            gens = adapter.generate_plan(plan, config, hooks, seed=seed, row_labels=labels)
            for (name, e), g in zip(own, gens):
                results[name][e] = g
        stats["passes"] = len(plans)
    out = {c.name: ConditionResult(c.name, list(results[c.name]), None, not shared_used[c.name], from_layer[c.name])
           for c in conds}
    return SweepResult(out, n, "batched", n_rows=stats["rows"], n_prefill_rows=stats["prefill"], n_passes=stats["passes"],
                       prefill_row_layers=stats["prefill_layers"], refilled=streaming, shared_prefix_tokens=cut)


def _prefix_safe(c: Condition) -> bool:
    """Whether ``c``'s hooks act on every prompt position alike (our hooks with ``positions="all"``
    or ``"generated"`` and no ``prompt_len``, or declared prompt-free), so a prompt prefix encoded
    on its own under them is what the whole prompt's forward computes there."""
    for _, fn in c.hooks:
        if getattr(fn, "touches_prompt", None) is False:
            continue
        if not isinstance(fn, InterventionHook):
            return False
        scope = fn.scope
        if not (isinstance(scope.which, str) and scope.which in ("all", "generated") and scope.prompt_len is None):
            return False
    return True


def _shared_prefix_len(seqs: list[list[int]], conds: list[Condition]) -> int:
    """Tokens every prompt starts with, leaving each at least two of its own (a one-token forward
    looks like a decoding step to position scopes); 0 when too short or a condition is not prefix-safe."""
    return common_prefix_len(seqs) if all(_prefix_safe(c) for c in conds) else 0


def _encodes_own_prompt(c: Condition, sweep_config: SweepConfig) -> bool:
    return not (sweep_config.share_prompt and not c.touches_prompt)


def _start_layer(adapter: ModelAdapter, c: Condition, sweep_config: SweepConfig) -> int:
    return c.first_layer if sweep_config.share_prompt and adapter.prefill_from_layer and c.touches_prompt else 0


def _prefix_plan(adapter: ModelAdapter, prefix: list[int], conds: list[Condition], sweep_config: SweepConfig
                 ) -> tuple[GenerationPlan, dict[int, int]]:
    """The shared prefix once plainly (row 0) and once per condition that encodes its own prompt
    (from its start layer); ``{condition index: its prefix row}``."""
    rows, labels, starts, bases, row_of = [prefix], [-1], [0], [-1], {}
    for k, c in enumerate(conds):
        if _encodes_own_prompt(c, sweep_config):
            row_of[k] = len(rows)
            rows.append(prefix)
            labels.append(k)
            starts.append(_start_layer(adapter, c, sweep_config))
            bases.append(0)
    return GenerationPlan(adapter.pad(rows, "left"), None, torch.tensor(labels), torch.tensor([-1] * len(rows)),
                          torch.tensor(starts), torch.tensor(bases)), row_of


@dataclass
class _Planning:
    """What every plan of one sweep reads (the adapter, prompts, conditions, settings, the shared
    prefix) and the bookkeeping the plans update (``shared_used``, ``from_layer``, ``stats``)."""

    adapter: ModelAdapter
    seqs: list[list[int]]
    conds: list[Condition]
    sweep_config: SweepConfig
    shared_used: dict
    from_layer: dict
    stats: dict
    cut: int = 0
    prefix_row_of: dict[int, int] | None = None


def _plan(planning: _Planning, g0: int, group: int, ex: list[int]) -> tuple[GenerationPlan, list[tuple[str, int]]]:
    """The generation plan of examples ``ex`` under conditions ``g0 .. g0 + group``, and the
    (condition, example) each decoding row belongs to. With ``cut``, the prompts' first ``cut``
    tokens are a prefix already encoded (row ``prefix_row_of[condition]``, 0 for shared rows)."""
    adapter, seqs, conds, sweep_config = planning.adapter, planning.seqs, planning.conds, planning.sweep_config
    shared_used, from_layer, stats = planning.shared_used, planning.from_layer, planning.stats
    cut, prefix_row_of = planning.cut, planning.prefix_row_of
    group_conds = conds[g0:g0 + group]
    chunk_seqs = [seqs[e][cut:] for e in ex]
    prefix_rows: list[int] = []
    # one prompt row per example shared by the conditions that leave the prompt alone (a
    # one-token prefill looks like a decoding step to position scopes: never shared)
    can_share = sweep_config.share_prompt and max(len(s) for s in chunk_seqs) > 1
    sharing = [can_share and not _encodes_own_prompt(c, sweep_config) for c in group_conds]
    # conditions that do touch the prompt, from a later layer on: start their prompt rows there
    # from the shared rows' stream (on backends that can; others run the whole prompt)
    starts = [_start_layer(adapter, c, sweep_config) if can_share else 0 for c in group_conds]
    prefill_rows: list[list[int]] = []
    prefill_labels: list[int] = []
    prefill_start: list[int] = []
    prefill_base: list[int] = []
    shared_row: dict[int, int] = {}
    if any(sharing) or any(starts):
        for j, s in enumerate(chunk_seqs):
            shared_row[j] = len(prefill_rows)
            prefill_rows.append(s)
            prefill_labels.append(-1)
            prefill_start.append(0)
            prefill_base.append(-1)
            prefix_rows.append(0)
    source, decode_labels, owners, keys, trunk = [], [], [], [], []
    for gk, (c, shares, start) in enumerate(zip(group_conds, sharing, starts)):
        label = g0 + gk
        layer = _trunk_layer(adapter, c, shares, start)
        for j, s in enumerate(chunk_seqs):
            trunk.append(layer)
            if shares:
                source.append(shared_row[j])
            else:
                source.append(len(prefill_rows))
                prefill_rows.append(s)
                prefill_labels.append(label)
                prefill_start.append(start)
                prefill_base.append(shared_row.get(j, -1))
                prefix_rows.append((prefix_row_of or {}).get(label, 0))
            decode_labels.append(label)
            owners.append((c.name, ex[j]))
            keys.append(ex[j])
        shared_used[c.name] = shared_used[c.name] or shares
        from_layer[c.name] = max(from_layer[c.name], start)
    stats["prefill_layers"] += sum(adapter.n_layers - st for st in prefill_start)
    stats["rows"] += len(source)
    stats["prefill"] += len(prefill_rows)
    plan = GenerationPlan(adapter.pad(prefill_rows, "left"), torch.tensor(source), torch.tensor(prefill_labels),
                          torch.tensor(decode_labels), torch.tensor(prefill_start), torch.tensor(prefill_base),
                          torch.tensor(prefix_rows) if cut else None, torch.tensor(keys),
                          torch.tensor(trunk) if sweep_config.share_trunk and adapter.shares_trunk else None)
    return plan, owners


def _trunk_layer(adapter: ModelAdapter, c: Condition, shares: bool, start: int) -> int:
    """The block from which ``c``'s decoding rows compute on their own (below it they share the rows
    of their example while tokens agree): its first hooked block (``n_layers`` without hooks) when
    its prompt cache below that block is the shared prompt's (a shared prompt row, or its own rows
    started there), else 0."""
    if shares:
        return c.first_layer if c.hooks else adapter.n_layers
    return start if start > 0 else 0
