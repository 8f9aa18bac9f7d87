"""Signed tests of a paper claim: one estimate, its interval, and both one-sided p-values.

Every estimator here returns a :class:`SignedTest`, which the claim registry
(:mod:`~reward_circuits.analysis.claims`) turns into evidence for one claim. Which test fits which
design:

* :func:`hierarchical_vs_random`: "X vs random sets" (ablation, dose, transfer, final reward,
  dopamine, IRM, SAE latents) with per-example outcomes of the target and of ``k`` random draws on
  the same examples. Examples and draws are resampled *together*, and a held-out draw plays the
  target: the null spread holds the random sets' own variance (one random set differs from the
  mean of the others), not only the examples'. The p-value refers the estimate to that spread with
  a t reference of ``k − 1`` degrees of freedom (the set-level variance rests on ``k`` draws).
* :func:`rank_vs_draws`: the observed statistic ranked among ``k`` random draws,
  ``p = (1 + #draws at least as extreme) / (k + 1)``; with 5 draws p is never below 1/6, with 19
  never below 0.05. Exact under exchangeability, whatever the distribution.
* :func:`paired_mean_test`: the mean of per-unit paired differences (or of a per-unit statistic
  against a null value). From :data:`MIN_BOOTSTRAP_UNITS` independent units up, a percentile
  bootstrap (:func:`~reward_circuits.analysis.stats.bootstrap_resamples`); below, an exact sign-flip
  permutation test (``scipy.stats.permutation_test``; ``method`` says which).
* :func:`paired_auc_test`: ``AUC(a) − AUC(b)`` of two scores of the same units (V(s0) vs the
  next-token probability): a paired bootstrap from :data:`MIN_BOOTSTRAP_UNITS` units, an exact
  paired rank-swap permutation test below.
* :func:`shift_vs_random`: how far a target condition moves the mean outcome from a baseline
  (``|mean(target − baseline)|``) against as many random conditions, draws and units resampled
  together (:func:`hierarchical_null`): "steering the value set moves accuracy more than a random set".
* :func:`overlap_vs_relabelling`: the IoU of two families of sets (task A's and task B's value
  neurons, one pair per probe seed) against joint random relabellings of B's items (within strata:
  magnitude-matched), which keep the seeds' dependence: exact under the null.
* :func:`length_controlled_correlation`: the correlation of a signal (V(s_t), a dopamine
  candidate) with a target after partialling out the position and the tokens to the end of the
  reply (the length control), with a cluster bootstrap over rollouts.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Sequence

import numpy as np
from jaxtyping import Float
from scipy import stats

from ..neurons import iou
from .stats import (auc_rows, binary_auc, bootstrap_resamples, bootstrap_weights, paired_bootstrap_auc_diff, pearson_columns,
                    percentile_interval)

MIN_BOOTSTRAP_UNITS = 20  # fewer independent units than this: an exact permutation test, no percentile bootstrap
MIN_RANK_DRAWS = 39  # a rank test reaches the one-sided alpha 0.025 (claims.verdicts.ALPHA) only from 39 draws up


@dataclass(frozen=True)
class SignedTest:
    """An estimate with its interval, and the one-sided p-values of "greater than the null" and of
    "less than the null". ``se`` is the standard error the power computation uses (None when the
    test has none, e.g. a rank test); ``df`` the degrees of freedom of a t reference (None: normal)."""

    estimate: float
    low: float
    high: float
    n: int
    unit: str
    p_greater: float
    p_less: float
    method: str
    se: float | None = None
    df: float | None = None
    notes: str = ""
    min_p: float = 0.0  # the smallest p the method can give (a rank among k draws: 1/(k+1))

    def p(self, direction: str) -> float:
        """The p-value of the claim's ``direction``: "greater", "less" or "two-sided"."""
        if direction == "greater":
            return self.p_greater
        if direction == "less":
            return self.p_less
        if direction == "two-sided":
            return float(min(1.0, 2 * min(self.p_greater, self.p_less)))
        raise ValueError(f"direction must be 'greater', 'less' or 'two-sided', got {direction!r}.")

    def to_dict(self) -> dict:
        return asdict(self)


