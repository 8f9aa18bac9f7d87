"""Statistics shared by every analysis: AUC, column-wise correlations, top-k ranking,
bootstrap intervals and paired tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
from jaxtyping import Float
from scipy import stats
from sklearn.metrics import roc_auc_score
from torch import Tensor

from ..errors import ProbeError


def binary_auc(rewards: np.ndarray, scores: np.ndarray, what: str = "V(s_0)") -> float:
    """``roc_auc_score(rewards, scores)`` with a clear error when only one class is present."""
    rewards = np.asarray(rewards).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if rewards.shape != scores.shape:
        raise ProbeError(f"{rewards.size} rewards but {scores.size} scores.")
    classes = np.unique(rewards)
    if classes.size < 2:
        raise ProbeError(
            f"AUC of {what} is undefined: all {rewards.size} evaluated rollouts have reward "
            f"{classes.tolist()}. Evaluate on rollouts with both rewards (use store.split, which stratifies)."
        )
    if not np.isfinite(scores).all():
        raise ProbeError(f"{what} contains NaN or inf.")
    return float(roc_auc_score(rewards, scores))


def auc_rows(labels: Sequence[float] | np.ndarray, scores: Float[np.ndarray, "m n"]) -> Float[np.ndarray, " m"]:
    """AUC of every row of ``scores`` against binary ``labels`` (Mann-Whitney U from average ranks;
    equals ``roc_auc_score`` row by row, ties counted one half). ``labels`` is one vector shared by
    every row, or an ``[m, n]`` array with each row's own labels (e.g. bootstrap resamples of
    rollouts). NaN for a row whose labels hold one class."""
    s = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    y = np.asarray(labels)
    if y.ndim == 2:
        if y.shape != s.shape:
            raise ProbeError(f"labels of shape {y.shape} for scores of shape {s.shape}: give one label row per score row.")
        y = y == 1
        n1, n0 = y.sum(1), (~y).sum(1)
        ranks = stats.rankdata(s, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            auc = ((ranks * y).sum(1) - n1 * (n1 + 1) / 2) / (n1 * n0)
        return np.where((n1 > 0) & (n0 > 0), auc, np.nan)
    y = y.reshape(-1) == 1
    if s.shape[1] != y.size:
        raise ProbeError(f"{y.size} labels but score rows of length {s.shape[1]}.")
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 == 0 or n0 == 0:
        return np.full(s.shape[0], np.nan)
    ranks = stats.rankdata(s, axis=1)
    return (ranks[:, y].sum(1) - n1 * (n1 + 1) / 2) / (n1 * n0)


def finite_mean(values: Sequence[float] | np.ndarray) -> float:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else math.nan


def pearson_columns(x: Float[np.ndarray, "n m"], y: Float[np.ndarray, " n"]) -> Float[np.ndarray, " m"]:
    """Pearson correlation of every column of ``x`` with ``y`` (NaN for a constant column)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    xc = x - x.mean(0)
    yc = y - y.mean()
    denom = np.sqrt((xc**2).sum(0) * (yc**2).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (xc * yc[:, None]).sum(0) / denom
    return np.where(denom > 0, r, np.nan)


def partial_pearson_columns(x: Float[np.ndarray, "n m"], y: Float[np.ndarray, " n"],
                            control: Float[np.ndarray, " n"]) -> Float[np.ndarray, " m"]:
    """Partial correlation of every column of ``x`` with ``y`` given ``control`` (both residualised
    on ``[1, control]`` by least squares). With ``control = V(s_t)`` this separates δ-tracking from
    V-tracking: since ``δ(s_t) = γV(s_t) − V(s_(t−1))`` contains ``V(s_t)``, a pure value dimension
    has a non-zero raw correlation with δ but a partial correlation near 0."""
    x = np.asarray(x, dtype=np.float64)
    basis = np.c_[np.ones(len(control)), np.asarray(control, dtype=np.float64)]
    coef_x, *_ = np.linalg.lstsq(basis, x, rcond=None)
    coef_y, *_ = np.linalg.lstsq(basis, np.asarray(y, dtype=np.float64), rcond=None)
    return pearson_columns(x - basis @ coef_x, y - basis @ coef_y)


def spearman_columns(x: Float[np.ndarray, "n m"], y: Float[np.ndarray, " n"]) -> Float[np.ndarray, " m"]:
    """Spearman correlation of every column of ``x`` with ``y`` (average ranks for ties; equals
    ``scipy.stats.spearmanr`` column by column)."""
    return pearson_columns(stats.rankdata(x, axis=0), stats.rankdata(y))



def rank_by_score(scores: Float[Tensor, " d"] | np.ndarray, nonfinite: Literal["raise", "last"] = "raise") -> np.ndarray:
    """Indices sorted by score, best first; ties by lower index (deterministic). The one top-k
    ranking of the package.

    ``nonfinite="raise"`` refuses NaN/inf; ``"last"`` ranks NaN and −inf after every finite score
    (and +inf before), for rankings where some dimensions have no score."""
    s = np.asarray(scores.detach().cpu() if isinstance(scores, Tensor) else scores, dtype=np.float64).reshape(-1)
    if not np.isfinite(s).all():
        if nonfinite == "raise":
            raise ValueError("scores contain NaN or inf; pass nonfinite='last' to rank them last.")
        s = np.where(np.isnan(s), -np.inf, s)
    return np.lexsort((np.arange(s.size), -s))



def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample std (ddof=1; 0.0 for a single value, NaN for none)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return math.nan, math.nan
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


# ---------------------------------------------------------------------------------------------
# Uncertainty: bootstrap intervals, paired tests, verdicts
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Interval:
    """A point estimate with a (percentile) bootstrap interval over ``n`` resampled units."""

    estimate: float
    low: float
    high: float
    n: int
    level: float = 0.95

    def to_dict(self) -> dict:
        return {"estimate": self.estimate, "low": self.low, "high": self.high, "n": self.n, "level": self.level}

    def __str__(self) -> str:
        return f"{self.estimate:.3f} [{self.low:.3f}, {self.high:.3f}] (n={self.n})"

    def excludes(self, value: float) -> bool:
        return not (self.low <= value <= self.high)


def hanley_mcneil_se(auc: float, n_positive: float, n_negative: float) -> float:
    """The standard error of an AUC from ``n_positive`` and ``n_negative`` units (Hanley & McNeil
    1982, exponential approximation of Q1, Q2): what sizes a held-out set before any run; a run's
    own interval is its bootstrap's (:func:`bootstrap_auc_ci`)."""
    if not 0 < auc < 1 or n_positive < 1 or n_negative < 1:
        raise ValueError(f"hanley_mcneil_se needs 0 < auc < 1 and >= 1 unit per class, got auc={auc}, "
                         f"n_positive={n_positive}, n_negative={n_negative}.")
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    var = auc * (1 - auc) + (n_positive - 1) * (q1 - auc**2) + (n_negative - 1) * (q2 - auc**2)
    return float(math.sqrt(var / (n_positive * n_negative)))


def percentile_interval(estimate: float, boots: np.ndarray, n: int, level: float = 0.95) -> Interval:
    """The percentile interval of bootstrap replicates ``boots`` around ``estimate`` (non-finite
    replicates dropped; NaN bounds when none is left). The one place replicates become an interval."""
    b = np.asarray(boots, dtype=np.float64).reshape(-1)
    b = b[np.isfinite(b)]
    a = (1 - level) / 2
    low, high = (float(np.quantile(b, a)), float(np.quantile(b, 1 - a))) if b.size else (math.nan, math.nan)
    return Interval(float(estimate), low, high, int(n), level)


def binomial_interval(successes: int, n: int, level: float = 0.95,
                      method: Literal["wilson", "exact"] = "wilson") -> Interval:
    """A proportion ``successes / n`` with its ``scipy.stats.binomtest(...).proportion_ci`` interval:
    Wilson score (``"wilson"``) or Clopper-Pearson (``"exact"``). The one home of a binomial interval."""
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"binomial_interval needs n >= 1 trials, got {n!r}.")
    if not 0 <= successes <= n:
        raise ValueError(f"binomial_interval: successes must lie in [0, n={n}], got {successes!r}.")
    if method not in ("wilson", "exact"):
        raise ValueError(f"binomial_interval: method must be 'wilson' or 'exact', got {method!r}.")
    ci = stats.binomtest(int(successes), int(n)).proportion_ci(confidence_level=level, method=method)
    return Interval(float(successes / n), float(ci.low), float(ci.high), int(n), level)


