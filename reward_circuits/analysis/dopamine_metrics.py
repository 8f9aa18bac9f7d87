"""Held-out, quantitative tests of dopamine neurons (beyond the paper's case studies):
correlation with δ, surprise AUC, random-set and permutation nulls, and the causal TD-trace change.

Conventions (alignment, trace lookups) are those of :mod:`reward_circuits.analysis.dopamine`.
"""

import math
import warnings
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Sequence

import numpy as np
from jaxtyping import Float, Int
from tqdm.auto import tqdm

from ..io import nan_to_none as _nan_to_none
from ..neurons import NeuronSet
from ..data.store import ActivationStore

from ..neurons import random_dims
from ..options import options_of
from .controls import random_subsets
from .dopamine_controls import MatchedNull, matched_correlation_null, matched_draws
from .dopamine import PermutationScheme, TraceLookup, event_positions, iter_rollout_acts, check_trace_length
from .resampling import length_controlled_correlation
from .stats import (Interval, Verdict, auc_rows, bootstrap_weights, finite_mean, partial_pearson_columns,
                    pearson_columns, percentile_interval, rank_by_score, spearman_columns, verdict)

# ---------------------------------------------------------------------------------------------
# Quantitative held-out metrics (beyond the paper)
# ---------------------------------------------------------------------------------------------








@dataclass
class GroupMetrics:
    """Held-out metrics of one set of dimensions (per dimension, and their means)."""

    hook: str
    dims: list[int]
    pearson_td: list[float]  # per-token Pearson(act(s_t), arrival-aligned δ at s_t), s_1..s_T
    spearman_td: list[float]
    pearson_value: list[float]  # per-token Pearson(act(s_t), V(s_t)), s_0..s_T
    partial_td_given_value: list[float]  # Pearson(act, δ) after regressing V(s_t) out of both, s_1..s_T
    auc_surprise: list[float]  # AUC of act at positive- vs negative-surprise event tokens
    mean_pearson_td: float = math.nan
    mean_abs_pearson_td: float = math.nan
    mean_spearman_td: float = math.nan
    mean_pearson_value: float = math.nan
    mean_abs_pearson_value: float = math.nan
    mean_partial_td_given_value: float = math.nan
    mean_auc_surprise: float = math.nan

    def __post_init__(self):
        self.mean_pearson_td = finite_mean(self.pearson_td)
        self.mean_abs_pearson_td = finite_mean(np.abs(self.pearson_td))
        self.mean_spearman_td = finite_mean(self.spearman_td)
        self.mean_pearson_value = finite_mean(self.pearson_value)
        self.mean_abs_pearson_value = finite_mean(np.abs(self.pearson_value))
        self.mean_partial_td_given_value = finite_mean(self.partial_td_given_value)
        self.mean_auc_surprise = finite_mean(self.auc_surprise)


@dataclass
class RandomBaseline:
    """Means over ``n_draws`` random sets of ``set_size`` non-candidate dims (mean and std across draws).

    Pearson statistics draw from all non-candidate dims of the hook; Spearman and AUC draw from a
    seeded pool of ``pool_size`` of them (``pool_*`` hold that pool's per-dimension values).
    """

    n_draws: int
    set_size: int
    seed: int
    mean_pearson_td: float
    std_pearson_td: float
    mean_abs_pearson_td: float
    std_abs_pearson_td: float
    mean_spearman_td: float
    std_spearman_td: float
    mean_pearson_value: float
    std_pearson_value: float
    mean_partial_td_given_value: float
    std_partial_td_given_value: float
    mean_auc_surprise: float
    std_auc_surprise: float
    pool_size: int
    pool_dims: list[int]
    # (1 + #draws whose mean |Pearson(act, δ)| ≥ the candidates') / (1 + n_draws): do the candidates
    # track δ better than any k dims of this hook? (Smooth activations beat a token shuffle anyway.)
    p_abs_vs_random: float
    pool_pearson_td: list[float]
    pool_pearson_value: list[float]
    pool_partial_td_given_value: list[float]
    pool_auc_surprise: list[float]


@dataclass
class PermutationResult:
    """Permutation test of ``statistic`` (observed on the held-out tokens) against shuffled δ."""

    statistic: str
    observed: float
    p_value: float
    n_permutations: int
    scheme: str
    seed: int
    null_mean: float
    null_std: float
    null_q95: float
    null_q99: float