def _t_test_from_se(estimate: float, se: float, df: float | None, n: int, unit: str, method: str,
                    level: float = 0.95, notes: str = "") -> SignedTest:
    """A :class:`SignedTest` from an estimate and its standard error (t reference with ``df``, or normal)."""
    ref = stats.t(df) if df is not None else stats.norm()
    if not (se > 0 and math.isfinite(se)):  # no spread to test against: no p (the verdict is inconclusive)
        return SignedTest(float(estimate), float(estimate), float(estimate), int(n), unit, math.nan, math.nan, method,
                          None, df, (notes + " zero spread: no test.").strip())
    z = estimate / se
    half = float(ref.ppf(0.5 + level / 2)) * se
    return SignedTest(float(estimate), float(estimate - half), float(estimate + half), int(n), unit,
                      float(ref.sf(z)), float(ref.cdf(z)), method, float(se), df, notes)


# ---------------------------------------------------------------------------------------------
# target vs random draws
# ---------------------------------------------------------------------------------------------
def hierarchical_null(controls: Float[np.ndarray, "k n"], n_boot: int = 2000, seed: int = 0,
                      statistic=np.mean) -> np.ndarray:
    """Replicates of "one random set minus the mean of the others" with examples and draws
    resampled together: per replicate, one resampled example index shared by every set, a held-out
    draw as the pseudo-target, and the remaining ``k − 1`` draws resampled with replacement."""
    c = np.asarray(controls, dtype=np.float64)
    k, n = c.shape
    if k < 2:
        raise ValueError(f"a hierarchical bootstrap needs at least 2 random draws, got {k}.")
    rng = np.random.default_rng(seed)
    held = rng.integers(0, k, size=n_boot)
    others = rng.integers(0, k - 1, size=(n_boot, k - 1))
    others = others + (others >= held[:, None])  # skip the held-out draw
    if statistic is np.mean:  # [boot, k]: each set's mean on the resample, from example multiplicities
        per_set = bootstrap_weights(n, n_boot, rng) @ c.T / n
    else:
        idx, _ = bootstrap_resamples(n, n_boot, seed)
        per_set = np.stack([[statistic(row[i]) for row in c] for i in idx])
    rows = np.arange(n_boot)
    return per_set[rows, held] - per_set[rows[:, None], others].mean(1)


def hierarchical_vs_random(target: Float[np.ndarray, " n"], controls: Float[np.ndarray, "k n"], n_boot: int = 2000,
                           seed: int = 0, unit: str = "examples") -> SignedTest:
    """``mean(target) − mean over draws of mean(control)`` on the same examples, tested against the
    random sets' own spread (:func:`hierarchical_null`, t reference with ``k − 1`` df).

    ``target[u]``: the outcome of example ``u`` under the target condition (e.g. the value set
    ablated); ``controls[j, u]``: under random draw ``j``. NaN examples are dropped everywhere."""
    y = np.asarray(target, dtype=np.float64).reshape(-1)
    c = np.atleast_2d(np.asarray(controls, dtype=np.float64))
    if c.shape[1] != y.size:
        raise ValueError(f"controls score {c.shape[1]} examples but the target {y.size}: pair the same examples.")
    keep = np.isfinite(y) & np.isfinite(c).all(0)
    y, c = y[keep], c[:, keep]
    k = c.shape[0]
    estimate = float(y.mean() - c.mean(1).mean())
    se = float(np.std(hierarchical_null(c, n_boot, seed), ddof=1))
    return _t_test_from_se(estimate, se, k - 1, y.size, unit,
                           f"hierarchical bootstrap ({n_boot} resamples of {y.size} {unit} and {k} random draws; "
                           f"t reference, {k - 1} df)")