def bootstrap_weights(n_groups: int, n_boot: int, rng: np.random.Generator) -> Float[np.ndarray, "boot groups"]:
    """Multiplicity of each group in ``n_boot`` resamples of ``n_groups`` groups drawn with
    replacement (``[n_boot, n_groups]``, rows sum to ``n_groups``): a cluster bootstrap for
    statistics computed from per-group sums."""
    draws = rng.integers(0, n_groups, size=(n_boot, n_groups))
    counts = np.zeros((n_boot, n_groups))
    np.add.at(counts, (np.arange(n_boot)[:, None], draws), 1.0)
    return counts


MIN_GROUPS = 5  # fewer independent groups than this: a cluster bootstrap gives no interval


def bootstrap_resamples(n_units: int, n_boot: int, seed: int | np.random.SeedSequence = 0,
                        groups: Sequence | None = None) -> tuple[list[np.ndarray] | np.ndarray, int]:
    """Index arrays of ``n_boot`` bootstrap resamples of ``n_units`` units, and the number of
    independent units they rest on (the ``n`` of an interval).

    Units are drawn with replacement; with ``groups`` (one hashable per unit: the prompt, the
    experiment) in which some units share a group, whole groups are drawn instead (a cluster
    bootstrap: units of one group are not independent evidence) and ``n`` is the number of groups.
    All-distinct groups give exactly the unit resamples. Fewer than :data:`MIN_GROUPS` groups give no
    resamples (the interval is NaN, its verdict inconclusive): two or three groups have a handful of
    distinct resamples, whose spread is no interval and can be narrower than the truth."""
    rng = np.random.default_rng(seed)
    if groups is not None:
        gid = group_ids(list(groups))
        if gid.size != n_units:
            raise ValueError(f"groups has {gid.size} entries for {n_units} units: give one group per unit.")
        n_groups = int(gid.max()) + 1 if gid.size else 0
        if n_groups < n_units:
            if n_groups < MIN_GROUPS:
                return [], n_groups
            members = [np.flatnonzero(gid == g) for g in range(n_groups)]
            draws = rng.integers(0, n_groups, size=(n_boot, n_groups))
            return [np.concatenate([members[g] for g in row]) for row in draws], n_groups
    return rng.integers(0, n_units, size=(n_boot, n_units)), n_units


