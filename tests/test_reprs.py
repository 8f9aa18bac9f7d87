"""What a notebook prints: each object's repr is short (under REPR_BUDGET) and leads with its key facts."""

from __future__ import annotations

import pytest

from reward_circuits.reprs import REPR_BUDGET

pytestmark = pytest.mark.usefixtures("one_thread")

HOOK = "blocks.0.hook_resid_post"


def short(x) -> str:
    r = repr(x)
    assert len(r) < REPR_BUDGET, f"{type(x).__name__} repr has {len(r)} characters: {r[:400]}"
    return r


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    from reward_circuits.data import planted_value_store

    return planted_value_store(tmp_path_factory.mktemp("store") / "store", n_rollouts=40, d=16, k=2)


def test_neuron_set_loaded_from_a_run_is_short(planted, tmp_path):
    from reward_circuits.analysis import NeuronSet, ValueProbe, ValueProbeConfig, value_neurons

    store, _ = planted
    probe = ValueProbe(ValueProbeConfig(epochs=1, hidden=4, weight_decay=(0.0,))).fit(store, [HOOK], verbose=False)
    ns = value_neurons(probe, HOOK, 0.75, provenance={"model": "planted", "store": str(store.path) * 20, "seed": 3})
    ns.save(tmp_path / "ns.json")
    loaded = NeuronSet.load(tmp_path / "ns.json")
    assert len(repr(NeuronSet.from_dict(vars(loaded) | {"provenance": {}}))) < len(short(loaded))
    r = short(loaded)
    assert r.startswith(f"NeuronSet(hook='{HOOK}', n=4 of 16, dims=[")
    assert "prune 0.75" in r and "model=planted" in r and "seed=3" in r and "input_weight_l1" not in r
    big = NeuronSet("blocks.6.hook_resid_post", list(range(300)), 576, provenance={"input_weight_l1": [0.1] * 576})
    assert "n=300 of 576, dims=[0, 1, 2, 3, … +296]" in short(big)


def test_task_example_generation_rollout(tl_adapter):
    from reward_circuits.data import generate_rollouts
    from reward_circuits.models import GenerationConfig
    from reward_circuits.tasks import Example, get_task

    task = get_task("arithmetic:1", n=40)
    assert short(task) == f"Task({task.name!r}, 40 examples, max_new_tokens={task.max_new_tokens})"
    ex = Example("q1", "What is " + "1 + " * 200 + "1?", "201")
    assert short(ex).startswith("Example('q1', question='What is 1 + 1")
    cfg = GenerationConfig(max_new_tokens=6, progress=False)
    gen = tl_adapter.generate([task.render(task.examples[0], tl_adapter.tokenizer)], cfg)[0]
    r = short(gen)
    assert r.startswith(f"Generation(text={gen.text[:60]!r}") and f"n_tokens={len(gen.response_ids)}" in r
    assert f"finish={gen.finish_reason!r}" in r and str(gen.prompt_ids[:3])[1:-1] not in r
    roll = generate_rollouts(tl_adapter, task.head(1), cfg)[0]
    r = short(roll)
    assert r.startswith(f"Rollout({roll.id!r}, reward={roll.reward:g}, text=") and "gold='" in r


def test_stores_and_views(planted):
    from reward_circuits.data import ArrayRollouts, ConcatStore, RotatedStore, planted_rollouts

    store, info = planted
    r = short(store)
    assert r.startswith("ActivationStore(") and "model='planted'" in r and "40 rollouts" in r and HOOK in r
    assert "40 rollouts" in short(info) and "value_dims=" in short(info)
    acts, rewards, _ = planted_rollouts(n_rollouts=12, d=4, hooks=[f"blocks.{i}.hook_resid_post" for i in range(30)])
    arr = ArrayRollouts(acts, rewards)
    assert short(arr).startswith("ArrayRollouts(12 rollouts") and "+28" in repr(arr)
    assert "{'a': 40, 'b': 40}" in short(ConcatStore({"a": store, "b": store}))
    assert short(RotatedStore(store)).startswith("RotatedStore(40 rollouts")


def test_value_probe(planted):
    from reward_circuits.analysis import ValueProbe, ValueProbeConfig

    store, _ = planted
    assert "not fitted" in short(ValueProbe())
    probe = ValueProbe(ValueProbeConfig(epochs=1, hidden=4, weight_decay=(0.0,))).fit(store, store.hook_names, verbose=False)
    r = short(probe)
    assert r.startswith("ValueProbe(2 hooks") and HOOK in r and "d=16" in r


def test_sweep_result_and_condition(tl_adapter):
    from reward_circuits.interventions import sweep, zero_ablate
    from reward_circuits.models import GenerationConfig
    from reward_circuits.tasks import get_task

    task = get_task("arithmetic:1", n=3)
    conds = {"baseline": [], **{f"ablate{i}": [(HOOK, zero_ablate([i]))] for i in range(6)}}
    res = sweep(tl_adapter, task, conds, GenerationConfig(max_new_tokens=4, progress=False))
    r = short(res)
    assert r.startswith("SweepResult(7 conditions × 3 examples, accuracy={'baseline': ") and "+3" in r
    c = short(res["baseline"])
    assert c.startswith("ConditionResult('baseline', 3 generations, accuracy=")


def test_stage_results_do_not_print_their_sections():
    import numpy as np

    from reward_circuits import NeuronSet, Section
    from reward_circuits.studies.run.dopamine import DopamineStageResult
    from reward_circuits.studies.run.interventions import InterventionStageResult

    big = Section("dopamine", "Dopamine neurons", {str(i): list(range(100)) for i in range(30)})
    top = NeuronSet(HOOK, [3, 1], 16, kind="dopamine")
    r = short(DopamineStageResult(big, top, np.ones(576)))
    assert "kind='dopamine'" in r and HOOK in r
    sections = [Section(k, k, {"rows": list(range(500))}) for k in ("ablation", "steering", "confidence")]
    assert "worst_layer=4" in short(InterventionStageResult(*sections, worst_layer=4))