def rank_vs_draws(observed: float, draws: Sequence[float], unit: str = "random draws") -> SignedTest:
    """The rank of ``observed`` among ``k`` random ``draws`` of the same statistic:
    ``p_greater = (1 + #draws ≥ observed) / (k + 1)``, ``p_less`` likewise with ≤. The estimate is
    ``observed − mean(draws)``, the interval the 2.5–97.5% range of ``observed − draw``. With
    fewer than :data:`MIN_RANK_DRAWS` draws the test cannot reach the one-sided α = 0.025 (the method says so)."""
    d = np.asarray(draws, dtype=np.float64)
    d = d[np.isfinite(d)]
    if d.size == 0:
        raise ValueError("rank_vs_draws needs at least one finite random draw.")
    k = d.size
    p_g = (1 + int(np.sum(d >= observed - 1e-12))) / (k + 1)
    p_l = (1 + int(np.sum(d <= observed + 1e-12))) / (k + 1)
    lo, hi = np.quantile(observed - d, [0.025, 0.975])
    note = "" if k >= MIN_RANK_DRAWS else f"only {k} draws: the smallest attainable p is 1/{k + 1} = {1 / (k + 1):.3f}."
    return SignedTest(float(observed - d.mean()), float(lo), float(hi), k, unit, float(p_g), float(p_l),
                      f"rank among {k} random draws, p = (1 + #at least as extreme)/(k + 1)",
                      float(d.std(ddof=1)) if k > 1 else None, None, note, 1 / (k + 1))


# ---------------------------------------------------------------------------------------------
# paired differences / one-sample means: bootstrap from 20 units, exact sign flips below
# ---------------------------------------------------------------------------------------------
def sign_flip_test(values: Float[np.ndarray, " n"], null: float = 0.0, unit: str = "units",
                   n_resamples: int = 100_000, seed: int = 0) -> SignedTest:
    """Exact sign-flip permutation test of ``mean(values) = null`` (every ``2^n`` sign pattern when
    ``2^n ≤ n_resamples``, else a random sample of them), via ``scipy.stats.permutation_test``.
    Estimate and interval (the t interval of the mean) are on the values' scale; the permutation
    p-values are what the verdict uses."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    v = v[np.isfinite(v)] - null
    if v.size < 2:
        raise ValueError(f"a sign-flip test needs at least 2 units, got {v.size}.")
    res = {alt: stats.permutation_test((v,), np.mean, permutation_type="samples", alternative=alt,
                                       n_resamples=n_resamples, rng=np.random.default_rng(seed)).pvalue
           for alt in ("greater", "less")}
    exact = 2 ** v.size <= n_resamples
    se = float(v.std(ddof=1) / math.sqrt(v.size))
    t = _t_test_from_se(float(v.mean()), se, v.size - 1, v.size, unit, "")
    return SignedTest(t.estimate + null, t.low + null, t.high + null, v.size, unit, float(res["greater"]), float(res["less"]),
                      f"{'exact' if exact else 'Monte Carlo'} sign-flip permutation test ({v.size} {unit} < "
                      f"{MIN_BOOTSTRAP_UNITS}: no percentile bootstrap); t interval", se, v.size - 1,
                      min_p=2.0 ** -v.size if exact else 0.0)


def paired_mean_test(values: Float[np.ndarray, " n"], null: float = 0.0, unit: str = "units",
                     groups: Sequence | None = None, n_boot: int = 2000, seed: int = 0) -> SignedTest:
    """Mean of per-unit ``values`` (paired differences, or a per-unit statistic) against ``null``.

    From :data:`MIN_BOOTSTRAP_UNITS` independent units (groups when ``groups`` repeat): a
    percentile bootstrap interval (:func:`~reward_circuits.analysis.stats.bootstrap_resamples`) and
    one-sided p-values from the share of replicates on each side of ``null``. Below: the exact
    sign-flip test (:func:`sign_flip_test`) on the per-group means."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if groups is not None:
        keys = list(groups)
        if len(keys) != v.size:
            raise ValueError(f"groups has {len(keys)} entries for {v.size} units: give one group per unit.")
    keep = np.isfinite(v)
    g = None if groups is None else [k for k, ok in zip(groups, keep) if ok]
    v = v[keep]
    n_groups = v.size if g is None else len(set(g))
    if n_groups < MIN_BOOTSTRAP_UNITS:
        if g is not None:
            v = np.array([v[[i for i, k in enumerate(g) if k == key]].mean() for key in dict.fromkeys(g)])
        return sign_flip_test(v, null, unit, seed=seed)
    idx, n = bootstrap_resamples(v.size, n_boot, seed, g)
    boots = v[idx].mean(1) if isinstance(idx, np.ndarray) else np.array([v[i].mean() for i in idx])
    iv = percentile_interval(float(v.mean()), boots, n)
    p_g = (1 + np.sum(boots <= null)) / (boots.size + 1)
    p_l = (1 + np.sum(boots >= null)) / (boots.size + 1)
    return SignedTest(iv.estimate, iv.low, iv.high, iv.n, unit, float(p_g), float(p_l),
                      f"percentile bootstrap over {iv.n} {unit} ({n_boot} resamples)", float(boots.std(ddof=1)))