def bootstrap_ci(values: Sequence[float] | np.ndarray, statistic=np.mean, n_boot: int = 2000, level: float = 0.95,
                 seed: int = 0, groups: Sequence | None = None) -> Interval:
    """Percentile bootstrap interval of ``statistic`` over the units of ``values`` (resampled with
    replacement). ``values`` may be 2-D (units × columns); ``statistic`` then gets the resampled rows.
    Replicates where ``statistic`` is not finite are dropped.

    ``groups`` (one hashable per unit): when some units share a group (events of one experiment,
    rollouts of one prompt), whole groups are resampled (:func:`bootstrap_resamples`) and ``n`` is
    the number of groups."""
    v = np.asarray(values, dtype=np.float64)
    if v.shape[0] == 0:
        raise ValueError("bootstrap_ci needs at least one value.")
    idx, n = bootstrap_resamples(v.shape[0], n_boot, seed, groups)
    boots = np.array([statistic(v[i]) for i in idx], dtype=np.float64)
    return percentile_interval(float(statistic(v)), boots, n, level)


def _stratified_auc_boots(labels: np.ndarray, score_sets: Sequence[np.ndarray], n_boot: int,
                          seed: int | np.random.SeedSequence, block: int = 256) -> list[np.ndarray]:
    """AUC of each score vector on the same ``n_boot`` stratified resamples (positives and negatives
    resampled separately: every replicate has both classes, in the original class counts)."""
    pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels != 1)
    rng = np.random.default_rng(seed)
    resampled_labels = np.r_[np.ones(pos.size), np.zeros(neg.size)]
    out = [np.empty(n_boot) for _ in score_sets]
    for lo in range(0, n_boot, block):
        m = min(block, n_boot - lo)
        idx = np.concatenate([rng.choice(pos, (m, pos.size)), rng.choice(neg, (m, neg.size))], axis=1)
        for boots, s in zip(out, score_sets):
            boots[lo:lo + m] = auc_rows(resampled_labels, s[idx])
    return out


