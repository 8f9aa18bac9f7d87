"""Value probes on planted ground truth: TD targets, learning, equivalences, persistence, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reward_circuits.data import ArrayRollouts
from reward_circuits.errors import ProbeError
from reward_circuits.analysis import (
    ValueProbe,
    ValueProbeConfig,
    check_batch_structure,
    td_targets,
)
from reward_circuits.data.store import write_store_from_arrays
from reward_circuits.data.synthetic import planted_rollouts, planted_value_store

HOOKS = ("blocks.0.hook_resid_post", "blocks.1.hook_resid_post")
SIGNAL, NOISE = HOOKS
CFG = ValueProbeConfig(epochs=20, batch_states=512, lr=3e-3, seed=0)


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny matrices run faster on 1 thread


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    # 1000 rollouts: 300 held out, so chance AUC has sd ≈ 0.033 and the ±0.1 band is 3 sd
    store, info = planted_value_store(tmp_path_factory.mktemp("planted") / "store", n_rollouts=1000, d=32, k=4,
                                      T_range=(5, 15), seed=0, hooks=HOOKS)
    train, test = store.split(0.3, seed=0)
    return store, info, train, test


@pytest.fixture(scope="module")
def td0_probe(planted):
    store, _, train, _ = planted
    return ValueProbe(CFG).fit(store, list(HOOKS), train, verbose=False)


def _close_to_ceiling(auc: float, ceiling: float) -> bool:
    return auc >= 0.9 * ceiling or auc >= ceiling - 0.05


# ---- TD targets ------------------------------------------------------------------------------
def test_td0_targets_are_gamma_next_value_and_reward_at_end():
    values = torch.tensor([0.2, 0.4, 0.6, 0.5, 0.7])
    reward = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0])
    is_last = torch.tensor([False, False, True, False, True])
    got = td_targets(values, reward, is_last, gamma=0.9, td_lambda=0.0)
    torch.testing.assert_close(got, torch.tensor([0.9 * 0.4, 0.9 * 0.6, 1.0, 0.9 * 0.7, 0.0]))


def test_td_lambda_targets_hand_values():
    values = torch.tensor([0.2, 0.4, 0.6, 0.5, 0.7])
    reward = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0])
    is_last = torch.tensor([False, False, True, False, True])
    got = td_targets(values, reward, is_last, gamma=0.9, td_lambda=0.5)
    g1 = 0.9 * (0.5 * 0.6 + 0.5 * 1.0)
    g0 = 0.9 * (0.5 * 0.4 + 0.5 * g1)
    torch.testing.assert_close(got, torch.tensor([g0, g1, 1.0, 0.9 * 0.5 * 0.7, 0.0]))


@pytest.mark.parametrize("max_matmul_len", [1024, 0], ids=["closed-form matmul", "backward scan"])
def test_td_lambda_matches_reference_loop_and_limits(monkeypatch, max_matmul_len):
    import reward_circuits.analysis.td as td_module

    monkeypatch.setattr(td_module, "_LAMBDA_MATMUL_MAX_LEN", max_matmul_len)
    g = torch.Generator().manual_seed(0)
    lengths = [1, 4, 7, 2]
    n = sum(lengths)
    values = torch.rand(3, n, generator=g)
    rewards_per = [1.0, 0.0, 1.0, 1.0]
    reward = torch.cat([torch.full((l,), r) for l, r in zip(lengths, rewards_per)])
    is_last = torch.cat([torch.arange(l) == l - 1 for l in lengths])
    gamma, lam = 0.95, 0.7
    expected = torch.zeros(3, n)
    start = 0
    for l, r in zip(lengths, rewards_per):
        for p in range(3):
            G = r
            expected[p, start + l - 1] = r
            for t in range(l - 2, -1, -1):
                G = gamma * ((1 - lam) * values[p, start + t + 1] + lam * G)
                expected[p, start + t] = G
        start += l
    torch.testing.assert_close(td_targets(values, reward, is_last, gamma, lam), expected)
    # λ = 1 is the discounted Monte-Carlo return γ^{T−t}·r
    steps_to_end = torch.cat([torch.arange(l - 1, -1, -1) for l in lengths]).float()
    torch.testing.assert_close(td_targets(values, reward, is_last, gamma, 1.0)[0], gamma ** steps_to_end * reward)


def test_td_targets_reject_partial_rollout():
    with pytest.raises(ProbeError, match="last state"):
        td_targets(torch.rand(3), torch.ones(3), torch.tensor([False, True, False]), 0.9)


def test_batch_structure_checks():
    rollout = torch.tensor([4, 4, 7, 7])
    ok_last = torch.tensor([False, True, False, True])
    check_batch_structure(rollout, ok_last, torch.tensor([0, 1, 0, 1]))
    with pytest.raises(ProbeError, match="disagree"):
        check_batch_structure(torch.tensor([4, 7, 7, 7]), ok_last)
    with pytest.raises(ProbeError, match="0, 1, 2"):
        check_batch_structure(rollout, ok_last, torch.tensor([0, 2, 0, 1]))
    with pytest.raises(ProbeError, match="whole rollouts"):
        check_batch_structure(rollout, torch.tensor([False, True, False, False]))


def test_config_validation():
    for bad in [dict(gamma=0.0), dict(gamma=1.5), dict(td_lambda=-0.1), dict(td_lambda=1.2), dict(mode="mc"),
                dict(hidden=0), dict(epochs=0), dict(lr=0.0), dict(activation="swish"), dict(batch_states=0),
                dict(probe_chunk=0)]:
        with pytest.raises(ProbeError):
            ValueProbeConfig(**bad)


# ---- learning the planted signal -------------------------------------------------------------
def test_td0_probe_reaches_ceiling_on_signal_and_chance_on_noise(planted, td0_probe):
    store, info, _, test = planted
    auc = td0_probe.score(store, test)
    ceiling = info.ceiling_auc_on(test)
    assert _close_to_ceiling(auc[SIGNAL], ceiling), (auc, ceiling)
    assert abs(auc[NOISE] - 0.5) < 0.1, auc


@pytest.mark.parametrize("overrides", [dict(mode="td", td_lambda=0.0), dict(mode="td", td_lambda=0.8), dict(mode="final_reward")],
                         ids=["td0", "td_lambda0.8", "final_reward"])
def test_all_target_modes_learn_the_planted_signal(planted, overrides):
    store, info, train, test = planted
    probe = ValueProbe(CFG, **overrides).fit(store, SIGNAL, train, verbose=False)
    assert _close_to_ceiling(probe.score(store, test)[SIGNAL], info.ceiling_auc_on(test))


def test_random_reward_control_is_at_chance_at_s0_but_not_at_sT(tmp_path):
    store, info = planted_value_store(tmp_path / "rand", n_rollouts=1000, d=32, k=4, T_range=(5, 15), seed=1,
                                      hooks=HOOKS, random_reward=True)
    train, test = store.split(0.3, seed=0)
    probe = ValueProbe(CFG).fit(store, SIGNAL, train, verbose=False)
    assert abs(probe.score(store, test)[SIGNAL] - 0.5) < 0.1
    # the states do carry the (random) outcome late in the rollout, and the probe did learn it
    last_values = [trace[-1] for trace in probe.value_traces(store, SIGNAL, test)]
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(store.rewards[test], last_values) > 0.9


def test_value_traces_follow_the_outcome(planted, td0_probe):
    store, info, _, test = planted
    traces = td0_probe.value_traces(store, SIGNAL, test)
    assert [len(t) for t in traces] == [int(info.lengths[i]) for i in test]
    r = store.rewards[test]
    end = np.array([t[-1] for t in traces])
    assert end[r == 1].mean() - end[r == 0].mean() > 0.4


def test_stacked_probes_equal_probes_trained_alone(planted, td0_probe):
    store, _, train, test = planted
    stacked_values = td0_probe.initial_values(store, test)
    stacked_auc = td0_probe.score(store, test)
    for k, hook in enumerate(HOOKS):
        alone = ValueProbe(CFG).fit(store, hook, train, verbose=False)
        # same init, same batches, independent gradients: equal up to float summation order,
        # which 20 epochs of Adam amplify from ~1e-7 to ~1e-4
        np.testing.assert_allclose(alone.initial_values(store, test)[0], stacked_values[k], atol=3e-3)
        assert abs(alone.score(store, test)[hook] - stacked_auc[hook]) < 0.01
    # after one epoch the weights themselves agree to float precision (Adam's g/√v has not yet
    # amplified summation-order noise in near-zero gradients)
    one = CFG.replace(epochs=1)
    stacked1 = ValueProbe(one).fit(store, list(HOOKS), train, verbose=False)
    for k, hook in enumerate(HOOKS):
        alone1 = ValueProbe(one).fit(store, hook, train, verbose=False)
        torch.testing.assert_close(alone1.W1[0], stacked1.W1[k], atol=2e-4, rtol=1e-3)
        torch.testing.assert_close(alone1.W2[0], stacked1.W2[k], atol=2e-4, rtol=1e-3)
    # probes computed one per matmul (the CPU default) or all in one batched matmul: same training
    batched1 = ValueProbe(one.replace(probe_chunk=len(HOOKS))).fit(store, list(HOOKS), train, verbose=False)
    chunked1 = ValueProbe(one.replace(probe_chunk=1)).fit(store, list(HOOKS), train, verbose=False)
    torch.testing.assert_close(batched1.W1, chunked1.W1, atol=2e-4, rtol=1e-3)
    torch.testing.assert_close(batched1.b2, chunked1.b2, atol=2e-4, rtol=1e-3)
    np.testing.assert_allclose(batched1.history, chunked1.history, rtol=1e-4)


def test_standardization_stats_are_training_state_moments(planted, td0_probe):
    store, _, train, _ = planted
    fit = td0_probe.fit_indices_  # the training rollouts less the validation split
    assert set(fit) | set(td0_probe.validation_indices_) == set(train) and not set(fit) & set(td0_probe.validation_indices_)
    states = store.states(SIGNAL, fit).acts[SIGNAL].double()
    k = td0_probe.probe_index(SIGNAL)
    torch.testing.assert_close(td0_probe.mean[k].double(), states.mean(0), atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(td0_probe.std[k].double(), states.std(0, unbiased=False), atol=1e-3, rtol=1e-3)


def test_predict_value_shapes(planted, td0_probe):
    store, _, _, test = planted
    x = store.initial_states(SIGNAL, test[:5])
    assert td0_probe.predict_value(x, hook=SIGNAL).shape == (5,)
    assert td0_probe.predict_value(x).shape == (2, 5)
    both = torch.stack([x, store.initial_states(NOISE, test[:5])])
    stacked = td0_probe.predict_value(both)
    torch.testing.assert_close(stacked[0], td0_probe.predict_value(x, hook=SIGNAL))
    as_dict = td0_probe.predict_value({SIGNAL: x})
    torch.testing.assert_close(as_dict[SIGNAL], stacked[0])
    assert ((stacked > 0) & (stacked < 1)).all()


def test_save_load_round_trip(planted, td0_probe, tmp_path):
    store, _, _, test = planted
    masked = td0_probe.masked(SIGNAL, torch.arange(32) < 10)
    masked.save(tmp_path / "probe")
    loaded = ValueProbe.load(tmp_path / "probe")
    assert loaded.hook_names == list(HOOKS) and loaded.cfg == CFG
    np.testing.assert_array_equal(loaded.initial_values(store, test), masked.initial_values(store, test))
    torch.testing.assert_close(loaded.input_mask, masked.input_mask)
    assert not (tmp_path / "probe" / "value_probe.json").read_text().count("pickle")


def test_masking_changes_values_and_is_a_copy(planted, td0_probe):
    store, _, _, test = planted
    base = td0_probe.initial_values(store, test)
    pruned = td0_probe.masked(SIGNAL, torch.zeros(32, dtype=torch.bool))
    v = pruned.initial_values(store, test)
    assert np.ptp(v[0]) < 1e-6  # all inputs masked: a constant
    np.testing.assert_array_equal(v[1], base[1])  # the other probe is untouched
    np.testing.assert_array_equal(td0_probe.initial_values(store, test), base)  # original unchanged


# ---- bad input -------------------------------------------------------------------------------
def _arrays(n=6, d=4, seed=0):
    acts, rewards, _ = planted_rollouts(n_rollouts=n, d=d, k=1, T_range=(2, 4), seed=seed, hooks=HOOKS)
    rewards[:2] = [0.0, 1.0]
    return acts, rewards


def test_fit_arrays_works_and_rejects_non_binary_reward():
    acts, rewards = _arrays()
    ValueProbe(CFG, epochs=1).fit_arrays(acts, rewards, verbose=False)
    with pytest.raises(ProbeError, match="binary"):
        ValueProbe(CFG).fit_arrays(acts, np.where(rewards == 1, 0.7, 0.0), verbose=False)


def test_rejects_zero_length_rollout():
    acts, rewards = _arrays()
    acts = {h: [a if i != 3 else a[:0] for i, a in enumerate(v)] for h, v in acts.items()}
    with pytest.raises(ProbeError, match="0 states"):
        ValueProbe(CFG).fit_arrays(acts, rewards, verbose=False)


def test_rejects_nan_activations():
    acts, rewards = _arrays()
    acts[SIGNAL][2] = acts[SIGNAL][2].clone()
    acts[SIGNAL][2][1, 0] = float("nan")
    with pytest.raises(ProbeError, match="NaN"):
        ValueProbe(CFG).fit_arrays(acts, rewards, verbose=False)
    # a source that lets a NaN through is caught by the probe itself
    acts, rewards = _arrays()
    data = ArrayRollouts(acts, rewards)
    data._acts[NOISE][5, 1] = float("nan")
    with pytest.raises(ProbeError, match="NaN"):
        ValueProbe(CFG).fit(data, list(HOOKS), verbose=False)


def test_rejects_unknown_hook_and_mismatched_ids_and_indices(planted):
    store, _, train, _ = planted
    with pytest.raises(KeyError, match="blocks.9"):
        ValueProbe(CFG).fit(store, "blocks.9.hook_resid_post", train, verbose=False)
    acts, rewards = _arrays()
    with pytest.raises(ProbeError, match="ids"):
        ValueProbe(CFG).fit_arrays(acts, rewards, ids=["a", "b"], verbose=False)
    with pytest.raises(ProbeError, match="unique"):
        ValueProbe(CFG).fit_arrays(acts, rewards, ids=["a"] * len(rewards), verbose=False)
    with pytest.raises(ProbeError, match="outside"):
        ValueProbe(CFG).fit(store, SIGNAL, [0, 1, len(store)], verbose=False)
    with pytest.raises(ProbeError, match="duplicates"):
        ValueProbe(CFG).fit(store, SIGNAL, [0, 1, 1], verbose=False)
    with pytest.raises(ProbeError, match="lengths"):
        short = {SIGNAL: acts[SIGNAL], NOISE: [a[:1] for a in acts[NOISE]]}
        ArrayRollouts(short, rewards)


def test_score_with_one_class_raises(planted, td0_probe):
    store, _, _, test = planted
    ones = [i for i in test if store.rewards[i] == 1]
    with pytest.raises(ProbeError, match="undefined"):
        td0_probe.score(store, ones)


def test_unfitted_probe_and_width_mismatch(tmp_path):
    with pytest.raises(ProbeError, match="not fitted"):
        ValueProbe(CFG).input_weight_norms(SIGNAL)
    acts, rewards = _arrays(d=4)
    acts[NOISE] = [torch.cat([a, a], dim=1) for a in acts[NOISE]]
    with pytest.raises(ProbeError, match="width"):
        ValueProbe(CFG).fit_arrays(acts, rewards, verbose=False)


# ---- cross-fitted values ---------------------------------------------------------------------
def test_cross_fitted_values_are_out_of_sample(tmp_path):
    """Random states, random rewards: a probe's values on its own training rollouts are fitted to the
    noise (AUC well above 0.5), cross-fitted values are not (AUC near 0.5)."""
    from sklearn.metrics import roc_auc_score

    from reward_circuits.analysis import cross_fitted_value_traces

    g = torch.Generator().manual_seed(0)
    n, d = 120, 48
    lengths = torch.randint(3, 9, (n,), generator=g)
    acts = {"h": [torch.randn(int(t), d, generator=g) for t in lengths]}
    rewards = (torch.rand(n, generator=g) < 0.5).float().tolist()
    store = write_store_from_arrays(tmp_path / "noise", acts, rewards, dtype="float32")
    # no early stopping: the in-sample probe must be free to overfit the noise
    cfg = ValueProbeConfig(hidden=64, epochs=150, lr=3e-3, batch_states=256, seed=0, validation_fraction=0.0,
                           weight_decay=0.0)
    in_sample = ValueProbe(cfg).fit(store, "h", verbose=False)
    auc_in = roc_auc_score(rewards, in_sample.initial_values(store)[0])
    traces = cross_fitted_value_traces(store, "h", cfg, n_folds=4, seed=0)
    assert [len(t) for t in traces] == [int(t) for t in lengths]
    auc_cross = roc_auc_score(rewards, [t[0] for t in traces])
    assert auc_in > 0.8, auc_in
    assert abs(auc_cross - 0.5) < 0.15, auc_cross
    with pytest.raises(ProbeError, match="fewer folds"):
        cross_fitted_value_traces(store, "h", cfg, n_folds=200)


def test_states_kept_in_ram_train_the_same_probe(planted, td0_probe, monkeypatch):
    """The fit split held in RAM (the default for small splits) gives bit-identical training to
    streaming it from the store every epoch (``cache_mb=0``), and the store is read for it once."""
    store, _, train, test = planted
    reads = {"n": 0}
    real = type(store).iter_batches

    def counting(self, *a, **k):
        reads["n"] += 1
        return real(self, *a, **k)

    monkeypatch.setattr(type(store), "iter_batches", counting)
    cached = ValueProbe(CFG).fit(store, list(HOOKS), train, verbose=False)
    n_cached = reads["n"]
    reads["n"] = 0
    streamed = ValueProbe(CFG.replace(cache_mb=0)).fit(store, list(HOOKS), train, verbose=False)
    assert reads["n"] >= n_cached + CFG.epochs - 1  # one streamed pass per epoch instead of none
    for a, b in zip((cached.W1, cached.b1, cached.W2, cached.b2), (streamed.W1, streamed.b1, streamed.W2, streamed.b2)):
        assert torch.equal(a, b)
    assert cached.history == streamed.history == td0_probe.history
    # a budget below the split's size streams (RAM stays flat as the store grows)
    from reward_circuits.data.views import ArrayRollouts
    src, idx, dtype = ArrayRollouts.cached_for_epochs(store, list(HOOKS), train, budget_mb=0.01)
    assert src is store and dtype is None and np.array_equal(idx, train)
    src, idx, dtype = ArrayRollouts.cached_for_epochs(store, list(HOOKS), train, budget_mb=256)
    assert isinstance(src, ArrayRollouts) and len(src) == len(train) and dtype == torch.float32
    with pytest.raises(ProbeError, match="cache_mb"):
        ValueProbeConfig(cache_mb=-1)


def test_nan_in_a_stored_rollout_is_named_by_its_store_index(tmp_path):
    """The fit split is read into RAM (renumbered 0..n-1) before the finiteness check: the error
    must still name the rollout's index in the user's store, not its position in the copy."""
    from safetensors.torch import load_file, save_file

    acts, rewards = _arrays(n=10)
    store = write_store_from_arrays(tmp_path / "s", acts, rewards.tolist(), model="nan-test")
    shard = next(tmp_path.joinpath("s").glob("shard_*.safetensors"))
    tensors = load_file(str(shard))
    row = sum(int(acts[NOISE][i].shape[0]) for i in range(7))  # first state of rollout 7
    tensors[NOISE][row, 0] = float("nan")
    save_file(tensors, str(shard))
    for budget in (256.0, 0.0):  # in RAM, streamed
        with pytest.raises(ProbeError, match=r"NaN or inf \(among rollouts \[7\]"):
            ValueProbe(CFG.replace(cache_mb=budget, validation_fraction=0.0, weight_decay=0.0)).fit(
                store, list(HOOKS), indices=[3, 5, 7, 9], verbose=False)


def test_reused_batch_buffers_give_the_same_batches():
    """``reuse_buffers=True`` (the fit loop's gathers) yields the same states as fresh copies, batch by batch."""
    acts, rewards = _arrays(n=12)
    data = ArrayRollouts(acts, rewards)
    fresh = [{h: a.clone() for h, a in b.acts.items()} for b in data.iter_batches(list(HOOKS), batch_states=7, shuffle_seed=3)]
    shared = []
    for b in data.iter_batches(list(HOOKS), batch_states=7, shuffle_seed=3, reuse_buffers=True):
        shared.append({h: a.clone() for h, a in b.acts.items()})  # used before the next batch overwrites it
    assert len(fresh) == len(shared) > 2
    assert all(torch.equal(f[h], s[h]) for f, s in zip(fresh, shared) for h in HOOKS)
