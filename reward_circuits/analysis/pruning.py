"""L1-norm pruning of value probes, value neurons, IoU across probes, and robustness checks.

Pruning (paper §2): rank the input dimensions of a layer's probe by the L1 norm of their ``W1``
column (inputs are standardised, so this is importance per unit std - see :mod:`.probes`), mask
the lowest-ranked fraction ``ratio`` (mean-ablation, no retraining) and measure the held-out AUC
of ``V(s_0)``. The dimensions kept at ``ratio = 0.99`` (the top 1%) are the *value neurons*.

Robustness:

* :func:`architecture_robustness` - do probes with other hidden sizes / activations / seeds pick
  the same value neurons? (pairwise IoU of their 99%-pruned sets vs the random-set baseline)
* :func:`rotation_check` - rotate the hidden states by a random orthogonal ``Q``
  (:class:`RotatedStore`). A linear read-out is rotation invariant, so the AUC must stay about
  the same; if the signal lives in a few *privileged* basis dimensions, the neuron-level sparsity
  (AUC at 99% pruning, share of L1 mass in the top 1%) must vanish after rotation. If it does not
  vanish, the "sparsity" is a property of the probe/pruning, not of the model's basis.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch
from jaxtyping import Bool, Float
from torch import Tensor

from ..models import layer_of
from ..options import options_of
from ..neurons import NeuronSet, expected_random_iou, iou, random_dims
from .probes import ProbeError, ValueProbe, ValueProbeConfig, resolve_indices, binary_auc
from ..data.views import RotatedStore
from .stats import rank_by_score

prune_ratios_default: list[float] = [0, .1, .2, .3, .4, .5, .6, .7, .8, .9, .95, .99, .995, .999]


# ---------------------------------------------------------------------------------------------
# basics
# ---------------------------------------------------------------------------------------------


def n_kept(d: int, ratio: float) -> int:
    """Dimensions kept when pruning a fraction ``ratio`` of ``d`` (rounded, at least 1)."""
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"prune ratio must be in [0, 1), got {ratio!r}.")
    return max(1, int(round(d * (1.0 - ratio))))




def top_dims(scores: Float[Tensor, " d"] | np.ndarray, ratio: float) -> np.ndarray:
    """The dimensions kept at prune ratio ``ratio``, best first."""
    order = rank_by_score(scores)
    return order[: n_kept(order.size, ratio)]


def keep_mask(d: int, dims: Sequence[int]) -> Bool[Tensor, " d"]:
    m = torch.zeros(d, dtype=torch.bool)
    m[torch.as_tensor(np.asarray(dims, dtype=np.int64))] = True
    return m


# ---------------------------------------------------------------------------------------------
# pruning curves
# ---------------------------------------------------------------------------------------------
@torch.no_grad()
def _auc_with_mask(probe: ValueProbe, hook: str, x0: Tensor, rewards: np.ndarray, mask: Tensor | None) -> float:
    values = probe.masked(hook, mask).predict_value(x0, hook=hook).cpu().numpy()
    return binary_auc(rewards, values, what=f"V(s_0) of hook {hook!r}")


@dataclass(kw_only=True)
class PruneRetrainOptions:
    """Retraining in :func:`prune_curve` (its keywords, or one ``options=``): ``retrain`` a probe on
    each kept set, on ``train_indices`` with ``retrain_cfg``."""

    retrain: bool = False
    train_indices: Sequence[int] | None = None
    retrain_cfg: ValueProbeConfig | None = None


def prune_curve(
    probe: ValueProbe,
    store,
    hook: str,
    ratios: Sequence[float] = prune_ratios_default,
    test_indices: Sequence[int] | None = None,
    random_draws: int = 3,
    seed: int = 0,
    **options,
) -> dict:
    """Held-out AUC of ``V(s_0)`` as the lowest-L1 input dimensions are masked.

    Returns ``{"l1": {ratio: AUC}, "random": {ratio: mean AUC over random masks of the same
    size}, "random_std": {...}, "n_kept": {ratio: k}}`` and, with ``retrain=True``,
    ``"retrain": {ratio: AUC of a fresh probe trained only on the kept dims}`` (needs
    ``train_indices``; slow: one training per ratio).

    ``options``: the fields of :class:`PruneRetrainOptions` as keywords, or one ``options=``.
    """
    o = options_of(PruneRetrainOptions, (), options, where="prune_curve")
    retrain, train_indices, retrain_cfg = o.retrain, o.train_indices, o.retrain_cfg
    probe.probe_index(hook)
    test = resolve_indices(store, test_indices)
    x0 = store.initial_states(hook, test)
    rewards = np.asarray(store.rewards)[test]
    scores = probe.input_weight_norms(hook)
    d = scores.numel()
    rng = np.random.default_rng(seed)
    out = {"l1": {}, "random": {}, "random_std": {}, "n_kept": {}}
    for ratio in ratios:
        k = n_kept(d, ratio)
        out["n_kept"][ratio] = k
        out["l1"][ratio] = _auc_with_mask(probe, hook, x0, rewards, keep_mask(d, top_dims(scores, ratio)))
        draws = [_auc_with_mask(probe, hook, x0, rewards, keep_mask(d, random_dims(d, k, rng)))
                 for _ in range(random_draws)]
        out["random"][ratio] = float(np.mean(draws)) if draws else None
        out["random_std"][ratio] = float(np.std(draws)) if draws else None
    if retrain:
        if train_indices is None:
            raise ProbeError("retrain=True needs train_indices (the rollouts to retrain the pruned probes on).")
        cfg = retrain_cfg or probe.cfg
        out["retrain"] = {}
        for ratio in ratios:
            mask = keep_mask(d, top_dims(scores, ratio))
            fresh = ValueProbe(cfg).fit(store, hook, train_indices, keep_masks={hook: mask}, verbose=False)
            out["retrain"][ratio] = fresh.score(store, test)[hook]
    return out


def l1_mass_in_top(scores: Float[Tensor, " d"] | np.ndarray, fraction: float = 0.01) -> float:
    """Share of the total L1 score held by the top ``fraction`` of dimensions (uniform = fraction).

    A diluted measure: without weight decay, columns of unused inputs keep their initial norm, so
    even a perfectly sparse read-out shows a modest share. Compare it across conditions (e.g.
    original vs rotated basis), not with 1.
    """
    s = np.asarray(scores.detach().cpu() if isinstance(scores, Tensor) else scores, dtype=np.float64)
    top = top_dims(s, 1.0 - fraction)
    return float(s[top].sum() / s.sum())


# ---------------------------------------------------------------------------------------------
# value neurons and IoU
# ---------------------------------------------------------------------------------------------
def value_neurons(probe: ValueProbe, hook: str, prune_ratio: float = 0.99, provenance: dict | None = None,
                  exclude: Sequence[int] = ()) -> NeuronSet:
    """The input dims kept at ``prune_ratio`` (best first, scores = L1 norms; at least one).

    ``exclude`` keeps some dims out of the selection (e.g. massive-activation outliers, see
    :func:`~reward_circuits.analysis.controls.massive_activations`); the set keeps its size, filled
    from the next-ranked dims. The full score vector is stored in ``provenance["input_weight_l1"]``
    so that IoU at any other ratio can be computed later from the saved JSON (:func:`iou_by_ratio`).
    """
    scores = probe.input_weight_norms(hook)
    excluded = sorted({int(x) for x in exclude})
    k = n_kept(int(scores.numel()), prune_ratio)
    order = [int(j) for j in rank_by_score(scores) if int(j) not in set(excluded)]
    if k > len(order):
        raise ValueError(f"cannot keep {k} dims of {hook!r} with {len(excluded)} of {scores.numel()} excluded.")
    dims = np.asarray(order[:k], dtype=np.int64)
    prov = {"prune_ratio": prune_ratio, "probe_config": dict(vars(probe.cfg)), "score": "L1 norm of W1 column (standardised inputs)",
            **(provenance or {}), "excluded_dims": excluded, "input_weight_l1": scores.tolist()}
    return NeuronSet(hook_name=hook, indices=dims.tolist(), d=int(scores.numel()), scores=scores[dims].tolist(),
                     kind="value", layer=layer_of(hook), provenance=prov)


def iou_from_scores(
    scores_a: Float[Tensor, " d"] | np.ndarray,
    scores_b: Float[Tensor, " d"] | np.ndarray,
    ratios: Sequence[float] = prune_ratios_default,
) -> dict[float, tuple[float, float]]:
    """``{ratio: (IoU of the two kept sets, expected IoU of two random sets of those sizes)}``."""
    a, b = np.asarray(scores_a, dtype=np.float64), np.asarray(scores_b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"score vectors must be 1-D with the same width, got {a.shape} and {b.shape}.")
    out = {}
    for ratio in ratios:
        sa, sb = top_dims(a, ratio), top_dims(b, ratio)
        out[ratio] = (iou(sa, sb), expected_random_iou(a.size, len(sa), len(sb)))
    return out


def iou_curve(
    probe_a: ValueProbe, probe_b: ValueProbe, hook: str, ratios: Sequence[float] = prune_ratios_default, hook_b: str | None = None
) -> dict[float, tuple[float, float]]:
    """IoU of two probes' kept sets per prune ratio, with the random baseline (same widths)."""
    return iou_from_scores(probe_a.input_weight_norms(hook), probe_b.input_weight_norms(hook_b or hook), ratios)


