"""Magnitude-matched random controls and massive-activation outliers, on planted stores.

The planted "model" breaks on the examples whose s_0 moves far when dims are mean-ablated, so any
set holding a huge-magnitude dim hurts, whatever it encodes: the mechanism that fakes "value neurons
matter" against uniform random controls.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reward_circuits.analysis.controls import (
    activation_magnitudes,
    compare_to_controls,
    magnitude_strata,
    massive_activations,
    matched_random_sets,
    uniform_random_sets,
)
from reward_circuits.data import ArrayRollouts
from reward_circuits.data.synthetic import planted_rollouts

pytestmark = pytest.mark.usefixtures("one_thread")
HOOK = "blocks.0.hook_resid_post"
MASSIVE_SCALE = 100.0


@pytest.fixture(scope="module")
def planted_massive():
    """d=64, 3 value dims, every dim standardised; then 4 massive dims (x100 magnitude, offset
    5000), one of them a value dim."""
    acts, rewards, info = planted_rollouts(n_rollouts=300, d=64, k=3, seed=0, hooks=[HOOK])
    rng = np.random.default_rng(1)
    others = rng.choice(np.setdiff1d(np.arange(64), info.value_dims), size=3, replace=False)
    massive = sorted([info.value_dims[0], *others.tolist()])
    allx = torch.cat(acts[HOOK])
    mean, std = allx.mean(0), allx.std(0)
    for a in acts[HOOK]:
        a.sub_(mean).div_(std)
        a[:, massive] = a[:, massive] * MASSIVE_SCALE + 50 * MASSIVE_SCALE
    return ArrayRollouts(acts, rewards), info, massive


def ablation_model(store, base_seed: int = 0):
    """``evaluate(dims)``: per-example correctness of a planted model whose answer survives a
    mean-ablation only if s_0 moves less than a fixed radius (a few ordinary dims' spread)."""
    x0 = store.initial_states(HOOK).double().numpy()
    mean = x0.mean(0)
    base = np.random.default_rng(base_seed).random(len(x0)) < 0.8
    radius = 5 * np.median(x0.std(0))

    def evaluate(dims):
        shift = np.sqrt(((x0[:, dims] - mean[dims]) ** 2).sum(1))
        return (base & (shift < radius)).astype(float)

    return evaluate, base.astype(float)


def test_massive_outliers_are_found(planted_massive):
    store, info, massive = planted_massive
    mags = activation_magnitudes(store, HOOK)
    found = massive_activations(mags, HOOK)
    assert sorted(found.dims) == massive
    assert min(found.ratio_to_median) > 10
    assert found.contained_in(info.value_dims) == [info.value_dims[0]]
    strata = magnitude_strata(mags)
    assert set(strata[massive]) == {10} and set(np.bincount(strata)[:10]) <= {6, 7}


def test_matched_sets_share_the_value_sets_strata(planted_massive):
    store, info, massive = planted_massive
    mags = activation_magnitudes(store, HOOK)
    strata = magnitude_strata(mags)
    draws = matched_random_sets(info.value_dims, mags, n_draws=20, seed=0)
    for dr in draws:
        assert sorted(strata[dr]) == sorted(strata[info.value_dims])
        assert not set(dr) & set(info.value_dims)
        assert len(set(massive) & set(dr)) == 1  # the value set's one massive dim, matched by another
    uni = uniform_random_sets(info.value_dims, 64, n_draws=20, seed=0, exclude=massive)
    assert all(not set(dr) & (set(massive) | set(info.value_dims)) for dr in uni)


def test_matched_control_exhausted_stratum_lends_the_value_dims():
    mags = np.ones(20)
    mags[3] = 1000.0  # the only massive dim, in the value set
    draws = matched_random_sets([3, 5], mags, n_draws=5, seed=0)
    assert all(3 in dr and 5 not in dr for dr in draws)


def test_uniform_control_says_value_matters_matched_control_does_not(planted_massive):
    store, info, massive = planted_massive
    mags = activation_magnitudes(store, HOOK)
    evaluate, base = ablation_model(store)
    result = compare_to_controls(evaluate, info.value_dims, mags, hook=HOOK, n_draws=5, seed=0, baseline=base)
    uniform, matched = result.controls["uniform"], result.controls["magnitude_matched"]
    assert result.massive_in_value_set == [info.value_dims[0]]
    assert result.value_accuracy.estimate < 0.3  # the massive dim breaks the planted model
    assert uniform.verdict == "reproduces", uniform.difference  # fooled: "value neurons matter"
    assert matched.verdict != "reproduces", matched.difference  # not fooled
    assert abs(matched.difference.estimate) < 0.1
    assert all(len(m) == 1 for m in matched.massive_in_draws)
    assert len(uniform.mcnemar) == 5 and uniform.mcnemar[0]["n"] == len(base)
    rows = result.table_rows()
    assert rows[-1][-1] == matched.verdict and len(rows[0]) == len(result.TABLE_COLUMNS)
    assert "massive" in result.notes()[0]
    section = result.section()
    assert section.tables[0].rows == rows and section.summary["massive_in_value_set"] == [info.value_dims[0]]


def test_value_set_without_massive_dims_is_judged_alike(planted_massive):
    """Excluding the outliers from the value set removes the artefact: both controls agree."""
    store, info, massive = planted_massive
    mags = activation_magnitudes(store, HOOK)
    evaluate, _ = ablation_model(store)
    value = [d for d in info.value_dims if d not in massive]
    result = compare_to_controls(evaluate, value, mags, hook=HOOK, n_draws=5, seed=0, exclude=massive)
    assert result.massive_in_value_set == []
    assert {c.verdict for c in result.controls.values()} == {"inconclusive at this n"}


def test_matched_iou_baseline_counts_shared_massive_dims():
    from reward_circuits.analysis.controls import matched_random_iou
    from reward_circuits.neurons import expected_random_iou

    mags = np.ones(100)
    mags[:2] = 500.0  # two massive dims; both value sets hold one of them
    matched = matched_random_iou([0, 10, 20], [1, 30, 40], mags, n_draws=400, seed=0)
    uniform = expected_random_iou(100, 3)
    assert matched > uniform + 0.05  # matched draws always take a massive dim: they often coincide
    assert abs(matched_random_iou([10, 20, 30], [40, 50, 60], np.ones(100), n_draws=400) - uniform) < 0.02


def test_nearest_matched_sets_draw_each_targets_neighbours_and_never_a_target():
    """The one home of item-by-item matched controls (sae-td's contribution-matched latents use it)."""
    import numpy as np

    from reward_circuits.analysis.controls import nearest_matched_sets

    score = np.arange(100, dtype=float)  # item j has score j: its neighbours are j±1, j±2, ...
    targets = [10, 50, 90]
    draws = nearest_matched_sets(targets, score, n_draws=200, seed=0, pool_size=4)
    flat = np.array(draws)
    assert flat.shape == (200, 3) and not set(flat.ravel()) & set(targets)
    assert np.abs(flat - np.array(targets)).max() <= 3  # within the 4 nearest non-targets
    assert all(len(set(d)) == 3 for d in draws)
    assert len({tuple(d) for d in draws}) > 20  # random among the neighbours, not fixed
    eligible = [j for j in range(100) if j % 2 == 0]
    assert all(j % 2 == 0 for d in nearest_matched_sets(targets, score, 20, seed=1, eligible=eligible) for j in d)
    with pytest.raises(ValueError, match="eligible"):
        nearest_matched_sets(targets, score, 1, eligible=[10, 11])