def _cluster_auc_boots(labels: np.ndarray, score_sets: Sequence[np.ndarray], gid: np.ndarray, n_boot: int,
                       seed: int, block: int = 256) -> list[np.ndarray]:
    """AUC of each score vector on the same ``n_boot`` resamples of whole groups (``gid``: group id
    per unit, ``0..G-1``); replicates that lack a class are dropped.

    A resample that draws group g c times holds c copies of its units, so its AUC is the
    Mann-Whitney AUC with unit weights c (ties count 1/2): computed for a block of replicates at
    once from the units sorted by score, not by concatenating copies."""
    n_groups = int(gid.max()) + 1
    weights = bootstrap_weights(n_groups, n_boot, np.random.default_rng(seed))
    is_pos = labels == 1
    # per score vector, once: units in score order, where each run of tied scores starts, each unit's run
    sorted_by = []
    for sc in score_sets:
        order = np.argsort(sc, kind="stable")
        new_run = np.r_[True, sc[order][1:] != sc[order][:-1]]
        sorted_by.append((order, np.flatnonzero(new_run), np.cumsum(new_run) - 1))
    out: list[list[np.ndarray]] = [[] for _ in score_sets]
    for lo in range(0, n_boot, block):
        w = weights[lo:lo + block][:, gid]  # [replicate, unit]: copies of each unit
        w_pos, w_neg = w[:, is_pos].sum(1), w[:, ~is_pos].sum(1)
        keep = (w_pos > 0) & (w_neg > 0)
        w, w_pos, w_neg = w[keep], w_pos[keep], w_neg[keep]
        for boots, (order, starts, tie_run) in zip(out, sorted_by):
            w_sorted = w[:, order]
            block_neg = np.add.reduceat(w_sorted * (~is_pos[order]), starts, axis=1)
            below = np.cumsum(block_neg, axis=1) - block_neg
            credit = below[:, tie_run] + 0.5 * block_neg[:, tie_run]
            boots.append((w_sorted * is_pos[order] * credit).sum(1) / (w_pos * w_neg))
    return [np.concatenate(b) if b else np.empty(0) for b in out]


def _auc_boots(labels: np.ndarray, score_sets: Sequence[np.ndarray], groups: Sequence | None, n_boot: int,
               seed: int) -> tuple[list[np.ndarray], int]:
    """Bootstrap AUCs of each score vector on shared resamples, and the ``n`` they rest on: whole
    groups when ``groups`` repeat (cluster bootstrap, ``n`` = groups), else stratified units."""
    if groups is not None:
        keys = list(groups)
        if len(keys) != labels.size:
            raise ValueError(f"groups has {len(keys)} entries for {labels.size} units.")
        gid = group_ids(keys)
        n_groups = int(gid.max()) + 1 if gid.size else 0
        if n_groups < labels.size:
            return _cluster_auc_boots(labels, score_sets, gid, n_boot, seed), n_groups
    return _stratified_auc_boots(labels, score_sets, n_boot, seed), int(labels.size)


def group_ids(keys: Sequence) -> np.ndarray:
    """Consecutive integer ids ``0..G-1`` for hashable group keys, in order of first appearance."""
    index: dict = {}
    return np.asarray([index.setdefault(k, len(index)) for k in keys], dtype=np.int64)