@dataclass
class DopamineMetrics:
    """Held-out, quantitative evidence that some dims track the TD error (JSON via :meth:`to_dict`)."""

    hook: str
    n_test_rollouts: int
    n_test_tokens: int  # states with an arrival-aligned TD error (s_1..s_T of each rollout)
    n_test_states: int  # all states s_0..s_T (used for the correlation with V)
    n_positive_events: int  # held-out positive-surprise event tokens (AUC positives)
    n_negative_events: int
    candidates: GroupMetrics
    random: RandomBaseline
    value_neurons: GroupMetrics | None
    permutation: PermutationResult | None
    candidate_rank_by_test_pearson: list[int]  # 1 = highest held-out Pearson with δ among all d dims
    top_dims_by_test_pearson: list[int]
    candidates_z_vs_random: float  # (candidates' mean Pearson − random mean) / random std
    # mean |Pearson with δ| of the candidates − that of the random pool, bootstrap over held-out
    # rollouts (correlations recomputed per replicate), and the verdict on "candidates track δ more"
    abs_corr_vs_random: Interval | None = None
    verdict: Verdict | None = None
    matched: MatchedNull | None = None  # the same comparison against magnitude-matched random dims
    # raw and length-controlled correlations (position and tokens to the end partialled out):
    # {"dopamine": candidates' mean standardised activation vs δ, "value": V(s_t) vs the reward}
    length_control: dict | None = None

    def to_dict(self) -> dict:
        """Plain JSON-ready dict (NaN and inf become None)."""
        return _nan_to_none(asdict(self))


@dataclass
class _HeldOutScan:
    """Held-out states of one hook, rollout by rollout (rows of each rollout contiguous)."""

    dims: list[int]
    acts: Float[np.ndarray, "n_states m"]  # the gathered columns, float32
    td: Float[np.ndarray, " n_states"]  # arrival-aligned δ (NaN at s_0)
    value: Float[np.ndarray, " n_states"]
    rollout: Int[np.ndarray, " n_states"]
    step: Int[np.ndarray, " n_states"]
    row_of_s0: dict[int, int]
    pearson_td_all: Float[np.ndarray, " d"] | None
    pearson_value_all: Float[np.ndarray, " d"] | None


def _scan_heldout(
    store: ActivationStore,
    hook: str,
    dims: Sequence[int],
    test_idx: Sequence[int],
    td_traces: TraceLookup,
    value_traces: TraceLookup,
    *,
    all_dim_stats: bool,
    batch_states: int,
) -> _HeldOutScan:
    d = store.d(hook)
    dims = [int(j) for j in dims]
    cols, tds, vals, rolls, steps = [], [], [], [], []
    row_of_s0: dict[int, int] = {}
    n_rows = 0
    # Streaming sums for Pearson over all d dims: δ-correlation on valid tokens, V-correlation on all states.
    s_td = {"n": 0, "x": np.zeros(d), "xx": np.zeros(d), "xy": np.zeros(d), "y": 0.0, "yy": 0.0}
    s_v = {"n": 0, "x": np.zeros(d), "xx": np.zeros(d), "xy": np.zeros(d), "y": 0.0, "yy": 0.0}
    for i, acts in iter_rollout_acts(store, hook, test_idx, batch_states=batch_states, desc=f"held-out {hook}"):
        n_states = acts.shape[0]
        td = np.asarray(td_traces[i], dtype=np.float64)
        v = np.asarray(value_traces[i], dtype=np.float64)
        check_trace_length(td, n_states, i, "TD-error")
        check_trace_length(v, n_states, i, "value")
        row_of_s0[i] = n_rows
        n_rows += n_states
        cols.append(acts[:, dims])
        tds.append(td)
        vals.append(v)
        rolls.append(np.full(n_states, i, dtype=np.int64))
        steps.append(np.arange(n_states, dtype=np.int64))
        if all_dim_stats:
            x = acts.astype(np.float64)
            ok = np.isfinite(td)
            for acc, xs, ys in ((s_td, x[ok], td[ok]), (s_v, x, v)):
                acc["n"] += len(ys)
                acc["x"] += xs.sum(0)
                acc["xx"] += (xs**2).sum(0)
                acc["xy"] += xs.T @ ys
                acc["y"] += ys.sum()
                acc["yy"] += (ys**2).sum()
    if not cols:
        raise ValueError("no held-out rollouts: test_idx is empty.")

    def pearson_from_sums(acc) -> np.ndarray:
        n = acc["n"]
        if n < 2:
            return np.full(d, np.nan)
        cov = acc["xy"] - acc["x"] * acc["y"] / n
        var_x = acc["xx"] - acc["x"] ** 2 / n
        var_y = acc["yy"] - acc["y"] ** 2 / n
        denom = np.sqrt(np.clip(var_x, 0, None) * max(var_y, 0.0))
        with np.errstate(invalid="ignore", divide="ignore"):
            r = cov / denom
        return np.where(denom > 1e-12 * max(n, 1), np.clip(r, -1, 1), np.nan)

    return _HeldOutScan(
        dims=dims,
        acts=np.concatenate(cols).astype(np.float32, copy=False),
        td=np.concatenate(tds), value=np.concatenate(vals),
        rollout=np.concatenate(rolls), step=np.concatenate(steps), row_of_s0=row_of_s0,
        pearson_td_all=pearson_from_sums(s_td) if all_dim_stats else None,
        pearson_value_all=pearson_from_sums(s_v) if all_dim_stats else None,
    )