def seeds_by_units_test(diffs: Float[np.ndarray, "seeds units"], null: float = 0.0, n_boot: int = 4000, seed: int = 0,
                        unit: str = "prompts") -> SignedTest:
    """The mean of paired differences measured on every (training seed, unit) cell, e.g. held-out
    correctness of DPO + neuron reward minus plain DPO trained with the same seed, per prompt: seeds
    and units are resampled *together* (a crossed bootstrap: seeds and units each drawn with
    replacement, :func:`~reward_circuits.analysis.stats.bootstrap_weights`), so the seeds' own
    variance is inside the interval, not only the units'. The estimate is referred to that spread
    with a t reference of ``S − 1`` df (the seed variance rests on ``S`` seeds; with few seeds the
    quantile, not the bootstrap's percentiles, carries that uncertainty). One seed: the units'
    bootstrap alone (:func:`paired_mean_test`), and the method says that seed variance is not in it."""
    d = np.atleast_2d(np.asarray(diffs, dtype=np.float64))
    d = d[:, np.isfinite(d).all(0)]
    n_seeds, n_units = d.shape
    if n_units < 2:
        raise ValueError(f"seeds_by_units_test needs >= 2 {unit} with a finite difference in every seed, got {n_units}.")
    if n_seeds == 1:
        t = paired_mean_test(d[0], null, unit, n_boot=n_boot, seed=seed)
        return SignedTest(t.estimate, t.low, t.high, t.n, unit, t.p_greater, t.p_less,
                          t.method + "; one training seed: seed variance is not in the interval", t.se, t.df,
                          t.notes, t.min_p)
    rng = np.random.default_rng(seed)
    w_seed, w_unit = bootstrap_weights(n_seeds, n_boot, rng), bootstrap_weights(n_units, n_boot, rng)
    boots = ((w_seed @ d) * w_unit).sum(1) / (n_seeds * n_units)  # each replicate's mean over its (seed, unit) grid
    t = _t_test_from_se(float(d.mean()) - null, float(np.std(boots, ddof=1)), n_seeds - 1, n_seeds * n_units,
                        f"seeds × {unit}", f"crossed bootstrap of {n_seeds} seeds × {n_units} {unit} ({n_boot} resamples; "
                        f"t reference, {n_seeds - 1} df: the seed variance rests on {n_seeds} seeds)")
    return replace(t, estimate=t.estimate + null, low=t.low + null, high=t.high + null)