def bootstrap_auc_ci(labels: Sequence[float], scores: Sequence[float], n_boot: int = 2000, level: float = 0.95,
                     seed: int = 0, groups: Sequence | None = None, what: str = "scores") -> Interval:
    """AUC with a stratified percentile bootstrap interval (positives and negatives resampled
    separately, so every replicate has both classes).

    ``groups`` (one hashable per unit, e.g. the prompt): when some units share a group (repeated
    prompts whose greedy rollouts are copies), whole groups are resampled instead (a cluster
    bootstrap; replicates that lack a class are dropped) and ``n`` is the number of groups: copies
    are not independent evidence. ``what`` names the scores in errors."""
    y = np.asarray(labels).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    est = binary_auc(y, s, what=what)
    (boots,), n = _auc_boots(y, [s], groups, n_boot, seed)
    return percentile_interval(est, boots, n, level)


def _two_sided_p(diffs: np.ndarray) -> float:
    """Two-sided bootstrap p-value of "no difference" from replicate differences (1.0 when every
    replicate is exactly 0, NaN when there are none)."""
    if diffs.size == 0:
        return math.nan
    return float(min(1.0, 2 * min((diffs <= 0).mean(), (diffs >= 0).mean()))) if np.any(diffs != 0) else 1.0


def _diff_interval(est: float, diffs: np.ndarray, n: int, level: float) -> tuple[Interval, float]:
    diffs = diffs[np.isfinite(diffs)]
    return percentile_interval(est, diffs, n, level), _two_sided_p(diffs)


def _resampled_aucs(labels: np.ndarray, scores: np.ndarray, idx, block: int = 256) -> np.ndarray:
    """AUC of ``scores`` against ``labels`` on each resample in ``idx`` (NaN where one class is missing)."""
    if isinstance(idx, np.ndarray):
        return np.concatenate([auc_rows(labels[idx[lo:lo + block]], scores[idx[lo:lo + block]])
                               for lo in range(0, len(idx), block)]) if len(idx) else np.empty(0)
    return np.array([auc_rows(labels[i], scores[i][None])[0] for i in idx], dtype=np.float64)


def paired_bootstrap_auc_diff(labels: Sequence[float], scores_a: Sequence[float], scores_b: Sequence[float],
                              n_boot: int = 2000, level: float = 0.95, seed: int = 0,
                              groups: Sequence | None = None, labels_b: Sequence[float] | None = None
                              ) -> tuple[Interval, float]:
    """Interval of ``AUC(a) − AUC(b)`` for two scorings of the *same* rollouts (one stratified
    resample of rollouts per replicate, scored both ways), and a two-sided bootstrap p-value.

    ``groups`` (one hashable per rollout, e.g. its prompt): when some share a group, whole groups are
    resampled (as in :func:`bootstrap_auc_ci`) and ``n`` is the number of groups.

    ``labels_b``: the units' own labels under ``b`` (the same prompts answered by two model
    versions, whose rewards may differ): units (or groups) are then resampled unstratified, whatever
    the labels, each side scored against its own labels, and replicates where either side lacks a
    class are dropped."""
    y = np.asarray(labels).reshape(-1)
    a = np.asarray(scores_a, dtype=np.float64).reshape(-1)
    b = np.asarray(scores_b, dtype=np.float64).reshape(-1)
    yb = y if labels_b is None else np.asarray(labels_b).reshape(-1)
    if not (a.shape == b.shape == y.shape == yb.shape):
        raise ValueError(f"paired scores differ in shape: labels {y.shape}, labels_b {yb.shape}, a {a.shape}, b {b.shape}.")
    est = binary_auc(y, a, what="scores a") - binary_auc(yb, b, what="scores b")
    if labels_b is None:
        (boots_a, boots_b), n = _auc_boots(y, [a, b], groups, n_boot, seed)
    else:
        idx, n = bootstrap_resamples(y.size, n_boot, seed, groups)
        boots_a, boots_b = _resampled_aucs(y, a, idx), _resampled_aucs(yb, b, idx)
    return _diff_interval(est, boots_a - boots_b, n, level)


