"""Random-neuron controls matched on what could fake an effect: activation magnitude.

Residual streams have a few *massive-activation* dimensions (attention-sink dims) whose mean
``|activation|`` is tens of times the layer's median. Ablating one breaks the model whatever it
encodes, so a value set that happens to contain one beats a *uniform* random control for reasons
unrelated to value. This module:

* measures per-dimension mean ``|activation|`` on a store (:func:`activation_magnitudes`) and flags
  the outliers (:func:`massive_activations`: > ``factor`` × the median, default 10);
* draws random sets *matched* to a value set on magnitude (:func:`matched_random_sets`): every
  value dim is replaced by a random dim of the same magnitude stratum - the massive outliers form
  their own stratum, the others are split into deciles of mean ``|activation|`` - next to the
  uniform draws (:func:`uniform_random_sets`);
* gives the IoU baseline of magnitude-matched random sets (:func:`matched_random_iou`);
* compares an ablation of the value set with both controls on the *same* examples
  (:func:`compare_to_controls`): per control a paired bootstrap interval of the accuracy
  difference, McNemar against each draw, and a verdict on "value neurons matter more than this
  control".

>>> mags = activation_magnitudes(store, hook)
>>> massive_activations(mags, hook).dims          # e.g. [17, 507, 371]
>>> result = compare_to_controls(evaluate, value_dims, mags, n_draws=3)   # evaluate(dims) -> correct[n]
>>> result.controls["magnitude_matched"].verdict
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from jaxtyping import Float

from ..options import options_of
from ..report import Section, Table
from ..neurons import iou, random_dims
from .resampling import SignedTest, hierarchical_vs_random
from .stats import (
    Interval,
    Verdict,
    bootstrap_ci,
    mcnemar_test,
    paired_bootstrap_diff,
    rank_by_score,
    verdict,
)

CONTROL_KINDS = ("uniform", "magnitude_matched")


# ---------------------------------------------------------------------------------------------
# magnitudes and massive-activation outliers
# ---------------------------------------------------------------------------------------------
@torch.no_grad()
def activation_magnitudes(store, hook: str, indices: Sequence[int] | None = None,
                          batch_states: int = 8192) -> Float[np.ndarray, " d"]:
    """Mean ``|activation|`` of every dimension of ``hook`` over all states of the rollouts."""
    if hook not in store.hook_names:
        raise KeyError(f"hook {hook!r} is not in the store; it holds {store.hook_names}.")
    total = torch.zeros(int(store.d(hook)), dtype=torch.float64)
    count = 0
    for batch in store.iter_batches([hook], batch_states=batch_states, indices=indices):
        total += batch.acts[hook].to(torch.float64).abs().sum(0)
        count += len(batch)
    if count == 0:
        raise ValueError("no states to measure magnitudes on.")
    return (total / count).numpy()


@dataclass
class MassiveActivations:
    """Dims of one hook whose mean ``|activation|`` exceeds ``factor`` × the median, largest first."""

    hook: str
    dims: list[int]
    ratio_to_median: list[float]
    factor: float
    median: float

    def contained_in(self, dims: Sequence[int]) -> list[int]:
        """The outliers among ``dims`` (in outlier order)."""
        s = {int(x) for x in dims}
        return [d for d in self.dims if d in s]

    def to_dict(self) -> dict:
        return {"hook": self.hook, "dims": self.dims, "ratio_to_median": self.ratio_to_median, "factor": self.factor,
                "median": self.median}


def massive_activations(magnitudes: Float[np.ndarray, " d"], hook: str = "", factor: float = 10.0) -> MassiveActivations:
    """Massive-activation outliers: mean ``|activation|`` > ``factor`` × the layer's median."""
    m = np.asarray(magnitudes, dtype=np.float64).reshape(-1)
    if factor <= 1:
        raise ValueError(f"factor must be > 1 (a multiple of the median), got {factor}.")
    med = float(np.median(m))
    ratio = m / med if med > 0 else np.where(m > 0, np.inf, 0.0)
    dims = np.flatnonzero(ratio > factor)
    dims = dims[rank_by_score(m[dims])]
    return MassiveActivations(hook, dims.tolist(), ratio[dims].round(3).tolist(), float(factor), med)