# ---------------------------------------------------------------------------------------------
# paired AUCs, shifts against random conditions, overlaps against relabellings
# ---------------------------------------------------------------------------------------------
def paired_auc_test(labels: Sequence[float], scores_a: Sequence[float], scores_b: Sequence[float], n_boot: int = 2000,
                    seed: int = 0, unit: str = "prompts", n_resamples: int = 9999) -> SignedTest:
    """``AUC(a) − AUC(b)`` of two scores of the same units against binary ``labels`` (units where
    either score is NaN are dropped). From :data:`MIN_BOOTSTRAP_UNITS` units: the paired stratified
    bootstrap (:func:`~reward_circuits.analysis.stats.paired_bootstrap_auc_diff`), its two-sided p
    halved on the estimate's side. Below: an exact paired permutation test that swaps the two
    scores' ranks within units (``scipy.stats.permutation_test``, ``permutation_type="samples"``;
    ranks put both scores on one scale), with a t interval from the permutation spread."""
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    a = np.asarray(scores_a, dtype=np.float64).reshape(-1)
    b = np.asarray(scores_b, dtype=np.float64).reshape(-1)
    if not (y.shape == a.shape == b.shape):
        raise ValueError(f"labels {y.size}, scores_a {a.size} and scores_b {b.size}: give one of each per unit.")
    keep = np.isfinite(y) & np.isfinite(a) & np.isfinite(b)
    y, a, b = y[keep], a[keep], b[keep]
    if y.size < 2 or np.unique(y).size < 2:
        return SignedTest(math.nan, math.nan, math.nan, int(y.size), unit, math.nan, math.nan,
                          "paired AUC difference", notes=f"{y.size} usable units, one class only: no AUC, no test.")
    est = binary_auc(y, a, what="scores a") - binary_auc(y, b, what="scores b")
    if y.size >= MIN_BOOTSTRAP_UNITS:
        iv, p2 = paired_bootstrap_auc_diff(y, a, b, n_boot=n_boot, seed=seed)
        p2 = min(1.0, max(float(p2), 1 / (n_boot + 1)))
        p_g, p_l = (p2 / 2, 1 - p2 / 2) if est > 0 else (1 - p2 / 2, p2 / 2) if est < 0 else (0.5, 0.5)
        return SignedTest(float(est), iv.low, iv.high, iv.n, unit, p_g, p_l,
                          f"paired stratified bootstrap of the AUC difference over {iv.n} {unit} ({n_boot} resamples)",
                          float((iv.high - iv.low) / 3.92))
    ra, rb = stats.rankdata(a), stats.rankdata(b)

    def diff(x, z, axis=-1):  # rows of permuted (a, b) ranks: [..., n] → [...]
        x, z = np.moveaxis(x, axis, -1), np.moveaxis(z, axis, -1)
        flat = auc_rows(y, x.reshape(-1, y.size)) - auc_rows(y, z.reshape(-1, y.size))
        return flat.reshape(x.shape[:-1])

    res = {alt: stats.permutation_test((ra, rb), diff, permutation_type="samples", alternative=alt, vectorized=True,
                                       n_resamples=n_resamples, rng=np.random.default_rng(seed))
           for alt in ("greater", "less")}
    se = float(np.std(res["greater"].null_distribution, ddof=1))
    t = _t_test_from_se(float(est), se, y.size - 1, y.size, unit, "")
    exact = 2 ** y.size <= n_resamples
    return SignedTest(float(est), t.low, t.high, int(y.size), unit, float(res["greater"].pvalue), float(res["less"].pvalue),
                      f"{'exact' if exact else 'Monte Carlo'} paired permutation test (ranks swapped within "
                      f"{unit}; {y.size} < {MIN_BOOTSTRAP_UNITS}: no bootstrap); t interval from its spread", se,
                      y.size - 1, min_p=2.0 ** -y.size if exact else 0.0)


