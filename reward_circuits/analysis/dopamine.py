"""Dopamine neurons: hidden dimensions whose activation tracks the reward-prediction (TD) error.

Reproduces §4 of "Sparse Reward Subsystem in LLMs" (arXiv 2602.00986) and adds the quantitative,
held-out test the paper leaves open ("we demonstrate dopamine neurons primarily through case
studies").

Conventions (used by every function here)
-----------------------------------------
A rollout has states ``s_0 .. s_T`` (``s_0`` = the prompt's last token, ``s_t`` = the t-th
generated token; see :mod:`reward_circuits.store`) and one binary reward ``r`` that arrives after
the last state. ``V(s_t)`` is a value estimate, e.g. a TD(0) value probe, whose training target
is ``r`` at ``s_T`` and ``γ·V(s_{t+1})`` at ``s_t`` (t < T). The matching TD errors are::

    δ_t = γ·V(s_{t+1}) − V(s_t)      for t = 0 .. T−1   (no reward inside the rollout)
    δ_T = r − V(s_T)                                    (terminal: the episode ends after s_T)

so that ``Σ_t γ^t δ_t = γ^T r − V(s_0)`` (telescoping). ``align="source"`` returns exactly
``[δ_0 .. δ_T]``, indexed by the state the transition *leaves*.

Dopamine neurons respond when the surprising token *arrives*, so for the neuron analysis the
error of the transition ``s_{t} → s_{t+1}`` is attributed to ``s_{t+1}``. ``align="arrival"``
(the default everywhere in this module) returns a vector ``a`` aligned with ``s_0 .. s_T``::

    a[0]   = NaN                      (no transition arrives at s_0)
    a[t]   = γ·V(s_t) − V(s_{t−1})    for t = 1 .. T

The terminal error ``r − V(s_T)`` is *not* in the arrival-aligned vector: the reward is revealed
outside the model's forward pass, so no stored state can observe it (it is still available with
``align="source"``, and for a well-trained probe it is small because ``V(s_T)`` is fit to ``r``).
Every metric below skips NaN entries, i.e. it uses the T states s_1..s_T of each rollout.

A "TD trace lookup" argument (``td_traces``, ``value_traces``) is anything ``x`` with ``x[i]``
giving the trace of *store* rollout ``i`` (a list over the whole store, or a dict
``{store_index: trace}``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Literal, Mapping, NamedTuple, Sequence

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from ..models import layer_of
from ..neurons import NeuronSet
from .stats import rank_by_score
from ..data.store import ActivationStore

TraceLookup = Mapping[int, np.ndarray] | Sequence[np.ndarray]
PermutationScheme = Literal["within_rollout", "circular_shift"]


# ---------------------------------------------------------------------------------------------
# TD errors
# ---------------------------------------------------------------------------------------------




# ---------------------------------------------------------------------------------------------
# Surprise sets and events
# ---------------------------------------------------------------------------------------------
class SurpriseSets(NamedTuple):
    """Rollouts whose outcome contradicted the initial value estimate.

    ``positive``/``negative`` are positions into the arrays given to :func:`surprise_sets`.
    """

    positive: Int[np.ndarray, " n_pos"]  # V(s_0) <= low_threshold and reward 1
    negative: Int[np.ndarray, " n_neg"]  # V(s_0) >= high_threshold and reward 0
    low_threshold: float
    high_threshold: float


def surprise_sets(
    initial_values: Float[np.ndarray, " n"],
    rewards: Float[np.ndarray, " n"],
    low_q: float = 0.3,
    high_q: float = 0.7,
    *,
    low_threshold: float | None = None,
    high_threshold: float | None = None,
) -> SurpriseSets:
    """Positive surprise: ``V(s_0) <= quantile(low_q)`` but reward 1; negative surprise:
    ``V(s_0) >= quantile(high_q)`` but reward 0.

    Quantiles are taken over ``initial_values``; pass ``low_threshold``/``high_threshold`` to use
    fixed values instead (e.g. the thresholds of a ranking split, reused on a held-out split).
    """
    v0 = np.asarray(initial_values, dtype=np.float64).reshape(-1)
    r = np.asarray(rewards, dtype=np.float64).reshape(-1)
    if v0.shape != r.shape:
        raise ValueError(f"{v0.size} initial values but {r.size} rewards.")
    if not (0.0 <= low_q <= 1.0 and 0.0 <= high_q <= 1.0):
        raise ValueError(f"low_q={low_q}, high_q={high_q}: quantiles must lie in [0, 1].")
    if v0.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return SurpriseSets(empty, empty.copy(), math.nan, math.nan)
    lo = float(np.quantile(v0, low_q)) if low_threshold is None else float(low_threshold)
    hi = float(np.quantile(v0, high_q)) if high_threshold is None else float(high_threshold)
    positive = np.flatnonzero((v0 <= lo) & (r == 1.0))
    negative = np.flatnonzero((v0 >= hi) & (r == 0.0))
    return SurpriseSets(positive.astype(np.int64), negative.astype(np.int64), lo, hi)


def event_positions(
    td_traces: TraceLookup,
    idx: Sequence[int],
    k: int = 1,
    sign: int = +1,
) -> list[Int[np.ndarray, " k"]]:
    """Per rollout ``i`` in ``idx``: the state positions of its ``k`` largest TD errors of the given
    sign (``sign=+1``: most positive δ, ``sign=-1``: most negative δ), strongest first.

    Positions index the (arrival-aligned) trace, i.e. the states s_0..s_T. Only errors that really
    have that sign count, so a rollout may yield fewer than ``k`` positions (or none).
    """
    if sign not in (1, -1):
        raise ValueError(f"sign must be +1 or -1, got {sign}.")
    out = []
    for i in idx:
        signed = sign * np.asarray(td_traces[int(i)], dtype=np.float64)
        candidates = np.flatnonzero(np.isfinite(signed) & (signed > 0))
        order = candidates[rank_by_score(signed[candidates])]
        out.append(order[:k].astype(np.int64))
    return out


# ---------------------------------------------------------------------------------------------
# Reading whole rollouts
# ---------------------------------------------------------------------------------------------
def iter_rollout_acts(
    store: ActivationStore,
    hook: str,
    indices: Sequence[int],
    *,
    batch_states: int = 8192,
    desc: str = "rollouts",
) -> Iterator[tuple[int, Float[np.ndarray, "T_plus_1 d"]]]:
    """Yield ``(store_index, activations of s_0..s_T as float32 [T+1, d])`` for each rollout."""
    indices = sorted({int(i) for i in indices})
    if not indices:
        return
    bar = tqdm(total=len(indices), desc=desc, leave=False, mininterval=2.0)
    try:
        for batch in store.iter_batches(hook, batch_states=batch_states, indices=indices):
            acts = batch.acts[hook].numpy()
            rollout_ids, counts = torch.unique_consecutive(batch.rollout, return_counts=True)
            start = 0
            for rollout_id, count in zip(rollout_ids.tolist(), counts.tolist()):
                yield int(rollout_id), acts[start : start + count]
                start += count
            bar.update(len(rollout_ids))
    finally:
        bar.close()


def check_trace_length(trace: np.ndarray, n_states: int, i: int, what: str) -> None:
    if len(trace) != n_states:
        raise ValueError(
            f"rollout {i}: its {what} trace has {len(trace)} entries but the store holds {n_states} "
            "states s_0..s_T; traces must cover exactly s_0..s_T (use store.get(i, hook) lengths)."
        )


# ---------------------------------------------------------------------------------------------
# The paper's ranking
# ---------------------------------------------------------------------------------------------
@dataclass
class DopamineScoreDetails:
    """Everything :func:`dopamine_scores` computes (``scores`` is its return value)."""

    scores: Float[Tensor, " d"]  # median z-peak at positive events − median z-trough at negative events
    mean: Float[np.ndarray, " d"]  # per-dimension normalisation (over all states of normalised_over)
    std: Float[np.ndarray, " d"]
    median_positive_peak_z: Float[np.ndarray, " d"]
    median_negative_trough_z: Float[np.ndarray, " d"]
    positive_used: list[int]  # positive-surprise rollouts that had a positive TD error
    negative_used: list[int]
    positive_event: dict[int, int]  # rollout -> state position of its positive event
    negative_event: dict[int, int]
    normalised_over: list[int]
    window: int


def dopamine_score_details(
    store: ActivationStore,
    hook: str,
    td_traces: TraceLookup,
    pos_idx: Sequence[int],
    neg_idx: Sequence[int],
    window: int = 2,
    *,
    normalise_over: Sequence[int] | None = None,
    batch_states: int = 8192,
) -> DopamineScoreDetails:
    """The paper's dopamine-neuron ranking, with its intermediate quantities. See :func:`dopamine_scores`."""
    if window < 0:
        raise ValueError(f"window must be >= 0, got {window}.")
    pos_idx = [int(i) for i in pos_idx]
    neg_idx = [int(i) for i in neg_idx]
    positive_event = {i: int(p[0]) for i, p in zip(pos_idx, event_positions(td_traces, pos_idx, 1, +1)) if len(p)}
    negative_event = {i: int(p[0]) for i, p in zip(neg_idx, event_positions(td_traces, neg_idx, 1, -1)) if len(p)}
    if not positive_event or not negative_event:
        raise ValueError(
            f"need at least one positive-surprise rollout with a positive TD error and one negative-surprise "
            f"rollout with a negative TD error; got {len(positive_event)} of {len(pos_idx)} and "
            f"{len(negative_event)} of {len(neg_idx)}."
        )
    norm_idx = sorted(set(pos_idx) | set(neg_idx)) if normalise_over is None else sorted({int(i) for i in normalise_over})
    norm_set = set(norm_idx)
    d = store.d(hook)
    # Chan et al. parallel mean/variance, merged rollout by rollout (float64, no cancellation).
    count, mean, m2 = 0, np.zeros(d), np.zeros(d)
    peaks: dict[int, np.ndarray] = {}
    troughs: dict[int, np.ndarray] = {}
    read = set(norm_idx) | set(positive_event) | set(negative_event)
    for i, acts in iter_rollout_acts(store, hook, read, batch_states=batch_states, desc="dopamine ranking"):
        n_states = acts.shape[0]
        if i in norm_set:
            x = acts.astype(np.float64)
            n_b, mean_b = n_states, x.mean(0)
            m2_b = ((x - mean_b) ** 2).sum(0)
            delta = mean_b - mean
            total = count + n_b
            mean = mean + delta * n_b / total
            m2 = m2 + m2_b + delta**2 * count * n_b / total
            count = total
        for events, out, reduce in ((positive_event, peaks, np.max), (negative_event, troughs, np.min)):
            if i in events:
                check_trace_length(np.asarray(td_traces[i]), n_states, i, "TD-error")
                p = events[i]
                lo, hi = max(0, p - window), min(n_states, p + window + 1)
                out[i] = reduce(acts[lo:hi].astype(np.float64), axis=0)
    std = np.sqrt(m2 / max(count, 1))
    safe_std = np.where(std > 0, std, np.nan)
    # z = (x - mean) / std is monotone in x, so the z-scored window peak is the z-score of the raw peak.
    peak_z = (np.stack([peaks[i] for i in sorted(peaks)]) - mean) / safe_std
    trough_z = (np.stack([troughs[i] for i in sorted(troughs)]) - mean) / safe_std
    median_peak = np.median(peak_z, axis=0)
    median_trough = np.median(trough_z, axis=0)
    scores = torch.from_numpy(median_peak - median_trough)
    return DopamineScoreDetails(
        scores=scores, mean=mean, std=std,
        median_positive_peak_z=median_peak, median_negative_trough_z=median_trough,
        positive_used=sorted(peaks), negative_used=sorted(troughs),
        positive_event=positive_event, negative_event=negative_event,
        normalised_over=norm_idx, window=window,
    )