def magnitude_strata(magnitudes: Float[np.ndarray, " d"], n_bins: int = 10, factor: float = 10.0) -> np.ndarray:
    """Stratum of every dim: ``n_bins`` (the massive outliers) or its magnitude quantile bin
    ``0 .. n_bins-1`` among the other dims."""
    m = np.asarray(magnitudes, dtype=np.float64).reshape(-1)
    massive = np.zeros(m.size, dtype=bool)
    massive[massive_activations(m, factor=factor).dims] = True
    strata = np.full(m.size, n_bins, dtype=np.int64)
    rest = np.flatnonzero(~massive)
    order = rest[np.argsort(m[rest], kind="stable")]
    strata[order] = (np.arange(order.size) * n_bins) // max(order.size, 1)
    return strata


# ---------------------------------------------------------------------------------------------
# random control sets
# ---------------------------------------------------------------------------------------------
def random_subsets(n_items: int, k: int, n_draws: int, rng: np.random.Generator) -> np.ndarray:
    """``n_draws`` uniform random subsets of ``k`` of ``n_items`` positions at once (``[n_draws, k]``,
    each row distinct positions): vectorised :func:`~reward_circuits.neurons.random_dims` for many cheap draws."""
    if not 0 <= k <= n_items:
        raise ValueError(f"cannot draw {k} of {n_items} items.")
    return np.argsort(rng.random((n_draws, n_items)), axis=1)[:, :k]


def uniform_random_sets(value_dims: Sequence[int], d: int, n_draws: int, seed: int = 0,
                        exclude: Sequence[int] = ()) -> list[list[int]]:
    """``n_draws`` sets of ``len(value_dims)`` dims drawn uniformly from the dims outside the value
    set (and ``exclude``)."""
    avoid = np.r_[np.asarray(value_dims, dtype=np.int64), np.asarray(exclude, dtype=np.int64)]
    k = len(value_dims)
    if k > d - np.unique(avoid).size:
        raise ValueError(f"cannot draw {k} of the {d - np.unique(avoid).size} dims outside the value set.")
    rng = np.random.default_rng(seed)
    return [random_dims(d, k, rng, avoid).tolist() for _ in range(n_draws)]


def matched_random_sets(value_dims: Sequence[int], magnitudes: Float[np.ndarray, " d"], n_draws: int, seed: int = 0,
                        n_bins: int = 10, factor: float = 10.0, exclude: Sequence[int] = (),
                        avoid_value_dims: bool = True) -> list[list[int]]:
    """``n_draws`` sets matched to ``value_dims`` on magnitude: each value dim is replaced by a dim of
    its stratum (:func:`magnitude_strata`) outside the value set, drawn without replacement. A
    stratum with too few such dims (e.g. the value set holds every massive outlier) lends the value
    set's own dims of that stratum: the control then shares them, as a matched control must."""
    value = np.asarray(value_dims, dtype=np.int64)
    strata = magnitude_strata(magnitudes, n_bins, factor)
    banned = (set(value.tolist()) if avoid_value_dims else set()) | {int(x) for x in exclude}
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_draws):
        chosen: list[int] = []
        for s in np.unique(strata[value]):
            need = int((strata[value] == s).sum())
            pool = np.array([j for j in np.flatnonzero(strata == s) if j not in banned], dtype=np.int64)
            take = rng.choice(pool, size=min(need, pool.size), replace=False).tolist() if pool.size else []
            if len(take) < need:  # stratum exhausted: keep that many of the value set's own dims
                own = value[strata[value] == s]
                take += rng.choice(own, size=need - len(take), replace=False).tolist()
            chosen += [int(j) for j in take]
        draws.append(chosen)
    return draws


