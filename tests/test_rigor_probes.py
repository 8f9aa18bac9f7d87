"""Probe defaults that train well at any store size, and the logistic-regression floor.

Planted stores (``data.synthetic``): 3 value dims among 64, ~3k states. The reference for "best
achievable" is the better of a hand-tuned long-trained probe (150 epochs of 256-state batches, the
settings the pipeline needed before) and the cross-validated logistic floor, on the same split.
"""

from __future__ import annotations

import numpy as np
import pytest

from reward_circuits.analysis import ValueProbe, ValueProbeConfig
from reward_circuits.analysis.linear_probe import logistic_floor
from reward_circuits.data.synthetic import planted_value_store
from reward_circuits.errors import ProbeError

pytestmark = pytest.mark.usefixtures("one_thread")
HOOKS = ("blocks.0.hook_resid_post", "blocks.1.hook_resid_post")
SIGNAL, NOISE = HOOKS
HAND_TUNED = ValueProbeConfig(epochs=150, batch_states=256, lr=3e-3, validation_fraction=0.0, weight_decay=0.0)


@pytest.fixture(scope="module")
def planted3(tmp_path_factory):
    store, info = planted_value_store(tmp_path_factory.mktemp("p3") / "s", n_rollouts=220, d=64, k=3, T_range=(5, 20),
                                      seed=0, hooks=HOOKS, signal_scale=4.0)
    train, test = store.split(0.3, seed=0)
    assert 2800 <= int(info.lengths.sum()) <= 3300  # "a store of ~3k states"
    return store, info, train, test


@pytest.fixture(scope="module")
def default_probe(planted3):
    store, _, train, _ = planted3
    return ValueProbe().fit(store, SIGNAL, train, verbose=False)


def test_default_probe_recovers_planted_signal(planted3, default_probe):
    store, info, train, test = planted3
    auc = default_probe.score(store, test)[SIGNAL]
    reference = max(ValueProbe(HAND_TUNED).fit(store, SIGNAL, train, verbose=False).score(store, test)[SIGNAL],
                    logistic_floor(store, SIGNAL, train, test).auc.estimate)
    assert auc >= reference - 0.02, (auc, reference, info.ceiling_auc_on(test))
    top3 = np.argsort(-default_probe.input_weight_norms(SIGNAL).numpy(), kind="stable")[:3]
    assert sorted(top3.tolist()) == info.value_dims


def test_old_defaults_were_undertrained(planted3):
    """The regression the new defaults fix: one 4096-state batch per epoch, 30 Adam steps in all."""
    store, info, train, test = planted3
    old = ValueProbe(epochs=30, batch_states=4096, lr=1e-3, validation_fraction=0.0, weight_decay=0.0)
    old.fit(store, SIGNAL, train, verbose=False)
    assert old.score(store, test)[SIGNAL] < info.ceiling_auc_on(test) - 0.08


def test_defaults_scale_batch_and_stop_early(planted3, default_probe):
    store, _, train, _ = planted3
    p = default_probe
    cfg = p.cfg
    n_fit_states = sum(len(store.get(int(i), SIGNAL)) for i in p.fit_indices_)
    assert p.batch_states_ == round(n_fit_states / cfg.steps_per_epoch)
    assert len(p.validation_indices_) == pytest.approx(cfg.validation_fraction * len(train), abs=2)
    assert set(np.asarray(store.rewards)[p.validation_indices_]) == {0.0, 1.0}
    epochs_run = len(p.history)
    assert epochs_run < cfg.epochs  # stopped early ...
    assert epochs_run == p.best_epoch_[SIGNAL] + cfg.patience  # ... patience epochs after its best one
    assert p.weight_decay_[SIGNAL] in cfg.weight_decays
    assert len(p.validation_history) == epochs_run


def test_weight_decay_candidates_train_stacked_like_alone(planted3):
    """Each (hook, decay) slot trains as if alone: a probe given one candidate equals the stacked slot."""
    store, _, train, _ = planted3
    cfg = ValueProbeConfig(epochs=4, patience=100)
    stacked = ValueProbe(cfg).fit(store, list(HOOKS), train, verbose=False)
    for h in HOOKS:
        alone = ValueProbe(cfg.replace(weight_decay=stacked.weight_decay_[h])).fit(store, h, train, verbose=False)
        k = stacked.probe_index(h)
        # float summation order differs (one bmm over 6 slots vs 1); Adam amplifies it on tiny gradients
        np.testing.assert_allclose(alone.W1[0].detach().numpy(), stacked.W1[k].detach().numpy(), atol=2e-3)
        np.testing.assert_allclose(alone.history, [[row[k]] for row in stacked.history], rtol=1e-3)