def _event_rows(scan: _HeldOutScan, td_traces: TraceLookup, idx: Sequence[int], sign: int) -> np.ndarray:
    idx = [int(i) for i in idx if int(i) in scan.row_of_s0]
    positions = event_positions(td_traces, idx, k=1, sign=sign)
    return np.array([scan.row_of_s0[i] + int(p[0]) for i, p in zip(idx, positions) if len(p)], dtype=np.int64)


def _group_metrics(scan: _HeldOutScan, hook: str, columns: Sequence[int], pos_rows: np.ndarray,
                   neg_rows: np.ndarray) -> GroupMetrics:
    """Metrics of the gathered columns ``columns`` (positions into ``scan.dims``)."""
    columns = list(columns)
    if not columns:
        return GroupMetrics(hook=hook, dims=[], pearson_td=[], spearman_td=[], pearson_value=[],
                            partial_td_given_value=[], auc_surprise=[])
    ok = np.isfinite(scan.td)
    x_tok = scan.acts[ok][:, columns]
    pearson_td = pearson_columns(x_tok, scan.td[ok])
    spearman_td = spearman_columns(x_tok, scan.td[ok])
    pearson_value = pearson_columns(scan.acts[:, columns], scan.value)
    partial = partial_pearson_columns(x_tok, scan.td[ok], scan.value[ok])
    if len(pos_rows) and len(neg_rows):
        labels = np.r_[np.ones(len(pos_rows)), np.zeros(len(neg_rows))]
        events = scan.acts[np.r_[pos_rows, neg_rows]][:, columns].astype(np.float64)
        auc = auc_rows(labels, events.T).tolist()
    else:
        auc = [math.nan] * len(columns)
    return GroupMetrics(hook=hook, dims=[scan.dims[c] for c in columns], pearson_td=pearson_td.tolist(),
                        spearman_td=spearman_td.tolist(), pearson_value=pearson_value.tolist(),
                        partial_td_given_value=partial.tolist(), auc_surprise=auc)


