"""The generation studies never evaluate on a prompt the value probe trained or validated on (issue 27, item 5)."""

from types import SimpleNamespace

import numpy as np
import pytest

from reward_circuits.studies.run.evaluation import EvaluationSource, _prompt_ids, evaluation_examples
from reward_circuits.tasks.base import Example, Task


def small_space_task(n: int, seed: int, space: int = 12) -> Task:
    """A task whose question space holds only ``space`` distinct questions (drawn with repeats)."""
    rng = np.random.default_rng(seed)
    examples = [Example(f"q{seed}-{i}", f"What is {int(q)} plus one?", str(int(q) + 1))
                for i, q in enumerate(rng.integers(0, space, size=n))]
    return Task("small", examples, lambda resp, ex: float(ex.answer in resp), max_new_tokens=4)


def _source(adapter, space: int, n_rollouts: int = 30):
    task = small_space_task(n_rollouts, seed=0, space=space)
    ids = _prompt_ids(adapter, task, task.examples)
    rollouts = [SimpleNamespace(id=f"r{i}", example_id=ex.id, prompt_ids=list(p), gold=ex.answer)
                for i, (ex, p) in enumerate(zip(task.examples, ids))]
    # a prompt-grouped split: each distinct prompt wholly in one part
    groups = sorted(set(ids))
    part_of = {g: ("fit", "val", "test")[j % 3] for j, g in enumerate(groups)}
    split = {part: np.array([i for i, p in enumerate(ids) if part_of[p] == part]) for part in ("fit", "val", "test")}
    draw = lambda n, seed: small_space_task(n, seed, space)  # noqa: E731
    return EvaluationSource("small", task, rollouts, split, draw=draw), ids, split


def _probe_prompts(ids, split):
    return {ids[i] for part in ("fit", "val") for i in split[part]}


def test_a_large_question_space_gives_fresh_prompts_in_no_rollout(tl_adapter):
    source, ids, split = _source(tl_adapter, space=1000)
    ev = evaluation_examples(source, k=8, seed=7, adapter=tl_adapter)
    chosen = _prompt_ids(tl_adapter, ev.task, ev.task.examples)
    assert ev.n_fresh == 8 and ev.n_from_test_split == 0 and not ev.notes
    assert len(set(chosen)) == 8 and not set(chosen) & set(ids)


def test_a_small_question_space_falls_back_to_test_prompts_and_says_so(tl_adapter):
    """Was: the main job drew its 32 study prompts from `arithmetic:1`'s 155 questions, all in the rollouts;
    most were probe-training prompts, so the confidence study's V(s_0) was read in-sample."""
    source, ids, split = _source(tl_adapter, space=12)  # 30 rollouts cover (nearly) all 12 questions
    ev = evaluation_examples(source, k=8, seed=7, adapter=tl_adapter)
    chosen = _prompt_ids(tl_adapter, ev.task, ev.task.examples)
    assert ev.n_from_test_split > 0 and ev.notes and "test prompts" in ev.notes[0]
    assert not set(chosen) & _probe_prompts(ids, split)  # none seen by the probe
    assert len(set(chosen)) == len(chosen)  # distinct
    test_prompts = {ids[i] for i in split["test"]}
    assert set(chosen) - test_prompts <= set(chosen) - set(ids)  # whatever is not fresh is a test prompt


def test_a_test_split_that_overlaps_the_fit_split_lends_nothing(tl_adapter):
    source, ids, split = _source(tl_adapter, space=12)
    everything = np.arange(len(ids))
    leaky = EvaluationSource(source.spec, source.rollout_task, source.rollouts,
                             {"fit": everything, "val": everything[:0], "test": everything}, draw=source.draw)
    ev = evaluation_examples(leaky, k=8, seed=7, adapter=tl_adapter)  # test ⊂ fit: nothing may come from it
    chosen = _prompt_ids(tl_adapter, ev.task, ev.task.examples)
    assert ev.n_from_test_split == 0 and not set(chosen) & set(ids)


def test_the_guard_raises_if_a_probe_prompt_ever_slips_through(tl_adapter, monkeypatch):
    from reward_circuits.studies.run import evaluation

    source, ids, split = _source(tl_adapter, space=12)
    fit_example = source.rollout_task.examples[int(split["fit"][0])]
    monkeypatch.setattr(evaluation, "_distinct_fresh", lambda adapter, task, used, k: [fit_example])
    with pytest.raises(evaluation.EvaluationLeak, match="fit/validation"):
        evaluation_examples(source, k=1, seed=7, adapter=tl_adapter)