def unpaired_bootstrap_auc_diff(labels_a: Sequence[float], scores_a: Sequence[float], labels_b: Sequence[float],
                                scores_b: Sequence[float], n_boot: int = 2000, level: float = 0.95,
                                seed: int = 0) -> tuple[Interval, float]:
    """Interval of ``AUC(a) − AUC(b)`` for two *unpaired* samples (different rollouts, e.g. two model
    versions on different prompts): independent stratified bootstraps of each side, and a two-sided
    bootstrap p-value. ``n`` is the smaller sample (the one that limits the interval)."""
    ya, sa = np.asarray(labels_a).reshape(-1), np.asarray(scores_a, dtype=np.float64).reshape(-1)
    yb, sb = np.asarray(labels_b).reshape(-1), np.asarray(scores_b, dtype=np.float64).reshape(-1)
    est = binary_auc(ya, sa, what="scores a") - binary_auc(yb, sb, what="scores b")
    seed_a, seed_b = np.random.SeedSequence(seed).spawn(2)  # independent streams: the two sides share no draw
    (boots_a,) = _stratified_auc_boots(ya, [sa], n_boot, seed_a)
    (boots_b,) = _stratified_auc_boots(yb, [sb], n_boot, seed_b)
    return _diff_interval(est, boots_a - boots_b, min(ya.size, yb.size), level)


def paired_bootstrap_diff(a: Sequence[float], b: Sequence[float], statistic=np.mean, n_boot: int = 2000,
                          level: float = 0.95, seed: int = 0, groups: Sequence | None = None) -> tuple[Interval, float]:
    """Interval of ``statistic(a) − statistic(b)`` over *paired* units (the same examples under two
    conditions), and a two-sided bootstrap p-value for "no difference".

    ``a`` and ``b`` may be 2-D (units × columns, e.g. a feature and its target): ``statistic`` then
    gets the resampled rows. ``groups`` (one hashable per unit): when some units share a group,
    whole groups are resampled (:func:`bootstrap_resamples`) and ``n`` is the number of groups."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in shape: {a.shape} vs {b.shape}; pair the same units.")
    if a.shape[0] == 0:
        raise ValueError("paired_bootstrap_diff needs at least one unit.")
    idx, n = bootstrap_resamples(a.shape[0], n_boot, seed, groups)
    diffs = np.array([statistic(a[i]) - statistic(b[i]) for i in idx], dtype=np.float64)
    return _diff_interval(float(statistic(a) - statistic(b)), diffs, n, level)


def mcnemar_test(a: Sequence[float], b: Sequence[float]) -> dict:
    """Exact McNemar test for paired binary outcomes (the same examples under conditions a and b).

    Returns the discordant counts ``a_only`` (a right, b wrong) and ``b_only`` and the two-sided p-value
    of the exact binomial test on them."""
    a = np.asarray(a).astype(bool)
    b = np.asarray(b).astype(bool)
    if a.shape != b.shape:
        raise ValueError(f"paired outcomes differ in shape: {a.shape} vs {b.shape}.")
    a_only, b_only = int((a & ~b).sum()), int((~a & b).sum())
    n = a_only + b_only
    p = 1.0 if n == 0 else float(stats.binomtest(a_only, n, 0.5).pvalue)
    return {"a_only": a_only, "b_only": b_only, "n": int(a.size), "p_value": p}


Verdict = Literal["reproduces", "does not reproduce", "inconclusive at this n"]


def verdict(effect: Interval, expected_sign: int = 1, null: float = 0.0) -> Verdict:
    """One line per paper claim that predicts ``effect`` on the side ``expected_sign`` of ``null``:
    ``reproduces`` when the whole interval lies on the predicted side, ``does not reproduce`` when it
    lies wholly on the other side, otherwise ``inconclusive at this n``."""
    if expected_sign not in (1, -1):
        raise ValueError("expected_sign must be +1 or -1.")
    lo, hi = (effect.low - null) * expected_sign, (effect.high - null) * expected_sign
    lo, hi = min(lo, hi), max(lo, hi)
    if lo > 0:
        return "reproduces"
    if hi < 0:
        return "does not reproduce"
    return "inconclusive at this n"
