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


# ---------------------------------------------------------------------------------------------
# the value stage's saved split: ValueStageResult.load and compare
# ---------------------------------------------------------------------------------------------
def arithmetic_like_store(path, n_prompts: int = 70, seed: int = 0):
    """Planted value signal, prompts repeated like ``arithmetic:1`` (1-4 greedy copies each: same
    states, same reward); returns (store, prompt token ids by rollout id)."""
    acts, rewards, _ = planted_rollouts(n_rollouts=n_prompts, d=16, k=2, T_range=(3, 6), seed=seed, hooks=HOOKS)
    copies = np.random.default_rng(seed + 1).integers(1, 5, size=n_prompts)
    src = [p for p in range(n_prompts) for _ in range(copies[p])]
    ids = [f"arith-{p}-copy{c}" for p in range(n_prompts) for c in range(copies[p])]
    store = write_store_from_arrays(path, {h: [acts[h][p].clone() for p in src] for h in HOOKS}, rewards[src].tolist(),
                                    ids=ids, model="planted", dtype="float32")
    return store, {rid: [100 + p, 7, 3] for rid, p in zip(ids, src)}


@pytest.fixture(scope="module")
def value_run(tmp_path_factory):
    """A fake `reward-circuits run` directory: store/arith_1 (repeated prompts) and value/ from the value stage."""
    from reward_circuits.studies.run.value import ValueStageConfig, run_value_stage

    run_dir = tmp_path_factory.mktemp("value_run") / "run"
    store, prompts = arithmetic_like_store(run_dir / "store" / "arith_1")
    result = run_value_stage(store, run_dir / "value", prompt_tokens=prompts,
                             config=ValueStageConfig(quick=True, n_boot=100, progress=False, robustness_seeds=1))
    summary = {"model": "planted", "config": {"tasks": ["arith:1"], "seed": 0, "test_fraction": 0.3},
               "value": json.loads(json.dumps(result.section.summary, default=str))}
    (run_dir / "summary.json").write_text(json.dumps(summary))
    return run_dir, store, prompts, result


def test_value_stage_saves_its_prompt_grouped_split(value_run):
    run_dir, store, prompts, result = value_run
    saved = json.loads((run_dir / "value" / SPLIT_FILE).read_text())
    assert saved["format_version"] == 1 and set(saved["stores"]) == {"primary"}
    primary = saved["stores"]["primary"]
    assert primary["n_rollouts"] == len(store) and primary["grouped_by_prompt"]
    for part, idx in (("fit", result.train_indices), ("validation", result.val_indices), ("test", result.test_indices)):
        assert primary[part]["indices"] == idx.tolist()
        assert primary[part]["rollout_ids"] == [store.rollout_ids[i] for i in idx]
    prompt_of = {rid: tuple(t) for rid, t in prompts.items()}
    sides = {part: {prompt_of[r] for r in primary[part]["rollout_ids"]} for part in ("fit", "validation", "test")}
    assert not sides["test"] & (sides["fit"] | sides["validation"]) and not sides["fit"] & sides["validation"]
    assert len(store) > len({tuple(t) for t in prompts.values()})  # the task does repeat prompts


def test_value_stage_result_load_reads_the_split_back_and_checks_the_store(value_run, tmp_path):
    from reward_circuits.studies.run.value import ValueStageResult

    run_dir, store, _, result = value_run
    summary = json.loads((run_dir / "summary.json").read_text())["value"]
    loaded = ValueStageResult.load(run_dir / "value", summary, store=store)
    for a, b in ((loaded.train_indices, result.train_indices), (loaded.val_indices, result.val_indices),
                 (loaded.test_indices, result.test_indices)):
        assert a.dtype == np.int64 and a.tolist() == b.tolist() and a.size
    assert ValueStageResult.load(run_dir / "value", summary).test_indices.tolist() == result.test_indices.tolist()
    # another store (same size, other rollouts): refused, naming the fix
    other, _ = arithmetic_like_store(tmp_path / "other", seed=5)
    with pytest.raises(ProbeError, match="rebuilt or reordered|not the store"):
        read_split_file(run_dir / "value" / SPLIT_FILE, other)
    # an older run without the file: a clear error, never a re-split
    old = tmp_path / "old_value"
    shutil.copytree(run_dir / "value", old)
    (old / SPLIT_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=r"reward-circuits run --stages value --out DIR"):
        ValueStageResult.load(old, summary, store=store)


