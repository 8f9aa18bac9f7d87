"""One home per idea: set overlap (neurons.iou), the uniform random draw (neurons.random_dims)
and top-k (analysis.stats.rank_by_score). Planted overlaps are recovered, random sets overlap as the
analytic baseline says, and draws never include what they must avoid."""

from __future__ import annotations

import numpy as np
import pytest

from reward_circuits.analysis.controls import random_subsets, uniform_random_sets
from reward_circuits.neurons import NeuronSet, expected_random_iou, iou, random_dims
from reward_circuits.analysis.stats import rank_by_score


def test_iou_of_dims_and_of_layer_neuron_pairs():
    assert iou([1, 2, 3], np.array([2, 3, 4])) == pytest.approx(0.5)
    assert iou([], []) == 1.0 and iou([1], []) == 0.0
    # (layer, neuron) pairs, as tuples or as the lists JSON gives back
    assert iou([(0, 1), (2, 5)], [[2, 5], [3, 3]]) == pytest.approx(1 / 3)
    assert iou([np.int64(4), 5], [4, np.int32(5)]) == 1.0


def test_random_sets_overlap_at_the_analytic_baseline_and_a_planted_overlap_is_above_it():
    """Uniform random k-subsets of d dims overlap at expected_random_iou (Monte Carlo within 3 SE);
    two sets sharing a planted half are far above it."""
    d, k = 200, 20
    rng = np.random.default_rng(0)
    draws = [iou(random_dims(d, k, rng), random_dims(d, k, rng)) for _ in range(3000)]
    se = np.std(draws) / np.sqrt(len(draws))
    assert abs(np.mean(draws) - expected_random_iou(d, k)) < 3 * se
    shared = list(range(10))
    planted = iou(shared + list(range(10, 20)), shared + list(range(20, 30)))
    assert planted == pytest.approx(1 / 3) and planted > 5 * expected_random_iou(d, k)


def test_random_dims_avoid_exclusions_and_match_neuronset_random():
    rng = np.random.default_rng(1)
    for _ in range(50):
        dims = random_dims(30, 10, rng, exclude=range(15))
        assert len(set(dims.tolist())) == 10 and dims.min() >= 15
    ns = NeuronSet.random("h", 64, 5, seed=7, exclude=[1, 2, 3])
    assert ns.indices == random_dims(64, 5, 7, exclude=[1, 2, 3]).tolist()
    assert uniform_random_sets([1, 2, 3], 64, 2, seed=7)[0] == random_dims(64, 3, 7, exclude=[1, 2, 3]).tolist()
    with pytest.raises(ValueError, match="draw fewer dims"):
        random_dims(10, 5, 0, exclude=range(6))
    subsets = random_subsets(12, 4, 500, np.random.default_rng(0))
    assert subsets.shape == (500, 4) and all(len(set(r)) == 4 for r in subsets.tolist())
    # uniform: every position about equally often
    counts = np.bincount(subsets.ravel(), minlength=12)
    assert counts.min() > 0.7 * counts.mean()


def test_top_k_finds_planted_top_dims_and_breaks_ties_by_lower_index():
    rng = np.random.default_rng(0)
    s = rng.normal(size=100)
    s[[7, 42, 91]] = [10.0, 9.0, 8.0]
    assert rank_by_score(s)[:3].tolist() == [7, 42, 91]
    assert rank_by_score(np.array([1.0, 3.0, 3.0, 2.0]))[:3].tolist() == [1, 2, 3]
    assert rank_by_score(np.array([np.nan, 1.0, -np.inf, 2.0]), nonfinite="last").tolist()[:2] == [3, 1]
