"""The generation studies' evaluation prompts, disjoint from every prompt the value probe saw.

The intervention and confidence studies score the model on prompts. If one of them was among the
probe's training or validation rollouts, the probe's read-out on it is in-sample (the 2026-12-01
default job: `arithmetic:1` has 155 distinct questions, all in the 200 rollouts, so most of its 32
study prompts were probe-training prompts). Here the prompts are chosen so that cannot happen:

1. fresh prompts of the primary task (another seed than the rollouts') that are in no rollout at all;
2. where the task has too few distinct prompts for that, the prompts of the probe's held-out *test*
   rollouts (the split is by prompt, so the probe never saw them), and the job says so.

:func:`evaluation_examples` asserts the result: no study prompt is a fit or validation prompt.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import numpy as np

from ...models import ModelAdapter
from ...tasks import get_task
from ...tasks.base import Example, Task


@dataclass
class EvaluationPrompts:
    """The studies' task (its examples are the evaluation prompts) and where they came from."""

    task: Task
    n_fresh: int
    n_from_test_split: int
    n_probe_prompts: int  # distinct prompts of the probe's fit and validation rollouts
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"n": len(self.task.examples), "fresh": self.n_fresh, "from_test_split": self.n_from_test_split,
                "seen_by_probe": 0, "probe_prompts": self.n_probe_prompts}


class EvaluationLeak(AssertionError):
    """A study prompt is one the value probe trained or validated on (a bug: it must never happen)."""


def _prompt_ids(adapter: ModelAdapter, task: Task, examples: Sequence[Example]) -> list[tuple[int, ...]]:
    texts = [task.render(ex, adapter.tokenizer) for ex in examples]
    return [tuple(ids) for ids in adapter.tokenizer(texts, add_special_tokens=False)["input_ids"]]


def _distinct_fresh(adapter, task: Task, used: set[tuple[int, ...]], k: int) -> list[Example]:
    out, seen = [], set(used)
    for ex, ids in zip(task.examples, _prompt_ids(adapter, task, task.examples)):
        if ids not in seen and len(out) < k:
            out.append(ex)
            seen.add(ids)
    return out


@dataclass(frozen=True)
class EvaluationSource:
    """What the evaluation prompts are chosen against: the primary task's rollouts (store order), the
    draw they came from (``get_task(spec, n=limit, seed)``) and the value stage's split of them."""

    spec: str
    rollout_task: Task
    rollouts: Sequence
    split: dict  # "fit", "val", "test": rollout positions
    draw: Callable[[int, int], Task] | None = None  # (n, seed) -> a draw of the task; default get_task(spec, ...)


def _test_split_examples(adapter, source: EvaluationSource, seen: set, taken: set, need: int) -> list[Example]:
    """Examples of the probe's held-out test rollouts (rebuilt from the rollout draw, checked token by token)."""
    by_id = {ex.id: ex for ex in source.rollout_task.examples}
    out = []
    for i in np.asarray(source.split["test"]).tolist():
        r = source.rollouts[i]
        ids = tuple(r.prompt_ids)
        ex = by_id.get(r.example_id)
        if len(out) == need or ex is None or ids in seen or ids in taken:
            continue
        if _prompt_ids(adapter, source.rollout_task, [ex])[0] != ids:
            continue  # the draw no longer renders this rollout's prompt (e.g. a changed generator): skip it
        taken.add(ids)
        out.append(ex)
    return out


def evaluation_examples(source: EvaluationSource, k: int, seed: int, adapter: ModelAdapter) -> EvaluationPrompts:
    """``k`` distinct prompts of ``source.spec`` that no fit or validation rollout of the probe holds.

    Fresh prompts (a draw with ``seed``, in no rollout) come first; the test split's prompts fill the
    rest when the task runs short. Raises :class:`EvaluationLeak` if a chosen prompt is a probe prompt."""
    prompt_of = [tuple(r.prompt_ids) for r in source.rollouts]
    seen = {prompt_of[i] for part in ("fit", "val") for i in np.asarray(source.split[part]).tolist()}
    draw = source.draw or (lambda n, s: get_task(source.spec, n=n, seed=s))
    drawn = draw(max(4 * k, k + len(set(prompt_of))), seed)
    fresh = _distinct_fresh(adapter, drawn, set(prompt_of), k)
    examples, notes = list(fresh), []
    if len(examples) < k:
        taken = set(_prompt_ids(adapter, drawn, examples)) if examples else set()
        from_test = _test_split_examples(adapter, source, seen, taken, k - len(examples))
        examples += from_test
        notes.append(f"{source.spec} has {len(fresh)} distinct prompts outside the {len(set(prompt_of))} rollout prompts; "
                     f"{len(from_test)} evaluation prompts are the probe's held-out test prompts (never in its "
                     "training or validation split)")
    task = replace(drawn, examples=examples)
    leaked = [ex.id for ex, ids in zip(examples, _prompt_ids(adapter, task, examples)) if ids in seen]
    if leaked:
        raise EvaluationLeak(f"{len(leaked)} evaluation prompts are probe fit/validation prompts: {leaked[:5]}")
    return EvaluationPrompts(task, len(fresh), len(examples) - len(fresh), len(seen), notes)