def nearest_matched_sets(targets: Sequence[int], score: Float[np.ndarray, " d"], n_draws: int, seed: int = 0,
                         pool_size: int = 10, eligible: Sequence[int] | None = None) -> list[list[int]]:
    """``n_draws`` sets matched to ``targets`` item by item: each target ``j`` is replaced by a random
    item among the ``pool_size`` eligible ones (outside ``targets``, not yet in this draw) closest to it
    in ``score`` (e.g. log mean contribution of an SAE latent, or activation frequency). Where
    :func:`matched_random_sets` matches on magnitude strata, this matches each item to its neighbours."""
    targets = [int(j) for j in targets]
    score = np.asarray(score, dtype=np.float64).reshape(-1)
    pool = np.arange(score.size) if eligible is None else np.asarray(list(eligible), dtype=np.int64)
    pool = np.array([j for j in pool if j not in set(targets)], dtype=np.int64)
    if pool.size < len(targets):
        raise ValueError(f"only {pool.size} eligible items outside the {len(targets)} targets: cannot draw a matched set.")
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_draws):
        chosen: list[int] = []
        for j in targets:
            free = np.array([c for c in pool if c not in chosen])
            gap = np.abs(score[free] - score[j])
            chosen.append(int(rng.choice(free[np.argsort(gap)[:pool_size]])))
        draws.append(chosen)
    return draws


def matched_random_iou(set_a: Sequence[int], set_b: Sequence[int], magnitudes: Float[np.ndarray, " d"],
                       n_draws: int = 200, seed: int = 0, n_bins: int = 10, factor: float = 10.0) -> float:
    """Expected IoU of two random sets matched on magnitude to ``set_a`` and ``set_b`` (Monte Carlo):
    the IoU baseline when value sets concentrate in some magnitude strata (uniform sets understate
    it). Two value sets that both hold a layer's few massive dims overlap by construction."""
    a = matched_random_sets(set_a, magnitudes, n_draws, seed, n_bins, factor, avoid_value_dims=False)
    b = matched_random_sets(set_b, magnitudes, n_draws, seed + 1, n_bins, factor, avoid_value_dims=False)
    return float(np.mean([iou(x, y) for x, y in zip(a, b)]))


# ---------------------------------------------------------------------------------------------
# value ablation vs controls on the same examples
# ---------------------------------------------------------------------------------------------
@dataclass
class ControlResult:
    """One kind of random control: its draws, accuracies and the paired comparison with the value set."""

    kind: str
    draws: list[list[int]]
    accuracies: list[float]
    accuracy: Interval  # mean over draws of per-example correctness, bootstrap over examples
    difference: Interval  # value-ablated accuracy − control-ablated accuracy (paired over examples)
    p_value: float  # paired bootstrap, two-sided
    mcnemar: list[dict]  # value vs each draw, exact McNemar
    verdict: Verdict  # on "ablating the value set hurts more than this control"
    massive_in_draws: list[list[int]] = field(default_factory=list)
    # the claim registry's test: examples and draws resampled together (the random sets' own spread counts)
    vs_draws: SignedTest | None = None

    def to_dict(self) -> dict:
        return {"kind": self.kind, "draws": self.draws, "accuracies": self.accuracies,
                "accuracy": self.accuracy.to_dict(), "difference": self.difference.to_dict(), "p_value": self.p_value,
                "mcnemar": self.mcnemar, "verdict": self.verdict, "massive_in_draws": self.massive_in_draws,
                "vs_draws": self.vs_draws.to_dict() if self.vs_draws else None}


