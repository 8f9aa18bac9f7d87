"""The dopamine causal check on the tiny model: accuracy and TD-trace changes under ablation."""

import numpy as np
import pytest

from reward_circuits.data.capture import build_store
from reward_circuits.studies.run.dopamine import run_dopamine_causal_check
from reward_circuits.analysis.causal import td_trace_under
from reward_circuits.interventions import generate_and_score
from reward_circuits.models import GenerationConfig
from reward_circuits.neurons import NeuronSet
from reward_circuits.analysis.probes import ValueProbe, ValueProbeConfig
from reward_circuits.data.rollouts import generate_rollouts
from reward_circuits.tasks import Example, Task

pytestmark = pytest.mark.usefixtures("one_thread")
HOOK = "blocks.1.hook_resid_post"


@pytest.fixture(scope="module")
def setup(tl_adapter, tmp_path_factory):
    questions = ["What is 1+1?", "Name a colour.", "Hello?", "Count to 3.", "Say yes.", "2*3=?", "abc", "Why?"]
    task = Task("fake", [Example(f"q{i}", q, "0") for i, q in enumerate(questions)],
                lambda resp, ex: 1.0 if resp[:1] and resp[0] in "abcdefghijklm" else 0.0, max_new_tokens=6)
    cfg = GenerationConfig(max_new_tokens=6, progress=False)
    rollouts = generate_rollouts(tl_adapter, task, cfg)
    store = build_store(tl_adapter, rollouts, [HOOK], tmp_path_factory.mktemp("s") / "store", progress=False)
    probe = ValueProbe(ValueProbeConfig(epochs=2, hidden=8, batch_states=64)).fit(store, HOOK, verbose=False)
    return task, cfg, rollouts, probe


def test_causal_check_measures_dopamine_and_random_ablations(tl_adapter, setup):
    task, cfg, rollouts, probe = setup
    # the dims the probe weighs most: ablating them must move its TD traces
    top = probe.input_weight_norms(HOOK).argsort(descending=True)[:4].tolist()
    dop = NeuronSet(HOOK, top, tl_adapter.d_model, kind="dopamine", layer=1)
    pairs = [(r.prompt_ids, r.response_ids) for r in rollouts]
    summary, table = run_dopamine_causal_check(tl_adapter, probe, dop, pairs, task, task.examples, config=cfg,
                                               n_random_draws=2, seed=0)
    assert summary["baseline_acc"] == pytest.approx(generate_and_score(tl_adapter, task, task.examples, (), cfg).accuracy)
    assert summary["dopamine"]["td_mean_abs_change"] > 0
    assert len(summary["random"]) == 2 and summary["random_std"]["accuracy"] is not None
    for run in [summary["dopamine"], *summary["random"]]:
        assert 0.0 <= run["accuracy"] <= 1.0
    assert [row[0] for row in table.rows][:2] == ["none (baseline)", "top dopamine neurons"]
    # without any hook the traces are unchanged: the "before" traces are reproducible
    a = td_trace_under(tl_adapter, probe, HOOK, pairs, (), probe.cfg.gamma)
    b = td_trace_under(tl_adapter, probe, HOOK, pairs, (), probe.cfg.gamma)
    assert all(np.allclose(x, y, equal_nan=True) for x, y in zip(a, b))


def test_zeroed_states_equal_teacher_forcing_under_the_ablation(tl_adapter, nn_adapter, setup):
    """The check's shortcut: the probe reads the ablated hook and the forward stops there, so the
    probe on clean states with the dims zeroed equals teacher-forcing under ``zero_ablate`` (both
    backends); a later hook's ablation is not such a shortcut (it changes nothing at HOOK)."""
    import torch

    from reward_circuits.interventions import zero_ablate
    from reward_circuits.analysis.causal import traces_of_states
    from reward_circuits.interventions.scoring import rollout_states

    _, _, rollouts, probe = setup
    pairs = [(r.prompt_ids, r.response_ids) for r in rollouts]
    dims = probe.input_weight_norms(HOOK).argsort(descending=True)[:4].tolist()
    states = rollout_states(tl_adapter, HOOK, pairs)
    shortcut = traces_of_states(probe, HOOK, [s.index_fill(1, torch.tensor(dims), 0.0) for s in states], 0.99)
    clean = traces_of_states(probe, HOOK, states, 0.99)
    for adapter in (tl_adapter, nn_adapter):
        forced = td_trace_under(adapter, probe, HOOK, pairs, [(HOOK, zero_ablate(dims))], 0.99)
        for a, b in zip(shortcut, forced):
            np.testing.assert_allclose(a, b, atol=1e-6, equal_nan=True)
    assert any(np.nanmax(np.abs(a - b)) > 1e-4 for a, b in zip(shortcut, clean))  # the ablation did something