def test_compare_of_a_run_against_itself_scores_exactly_its_own_test_rollouts(value_run, tmp_path):
    from reward_circuits.studies.applications.monitoring import CompareConfig, ValueSnapshot, compare_snapshots

    run_dir, store, prompts, result = value_run
    saved = json.loads((run_dir / "value" / SPLIT_FILE).read_text())["stores"]["primary"]
    snap = ValueSnapshot.from_dir(run_dir)
    assert snap.ids == saved["test"]["rollout_ids"]
    prompt_of = {rid: tuple(t) for rid, t in prompts.items()}
    trained = {prompt_of[r] for r in saved["fit"]["rollout_ids"] + saved["validation"]["rollout_ids"]}
    assert not {prompt_of[r] for r in snap.ids} & trained  # no prompt the probe fitted or validated on
    res = compare_snapshots(snap, snap, CompareConfig(n_boot=200))
    assert res.verdict == "same" and res.auc_a.n == len(saved["test"]["rollout_ids"])
    # the run's own AUC on those rollouts, V(s_0) of the saved probe
    values = result.probe.initial_values(store, result.test_indices, [snap.hook])[0]
    assert res.auc_a.estimate == pytest.approx(binary_auc(store.rewards[result.test_indices], values))
    # without the saved split: a clear error naming the fix
    old = tmp_path / "old_run"
    shutil.copytree(run_dir, old)
    (old / "value" / SPLIT_FILE).unlink()
    with pytest.raises(FileNotFoundError, match="no saved value-stage split.*--stages value"):
        ValueSnapshot.from_dir(old)


def test_bag_of_tokens_cross_validation_folds_by_prompt(tmp_path):
    """Planted null: each prompt is an id token (1-4 copies), its reward a coin flip. Rollout folds
    reward memorising the ids (CV AUC far above chance); prompt folds see chance."""
    from reward_circuits.analysis.baselines import bag_of_tokens_baseline

    groups, rewards = repeated_groups(n_prompts=120, max_copies=4, seed=2)
    prompts = [[1, 2, 3 + g] for g in groups]
    train, test = np.arange(len(groups) - 40), np.arange(len(groups) - 40, len(groups))
    test = test[[groups[i] not in {groups[j] for j in train} for i in test]]
    leaky = bag_of_tokens_baseline(prompts, rewards, train, test, vocab_size=200, seed=0)
    grouped = bag_of_tokens_baseline(prompts, rewards, train, test, vocab_size=200, seed=0, groups=groups)
    assert max(leaky.cv_auc.values()) > 0.8
    assert max(grouped.cv_auc.values()) < 0.7


def test_dopamine_stage_cross_fits_by_prompt_with_folds_counted_in_prompts(tmp_path, monkeypatch):
    """3 prompts with reward 1 (6 greedy copies each, 18 rollouts): at most 3 folds can each hold a
    reward-1 prompt, and the stage hands its prompt groups to the cross-fitting."""
    import reward_circuits.studies.run.dopamine as stage
    from reward_circuits.studies.run.dopamine import DopamineStageConfig, run_dopamine_stage

    groups = [p for p in range(3) for _ in range(6)] + list(range(3, 33))
    rewards = [1.0] * 18 + [0.0] * 30
    base = np.random.default_rng(0).standard_normal((33, 8)).astype(np.float32)
    store = write_store_from_arrays(tmp_path / "store", {HOOKS[0]: [torch.from_numpy(np.repeat(base[g][None], 4, 0))
                                                                    for g in groups]}, rewards, dtype="float32")
    probe = ValueProbe(ValueProbeConfig(epochs=2, hidden=8, weight_decay=0.0)).fit(store, HOOKS[0], verbose=False)
    seen = {}
    real = stage.cross_fitted_value_traces

    def spy(store, hook, cfg, n_folds, seed, groups=None):
        seen.update(n_folds=n_folds, groups=groups)
        return real(store, hook, cfg, n_folds, seed, groups=groups)

    monkeypatch.setattr(stage, "cross_fitted_value_traces", spy)
    s = run_dopamine_stage(store, probe, HOOKS[0], tmp_path / "out", value_neurons=None, prompt_groups=groups,
                           config=DopamineStageConfig(n_permutations=20, n_random_draws=20)).section.summary
    assert seen["n_folds"] == 3 and list(seen["groups"]) == groups
    assert s["values"] == "cross-fitted, 3 folds"
