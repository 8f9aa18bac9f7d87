"""Magnitude-matched random dims in the dopamine null, on planted stores.

Two stores with the same candidates: four of twelve massive-activation dims (mean |act| ~100x the
rest). In the *class* store every massive dim follows δ equally (a property of the magnitude class,
like attention-sink dims that follow the position); in the *specific* store only the four candidates
do. The uniform null calls both "reproduces"; the matched null tells them apart.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from reward_circuits.analysis import dopamine_metrics, paired_control_comparison
from reward_circuits.analysis.td import td_errors
from reward_circuits.data import ArrayRollouts
from reward_circuits.studies.run.dopamine import DopamineStageConfig, run_dopamine_stage
from reward_circuits.data.store import write_store_from_arrays

pytestmark = pytest.mark.usefixtures("one_thread")
HOOK = "blocks.3.hook_resid_post"
D, N_MASSIVE, GAMMA = 48, 12, 0.95
CANDIDATES = [0, 1, 2, 3]


def planted(which: str, n: int = 160, seed: int = 0):
    """Value traces with an insight jump, arrival-aligned δ, and activations with massive dims 0..11
    (offset 300, scale 30); ``which`` = "class" (all massive dims follow δ), "specific" (only 0..3),
    or "stage" (dim 0 alone, the stage test)."""
    rng = np.random.default_rng(seed)
    acts, values, rewards, td = [], [], [], []
    for _ in range(n):
        T = int(rng.integers(8, 16))
        v0 = rng.uniform(0.05, 0.95)
        r = float(rng.random() < 0.3 + 0.4 * v0)
        insight = int(rng.integers(1, T + 1))
        v = np.empty(T + 1)
        v[0] = v0
        for t in range(1, T + 1):
            v[t] = np.clip((0.9 if r else 0.1) if t == insight else v[t - 1] + rng.normal(0, 0.03), 0, 1)
        delta = td_errors(v, r, GAMMA)  # NaN at s_0
        d0 = np.nan_to_num(delta) / 0.2
        x = rng.normal(size=(T + 1, D))
        tracking = {"class": range(N_MASSIVE), "specific": CANDIDATES, "stage": [0]}[which]
        for j in tracking:
            x[:, j] = d0 + 0.8 * rng.normal(size=T + 1)
        x[:, :N_MASSIVE] = 300.0 + 30.0 * x[:, :N_MASSIVE]
        acts.append(torch.tensor(x, dtype=torch.float32))
        values.append(v)
        rewards.append(r)
        td.append(delta)
    return acts, values, np.asarray(rewards), td


def metrics_of(which: str):
    acts, values, rewards, td = planted(which)
    store = ArrayRollouts({HOOK: acts}, rewards)
    test = np.arange(len(rewards))[len(rewards) // 2:]
    magnitudes = torch.cat(acts).abs().mean(0).numpy()
    return dopamine_metrics(store, HOOK, CANDIDATES, td, values, test, ranking_idx=np.arange(len(rewards) // 2),
                            n_random_draws=300, n_permutations=50, random_pool_size=40, seed=0, magnitudes=magnitudes)


def test_matched_null_tells_a_magnitude_class_effect_from_a_specific_one():
    """(Broken on purpose - matched draws replaced by uniform ones in dopamine_metrics - the class store
    came out "reproduces" under the matched null too.)"""
    cls, spec = metrics_of("class"), metrics_of("specific")
    # the uniform null cannot tell them apart: both "reproduce"
    assert cls.verdict == spec.verdict == "reproduces"
    assert cls.random.p_abs_vs_random < 0.01 and spec.random.p_abs_vs_random < 0.01
    # the matched null draws the other massive dims: no better than their class in one store, better in the other
    for m in (cls.matched, spec.matched):
        assert m.massive.dims and set(m.massive.dims) == set(range(N_MASSIVE))
        assert sorted(m.massive_in_candidates) == CANDIDATES and m.candidate_strata == [10] * 4
        assert set(m.pool_dims) <= set(range(4, N_MASSIVE))  # the other massive dims only
    assert cls.matched.verdict != "reproduces" and cls.matched.p_abs_vs_matched > 0.05
    iv = cls.matched.abs_corr_vs_matched
    assert iv.low < 0 < iv.high and iv.n == 80
    assert spec.matched.verdict == "reproduces" and spec.matched.p_abs_vs_matched < 0.01
    json.dumps(cls.to_dict(), allow_nan=False)


def test_paired_control_comparison_on_planted_outcomes():
    """Accuracy under the dopamine ablation vs controls on the same 200 examples: a control that
    hurts as much gives an interval over 0, a harmless one a "reproduces" (sign −1 claim)."""
    rng = np.random.default_rng(0)
    base = rng.random(200) < 0.7
    dop = base & (rng.random(200) < 0.5)  # the ablation breaks half the correct answers
    as_bad = [base & (rng.random(200) < 0.5) for _ in range(3)]
    harmless = [base.copy() for _ in range(3)]
    out = paired_control_comparison(dop.astype(float), {"magnitude_matched": as_bad, "uniform": harmless}, n_boot=500)
    assert out["uniform"].verdict == "reproduces" and out["uniform"].difference.high < 0
    assert out["magnitude_matched"].verdict == "inconclusive at this n"
    assert out["magnitude_matched"].difference.low < 0 < out["magnitude_matched"].difference.high
    assert len(out["uniform"].mcnemar) == 3 and out["uniform"].difference.n == 200
    with pytest.raises(ValueError):
        paired_control_comparison(dop[:10], {"uniform": harmless})


def test_stage_reports_matched_null_and_massive_dims_in_the_dopamine_set(tmp_path):
    class Probe:  # the planted values as the probe's traces
        def __init__(self, values):
            self.values, self.cfg = values, type("C", (), {"gamma": GAMMA})()

        def value_traces(self, store, hook, indices):
            return [torch.tensor(self.values[i]) for i in indices]

    acts, values, rewards, _ = planted("stage", n=200, seed=1)
    store = write_store_from_arrays(tmp_path / "store", {HOOK: acts}, rewards.tolist(), dtype="float32")
    result = run_dopamine_stage(store, Probe(values), HOOK, tmp_path / "out", value_neurons=None,
                                config=DopamineStageConfig(k=3, n_permutations=50, n_random_draws=100))
    s = result.section.summary
    assert s["status"] == "ok" and s["top_neurons"][0] == 0
    assert set(s["massive_activations"]["dims"]) == set(range(N_MASSIVE))
    assert s["massive_in_dopamine_set"] == [j for j in s["massive_activations"]["dims"] if j in s["top_neurons"]]
    assert 0 in s["massive_in_dopamine_set"]
    assert s["matched_null"]["n_draws"] == 100 and s["matched_null"]["abs_corr_vs_matched_ci"]["n"] == s["n_test"]
    assert len(s["verdicts"]) == 2 and all(v in ("reproduces", "does not reproduce", "inconclusive at this n")
                                           for v in s["verdicts"].values())
    assert result.magnitudes is not None and result.magnitudes[0] > 100 * np.median(result.magnitudes[N_MASSIVE:])
    assert any("magnitude-matched" in str(row[0]) for t in result.section.tables for row in t.rows)
    json.dumps(s, allow_nan=False)
    off = run_dopamine_stage(store, Probe(values), HOOK, tmp_path / "off", value_neurons=None,
                             config=DopamineStageConfig(k=3, n_permutations=20, n_random_draws=20, matched_controls=False))
    assert off.section.summary["matched_null"] is None and off.magnitudes is None
    assert off.section.summary["top_neurons"] == s["top_neurons"] and off.section.summary["p_value"] is not None


def test_causal_check_adds_matched_sets_to_the_same_sweep(tl_adapter, tmp_path, monkeypatch):
    """On the tiny model: matched draws are extra conditions of the one sweep call, with paired
    comparisons and verdicts; a massive dim of the hook in the dopamine set is reported."""
    import reward_circuits.interventions as interventions
    from reward_circuits.neurons import NeuronSet
    from reward_circuits.analysis.probes import ValueProbe, ValueProbeConfig
    from reward_circuits.data.capture import build_store
    from reward_circuits.data.rollouts import generate_rollouts
    from reward_circuits.models import GenerationConfig
    from reward_circuits.studies.run.dopamine import run_dopamine_causal_check
    from reward_circuits.tasks import Example, Task

    hook = "blocks.1.hook_resid_post"
    questions = ["What is 1+1?", "Name a colour.", "Hello?", "Count to 3.", "Say yes.", "2*3=?"]
    task = Task("fake", [Example(f"q{i}", q, "0") for i, q in enumerate(questions)],
                lambda resp, ex: 1.0 if resp[:1] and resp[0] in "abcdefghijklm" else 0.0, max_new_tokens=5)
    cfg = GenerationConfig(max_new_tokens=5, progress=False)
    rollouts = generate_rollouts(tl_adapter, task, cfg)
    store = build_store(tl_adapter, rollouts, [hook], tmp_path / "store", progress=False)
    probe = ValueProbe(ValueProbeConfig(epochs=2, hidden=8, batch_states=64)).fit(store, hook, verbose=False)
    d = tl_adapter.d_model
    magnitudes = np.ones(d)
    magnitudes[[5, 9, 11]] = 100.0  # three planted massive dims; the dopamine set holds one
    dop = NeuronSet(hook, [5, 20, 25, 30], d, kind="dopamine", layer=1)
    calls = []
    real = interventions.sweep

    def spy(adapter, task_, conditions, config=None, **kw):
        calls.append(sorted(conditions))
        return real(adapter, task_, conditions, config, **kw)

    monkeypatch.setattr(interventions, "sweep", spy)
    summary, table = run_dopamine_causal_check(tl_adapter, probe, dop, [(r.prompt_ids, r.response_ids) for r in rollouts],
                                               task, task.examples, config=cfg, n_random_draws=2, seed=0,
                                               magnitudes=magnitudes, n_boot=200)
    assert len(calls) == 1 and {"matched/0", "matched/1", "random/0", "random/1", "dopamine", "baseline"} == set(calls[0])
    assert summary["massive_in_dopamine_set"] == [5] and set(summary["massive_dims"]) == {5, 9, 11}
    for dims in summary["matched_sets"]:  # the massive member replaced by another massive dim
        assert len(dims) == 4 and len(set(dims) & {9, 11}) == 1
    assert set(summary["paired"]["accuracy"]) == {"uniform", "magnitude_matched"}
    assert summary["paired"]["td_mean_abs_change"]["magnitude_matched"]["difference"]["n"] == len(rollouts)
    assert len(summary["verdicts"]) == 4
    assert any(str(row[0]).startswith("magnitude-matched") for row in table.rows)
    assert all(len(row) == len(table.columns) for row in table.rows)
    json.dumps(summary)
