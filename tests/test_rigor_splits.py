"""Splits grouped by prompt: no prompt on both sides; identical to the plain split when prompts are distinct."""

from __future__ import annotations

import numpy as np

from reward_circuits.analysis.splits import grouped_stratified_split
from reward_circuits.data.store import stratified_split


def test_repeated_prompts_stay_on_one_side():
    rng = np.random.default_rng(0)
    prompt = rng.integers(0, 60, size=300)  # 300 rollouts of <= 60 distinct prompts
    rewards = (prompt % 3 == 0).astype(float)  # a prompt's copies share their reward
    train, test = grouped_stratified_split(np.arange(300), rewards, prompt.tolist(), 0.3, seed=0)
    assert not set(prompt[train]) & set(prompt[test])
    assert sorted(np.r_[train, test].tolist()) == list(range(300))
    assert set(rewards[test]) == {0.0, 1.0} and 0.15 < len(test) / 300 < 0.45
    # the plain split leaks: most test prompts were seen in training
    plain_train, plain_test = stratified_split(np.arange(300), rewards, 0.3, 0)
    assert len(set(prompt[plain_test]) & set(prompt[plain_train])) > 0.5 * len(set(prompt[plain_test]))


def test_distinct_prompts_give_the_plain_split():
    rewards = (np.arange(50) % 2).astype(float)
    a = grouped_stratified_split(np.arange(50), rewards, list(range(50)), 0.3, seed=3)
    b = stratified_split(np.arange(50), rewards, 0.3, 3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