def iou_by_ratio(set_a: NeuronSet, set_b: NeuronSet, ratios: Sequence[float] = prune_ratios_default) -> dict[float, tuple[float, float]]:
    """:func:`iou_from_scores` from two saved value-neuron sets (their stored full score vectors)."""
    try:
        sa, sb = set_a.provenance["input_weight_l1"], set_b.provenance["input_weight_l1"]
    except KeyError:
        raise ValueError("these NeuronSets carry no full score vector (provenance['input_weight_l1']); "
                         "make them with value_neurons(...).") from None
    return iou_from_scores(np.asarray(sa), np.asarray(sb), ratios)


# ---------------------------------------------------------------------------------------------
# robustness: probe architecture
# ---------------------------------------------------------------------------------------------
def architecture_variants(
    base: ValueProbeConfig,
    hiddens: Sequence[int] = (16, 64, 256),
    activations: Sequence[str] = ("relu", "tanh"),
    seeds: Sequence[int] = (0, 1, 2),
    grid: bool = False,
) -> dict[str, ValueProbeConfig]:
    """Named probe configs: the full grid, or (default) one factor at a time around ``base``."""
    if grid:
        combos = itertools.product(hiddens, activations, seeds)
    else:
        combos = {(base.hidden, base.activation, base.seed)}
        combos |= {(h, base.activation, base.seed) for h in hiddens}
        combos |= {(base.hidden, a, base.seed) for a in activations}
        combos |= {(base.hidden, base.activation, s) for s in seeds}
        combos = sorted(combos, key=lambda c: (c[0], c[1], c[2]))
    return {f"h{h}-{a}-s{s}": base.replace(hidden=h, activation=a, seed=s) for h, a, s in combos}


