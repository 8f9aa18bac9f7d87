"""Magnitude-matched random controls for dopamine neurons: the correlation null and the causal check.

Dopamine candidates are judged against random dims of the same hook. Drawn *uniformly*, those
are mostly ordinary dims; a candidate set holding a few massive-activation dims (see
:mod:`~reward_circuits.analysis.controls`) then beats them whenever that magnitude class as a whole
co-varies with the TD error (e.g. attention-sink dims that follow the token position), whatever
the candidates encode. The matched control replaces every candidate by a random dim of its
magnitude stratum (:func:`~reward_circuits.analysis.controls.matched_random_sets`), so the claim
"the candidates track δ" must beat dims of their own magnitude class.

* :func:`matched_correlation_null`: the held-out mean ``|Pearson(act, δ)|`` of matched draws vs the
  candidates' (a draw-share p-value), and a rollout-bootstrap interval of candidates − matched pool
  with a verdict (the uniform counterpart lives in :func:`~reward_circuits.analysis.dopamine_metrics.dopamine_metrics`).
* :func:`paired_control_comparison`: per control kind, the paired bootstrap (over the same examples
  or rollouts) of the dopamine ablation's outcome minus the controls' mean, McNemar per draw on
  binary outcomes, and a verdict.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
from jaxtyping import Float

from ..options import options_of
from ..io import nan_to_none
from .controls import MassiveActivations, magnitude_strata, massive_activations, matched_random_sets
from .stats import Interval, Verdict, bootstrap_ci, mcnemar_test, paired_bootstrap_diff, verdict


@dataclass
class MatchedNull:
    """Candidates vs ``n_draws`` magnitude-matched random sets of the same size (held-out |Pearson with δ|)."""

    n_draws: int
    set_size: int
    seed: int
    mean_abs_pearson_td: float  # over draws of each draw's mean |Pearson(act, δ)|
    std_abs_pearson_td: float
    mean_pearson_td: float
    mean_pearson_value: float
    p_abs_vs_matched: float  # (1 + #draws reaching the candidates' mean |Pearson|) / (1 + n_draws)
    pool_dims: list[int]  # the first draws, concatenated: the matched pool of the bootstrap interval
    abs_corr_vs_matched: Interval | None  # candidates − matched pool, bootstrap over held-out rollouts
    verdict: Verdict | None  # on "the candidates track δ more than dims of their magnitude class"
    massive: MassiveActivations
    massive_in_candidates: list[int]
    candidate_strata: list[int]  # magnitude stratum of each candidate (n_bins = the massive stratum)
    lent_own_dims: bool  # a stratum had too few other dims: the draws share candidate dims

    def to_dict(self) -> dict:
        out = asdict(self)
        out["massive"] = self.massive.to_dict()
        out["abs_corr_vs_matched"] = self.abs_corr_vs_matched.to_dict() if self.abs_corr_vs_matched else None
        return nan_to_none(out)


def matched_draws(candidates: Sequence[int], magnitudes: Float[np.ndarray, " d"], n_draws: int, seed: int = 0,
                  n_bins: int = 10, factor: float = 10.0) -> list[list[int]]:
    """``n_draws`` magnitude-matched random sets for ``candidates`` (outside them where the stratum allows)."""
    return matched_random_sets(list(candidates), np.asarray(magnitudes, dtype=np.float64), n_draws, seed, n_bins, factor)


@dataclass(kw_only=True)
class MatchedNullOptions:
    """Settings of :func:`matched_correlation_null`, passed as its keywords (or one ``options=``); ``bootstrap(pool_dims)`` gives the candidates' |corr| difference interval against a pool."""

    hook: str = ""
    seed: int = 0
    n_pool_draws: int = 25
    factor: float = 10.0
    n_bins: int = 10
    bootstrap: Callable[[list[int]], Interval] | None = None