def shift_vs_random(target: Float[np.ndarray, " n"], controls: Float[np.ndarray, "k n"],
                    baseline: Float[np.ndarray, " n"], n_boot: int = 2000, seed: int = 0,
                    unit: str = "examples") -> SignedTest:
    """``|mean(target − baseline)| − mean over draws of |mean(control − baseline)|`` on the same
    units: does the target condition move the outcome further from the baseline than random
    conditions do (either way)? Tested against :func:`hierarchical_null` with that statistic (a
    held-out draw as the pseudo-target, units and draws resampled together; t reference, ``k − 1`` df)."""
    y = np.asarray(target, dtype=np.float64).reshape(-1)
    c = np.atleast_2d(np.asarray(controls, dtype=np.float64))
    base = np.asarray(baseline, dtype=np.float64).reshape(-1)
    if not (c.shape[1] == y.size == base.size):
        raise ValueError(f"target {y.size}, controls {c.shape[1]} and baseline {base.size} units: pair the same units.")
    keep = np.isfinite(y) & np.isfinite(base) & np.isfinite(c).all(0)
    shift_t, shift_c = y[keep] - base[keep], c[:, keep] - base[keep]
    k = shift_c.shape[0]
    estimate = float(abs(shift_t.mean()) - np.abs(shift_c.mean(1)).mean())
    null = hierarchical_null(shift_c, n_boot, seed, statistic=lambda row: abs(row.mean()))
    return _t_test_from_se(estimate, float(np.std(null, ddof=1)), k - 1, int(keep.sum()), unit,
                           f"hierarchical bootstrap of |shift from the baseline| ({n_boot} resamples of "
                           f"{int(keep.sum())} {unit} and {k} random draws; t reference, {k - 1} df)")


def overlap_vs_relabelling(sets_a: Sequence[Sequence[int]], sets_b: Sequence[Sequence[int]], d: int,
                           n_draws: int = 999, seed: int = 0, strata: Sequence[int] | None = None,
                           unit: str = "probe seeds") -> SignedTest:
    """Mean IoU of paired sets (``sets_a[s]`` with ``sets_b[s]``, e.g. two tasks' value neurons
    from probes of seed pair ``s``) against ``n_draws`` joint random relabellings of the ``d`` items
    of every B set (one permutation per draw, applied to all seeds: their dependence is kept;
    within ``strata`` when given: a magnitude-matched null). p is the observed mean's rank among the
    draws' (exact under the null); the interval is over the seeds (t, ``S − 1`` df) of the per-seed
    IoU minus the null mean; ``se`` is the null's spread (what power is computed from)."""
    if len(sets_a) != len(sets_b) or not sets_a:
        raise ValueError(f"{len(sets_a)} A sets and {len(sets_b)} B sets: give one pair per seed.")
    rng = np.random.default_rng(seed)
    per_seed = np.array([iou(x, z) for x, z in zip(sets_a, sets_b)])
    groups = [np.arange(d)] if strata is None else [np.flatnonzero(np.asarray(strata) == g) for g in np.unique(strata)]
    null = np.empty(n_draws)
    for i in range(n_draws):
        perm = np.arange(d)
        for g in groups:
            perm[g] = rng.permutation(g)
        null[i] = np.mean([iou(x, perm[np.asarray(z, dtype=np.int64)].tolist()) for x, z in zip(sets_a, sets_b)])
    rank = rank_vs_draws(float(per_seed.mean()), null, unit="relabellings")
    diffs, s = per_seed - null.mean(), per_seed.size
    if s > 1 and diffs.std(ddof=1) > 0:
        half = float(stats.t.ppf(0.975, s - 1) * diffs.std(ddof=1) / math.sqrt(s))
        low, high, how = diffs.mean() - half, diffs.mean() + half, f"t interval over the {s} seeds"
    else:
        low, high, how = rank.low, rank.high, "interval: the relabellings' range (no spread over seeds)"
    return SignedTest(rank.estimate, float(low), float(high), s, unit, rank.p_greater, rank.p_less,
                      f"mean IoU over {s} probe seed pairs ranked among {n_draws} joint "
                      f"{'within-stratum ' if strata is not None else ''}relabellings; {how}",
                      float(null.std(ddof=1)), None, f"per-seed IoU {np.round(per_seed, 4).tolist()}", rank.min_p)


# ---------------------------------------------------------------------------------------------
# the length control: position and tokens-to-end partialled out
# ---------------------------------------------------------------------------------------------
def residualize(x: Float[np.ndarray, "n m"], confounds: Float[np.ndarray, "n c"]) -> Float[np.ndarray, "n m"]:
    """``x`` minus its least-squares fit on ``[1, confounds]`` (column by column)."""
    x = np.asarray(x, dtype=np.float64)
    basis = np.c_[np.ones(x.shape[0]), np.asarray(confounds, dtype=np.float64).reshape(x.shape[0], -1)]
    coef, *_ = np.linalg.lstsq(basis, x, rcond=None)
    return x - basis @ coef