def architecture_robustness(
    store,
    hook: str,
    train_indices: Sequence[int],
    test_indices: Sequence[int],
    base_cfg: ValueProbeConfig,
    prune_ratio: float = 0.99,
    variants: Mapping[str, ValueProbeConfig] | None = None,
    verbose: bool = False,
) -> dict:
    """Train one probe per architecture variant on ``hook``; compare their value-neuron sets.

    Returns per-variant AUC and kept dims, the pairwise IoU of the kept sets, their mean, the
    mean restricted to pairs differing only in seed / only in hidden size / only in activation,
    the random-set baseline, and ``scores`` (each variant's full L1 score vector).
    """
    variants = dict(variants or architecture_variants(base_cfg))
    sets, aucs, scores = {}, {}, {}
    for name, cfg in variants.items():
        probe = ValueProbe(cfg).fit(store, hook, train_indices, verbose=verbose)
        aucs[name] = probe.score(store, test_indices)[hook]
        scores[name] = probe.input_weight_norms(hook).tolist()
        sets[name] = top_dims(np.asarray(scores[name]), prune_ratio).tolist()
    names = list(variants)
    pairs, by_factor = {}, {"seed": [], "hidden": [], "activation": []}
    for a, b in itertools.combinations(names, 2):
        v = iou(sets[a], sets[b])
        pairs[f"{a} vs {b}"] = v
        ca, cb = variants[a], variants[b]
        diff = [f for f in ("seed", "hidden", "activation") if getattr(ca, f) != getattr(cb, f)]
        if len(diff) == 1:
            by_factor[diff[0]].append(v)
    d = int(store.d(hook))
    k = n_kept(d, prune_ratio)
    return {
        "hook": hook,
        "prune_ratio": prune_ratio,
        "auc": aucs,
        "kept_dims": sets,
        "pairwise_iou": pairs,
        "mean_pairwise_iou": float(np.mean(list(pairs.values()))) if pairs else None,
        "mean_iou_by_factor": {f: (float(np.mean(v)) if v else None) for f, v in by_factor.items()},
        "random_baseline_iou": expected_random_iou(d, k),
        "scores": scores,
    }