def permutation_test_mean_abs_corr(
    acts: Float[np.ndarray, "n k"],
    td: Float[np.ndarray, " n"],
    groups: Int[np.ndarray, " n"],
    *,
    n_permutations: int = 1000,
    scheme: PermutationScheme = "within_rollout",
    seed: int = 0,
    chunk: int = 50,
) -> PermutationResult:
    """Is the mean |Pearson(act_j, δ)| over the k columns larger than when δ is shuffled?

    ``groups`` labels the rollout of each token; each rollout's tokens must be contiguous.
    Schemes (both keep every rollout's own multiset of δ, hence the global mean/std of δ):

    * ``"within_rollout"`` (default): permute δ among the tokens of the same rollout. Rollout-level
      associations (e.g. correct rollouts having both larger δ and a higher activation offset) are
      kept in the null, so only *token-level* alignment of activation and δ (the dopamine claim:
      it fires when the surprising token arrives) can give a small p. Assumes tokens of a rollout
      are exchangeable under H0.
    * ``"circular_shift"``: rotate each rollout's δ by a random offset; also keeps δ's temporal
      autocorrelation (use when activations are strongly autocorrelated), with fewer distinct draws.

    p-value = (1 + #{null >= observed}) / (1 + n_permutations); seeded and vectorised (matrix products
    over chunks of permutations).
    """
    x = np.asarray(acts, dtype=np.float64)
    y = np.asarray(td, dtype=np.float64)
    groups = np.asarray(groups)
    if x.ndim != 2 or x.shape[0] != y.shape[0] or groups.shape[0] != y.shape[0]:
        raise ValueError(f"acts {x.shape}, td {y.shape} and groups {groups.shape} must share their first axis.")
    if not np.isfinite(y).all():
        raise ValueError("td contains NaN: drop s_0 (and any undefined error) first.")
    run_starts = np.r_[0, np.flatnonzero(groups[1:] != groups[:-1]) + 1]
    if len(np.unique(groups)) != len(run_starts):
        raise ValueError("each rollout's tokens must be contiguous in groups.")
    run_lengths = np.diff(np.r_[run_starts, len(y)])
    run_of_token = np.repeat(np.arange(len(run_starts)), run_lengths)
    pos_in_run = np.arange(len(y)) - run_starts[run_of_token]

    xc = x - x.mean(0)
    x_norm = np.sqrt((xc**2).sum(0))
    keep = x_norm > 0
    xs = xc[:, keep] / x_norm[keep]
    yc = y - y.mean()
    y_norm = np.sqrt((yc**2).sum())
    name = "mean |Pearson(activation, TD error)| over the candidates"
    if y_norm == 0 or not keep.any():
        return PermutationResult(name, math.nan, math.nan, 0, scheme, seed, *(math.nan,) * 4)
    ys = yc / y_norm
    observed = float(np.abs(ys @ xs).mean())
    rng = np.random.default_rng(seed)
    null = np.empty(n_permutations)
    done = 0
    with tqdm(total=n_permutations, desc="permutations", leave=False, mininterval=2.0) as bar:
        while done < n_permutations:
            c = min(chunk, n_permutations - done)
            if scheme == "within_rollout":
                perm = np.argsort(run_of_token[None, :] + rng.random((c, len(y))), axis=1)
            elif scheme == "circular_shift":
                shifts = rng.integers(0, run_lengths[None, :], size=(c, len(run_lengths)))
                perm = run_starts[run_of_token] + (pos_in_run + shifts[:, run_of_token]) % run_lengths[run_of_token]
            else:
                raise ValueError(f"scheme must be 'within_rollout' or 'circular_shift', got {scheme!r}.")
            null[done : done + c] = np.abs(ys[perm] @ xs).mean(1)
            done += c
            bar.update(c)
    p_value = float((1 + np.sum(null >= observed - 1e-12)) / (1 + n_permutations))
    return PermutationResult(name, observed, p_value, n_permutations, scheme, seed, float(null.mean()),
                             float(null.std()), float(np.quantile(null, 0.95)), float(np.quantile(null, 0.99)))


@dataclass(kw_only=True)
class DopamineMetricsOptions:
    """Settings of :func:`dopamine_metrics`, passed as its keywords (or one ``options=``).

    ``positive_idx`` / ``negative_idx``: held-out positive- / negative-surprise rollouts (the AUC's
    event tokens); ``value_neurons``: compared at their own hook; ``ranking_idx``: the rollouts that
    picked the candidates (must be disjoint from the held-out ones); ``n_random_draws`` random sets,
    Spearman/AUC from a seeded pool of ``random_pool_size`` dims; ``n_permutations`` of the
    ``permutation`` scheme; ``magnitudes`` (per-dim mean |activation| of the hook) adds the
    magnitude-matched null, with ``massive_factor`` marking massive-activation dims."""

    positive_idx: Sequence[int] = ()
    negative_idx: Sequence[int] = ()
    value_neurons: NeuronSet | None = None
    ranking_idx: Sequence[int] | None = None
    n_random_draws: int = 1000
    random_pool_size: int = 256
    n_permutations: int = 1000
    permutation: PermutationScheme = "within_rollout"
    seed: int = 0
    batch_states: int = 8192
    magnitudes: Float[np.ndarray, " d"] | None = None
    massive_factor: float = 10.0