def matched_correlation_null(
    candidates: Sequence[int],
    candidate_abs_pearson: float,
    pearson_td_all: Float[np.ndarray, " d"],
    pearson_value_all: Float[np.ndarray, " d"],
    magnitudes: Float[np.ndarray, " d"],
    draws: Sequence[Sequence[int]],
    **options,
) -> MatchedNull:
    """Summarise matched ``draws`` (:func:`matched_draws`) against the candidates.

    ``pearson_td_all[j]`` / ``pearson_value_all[j]``: held-out Pearson of dim ``j`` with δ and with V.
    ``bootstrap(pool_dims)`` (optional) returns the rollout-bootstrap :class:`Interval` of the
    candidates' mean |Pearson with δ| minus that of the pool (a multiset: dims drawn twice count
    twice); it gets the first ``n_pool_draws`` draws concatenated.

    ``options``: the fields of :class:`MatchedNullOptions` as keywords, or one ``options=``.
    """
    o = options_of(MatchedNullOptions, (), options, where="matched_correlation_null")
    hook, seed, n_pool_draws, factor, n_bins, bootstrap = (
        o.hook, o.seed, o.n_pool_draws, o.factor, o.n_bins, o.bootstrap)
    cands = [int(j) for j in candidates]
    r_td = np.asarray(pearson_td_all, dtype=np.float64)
    r_v = np.asarray(pearson_value_all, dtype=np.float64)
    draws = [list(map(int, dr)) for dr in draws]
    if not draws:
        raise ValueError("no matched draws given.")

    def per_draw(values: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            return np.array([np.nanmean(values[dr]) if np.isfinite(values[dr]).any() else np.nan for dr in draws])

    abs_means, means, vmeans = per_draw(np.abs(r_td)), per_draw(r_td), per_draw(r_v)
    finite = abs_means[np.isfinite(abs_means)]
    p = float((1 + np.sum(finite >= candidate_abs_pearson - 1e-12)) / (1 + finite.size))
    pool = [j for dr in draws[:n_pool_draws] for j in dr]
    diff = bootstrap(pool) if bootstrap is not None else None
    mags = np.asarray(magnitudes, dtype=np.float64)
    massive = massive_activations(mags, hook, factor)
    strata = magnitude_strata(mags, n_bins, factor)
    cset = set(cands)

    def stat(x: np.ndarray) -> tuple[float, float]:
        x = x[np.isfinite(x)]
        return (float(x.mean()), float(x.std())) if x.size else (math.nan, math.nan)

    return MatchedNull(
        n_draws=len(draws), set_size=len(cands), seed=seed,
        mean_abs_pearson_td=stat(abs_means)[0], std_abs_pearson_td=stat(abs_means)[1],
        mean_pearson_td=stat(means)[0], mean_pearson_value=stat(vmeans)[0], p_abs_vs_matched=p, pool_dims=pool,
        abs_corr_vs_matched=diff, verdict=verdict(diff, expected_sign=1) if diff is not None and math.isfinite(diff.low) else None,
        massive=massive, massive_in_candidates=massive.contained_in(cands),
        candidate_strata=[int(strata[j]) for j in cands], lent_own_dims=any(j in cset for dr in draws for j in dr),
    )


# ---------------------------------------------------------------------------------------------
# the causal check: the dopamine ablation vs uniform and matched random ablations, paired
# ---------------------------------------------------------------------------------------------
@dataclass
class PairedControl:
    """One control kind in a paired comparison: per-draw outcomes vs the target condition's."""

    kind: str
    n_draws: int
    control_mean: Interval  # mean over draws of the per-unit outcome, bootstrap over units
    difference: Interval  # target − mean of the draws, paired over units
    p_value: float
    verdict: Verdict | None
    mcnemar: list[dict] = field(default_factory=list)  # target vs each draw (binary outcomes only)

    def to_dict(self) -> dict:
        return nan_to_none({"kind": self.kind, "n_draws": self.n_draws, "control_mean": self.control_mean.to_dict(),
                            "difference": self.difference.to_dict(), "p_value": self.p_value, "verdict": self.verdict,
                            "mcnemar": self.mcnemar})


def paired_control_comparison(
    target: Sequence[float],
    controls: Mapping[str, Sequence[Sequence[float]]],
    *,
    expected_sign: int = -1,
    n_boot: int = 2000,
    seed: int = 0,
) -> dict[str, PairedControl]:
    """``target[u]`` (e.g. correctness of example ``u`` under the dopamine ablation) against each
    control kind's draws ``controls[kind][draw][u]`` on the same units: the paired bootstrap
    interval of ``target − mean over draws`` and a verdict on the claim that the difference has
    sign ``expected_sign`` (−1: "ablating the dopamine set lowers accuracy more than this control").
    NaN units (e.g. a rollout without a defined trace change) are dropped from every condition."""
    y = np.asarray(target, dtype=np.float64)
    out = {}
    for kind, draws in controls.items():
        x = np.asarray(draws, dtype=np.float64).reshape(len(draws), -1)
        if not len(draws):
            continue
        if x.shape[1] != y.size:
            raise ValueError(f"control {kind!r} has {x.shape[1]} outcomes per draw but the target has {y.size}: "
                             "pair the same units.")
        keep = np.isfinite(y) & np.isfinite(x).all(0)
        if not keep.any():
            continue
        per_unit = x[:, keep].mean(0)
        diff, p = paired_bootstrap_diff(y[keep], per_unit, n_boot=n_boot, seed=seed)
        binary = np.isin(x[:, keep], (0.0, 1.0)).all() and np.isin(y[keep], (0.0, 1.0)).all()
        out[kind] = PairedControl(kind, len(draws), bootstrap_ci(per_unit, n_boot=n_boot, seed=seed), diff, p,
                                  verdict(diff, expected_sign=expected_sign) if math.isfinite(diff.low) else None,
                                  [mcnemar_test(y[keep], o) for o in x[:, keep]] if binary else [])
    return out