def length_confounds(positions: Float[np.ndarray, " n"], tokens_to_end: Float[np.ndarray, " n"]) -> np.ndarray:
    """The length control's confounds: position, tokens to the end of the reply, and both logs
    (``[n, 4]``), so a signal that is any smooth monotone function of either is removed."""
    pos = np.asarray(positions, dtype=np.float64).reshape(-1)
    end = np.asarray(tokens_to_end, dtype=np.float64).reshape(-1)
    if pos.shape != end.shape:
        raise ValueError(f"{pos.size} positions but {end.size} tokens-to-end values: give one of each per state.")
    return np.c_[pos, end, np.log1p(np.abs(pos)), np.log1p(np.abs(end))]


@dataclass(frozen=True)
class LengthControlled:
    """Raw and length-controlled correlation of a signal with a target, each a :class:`SignedTest`
    (cluster bootstrap over rollouts)."""

    raw: SignedTest
    controlled: SignedTest

    def to_dict(self) -> dict:
        return {"raw": self.raw.to_dict(), "controlled": self.controlled.to_dict()}


def _corr_test(x: np.ndarray, y: np.ndarray, groups: Sequence, n_boot: int, seed: int, what: str) -> SignedTest:
    r = float(pearson_columns(x[:, None], y)[0])
    idx, n = bootstrap_resamples(x.size, n_boot, seed, groups)
    boots = np.array([pearson_columns(x[i][:, None], y[i])[0] for i in idx], dtype=np.float64)
    boots = boots[np.isfinite(boots)]
    if boots.size == 0:
        return SignedTest(r, math.nan, math.nan, n, "rollouts", math.nan, math.nan, f"{what}: no bootstrap (too few rollouts)")
    lo, hi = np.quantile(boots, [0.025, 0.975])
    return SignedTest(r, float(lo), float(hi), n, "rollouts", float((1 + np.sum(boots <= 0)) / (boots.size + 1)),
                      float((1 + np.sum(boots >= 0)) / (boots.size + 1)),
                      f"{what}; cluster bootstrap over {n} rollouts ({n_boot} resamples)", float(boots.std(ddof=1)))


def length_controlled_correlation(signal: Float[np.ndarray, " n"], target: Float[np.ndarray, " n"],
                                  positions: Float[np.ndarray, " n"], tokens_to_end: Float[np.ndarray, " n"],
                                  groups: Sequence, n_boot: int = 1000, seed: int = 0) -> LengthControlled:
    """Pearson correlation of ``signal`` (V(s_t), a dopamine candidate's activation) with
    ``target`` (the reward, δ) over states, raw and with :func:`length_confounds` partialled out of
    both (the length control); intervals and p-values from a cluster bootstrap over ``groups``
    (one rollout id per state: states of a rollout are not independent)."""
    x = np.asarray(signal, dtype=np.float64).reshape(-1)
    y = np.asarray(target, dtype=np.float64).reshape(-1)
    conf = length_confounds(positions, tokens_to_end)
    if not (x.size == y.size == conf.shape[0] == len(groups)):
        raise ValueError(f"signal {x.size}, target {y.size}, confounds {conf.shape[0]} and groups {len(groups)} "
                         "must have one entry per state.")
    keep = np.isfinite(x) & np.isfinite(y) & np.isfinite(conf).all(1)
    x, y, conf, g = x[keep], y[keep], conf[keep], [k for k, ok in zip(groups, keep) if ok]
    xr, yr = residualize(x[:, None], conf)[:, 0], residualize(y[:, None], conf)[:, 0]
    return LengthControlled(_corr_test(x, y, g, n_boot, seed, "Pearson r"),
                            _corr_test(xr, yr, g, n_boot, seed, "partial Pearson r given position and tokens to end"))