# ---------------------------------------------------------------------------------------------
# robustness: random rotation of the hidden states
# ---------------------------------------------------------------------------------------------




@dataclass
class RotationCheckOptions:
    """Settings of :func:`rotation_check` (by position in this order, keyword, or one ``options=``)."""

    seed: int = 0
    prune_ratio: float = 0.99
    probe: ValueProbe | None = None
    materialize: bool = True
    verbose: bool = False


def rotation_check(
    store,
    hook: str,
    train_indices: Sequence[int],
    test_indices: Sequence[int],
    cfg: ValueProbeConfig,
    *args,
    **options,
) -> dict:
    """Compare a probe on the original states with one on randomly rotated states.

    Expect: ``auc_rotated ≈ auc_original`` (the information is still there), while a *basis-
    aligned* sparse code shows ``auc_pruned_original ≫ auc_pruned_rotated`` and
    ``top_l1_mass_original ≫ top_l1_mass_rotated ≈ uniform_mass``. ``probe`` reuses an already
    trained original-basis probe for ``hook``. ``materialize`` loads the rotated training rollouts
    into memory once instead of rotating every epoch (same numbers, faster). ``args``/``options``:
    the fields of :class:`RotationCheckOptions` (``seed=0``, ``prune_ratio=0.99``, ``probe=None``,
    ``materialize=True``, ``verbose=False``).
    """
    o = options_of(RotationCheckOptions, args, options, where="rotation_check")
    seed, prune_ratio, probe, materialize, verbose = o.seed, o.prune_ratio, o.probe, o.materialize, o.verbose
    from .probes import ArrayRollouts

    rotated = RotatedStore(store, seed=seed, hooks=[hook])
    if probe is None:
        probe = ValueProbe(cfg).fit(store, hook, train_indices, verbose=verbose)
    source = rotated
    train = np.asarray(train_indices)
    if materialize:
        source = ArrayRollouts.from_store(rotated, [hook], train)
        train = np.arange(len(source))
    probe_rot = ValueProbe(cfg).fit(source, hook, train, verbose=verbose)
    test = np.asarray(test_indices)
    d = int(store.d(hook))
    fraction = 1.0 - prune_ratio
    out = {"hook": hook, "prune_ratio": prune_ratio, "rotation_seed": seed}
    for name, p, src in (("original", probe, store), ("rotated", probe_rot, rotated)):
        scores = p.input_weight_norms(hook)
        out[f"auc_{name}"] = p.score(src, test, hooks=hook)[hook]
        curve = prune_curve(p, src, hook, [prune_ratio], test, random_draws=0)
        out[f"auc_pruned_{name}"] = curve["l1"][prune_ratio]
        out[f"top_l1_mass_{name}"] = l1_mass_in_top(scores, fraction)
    out["uniform_mass"] = n_kept(d, prune_ratio) / d
    return out