def test_noise_hook_stays_at_chance(planted3):
    store, _, train, test = planted3
    p = ValueProbe().fit(store, NOISE, train, verbose=False)
    assert abs(p.score(store, test)[NOISE] - 0.5) < 0.2


def test_logistic_floor_on_planted_signal_and_noise(planted3):
    store, info, train, test = planted3
    sig = logistic_floor(store, SIGNAL, train, test)
    noise = logistic_floor(store, NOISE, train, test)
    ceiling = info.ceiling_auc_on(test)
    assert sig.auc.low <= ceiling <= sig.auc.high + 0.02
    assert sig.auc.estimate > 0.85 and sig.auc.n == len(test)
    assert noise.auc.low < 0.5 < noise.auc.high
    assert sig.C in sig.cv_auc
    with pytest.raises(ProbeError, match="overlap"):
        logistic_floor(store, SIGNAL, train, train)


def test_config_errors_name_the_fix():
    with pytest.raises(ProbeError, match="validation split"):
        ValueProbeConfig(weight_decay=(0.0, 0.1), validation_fraction=0.0)
    with pytest.raises(ProbeError, match="validation_fraction"):
        ValueProbeConfig(validation_fraction=1.0)
    with pytest.raises(ProbeError, match="weight_decay"):
        ValueProbeConfig(weight_decay=(-1.0,))
    with pytest.raises(ProbeError, match="select_by"):
        ValueProbeConfig(select_by="accuracy")
    assert ValueProbeConfig(weight_decay=[0.0, 1.0]).weight_decay == (0.0, 1.0)


def test_given_validation_rollouts_are_used(planted3):
    store, _, train, test = planted3
    p = ValueProbe(epochs=3).fit(store, SIGNAL, train, validation_indices=test, verbose=False)
    assert list(p.validation_indices_) == sorted(test) and list(p.fit_indices_) == sorted(train)
    with pytest.raises(ProbeError, match="overlap"):
        ValueProbe(epochs=1).fit(store, SIGNAL, train, validation_indices=train[:10], verbose=False)


def test_logistic_floor_keeps_repeated_prompts_in_one_fold(tmp_path):
    """Pure-noise states, each prompt copied 4 times with one reward (greedy copies): ungrouped CV
    sees copies on both sides and rewards memorisation; grouped CV does not, and the held-out
    interval counts prompts, not copies."""
    from reward_circuits.data.store import write_store_from_arrays

    rng = np.random.default_rng(0)
    n_prompts, copies, d = 150, 4, 48
    x = rng.normal(size=(n_prompts, d)).astype(np.float32)
    y = rng.permutation(np.r_[np.ones(n_prompts // 2), np.zeros(n_prompts - n_prompts // 2)])
    import torch
    acts = [torch.from_numpy(np.stack([x[p], rng.normal(size=d).astype(np.float32)])) for p in range(n_prompts)
            for _ in range(copies)]
    rewards = [float(y[p]) for p in range(n_prompts) for _ in range(copies)]
    groups = [p for p in range(n_prompts) for _ in range(copies)]
    store = write_store_from_arrays(tmp_path / "s", {"h": acts}, rewards, dtype="float32")
    train = np.flatnonzero(np.asarray(groups) < 100)
    test = np.flatnonzero(np.asarray(groups) >= 100)
    leaky = logistic_floor(store, "h", train, test)
    grouped = logistic_floor(store, "h", train, test, groups=groups)
    assert max(leaky.cv_auc.values()) > 0.8  # copies on both sides of a fold: memorised
    assert max(grouped.cv_auc.values()) < 0.7  # noise stays noise
    assert leaky.auc.n == len(test) and grouped.auc.n == 50
    assert grouped.auc.high - grouped.auc.low > leaky.auc.high - leaky.auc.low
    with pytest.raises(ValueError, match="one per rollout"):
        logistic_floor(store, "h", train, test, groups=groups[:-1])
