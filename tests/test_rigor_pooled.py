"""One probe pooled over two tasks (ConcatStore), with held-out AUCs per task, on planted stores."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from reward_circuits.analysis.pooled import pooled_value_probe, task_split
from reward_circuits.analysis.probes import ValueProbe, ValueProbeConfig
from reward_circuits.data import ArrayRollouts, ConcatStore, Store
from reward_circuits.data.store import write_store_from_arrays
from reward_circuits.data.synthetic import planted_rollouts
from reward_circuits.studies.run.value import ValueStageConfig, run_value_stage

pytestmark = pytest.mark.usefixtures("one_thread")
HOOKS = ("blocks.0.hook_resid_post", "blocks.1.hook_resid_post")
SIGNAL = HOOKS[0]
D = 16
CFG = ValueProbeConfig(epochs=40, weight_decay=0.0, seed=0)


def task(seed: int, dims, random_reward: bool = False, n: int = 300, info: bool = False):
    acts, rewards, planted = planted_rollouts(n_rollouts=n, d=D, k=3, T_range=(3, 8), seed=seed, hooks=HOOKS,
                                              value_dims=dims, random_reward=random_reward)
    store = ArrayRollouts(acts, rewards, [f"t{seed}/{i}" for i in range(n)])
    return (store, planted) if info else store


def splits_of(stores):
    return {t: task_split(s, 0.3, 0.2, seed=0) for t, s in stores.items()}


# ---- ConcatStore ------------------------------------------------------------------------------
def test_concat_store_reads_every_rollout_of_both_stores_once(tmp_path):
    acts, rewards, _ = planted_rollouts(n_rollouts=30, d=D, k=2, seed=0, hooks=HOOKS)
    a = write_store_from_arrays(tmp_path / "a", acts, rewards.tolist(), model="planted", dtype="float32")
    b = task(1, None, n=20)
    view = ConcatStore({"a": a, "b": b})
    assert isinstance(view, Store) and len(view) == 50 and view.hook_names == list(HOOKS)
    assert np.array_equal(view.rewards, np.r_[a.rewards, b.rewards])
    assert view.global_indices("b", [0, 3]).tolist() == [30, 33] and view.source(33) == 1 and view.local_index(33) == 3
    x = view.initial_states(SIGNAL, [45, 3, 31])
    assert torch.equal(x[0], b.initial_states(SIGNAL, [15])[0]) and torch.equal(x[1], a.initial_states(SIGNAL, [3])[0])
    seen = []
    for batch in view.iter_batches(list(HOOKS), batch_states=40, shuffle_seed=3):
        for i in torch.unique(batch.rollout).tolist():
            rows = batch.rollout == i
            assert torch.equal(batch.acts[SIGNAL][rows], view.get(i, SIGNAL)), i
            assert batch.is_last[rows].nonzero().flatten().tolist() == [int(rows.sum()) - 1]
            assert float(batch.reward[rows][0]) == view.rewards[i]
            seen.append(i)
    assert sorted(seen) == list(range(50))
    clash = ConcatStore([b, b])  # the same ids twice: prefixed with the store's name
    assert len(set(clash.rollout_ids)) == 40 and clash.rollout_ids[0] == "0/t1/0"


# ---- the pooled probe ---------------------------------------------------------------------------
def test_pooled_probe_learns_both_tasks_where_a_single_task_probe_learns_one():
    """Task a's reward reads dims 0-2, task b's dims 8-10: the pooled probe recovers both on each
    task's held-out rollouts; a probe trained on task a alone scores chance on task b.
    (Broken on purpose - the pooled fit given only task a's training rollouts - b's AUC fell to 0.50.)"""
    (a, info_a), (b, info_b) = task(0, [0, 1, 2], info=True), task(1, [8, 9, 10], info=True)
    stores = {"a": a, "b": b}
    splits = splits_of(stores)
    pooled = pooled_value_probe(stores, splits, list(HOOKS), CFG, n_boot=300)
    auc = pooled.auc
    ceiling = {"a": info_a.ceiling_auc_on(splits["a"].test), "b": info_b.ceiling_auc_on(splits["b"].test)}
    assert all(auc[t][SIGNAL].estimate > max(0.75, ceiling[t] - 0.1) for t in "ab"), (auc, ceiling)
    assert pooled.verdicts["b"][SIGNAL] == "reproduces"
    assert auc["a"][SIGNAL].n == splits["a"].test.size and auc["pooled"][SIGNAL].n == splits["a"].test.size + splits["b"].test.size
    single = ValueProbe(CFG).fit(stores["a"], SIGNAL, splits["a"].fit, validation_indices=splits["a"].val, verbose=False)
    assert single.score(stores["b"], splits["b"].test)[SIGNAL] < 0.65
    top = set(pooled.probe.input_weight_norms(SIGNAL).argsort(descending=True)[:6].tolist())
    # both tasks' planted dims carry the probe: at least 2 of each task's 3 in the top 6 (a probe
    # of task a alone has none of b's; with either target one planted dim of the six is weak here)
    assert len(top & {0, 1, 2}) >= 2 and len(top & {8, 9, 10}) >= 2, top


def test_pooled_probe_reports_a_signal_task_and_a_chance_task_apart():
    """Task a carries the planted value signal, task b's reward is a coin flip: per-task AUCs differ
    accordingly (a near its ceiling, b's interval covers 0.5 and its verdict is not "reproduces").
    (Broken on purpose - the per-task masks swapped - a's AUC came out near 0.5 and b's high.)"""
    stores = {"a": task(0, [0, 1, 2], n=400), "b": task(1, [0, 1, 2], random_reward=True, n=400)}
    splits = splits_of(stores)
    single = ValueProbe(CFG).fit(stores["a"], list(HOOKS), splits["a"].fit, validation_indices=splits["a"].val, verbose=False)
    ref = {h: v for h, v in zip(HOOKS, single.initial_values(stores["a"], splits["a"].test, list(HOOKS)))}
    pooled = pooled_value_probe(stores, splits, list(HOOKS), CFG, n_boot=500, floor_Cs=(0.01, 1.0), reference_scores=ref)
    a, b = pooled.auc["a"][SIGNAL], pooled.auc["b"][SIGNAL]
    assert a.estimate > 0.75 and a.low > 0.65, a
    assert b.low < 0.5 < b.high and abs(b.estimate - 0.5) < 0.12, b
    assert pooled.verdicts["a"][SIGNAL] == "reproduces" and pooled.verdicts["b"][SIGNAL] != "reproduces"
    assert a.estimate - b.estimate > 0.15 and a.low > b.estimate  # the two tasks' AUCs are told apart
    assert pooled.auc["a"][HOOKS[1]].estimate < 0.7  # the noise hook carries nothing
    # pooling a chance task in costs task a little: the paired difference on a's test rollouts covers 0
    d = pooled.vs_single_task[SIGNAL].difference
    assert d.n == splits["a"].test.size and d.low < 0 < d.high
    assert set(pooled.floor) == set(HOOKS) and pooled.floor[SIGNAL].auc.n == a.n + b.n
    out = pooled.to_dict({HOOKS[0]: "0", HOOKS[1]: "1"})
    json.dumps(out)
    assert out["auc"]["b"]["0"]["n"] == b.n and out["vs_single_task_on"] == "a"
    table = pooled.table({HOOKS[0]: "0", HOOKS[1]: "1"})
    assert len(table.rows) == 2 and len(table.columns) == len(table.rows[0])


def test_value_stage_reports_the_pooled_probe(tmp_path):
    def store(name, seed, dims, random_reward=False):
        acts, rewards, _ = planted_rollouts(n_rollouts=160, d=D, k=3, T_range=(3, 6), seed=seed, hooks=HOOKS,
                                            value_dims=dims, random_reward=random_reward)
        return write_store_from_arrays(tmp_path / name, acts, rewards.tolist(), model="planted", dtype="float32",
                                       meta={"task": name})

    a, b = store("arith", 0, [0, 1, 2]), store("words", 1, [0, 1, 2], random_reward=True)
    cfg = ValueStageConfig(quick=True, n_boot=100)
    s = run_value_stage(a, tmp_path / "out", second_store=b, config=cfg).section
    pooled = s.summary["pooled"]
    assert pooled["tasks"] == ["arith", "words"] and s.summary["pooled_reason"] is None
    assert pooled["auc"]["arith"]["0"]["estimate"] > pooled["auc"]["words"]["0"]["estimate"]
    assert pooled["splits"]["arith"]["test"] == s.summary["splits"]["test"]  # the stage's own split of task a
    assert set(pooled["auc"]) == {"arith", "words", "pooled"} and pooled["vs_single_task"] is not None
    assert any("pooled over arith + words" in t.title for t in s.tables)
    assert any(n.startswith("Pooled probe at the best layer") and "arith" in n for n in s.notes)
    json.dumps(s.summary)
    off = run_value_stage(a, tmp_path / "off", second_store=b, config=ValueStageConfig(quick=True, n_boot=100, pooled_probe=False))
    assert off.section.summary["pooled"] is None and off.section.summary["pooled_reason"] == "pooled_probe=False"


def _with_copies(seed: int, dims, n_prompts: int, copies: int, random_reward: bool = False):
    """A store whose every prompt appears ``copies`` times with the same states and reward (greedy
    rollouts of a generator that repeats questions), and its prompt key per rollout."""
    acts, rewards, _ = planted_rollouts(n_rollouts=n_prompts, d=D, k=3, T_range=(3, 6), seed=seed, hooks=HOOKS,
                                        value_dims=dims, random_reward=random_reward)
    acts = {h: [x for x in xs for _ in range(copies)] for h, xs in acts.items()}
    keys = [i for i in range(n_prompts) for _ in range(copies)]
    return ArrayRollouts(acts, np.repeat(rewards, copies), [f"s{seed}/{i}" for i in range(n_prompts * copies)]), keys


def test_pooled_intervals_count_prompts_when_prompts_repeat():
    """Task b repeats each of 60 prompts 5 times: its per-task and pooled intervals resample prompts,
    so their n counts prompts and b's interval is wider than one that counts copies as evidence.
    (Broken on purpose - the groups not passed to the AUC intervals - b's n was its 90 test rollouts.)"""
    a, b = task(0, [0, 1, 2], n=200), None
    b, keys_b = _with_copies(1, [0, 1, 2], n_prompts=60, copies=5)
    stores = {"a": a, "b": b}
    groups = {"a": list(range(len(a))), "b": keys_b}
    splits = {t: task_split(s, 0.3, 0.2, seed=0, groups=groups[t]) for t, s in stores.items()}
    test_prompts_b = len({keys_b[i] for i in splits["b"].test})
    assert splits["b"].test.size == 5 * test_prompts_b  # the split keeps the copies together
    single = ValueProbe(CFG).fit(a, list(HOOKS), splits["a"].fit, validation_indices=splits["a"].val, verbose=False)
    ref = {h: v for h, v in zip(HOOKS, single.initial_values(a, splits["a"].test, list(HOOKS)))}
    grouped = pooled_value_probe(stores, splits, list(HOOKS), CFG, n_boot=400, groups=groups, reference_scores=ref)
    naive = pooled_value_probe(stores, splits, list(HOOKS), CFG, n_boot=400, reference_scores=ref)
    g, n = grouped.auc["b"][SIGNAL], naive.auc["b"][SIGNAL]
    assert g.estimate == n.estimate and g.n == test_prompts_b and n.n == splits["b"].test.size
    assert (g.high - g.low) > 1.5 * (n.high - n.low), (g, n)
    assert grouped.auc["pooled"][SIGNAL].n == splits["a"].test.size + test_prompts_b
    assert grouped.vs_single_task[SIGNAL].difference.n == splits["a"].test.size  # a's prompts are distinct


def test_value_stage_splits_the_second_store_by_prompt(tmp_path):
    """The second task's probe (IoU across tasks, transfer) and the pooled probe split its store by
    prompt, as the first store's: a repeated prompt's copies never sit on both sides.
    (Before this test the second store was split by rollout, and its split was not reported.)"""
    a = task(0, [0, 1, 2], n=160)
    b, keys_b = _with_copies(1, [0, 1, 2], n_prompts=40, copies=4)
    prompts = {**{r: (0, i) for i, r in enumerate(a.rollout_ids)}, **{r: (1, k) for r, k in zip(b.rollout_ids, keys_b)}}
    s = run_value_stage(a, tmp_path / "out", second_store=b, prompt_tokens=prompts,
                        config=ValueStageConfig(quick=True, n_boot=100)).section.summary
    second = s["splits"]["second_store"]
    assert second["grouped_by_prompt"] and second["test"] % 4 == 0 and second == s["pooled"]["splits"]["second"]
    assert s["pooled"]["auc"]["second"]["0"]["n"] == second["test"] // 4