def dopamine_metrics(
    store: ActivationStore,
    hook: str,
    candidates: Sequence[int],
    td_traces: TraceLookup,
    value_traces: TraceLookup,
    test_idx: Sequence[int],
    **options,
) -> DopamineMetrics:
    """Quantitative, held-out test of dopamine candidates (the paper's open question).

    ``options``: the fields of :class:`DopamineMetricsOptions` as keywords (``positive_idx=()``,
    ``negative_idx=()``, ``value_neurons=None``, ``ranking_idx=None``, ``n_random_draws=1000``,
    ``random_pool_size=256``, ``n_permutations=1000``, ``permutation="within_rollout"``, ``seed=0``,
    ``batch_states=8192``, ``magnitudes=None``, ``massive_factor=10.0``), or one ``options=``.

    On the rollouts ``test_idx`` (must be disjoint from ``ranking_idx``, the rollouts used to pick the
    candidates, when given), for each candidate dimension of ``hook``:

    * per-token Pearson and Spearman correlation of its activation at ``s_t`` with the arrival-aligned
      TD error at ``s_t`` (states s_1..s_T of every held-out rollout, pooled);
    * per-token Pearson correlation with ``V(s_t)`` (states s_0..s_T): a dopamine dim tracks δ, not V;
    * the partial correlation with δ given ``V(s_t)`` (:func:`partial_pearson_columns`): a value dim
      correlates with δ only through ``V(s_t)`` and drops to ~0 here, a δ dim does not;
    * AUC of its activation at the event token of held-out positive-surprise rollouts
      (``positive_idx``: largest positive δ) vs negative-surprise rollouts (``negative_idx``: most
      negative δ); NaN when either side has no event. A value dim also separates these tokens
      (V has just jumped up vs down), so AUC alone does not tell δ from V;

    the same for ``value_neurons`` (read at their own hook) and for ``n_random_draws`` random sets of
    ``len(candidates)`` non-candidate dims (seeded), plus a permutation test of the candidates' mean
    |Pearson| with δ (see :func:`permutation_test_mean_abs_corr`). With ``magnitudes`` (per-dim mean
    |activation| of ``hook``) also ``n_random_draws`` magnitude-matched random sets
    (:func:`~reward_circuits.analysis.dopamine_controls.matched_correlation_null`): ``matched``.
    """
    o = options_of(DopamineMetricsOptions, (), options, where="dopamine_metrics")
    candidates, test_idx = _checked_split(candidates, test_idx, o.ranking_idx)
    rng = np.random.default_rng(o.seed)
    cols = _gather_plan(store.d(hook), candidates, hook, o, rng)
    scan = _scan_heldout(store, hook, cols.gather, test_idx, td_traces, value_traces, all_dim_stats=True,
                         batch_states=o.batch_states)
    pos_rows = _event_rows(scan, td_traces, o.positive_idx, +1)
    neg_rows = _event_rows(scan, td_traces, o.negative_idx, -1)
    cand_metrics = _group_metrics(scan, hook, cols.of(candidates), pos_rows, neg_rows)
    pool_metrics = _group_metrics(scan, hook, cols.of(cols.pool.tolist()), pos_rows, neg_rows)
    value_metrics = _value_neuron_metrics(store, scan, cols, (pos_rows, neg_rows), (td_traces, value_traces, test_idx), o)
    random = _random_baseline(scan, cols, cand_metrics, pool_metrics, o, rng)
    ok = np.isfinite(scan.td)
    perm, diff, matched_null = _candidate_tests(scan, cols, cand_metrics, o)
    d, pearson_all = cols.d, scan.pearson_td_all
    ranked = rank_by_score(np.where(np.isfinite(pearson_all), pearson_all, -np.inf), nonfinite="last")
    rank_of = np.empty(d, dtype=np.int64)
    rank_of[ranked] = np.arange(1, d + 1)
    z = ((cand_metrics.mean_pearson_td - random.mean_pearson_td) / random.std_pearson_td
         if random.std_pearson_td and math.isfinite(random.std_pearson_td) else math.nan)
    return DopamineMetrics(
        hook=hook, n_test_rollouts=len(test_idx), n_test_tokens=int(ok.sum()), n_test_states=int(len(scan.td)),
        n_positive_events=int(len(pos_rows)), n_negative_events=int(len(neg_rows)),
        candidates=cand_metrics, random=random, value_neurons=value_metrics, permutation=perm,
        candidate_rank_by_test_pearson=[int(rank_of[j]) for j in candidates],
        top_dims_by_test_pearson=ranked[: min(10, d)].tolist(), candidates_z_vs_random=float(z),
        abs_corr_vs_random=diff, verdict=verdict(diff, expected_sign=1) if diff is not None else None, matched=matched_null,
        length_control=length_controls(scan, cols.of(candidates), np.asarray(store.rewards, dtype=np.float64), o.seed),
    )


def length_controls(scan: _HeldOutScan, columns: Sequence[int], rewards: np.ndarray, seed: int = 0,
                    n_boot: int = 500) -> dict | None:
    """The length control of the dopamine and value signals on the held-out states
    (:func:`~reward_circuits.analysis.resampling.length_controlled_correlation`, cluster bootstrap
    over rollouts): the candidates' mean standardised activation vs δ, and V(s_t) vs the rollout's
    reward, each raw and with position and tokens-to-end partialled out. None with < 5 rollouts."""
    if np.unique(scan.rollout).size < 5:
        return None
    ids, inverse, counts = np.unique(scan.rollout, return_inverse=True, return_counts=True)
    to_end = counts[inverse] - 1 - scan.step
    ok = np.isfinite(scan.td)
    acts = scan.acts[:, list(columns)].astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (acts - np.nanmean(acts[ok], 0)) / np.nanstd(acts[ok], 0)
    signal = np.nanmean(np.where(np.isfinite(z), z, np.nan), axis=1) if z.size else np.full(len(scan.td), np.nan)
    dop = length_controlled_correlation(signal[ok], scan.td[ok], scan.step[ok], to_end[ok], scan.rollout[ok].tolist(),
                                        n_boot=n_boot, seed=seed)
    val = length_controlled_correlation(scan.value, rewards[scan.rollout], scan.step, to_end, scan.rollout.tolist(),
                                        n_boot=n_boot, seed=seed)
    return {"dopamine": dop.to_dict(), "value": val.to_dict()}