def dopamine_scores(
    store: ActivationStore,
    hook: str,
    td_traces: TraceLookup,
    pos_idx: Sequence[int],
    neg_idx: Sequence[int],
    window: int = 2,
    *,
    normalise_over: Sequence[int] | None = None,
    batch_states: int = 8192,
) -> Float[Tensor, " d"]:
    """Rank dimensions of ``hook`` as dopamine neurons (the paper's case-study criterion, made exact).

    For each dimension: ``median over positive-surprise rollouts of max_{window} z(act)`` minus
    ``median over negative-surprise rollouts of min_{window} z(act)``, where the window is the states
    ``[p − window, p + window]`` (clipped to s_0..s_T) around the rollout's event ``p``: the position of
    its largest positive (resp. most negative) arrival-aligned TD error. Rollouts without an error of
    the right sign are skipped.

    ``z`` normalises each dimension by its mean and (population) std over *all* states s_0..s_T of
    the rollouts ``normalise_over`` (default: ``pos_idx ∪ neg_idx``). The mean cancels in the
    difference, so the score is ``(median peak − median trough) / std``: scale-free across dims.
    Dimensions with zero variance get NaN. High score = fires at positive surprise and dips at
    negative surprise (an anti-tracking dimension gets a large *negative* score).

    Note: the window statistic of a pure-noise dimension is positive (max − min of 2·window+1 noise
    samples), and a value-tracking dimension also scores above noise (V is high after a positive
    event, low after a negative one); :func:`dopamine_metrics` separates δ-tracking from V-tracking.
    """
    return dopamine_score_details(store, hook, td_traces, pos_idx, neg_idx, window,
                                  normalise_over=normalise_over, batch_states=batch_states).scores


def dopamine_neurons(
    scores: Float[Tensor, " d"],
    hook: str,
    d: int,
    k: int,
    provenance: dict | None = None,
) -> NeuronSet:
    """The ``k`` highest-scoring dimensions (NaN scores never chosen) as a ``kind="dopamine"`` set."""
    s = torch.as_tensor(scores, dtype=torch.float64).reshape(-1)
    if s.numel() != d:
        raise ValueError(f"{s.numel()} scores for a hook of width {d}.")
    finite = torch.isfinite(s)
    k = int(min(k, int(finite.sum())))
    order = rank_by_score(torch.where(finite, s, -math.inf).numpy(), nonfinite="last")[:k]  # ties: lower dim first
    return NeuronSet(hook, order.tolist(), d, s[order].tolist(), kind="dopamine", layer=layer_of(hook),
                     provenance=dict(provenance or {}))