@dataclass
class ControlledAblation:
    """Ablating a value set vs magnitude-matched and uniform random sets, on the same examples."""

    hook: str
    value_dims: list[int]
    baseline_accuracy: Interval | None
    value_accuracy: Interval
    controls: dict[str, ControlResult]
    massive: MassiveActivations
    massive_in_value_set: list[int]

    def to_dict(self) -> dict:
        return {"hook": self.hook, "value_dims": self.value_dims,
                "baseline_accuracy": self.baseline_accuracy.to_dict() if self.baseline_accuracy else None,
                "value_accuracy": self.value_accuracy.to_dict(),
                "controls": {k: c.to_dict() for k, c in self.controls.items()},
                "massive": self.massive.to_dict(), "massive_in_value_set": self.massive_in_value_set}

    def table_rows(self) -> list[list]:
        """Rows ``[condition, accuracy, 95% CI, Δ vs value, p, verdict]`` for a report table."""
        rows = []
        if self.baseline_accuracy is not None:
            b = self.baseline_accuracy
            rows.append(["no ablation", b.estimate, f"[{b.low:.3f}, {b.high:.3f}]", None, None, ""])
        v = self.value_accuracy
        rows.append([f"value set ({len(self.value_dims)} dims; massive: {self.massive_in_value_set or 'none'})",
                     v.estimate, f"[{v.low:.3f}, {v.high:.3f}]", None, None, ""])
        for c in self.controls.values():
            a, dif = c.accuracy, c.difference
            rows.append([f"{c.kind} random ({len(c.draws)} draws)", a.estimate, f"[{a.low:.3f}, {a.high:.3f}]",
                         f"{dif.estimate:+.3f} [{dif.low:+.3f}, {dif.high:+.3f}]", c.p_value, c.verdict])
        return rows

    TABLE_COLUMNS = ("condition", "accuracy", "95% CI", "value − control", "p", "interval reading (unadjusted; the verdict is in the Claims section)")

    def section(self, key: str = "controlled_ablation") -> Section:
        """This comparison as a report :class:`~reward_circuits.report.Section`."""
        table = Table(f"Ablation of {self.hook}: value set vs random controls (n={self.value_accuracy.n} examples)",
                      list(self.TABLE_COLUMNS), self.table_rows())
        return Section(key, f"Value-set ablation vs matched controls ({self.hook})", self.to_dict(), [table], [],
                       self.notes())

    def notes(self) -> list[str]:
        """One line on the massive-activation outliers of the hook and in the value set."""
        return [(f"massive-activation dims of {self.hook} (> {self.massive.factor:g}x median |act|): "
                 f"{self.massive.dims or 'none'}; in the value set: {self.massive_in_value_set or 'none'}.")]


def control_sets(value_dims: Sequence[int], magnitudes: Float[np.ndarray, " d"], *, n_draws: int = 3, seed: int = 0,
                 n_bins: int = 10, factor: float = 10.0, exclude: Sequence[int] = (),
                 kinds: Sequence[str] = CONTROL_KINDS) -> dict[str, list[list[int]]]:
    """The random control sets of :func:`compare_to_controls`, per kind: ``n_draws`` uniform sets and
    ``n_draws`` magnitude-matched sets of ``len(value_dims)`` dims (to ablate in one sweep with the
    value set, then score with :func:`score_controls`)."""
    value = [int(x) for x in value_dims]
    mags = np.asarray(magnitudes, dtype=np.float64)
    unknown = [k for k in kinds if k not in CONTROL_KINDS]
    if unknown:
        raise ValueError(f"unknown control kinds {unknown}; use {CONTROL_KINDS}.")
    return {kind: (uniform_random_sets(value, mags.size, n_draws, seed, exclude) if kind == "uniform"
                   else matched_random_sets(value, mags, n_draws, seed, n_bins, factor, exclude))
            for kind in kinds}


@dataclass(kw_only=True)
class ScoreControlsOptions:
    """Settings of :func:`score_controls`, passed as its keywords (or one ``options=``)."""

    hook: str = ""
    factor: float = 10.0
    baseline: Sequence[float] | None = None
    n_boot: int = 2000
    seed: int = 0