def _checked_split(candidates: Sequence[int], test_idx: Sequence[int],
                   ranking_idx: Sequence[int] | None) -> tuple[list[int], list[int]]:
    """The candidate dims and the sorted held-out rollouts; raises when either is unusable."""
    candidates = [int(j) for j in candidates]
    if not candidates:
        raise ValueError("no candidate dimensions to evaluate.")
    test_idx = sorted({int(i) for i in test_idx})
    if ranking_idx is not None:
        overlap = sorted(set(test_idx) & {int(i) for i in ranking_idx})
        if overlap:
            raise ValueError(f"held-out rollouts {overlap[:5]} ({len(overlap)} in all) were also used for ranking; "
                             "evaluate on a disjoint split.")
    return candidates, test_idx


@dataclass
class _GatherPlan:
    """The dims of ``hook`` read on the held-out pass (candidates, value dims, random pool, matched
    draws of the pool's size) and the column of each in the gathered matrix."""

    d: int
    hook: str
    candidates: list[int]
    non_candidates: np.ndarray
    pool: np.ndarray
    value_dims: list[int]
    matched: list
    n_pool_draws: int
    gather: list[int]

    @cached_property
    def column(self) -> dict[int, int]:
        return {j: c for c, j in enumerate(self.gather)}

    def of(self, dims: Sequence[int]) -> list[int]:
        return [self.column[j] for j in dims]


