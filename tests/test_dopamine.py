"""Dopamine neurons on planted ground truth: TD-error conventions, surprise sets, ranking, held-out
metrics (vs random and value dims), permutation test (planted and null), and the stage."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy import stats
from sklearn.metrics import roc_auc_score

from reward_circuits.analysis import (
    dopamine_metrics,
    dopamine_neurons,
    dopamine_score_details,
    dopamine_scores,
    event_positions,
    partial_pearson_columns,
    pearson_columns,
    permutation_test_mean_abs_corr,
    spearman_columns,
    surprise_sets,
    td_error_traces,
    td_errors,
    td_trace_change,
)
from reward_circuits.studies.run.dopamine import DISTRIBUTION_FIGURE, TRACE_FIGURE, DopamineStageConfig, run_dopamine_stage
from reward_circuits.neurons import NeuronSet
from reward_circuits.report import Report
from reward_circuits.data.store import write_store_from_arrays

HOOK = "blocks.2.hook_resid_post"
GAMMA = 0.95
D = 10
J_TD = 3  # planted dopamine dim: activation(s_t) = arrival-aligned δ at s_t + noise
J_V = 7  # planted value dim: activation(s_t) = V(s_t) + noise


def planted_rollouts(n: int = 160, seed: int = 0, plant: bool = True, reward_fn=None):
    """Value traces V(s_0..s_T) (random walks in [0, 1] that jump towards the outcome at a random
    "insight" token), binary rewards, and activations [T+1, D] with a δ dim and a V dim planted."""
    rng = np.random.default_rng(seed)
    values, rewards, acts = [], [], []
    scales = rng.uniform(0.5, 3.0, D)  # per-dim affine maps: the ranking must normalise them away
    offsets = rng.uniform(-5.0, 5.0, D)
    for _ in range(n):
        T = int(rng.integers(8, 16))
        v0 = rng.uniform(0.05, 0.95)
        r = float(rng.random() < 0.3 + 0.4 * v0) if reward_fn is None else float(reward_fn(v0, rng))
        insight = int(rng.integers(1, T + 1))
        v = np.empty(T + 1)
        v[0] = v0
        for t in range(1, T + 1):
            target = (0.9 if r else 0.1) if t == insight else v[t - 1]
            v[t] = np.clip(target + rng.normal(0, 0.02), 0.0, 1.0)
        delta = np.r_[0.0, GAMMA * v[1:] - v[:-1]]  # δ of the transition into s_t, at s_t (by hand)
        a = rng.normal(size=(T + 1, D))
        if plant:
            a[:, J_TD] = 5.0 * delta + 0.3 * rng.normal(size=T + 1)
            a[:, J_V] = (v - 0.5) / 0.3 + 0.3 * rng.normal(size=T + 1)
        values.append(v)
        rewards.append(r)
        acts.append(torch.tensor(a * scales + offsets, dtype=torch.float32))
    return values, rewards, acts


def make_store(path, n=160, seed=0, plant=True, reward_fn=None, meta_tokens=False):
    values, rewards, acts = planted_rollouts(n, seed, plant, reward_fn)
    store = write_store_from_arrays(path, {HOOK: acts}, rewards, dtype="float32", rollouts_per_shard=64)
    if meta_tokens:  # attach response tokens the way a real run would
        for i, rec in enumerate(store.records):
            rec.meta["response_tokens"] = [f"tok{t}\n" for t in range(len(values[i]) - 1)]
    return store, values


def ranking_setup(store, values):
    """TD traces, split, and surprise sets (ranking split thresholds reused on the held-out split)."""
    td = td_error_traces(values, store.rewards, GAMMA)
    train, test = store.split(0.5, seed=0)
    rewards = store.rewards
    tr = surprise_sets([values[i][0] for i in train], rewards[train])
    te = surprise_sets([values[i][0] for i in test], rewards[test], low_threshold=tr.low_threshold,
                       high_threshold=tr.high_threshold)
    return td, train, test, train[tr.positive], train[tr.negative], test[te.positive], test[te.negative]


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("planted") / "store")


# ---------------------------------------------------------------------------------------------
def test_td_errors_hand_computed_and_terminal_convention():
    v = np.array([0.5, 0.6, 0.2])
    source = td_errors(v, 1.0, 0.9, align="source")
    np.testing.assert_allclose(source, [0.9 * 0.6 - 0.5, 0.9 * 0.2 - 0.6, 1.0 - 0.2])  # [0.04, -0.42, 0.8]
    arrival = td_errors(v, 1.0, 0.9)  # default: aligned with the state the transition arrives at
    assert math.isnan(arrival[0])
    np.testing.assert_allclose(arrival[1:], [0.04, -0.42])
    # terminal error is reward-dependent in "source", absent from "arrival"
    np.testing.assert_allclose(td_errors(v, 0.0, 0.9, align="source")[-1], -0.2)
    np.testing.assert_allclose(td_errors(v, 0.0, 0.9)[1:], arrival[1:])
    # a rollout with only s_0: the terminal error alone
    np.testing.assert_allclose(td_errors(np.array([0.3]), 1.0, 0.9, align="source"), [0.7])
    assert np.isnan(td_errors(np.array([0.3]), 1.0, 0.9)).all()
    # telescoping: sum_t gamma^t delta_t = gamma^T r - V(s_0)
    rng = np.random.default_rng(1)
    w = rng.uniform(0, 1, 12)
    s = td_errors(w, 1.0, 0.8, align="source")
    assert np.isclose((0.8 ** np.arange(12) * s).sum(), 0.8**11 * 1.0 - w[0])
    with pytest.raises(ValueError):
        td_errors(v, 1.0, 1.5)
    with pytest.raises(ValueError):
        td_errors(np.array([0.1, np.nan]), 1.0, 0.9)
    with pytest.raises(ValueError):
        td_error_traces([v, v], [1.0], 0.9)
    assert [len(x) for x in td_error_traces([v, v[:2]], [1.0, 0.0], 0.9)] == [3, 2]


def test_surprise_sets_and_event_positions_hand_example():
    v0 = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    r = np.array([1, 0, 1, 1, 0, 1, 0, 0, 1, 0], dtype=float)
    sets = surprise_sets(v0, r)  # q0.3 = 0.37, q0.7 = 0.73
    assert np.isclose(sets.low_threshold, 0.37) and np.isclose(sets.high_threshold, 0.73)
    assert sets.positive.tolist() == [0, 2]
    assert sets.negative.tolist() == [7, 9]
    fixed = surprise_sets(v0, r, low_threshold=0.45, high_threshold=0.95)
    assert fixed.positive.tolist() == [0, 2, 3] and fixed.negative.tolist() == [9]
    wide = surprise_sets(v0, r, low_q=0.5, high_q=0.5)
    assert wide.positive.tolist() == [0, 2, 3] and wide.negative.tolist() == [6, 7, 9]

    traces = [np.array([np.nan, 0.1, -0.5, 0.7, -0.2]), np.array([np.nan, 0.2, 0.3])]
    assert [p.tolist() for p in event_positions(traces, [0, 1])] == [[3], [2]]
    assert event_positions(traces, [0], k=2)[0].tolist() == [3, 1]
    assert event_positions(traces, [0], k=5, sign=-1)[0].tolist() == [2, 4]
    assert event_positions(traces, [1], sign=-1)[0].tolist() == []  # no negative error at all
    assert event_positions({7: traces[0]}, [7])[0].tolist() == [3]  # dict lookup by store index


def test_spearman_matches_scipy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 3))
    x[:, 2] = np.round(x[:, 2])  # ties
    y = x[:, 0] ** 3 + rng.normal(size=50)
    ours = spearman_columns(x, y)
    ref = [stats.spearmanr(x[:, j], y).statistic for j in range(3)]
    np.testing.assert_allclose(ours, ref, atol=1e-12)


def test_dopamine_scores_hand_example(tmp_path):
    """Two positive-surprise rollouts (event at s_2) and two negative ones (event at s_3), window 1."""
    a = np.zeros((4, 5))
    a[0, 3], a[1, 1] = 4.0, 2.0  # peaks inside the windows [1, 3] of the positive events
    a[0, 0] = 10.0  # outside the window: only moves the normalisation
    a[2, 4], a[3, 2] = -2.0, -4.0  # troughs inside the windows [2, 4] of the negative events
    acts = [torch.tensor(np.c_[a[i], 10.0 * a[i] + 7.0], dtype=torch.float32) for i in range(4)]  # dim 1 = affine copy
    store = write_store_from_arrays(tmp_path / "hand", {HOOK: acts}, [1, 1, 0, 0], dtype="float32")
    pos_trace = np.array([np.nan, 0.1, 0.6, 0.0, 0.0])
    neg_trace = np.array([np.nan, 0.0, -0.1, -0.5, 0.0])
    td = [pos_trace, pos_trace, neg_trace, neg_trace]
    details = dopamine_score_details(store, HOOK, td, [0, 1], [2, 3], window=1)
    mean, std = 0.5, math.sqrt(140 / 20 - 0.25)  # over all 20 states of the four rollouts
    assert details.mean[0] == pytest.approx(mean) and details.std[0] == pytest.approx(std)
    assert details.positive_event == {0: 2, 1: 2} and details.negative_event == {2: 3, 3: 3}
    assert details.median_positive_peak_z[0] == pytest.approx((3.0 - mean) / std)  # median(4, 2) = 3
    assert details.median_negative_trough_z[0] == pytest.approx((-3.0 - mean) / std)  # median(-2, -4) = -3
    expected = 6.0 / std
    np.testing.assert_allclose(dopamine_scores(store, HOOK, td, [0, 1], [2, 3], window=1).numpy(),
                               [expected, expected], rtol=1e-5)  # scale-free across dims
    with pytest.raises(ValueError):  # no positive error in the "positive" rollouts
        dopamine_scores(store, HOOK, [neg_trace] * 4, [0, 1], [2, 3])


def test_partial_correlation_removes_value_component():
    rng = np.random.default_rng(0)
    value = rng.normal(size=2000)
    surprise = rng.normal(size=2000)
    td = 0.8 * value + surprise  # like δ(s_t) = γV(s_t) − V(s_(t−1)): contains V(s_t)
    x = np.c_[value + 0.1 * rng.normal(size=2000), surprise + 0.1 * rng.normal(size=2000)]
    raw = pearson_columns(x, td)
    partial = partial_pearson_columns(x, td, value)
    assert raw[0] > 0.5 and abs(partial[0]) < 0.1 and partial[1] > 0.9
    # the textbook formula for a single control variable
    r_xy, r_xc, r_yc = raw[1], pearson_columns(x, value)[1], np.corrcoef(td, value)[0, 1]
    assert partial[1] == pytest.approx((r_xy - r_xc * r_yc) / math.sqrt((1 - r_xc**2) * (1 - r_yc**2)))


def test_dopamine_neurons_ranks_and_skips_nan():
    scores = torch.tensor([0.5, float("nan"), 2.0, -1.0, 1.0])
    ns = dopamine_neurons(scores, HOOK, 5, k=3, provenance={"seed": 0})
    assert ns.indices == [2, 4, 0] and ns.kind == "dopamine" and ns.layer == 2
    assert ns.scores == pytest.approx([2.0, 1.0, 0.5])
    assert len(dopamine_neurons(scores, HOOK, 5, k=10)) == 4  # NaN never chosen
    with pytest.raises(ValueError):
        dopamine_neurons(scores, HOOK, 6, k=3)


def test_planted_dopamine_dim_ranks_first_and_beats_baselines(planted):
    store, values = planted
    td, train, test, pos_tr, neg_tr, pos_te, neg_te = ranking_setup(store, values)
    assert len(pos_tr) >= 5 and len(neg_tr) >= 5 and len(pos_te) >= 3 and len(neg_te) >= 3

    scores = dopamine_scores(store, HOOK, td, pos_tr, neg_tr, window=2)
    assert scores.shape == (D,)
    order = torch.argsort(scores, descending=True).tolist()
    assert order[0] == J_TD, f"planted δ dim should rank first, got order {order}"
    details = dopamine_score_details(store, HOOK, td, pos_tr, neg_tr, window=2)
    assert set(details.positive_used) <= set(pos_tr.tolist()) and set(details.normalised_over) <= set(train.tolist())

    candidates = dopamine_neurons(scores, HOOK, D, k=3).indices
    value_set = NeuronSet(HOOK, [J_V], D, kind="value")
    m = dopamine_metrics(store, HOOK, candidates, td, values, test, positive_idx=pos_te, negative_idx=neg_te,
                         value_neurons=value_set, ranking_idx=train, n_permutations=1000, seed=0)
    c, r, v = m.candidates, m.random, m.value_neurons
    assert m.top_dims_by_test_pearson[0] == J_TD
    assert m.candidate_rank_by_test_pearson[0] == 1
    # the δ dim: strong held-out correlation with δ, far weaker with V, separates surprise events
    assert c.pearson_td[0] > 0.8 and c.spearman_td[0] > 0.3
    assert c.pearson_td[0] > abs(c.pearson_value[0]) + 0.4
    assert c.auc_surprise[0] > 0.95
    # candidates clear random sets by a wide margin, and the permutation test agrees
    assert c.mean_abs_pearson_td > r.mean_abs_pearson_td + 5 * r.std_abs_pearson_td
    assert c.mean_pearson_td > r.mean_pearson_td + 5 * r.std_pearson_td
    assert m.permutation.p_value == pytest.approx(1 / 1001) and m.permutation.n_permutations == 1000
    assert m.permutation.null_q99 < m.permutation.observed
    assert r.p_abs_vs_random < 0.01  # no random set of the hook tracks δ as well
    assert 0.4 < r.mean_auc_surprise < 0.6
    lc = m.length_control["dopamine"]  # the planted δ tracking is no length effect: it survives the length control
    assert lc["controlled"]["estimate"] > 0.2 and lc["controlled"]["p_greater"] < 0.01, lc
    # AUC recomputed by hand: δ dim at the largest-positive-δ token of held-out positive surprises vs
    # at the most-negative-δ token of held-out negative surprises
    # (every candidate, so unsaturated AUCs of noise dims are checked too)
    pos_acts = torch.stack([store.get(int(i), HOOK)[int(np.nanargmax(td[i]))] for i in pos_te])
    neg_acts = torch.stack([store.get(int(i), HOOK)[int(np.nanargmin(td[i]))] for i in neg_te])
    labels = [1] * len(pos_te) + [0] * len(neg_te)
    manual_auc = [roc_auc_score(labels, torch.cat([pos_acts[:, j], neg_acts[:, j]]).numpy()) for j in c.dims]
    assert c.auc_surprise == pytest.approx(manual_auc)
    assert c.auc_surprise[0] == 1.0 and min(c.auc_surprise) < 0.9
    assert (m.n_positive_events, m.n_negative_events) == (len(pos_te), len(neg_te))
    # the value dim tracks V, not δ
    assert v.pearson_value[0] > 0.9
    assert v.pearson_value[0] > v.pearson_td[0] + 0.3
    assert v.pearson_td[0] < c.pearson_td[0] - 0.3
    # ... and the partial correlation with δ given V separates them: ~0 for the V dim, high for the δ dim
    assert abs(v.partial_td_given_value[0]) < 0.15 and c.partial_td_given_value[0] > 0.8
    assert abs(v.partial_td_given_value[0]) < 0.5 * v.pearson_td[0]  # V was regressed out
    assert abs(r.mean_partial_td_given_value) < 0.1
    json.dumps(m.to_dict(), allow_nan=False)
    # held-out must be disjoint from the ranking rollouts
    with pytest.raises(ValueError, match="also used for ranking"):
        dopamine_metrics(store, HOOK, candidates, td, values, test, ranking_idx=test[:2], n_permutations=10)


def test_null_control_gives_large_p_value(tmp_path):
    store, values = make_store(tmp_path / "null", seed=3, plant=False)
    td, train, test, pos_tr, neg_tr, pos_te, neg_te = ranking_setup(store, values)
    candidates = dopamine_neurons(dopamine_scores(store, HOOK, td, pos_tr, neg_tr), HOOK, D, k=3).indices
    m = dopamine_metrics(store, HOOK, candidates, td, values, test, positive_idx=pos_te, negative_idx=neg_te,
                         ranking_idx=train, n_permutations=1000, seed=0)
    assert m.permutation.p_value > 0.05
    assert m.random.p_abs_vs_random > 0.05
    assert m.candidates.mean_abs_pearson_td < 0.1
    for scheme in ("within_rollout", "circular_shift"):
        ok = np.isfinite(np.concatenate([td[i] for i in test]))
        x = np.concatenate([store.get(int(i), HOOK).numpy() for i in test])[ok][:, candidates]
        y = np.concatenate([td[i] for i in test])[ok]
        groups = np.concatenate([np.full(len(td[i]), i) for i in test])[ok]
        p_null = permutation_test_mean_abs_corr(x, y, groups, n_permutations=500, scheme=scheme, seed=1).p_value
        p_planted = permutation_test_mean_abs_corr(x + 3 * y[:, None], y, groups, n_permutations=500,
                                                   scheme=scheme, seed=1).p_value
        assert p_null > 0.05 and p_planted < 0.01, (scheme, p_null, p_planted)


def test_td_trace_change():
    before = [np.array([np.nan, 0.5, -0.1, 0.0]), np.array([np.nan, -0.4, 0.2])]
    after = [np.array([np.nan, 0.1, -0.1, 0.0]), np.array([np.nan, -0.1, 0.2])]
    out = td_trace_change(before, after)
    assert out["n_rollouts"] == 2 and out["n_tokens"] == 5
    assert out["mean_abs_change"] == pytest.approx((0.4 + 0.3) / 5)
    assert out["positive_event"] == pytest.approx({"n": 2, "mean_before": 0.35, "mean_after": 0.15, "change": -0.2})
    assert out["negative_event"]["n"] == 2
    assert out["negative_event"]["change"] == pytest.approx(((-0.1 - 0.1) / 2) - ((-0.1 - 0.4) / 2))
    json.dumps(out, allow_nan=False)
    with pytest.raises(ValueError):
        td_trace_change(before, after[:1])


class FakeProbe:
    """Stands in for probes.ValueProbe: exposes cfg.gamma and value_traces(store, hook, indices)."""

    def __init__(self, values, gamma):
        self.values = values
        self.cfg = SimpleNamespace(gamma=gamma)
        self.calls = []

    def value_traces(self, store, hook, indices):
        self.calls.append(hook)
        return [torch.tensor(self.values[i]) for i in indices]


REQUIRED = {"hook", "top_neurons", "corr_with_td_error", "corr_with_value", "auc_surprise", "p_value",
            "n_positive_surprise", "n_negative_surprise", "n_train", "n_test"}


def test_stage_on_planted_store(tmp_path):
    store, values = make_store(tmp_path / "store", meta_tokens=True)
    out = tmp_path / "report"
    tokens = [None] * len(store)  # mixed: explicit strings for rollout 0, store meta for the rest
    tokens[0] = [f"w{t}" for t in range(len(values[0]) - 1)]
    result = run_dopamine_stage(store, FakeProbe(values, GAMMA), HOOK, out, token_strings=tokens,
                                value_neurons=NeuronSet(HOOK, [J_V], D),
                                config=DopamineStageConfig(k=3, seed=0, n_permutations=300, n_random_draws=300))
    section = result.section
    s = section.summary
    assert result.top_neurons is not None and result.top_neurons.indices == s["top_neurons"]
    assert section.key == "dopamine" and REQUIRED <= set(s)
    assert s["status"] == "ok" and s["top_neurons"][0] == J_TD
    assert s["values"] == "probe as given"  # a duck-typed probe's own values (planted here) are used as is
    assert {"candidates", "candidates_spearman", "random", "random_std", "value_neurons"} <= set(s["corr_with_td_error"])
    assert {"candidates", "random", "random_std", "value_neurons"} <= set(s["corr_with_value"])
    assert s["corr_with_td_error"]["candidates"] > s["corr_with_td_error"]["random"] + 5 * s["corr_with_td_error"]["random_std"]
    assert s["corr_with_value"]["value_neurons"] > 0.9
    assert s["corr_with_td_error"]["value_neurons_partial_given_value"] < 0.15
    assert s["p_value"] < 0.01
    assert s["n_train"] + s["n_test"] == len(store) and s["n_positive_surprise"] >= 3
    json.dumps(s, allow_nan=False)
    for name in (TRACE_FIGURE, DISTRIBUTION_FIGURE):
        assert name in section.figures
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert NeuronSet.load(out / s["neurons_file"]).indices == s["top_neurons"]
    from reward_circuits.analysis.claims import evidence_from_summary  # the stage's layout reaches the claims

    assert {e.claim_id for e in evidence_from_summary({"dopamine": s})} >= {
        "srs.dopamine_positive_rpe", "srs.dopamine_survives_length", "srs.value_survives_length"}
    assert section.tables and all(len(row) == len(t.columns) for t in section.tables for row in t.rows)
    report = Report(out)
    report.add(section)
    assert "Top dopamine neurons" in (out / "report.html").read_text()


def test_stage_too_few_surprises_returns_null_section(tmp_path):
    # every rollout succeeds: no negative surprise can exist
    store, values = make_store(tmp_path / "store", n=40, plant=True, reward_fn=lambda v0, rng: 1.0)
    result = run_dopamine_stage(store, FakeProbe(values, GAMMA), HOOK, tmp_path / "out", value_neurons=None,
                                config=DopamineStageConfig(n_permutations=50, n_random_draws=50))
    s = result.section.summary
    assert result.top_neurons is None
    assert REQUIRED <= set(s)
    assert s["status"] == "insufficient_surprise"
    assert s["n_negative_surprise"] == 0 and s["n_positive_surprise"] > 0
    assert s["p_value"] is None and s["top_neurons"] == []
    assert all(v is None for v in s["corr_with_td_error"].values())
    assert result.section.figures == [] and "Too few surprise rollouts" in result.section.notes[0]
    json.dumps(s, allow_nan=False)


@pytest.mark.parametrize("n_positive", [1, 3])
def test_stage_with_a_value_probe_and_few_rollouts_of_one_reward(tmp_path, n_positive):
    """Cross-fitting with a real ValueProbe: fewer folds when one reward is rare, a null section
    (not an exception) when cross-fitting is impossible."""
    from reward_circuits.analysis.probes import ValueProbe, ValueProbeConfig

    rare = set(range(n_positive))
    store, _ = make_store(tmp_path / "store", n=40, plant=False, reward_fn=None)
    rewards = [1.0 if i in rare else 0.0 for i in range(len(store))]
    store = write_store_from_arrays(tmp_path / "store2", {HOOK: [store.get(i, HOOK) for i in range(len(store))]},
                                    rewards, dtype="float32")
    probe = ValueProbe(ValueProbeConfig(epochs=2, hidden=8)).fit(store, HOOK, verbose=False)
    s = run_dopamine_stage(store, probe, HOOK, tmp_path / "out", value_neurons=None,
                           config=DopamineStageConfig(n_permutations=20, n_random_draws=20)).section.summary
    assert s["status"] == "insufficient_surprise"  # too few positive surprises either way
    assert s["values"] == (None if n_positive == 1 else "cross-fitted, 3 folds")
    json.dumps(s, allow_nan=False)


def test_stage_keeps_repeated_prompts_on_one_side_of_the_split(tmp_path, monkeypatch):
    """Rollouts of one prompt share a group; the ranking/held-out split must not cut a group."""
    import reward_circuits.studies.run.dopamine as stage

    store, values = make_store(tmp_path / "store", n=159)
    groups = [i // 3 for i in range(len(store))]  # 53 prompts, 3 rollouts each
    seen = {}
    real = stage.grouped_stratified_split

    def spy(indices, rewards, grp, fraction, seed):
        train, test = real(indices, rewards, grp, fraction, seed)
        seen["sides"] = (set(train.tolist()), set(test.tolist()))
        return train, test

    monkeypatch.setattr(stage, "grouped_stratified_split", spy)
    s = run_dopamine_stage(store, FakeProbe(values, GAMMA), HOOK, tmp_path / "out", value_neurons=None,
                           config=DopamineStageConfig(k=3, n_permutations=20, n_random_draws=20),
                           prompt_groups=groups).section.summary
    train, test = seen["sides"]
    assert train.isdisjoint(test) and len(train) + len(test) == len(store) == s["n_train"] + s["n_test"]
    assert {groups[i] for i in train}.isdisjoint({groups[i] for i in test})
    assert s["n_train"] % 3 == 0 and s["n_test"] % 3 == 0  # whole groups only