def score_controls(
    value_correct: Sequence[float],
    outcomes: Mapping[str, Sequence[Sequence[float]]],
    draws: Mapping[str, Sequence[Sequence[int]]],
    value_dims: Sequence[int],
    magnitudes: Float[np.ndarray, " d"],
    **options,
) -> ControlledAblation:
    """Compare per-example outcomes of the value-set ablation with each control kind's draws.

    ``outcomes[kind][draw]`` and ``value_correct`` score the same examples in the same order (the
    comparison is paired). The claim "the value set matters more than this control" predicts a
    negative difference (value-ablated accuracy below the control's); its verdict comes from the
    paired bootstrap interval over examples.

    ``options``: the fields of :class:`ScoreControlsOptions` as keywords, or one ``options=``.
    """
    o = options_of(ScoreControlsOptions, (), options, where="score_controls")
    hook, factor, baseline, n_boot, seed = o.hook, o.factor, o.baseline, o.n_boot, o.seed
    value = [int(x) for x in value_dims]
    massive = massive_activations(np.asarray(magnitudes, dtype=np.float64), hook, factor)
    value_correct = np.asarray(value_correct, dtype=np.float64)
    controls = {}
    for kind, kind_draws in draws.items():
        out = np.stack([np.asarray(o, dtype=np.float64) for o in outcomes[kind]])
        if out.shape[1] != value_correct.size:
            raise ValueError(f"{out.shape[1]} outcomes for a {kind} control but {value_correct.size} for the value set: "
                             "every condition must score the same examples in the same order.")
        per_example = out.mean(0)
        diff, p = paired_bootstrap_diff(value_correct, per_example, n_boot=n_boot, seed=seed)
        binary = np.isin(out, (0.0, 1.0)).all() and np.isin(value_correct, (0.0, 1.0)).all()
        kind_draws = [[int(x) for x in dr] for dr in kind_draws]
        controls[kind] = ControlResult(
            kind=kind, draws=kind_draws, accuracies=out.mean(1).tolist(),
            accuracy=bootstrap_ci(per_example, n_boot=n_boot, seed=seed), difference=diff, p_value=p,
            mcnemar=[mcnemar_test(value_correct, o) for o in out] if binary else [],
            verdict=verdict(diff, expected_sign=-1), massive_in_draws=[massive.contained_in(dr) for dr in kind_draws],
            vs_draws=hierarchical_vs_random(value_correct, out, n_boot=n_boot, seed=seed) if len(out) > 1 else None)
    return ControlledAblation(
        hook=hook, value_dims=value,
        baseline_accuracy=bootstrap_ci(np.asarray(baseline, dtype=np.float64), n_boot=n_boot, seed=seed) if baseline is not None else None,
        value_accuracy=bootstrap_ci(value_correct, n_boot=n_boot, seed=seed), controls=controls, massive=massive,
        massive_in_value_set=massive.contained_in(value))


@dataclass(kw_only=True)
class ControlOptions:
    """Settings of :func:`compare_to_controls`, passed as its keywords (or one ``options=``)."""

    hook: str = ""
    n_draws: int = 3
    seed: int = 0
    n_bins: int = 10
    factor: float = 10.0
    exclude: Sequence[int] = ()
    kinds: Sequence[str] = CONTROL_KINDS
    baseline: Sequence[float] | None = None
    n_boot: int = 2000


def compare_to_controls(
    evaluate: Callable[[list[int]], Sequence[float]],
    value_dims: Sequence[int],
    magnitudes: Float[np.ndarray, " d"],
    **options,
) -> ControlledAblation:
    """Ablate ``value_dims`` and ``n_draws`` sets of each control kind with ``evaluate``.

    ``evaluate(dims)`` ablates ``dims`` and returns per-example correctness (0/1 or a score), the
    same examples in the same order on every call: the comparison is paired. One call per set; to
    run every set in one batched generation, draw them with :func:`control_sets`, sweep them, and
    score with :func:`score_controls` (what the main job does).

    ``options``: the fields of :class:`ControlOptions` as keywords, or one ``options=``.
    """
    o = options_of(ControlOptions, (), options, where="compare_to_controls")
    hook, n_draws, seed, n_bins, factor, exclude, kinds, baseline, n_boot = (
        o.hook, o.n_draws, o.seed, o.n_bins, o.factor, o.exclude, o.kinds, o.baseline, o.n_boot)
    draws = control_sets(value_dims, magnitudes, n_draws=n_draws, seed=seed, n_bins=n_bins, factor=factor,
                         exclude=exclude, kinds=kinds)
    value_correct = evaluate([int(x) for x in value_dims])
    outcomes = {kind: [evaluate(dr) for dr in kind_draws] for kind, kind_draws in draws.items()}
    return score_controls(value_correct, outcomes, draws, value_dims, magnitudes, hook=hook, factor=factor,
                          baseline=baseline, n_boot=n_boot, seed=seed)