def _gather_plan(d: int, candidates: list[int], hook: str, o: DopamineMetricsOptions, rng) -> _GatherPlan:
    non_candidates = np.setdiff1d(np.arange(d), candidates)
    pool = np.sort(random_dims(d, min(o.random_pool_size, len(non_candidates)), rng, exclude=candidates))
    same_hook_value = o.value_neurons is not None and o.value_neurons.hook_name == hook
    value_dims = list(o.value_neurons.indices) if same_hook_value else []
    matched = (matched_draws(candidates, o.magnitudes, o.n_random_draws, o.seed, factor=o.massive_factor)
               if o.magnitudes is not None else [])
    n_pool_draws = max(1, o.random_pool_size // len(candidates))
    gather = list(dict.fromkeys(candidates + value_dims + pool.tolist() + [j for dr in matched[:n_pool_draws] for j in dr]))
    return _GatherPlan(d, hook, candidates, non_candidates, pool, value_dims, matched, n_pool_draws, gather)


def _value_neuron_metrics(store: ActivationStore, scan: _HeldOutScan, cols: _GatherPlan, events: tuple,
                          traces: tuple, o: DopamineMetricsOptions) -> GroupMetrics | None:
    """Value neurons, at this hook (already gathered) or at their own hook (one more held-out pass)."""
    value_neurons, (td_traces, value_traces, test_idx) = o.value_neurons, traces
    if value_neurons is None or not len(value_neurons):
        return None
    if value_neurons.hook_name == cols.hook:
        return _group_metrics(scan, cols.hook, cols.of(cols.value_dims), *events)
    if value_neurons.hook_name not in store.hook_names:
        return None
    vscan = _scan_heldout(store, value_neurons.hook_name, value_neurons.indices, test_idx, td_traces,
                          value_traces, all_dim_stats=False, batch_states=o.batch_states)
    return _group_metrics(vscan, value_neurons.hook_name, range(len(value_neurons)),
                          _event_rows(vscan, td_traces, o.positive_idx, +1),
                          _event_rows(vscan, td_traces, o.negative_idx, -1))


def _random_baseline(scan: _HeldOutScan, cols: _GatherPlan, cand_metrics: GroupMetrics, pool_metrics: GroupMetrics,
                     o: DopamineMetricsOptions, rng) -> RandomBaseline:
    """Random sets: means over draws of k non-candidate dims (Pearson from all of them, the rest from the pool)."""
    k, n_random_draws, non_candidates, pool = len(cols.candidates), o.n_random_draws, cols.non_candidates, cols.pool

    def draw_set_means(values: np.ndarray, n_available: int) -> np.ndarray:
        if n_available == 0:
            return np.full(n_random_draws, np.nan)
        size = min(k, n_available)
        picks = random_subsets(n_available, size, n_random_draws, rng)
        with warnings.catch_warnings(), np.errstate(invalid="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN draws (e.g. no AUC events) stay NaN
            return np.nanmean(values[picks], axis=1)

    pearson_all = scan.pearson_td_all
    value_all = scan.pearson_value_all
    draws_pearson = draw_set_means(pearson_all[non_candidates], len(non_candidates))
    draws_abs = draw_set_means(np.abs(pearson_all[non_candidates]), len(non_candidates))
    draws_value = draw_set_means(value_all[non_candidates], len(non_candidates))
    draws_spearman = draw_set_means(np.asarray(pool_metrics.spearman_td), len(pool))
    draws_partial = draw_set_means(np.asarray(pool_metrics.partial_td_given_value), len(pool))
    draws_auc = draw_set_means(np.asarray(pool_metrics.auc_surprise), len(pool))

    def mean_std(x: np.ndarray) -> tuple[float, float]:
        x = x[np.isfinite(x)]
        return (float(x.mean()), float(x.std())) if x.size else (math.nan, math.nan)

    finite_abs = draws_abs[np.isfinite(draws_abs)]
    p_vs_random = float((1 + np.sum(finite_abs >= cand_metrics.mean_abs_pearson_td - 1e-12)) / (1 + finite_abs.size))
    return RandomBaseline(
        n_draws=n_random_draws, set_size=min(k, len(non_candidates)), seed=o.seed,
        mean_pearson_td=mean_std(draws_pearson)[0], std_pearson_td=mean_std(draws_pearson)[1],
        mean_abs_pearson_td=mean_std(draws_abs)[0], std_abs_pearson_td=mean_std(draws_abs)[1],
        mean_spearman_td=mean_std(draws_spearman)[0], std_spearman_td=mean_std(draws_spearman)[1],
        mean_pearson_value=mean_std(draws_value)[0], std_pearson_value=mean_std(draws_value)[1],
        mean_partial_td_given_value=mean_std(draws_partial)[0], std_partial_td_given_value=mean_std(draws_partial)[1],
        mean_auc_surprise=mean_std(draws_auc)[0], std_auc_surprise=mean_std(draws_auc)[1],
        pool_size=len(pool), pool_dims=pool.tolist(), pool_pearson_td=pool_metrics.pearson_td,
        pool_pearson_value=pool_metrics.pearson_value,
        pool_partial_td_given_value=pool_metrics.partial_td_given_value, pool_auc_surprise=pool_metrics.auc_surprise,
        p_abs_vs_random=p_vs_random,
    )


def _candidate_tests(scan: _HeldOutScan, cols: _GatherPlan, cand_metrics: GroupMetrics, o: DopamineMetricsOptions):
    """The candidates' permutation test, their rollout-bootstrap |corr| difference vs the random pool,
    and the magnitude-matched null (each None when it cannot be computed)."""
    seed, candidates, pool = o.seed, cols.candidates, cols.pool
    ok = np.isfinite(scan.td)
    perm = permutation_test_mean_abs_corr(scan.acts[ok][:, cols.of(candidates)], scan.td[ok],
                                          scan.rollout[ok], n_permutations=o.n_permutations, scheme=o.permutation,
                                          seed=seed) if ok.sum() > 2 else None

    diff = (rollout_bootstrap_abs_corr_diff(scan.acts[ok], scan.td[ok], scan.rollout[ok],
                                            cols.of(candidates), cols.of(pool.tolist()), seed=seed)
            if ok.sum() > 2 and len(pool) else None)
    matched_null = matched_correlation_null(
        candidates, cand_metrics.mean_abs_pearson_td, scan.pearson_td_all, scan.pearson_value_all, o.magnitudes,
        cols.matched, hook=cols.hook, seed=seed, n_pool_draws=cols.n_pool_draws, factor=o.massive_factor,
        bootstrap=(lambda pool_dims: rollout_bootstrap_abs_corr_diff(scan.acts[ok], scan.td[ok], scan.rollout[ok],
                   cols.of(candidates), cols.of(pool_dims), seed=seed)) if ok.sum() > 2 else None,
    ) if cols.matched else None
    return perm, diff, matched_null


def rollout_bootstrap_abs_corr_diff(
    acts: Float[np.ndarray, "n m"], td: Float[np.ndarray, " n"], rollout: Int[np.ndarray, " n"],
    group_a: Sequence[int], group_b: Sequence[int], n_boot: int = 1000, level: float = 0.95, seed: int = 0,
) -> Interval:
    """Interval of ``mean_a |r(x_j, δ)| − mean_b |r(x_j, δ)|`` (columns ``group_a`` vs ``group_b`` of
    ``acts``), resampling whole rollouts: each replicate draws rollouts with replacement and
    recomputes every Pearson correlation from per-rollout sums (tokens of a rollout are not
    independent, so the rollout is the unit)."""
    cols = list(group_a) + list(group_b)
    x = np.asarray(acts, dtype=np.float64)[:, cols]
    y = np.asarray(td, dtype=np.float64)
    _, inv = np.unique(np.asarray(rollout), return_inverse=True)
    r = int(inv.max()) + 1
    sums = {name: np.zeros((r,) + shape) for name, shape in
            (("n", ()), ("y", ()), ("yy", ()), ("x", (len(cols),)), ("xx", (len(cols),)), ("xy", (len(cols),)))}
    np.add.at(sums["n"], inv, 1.0)
    np.add.at(sums["y"], inv, y)
    np.add.at(sums["yy"], inv, y * y)
    np.add.at(sums["x"], inv, x)
    np.add.at(sums["xx"], inv, x * x)
    np.add.at(sums["xy"], inv, x * y[:, None])
    na = len(group_a)

    def statistic(weights: np.ndarray) -> np.ndarray:  # weights [b, r]: rollout multiplicities
        t = {k: weights @ v for k, v in sums.items()}
        n = t["n"][:, None]
        cov = t["xy"] - t["x"] * t["y"][:, None] / n
        var_x = t["xx"] - t["x"] ** 2 / n
        var_y = (t["yy"] - t["y"] ** 2 / t["n"])[:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = np.abs(cov / np.sqrt(var_x * var_y))
            return np.nanmean(corr[:, :na], axis=1) - np.nanmean(corr[:, na:], axis=1)

    est = float(statistic(np.ones((1, r)))[0])
    boots = statistic(bootstrap_weights(r, n_boot, np.random.default_rng(seed)))
    return percentile_interval(est, boots, r, level)


# ---------------------------------------------------------------------------------------------
# Causal check (the intervention stage computes the traces; this compares them)
# ---------------------------------------------------------------------------------------------
def td_trace_change(before: Sequence[np.ndarray], after: Sequence[np.ndarray]) -> dict:
    """How an intervention changed arrival-aligned TD-error traces of the same rollouts.

    Events are located on ``before`` (per rollout: its largest positive δ and its most negative δ,
    as in :func:`event_positions`) and the same positions are read in ``after``. Returns JSON-ready
    floats (None when undefined): ``mean_abs_change`` (mean |δ_after − δ_before| over defined
    tokens), ``mean_change``, mean δ and mean |δ| before/after, and for ``positive_event`` /
    ``negative_event``: ``n``, ``mean_before``, ``mean_after``, ``change`` (after − before).
    """
    if len(before) != len(after):
        raise ValueError(f"{len(before)} traces before but {len(after)} after: give the same rollouts.")
    b_all, a_all = [], []
    for j, (b, a) in enumerate(zip(before, after)):
        b, a = np.asarray(b, dtype=np.float64), np.asarray(a, dtype=np.float64)
        if b.shape != a.shape:
            raise ValueError(f"rollout #{j}: trace lengths differ ({b.shape} vs {a.shape}).")
        ok = np.isfinite(b) & np.isfinite(a)
        b_all.append(b[ok])
        a_all.append(a[ok])
    b_cat = np.concatenate(b_all) if b_all else np.zeros(0)
    a_cat = np.concatenate(a_all) if a_all else np.zeros(0)
    lookup = list(before)
    out: dict = {
        "n_rollouts": len(before), "n_tokens": int(b_cat.size),
        "mean_abs_change": finite_mean(np.abs(a_cat - b_cat)), "mean_change": finite_mean(a_cat - b_cat),
        "mean_td_before": finite_mean(b_cat), "mean_td_after": finite_mean(a_cat),
        "mean_abs_td_before": finite_mean(np.abs(b_cat)), "mean_abs_td_after": finite_mean(np.abs(a_cat)),
    }
    for name, sign in (("positive_event", +1), ("negative_event", -1)):
        positions = event_positions(lookup, range(len(before)), k=1, sign=sign)
        vb = [float(np.asarray(before[j])[p[0]]) for j, p in enumerate(positions) if len(p)]
        va = [float(np.asarray(after[j])[p[0]]) for j, p in enumerate(positions) if len(p)]
        mb, ma = finite_mean(vb), finite_mean(va)
        out[name] = {"n": len(vb), "mean_before": mb, "mean_after": ma, "change": ma - mb}
    return _nan_to_none(out)
