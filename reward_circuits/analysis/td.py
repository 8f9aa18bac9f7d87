"""Temporal-difference math, in one place: TD(0)/TD(λ) and Monte-Carlo targets for probe
training, and TD errors δ_t = r_t + γ·V(s_(t+1)) − V(s_t) for dopamine analyses.

Every analysis (probes, dopamine neurons, interventions, SAE×TD) computes TD quantities here.
"""

from __future__ import annotations

import functools

from typing import Literal, NamedTuple, Sequence

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from ..errors import ProbeError

Alignment = Literal["arrival", "source"]
"""Where a TD error is attributed: the state the transition arrives at, or the one it leaves."""


def check_batch_structure(
    rollout: Int[Tensor, " state"], is_last: Bool[Tensor, " state"], step: Int[Tensor, " state"] | None = None
) -> None:
    """Check that a flat batch holds whole rollouts with states in order ``s_0 .. s_T``.

    Raises :class:`ProbeError` if the batch does not end on a rollout's last state, if the rollout
    id changes anywhere but after an ``is_last`` state (or fails to change after one), or if
    ``step`` does not count 0, 1, 2, ... inside each rollout.
    """
    n = int(is_last.numel())
    if int(rollout.numel()) != n or (step is not None and int(step.numel()) != n):
        raise ProbeError(f"batch fields disagree in length: rollout {rollout.numel()}, is_last {n}, step {None if step is None else step.numel()}.")
    if n == 0:
        raise ProbeError("empty batch: no states (a rollout of length 0?). Every rollout needs at least s_0.")
    if not bool(is_last[-1]):
        raise ProbeError("batch does not end on a rollout's last state: batches must hold whole rollouts.")
    changes = rollout[1:] != rollout[:-1]
    if not torch.equal(changes, is_last[:-1]):
        raise ProbeError(
            "rollout ids and is_last disagree (a rollout split across batches, repeated, or out of order): "
            "batches must hold whole rollouts, each once, states in order."
        )
    if step is not None:
        expected = _position_in_rollout(is_last)
        if not torch.equal(step.to(expected.dtype), expected):
            raise ProbeError("steps inside a rollout are not 0, 1, 2, ...: states must be ordered s_0 .. s_T.")


def _position_in_rollout(is_last: Bool[Tensor, " state"]) -> Int[Tensor, " state"]:
    n = is_last.numel()
    idx = torch.arange(n, device=is_last.device)
    starts = torch.zeros(n, dtype=torch.bool, device=is_last.device)
    starts[0] = True
    starts[1:] = is_last[:-1]
    start_of = torch.cummax(torch.where(starts, idx, torch.zeros_like(idx)), dim=0).values
    return idx - start_of


_LAMBDA_MATMUL_MAX_LEN = 1024
"""Longest rollout whose λ-returns use the closed-form matmul (its [L, L] decay matrix: 4 MiB)."""


@functools.lru_cache(maxsize=16)
def _lambda_decay(length: int, c: float, dtype: torch.dtype = torch.float32) -> Float[Tensor, "k t"]:
    """``M[k, t] = c^(k−t)`` for ``k ≥ t``, else 0: ``e @ M`` sums ``c^(k−t)·e_k`` over ``k ≥ t``.

    Computed in float64 and cast to the values' ``dtype`` (float64 input keeps float64 precision)."""
    k = torch.arange(length, dtype=torch.float64)
    diff = k[:, None] - k[None, :]
    return torch.where(diff >= 0, c ** diff.clamp_min(0), 0.0).to(dtype)


def td_targets(
    values: Float[Tensor, "*probe state"],
    reward: Float[Tensor, " state"],
    is_last: Bool[Tensor, " state"],
    gamma: float,
    td_lambda: float = 0.0,
) -> Float[Tensor, "*probe state"]:
    """TD(λ) targets for a flat batch of whole rollouts (states ordered ``s_0 .. s_T`` in each).

    ``values`` are the current estimates ``V(s_t)`` (detached inside: semi-gradient TD). The
    λ-return is computed backward within each rollout::

        G_T = r
        G_t = γ · [(1 − λ) · V(s_{t+1}) + λ · G_{t+1}]      (t < T)

    so λ = 0 gives TD(0), ``G_t = γ·V(s_{t+1})``, and λ = 1 the discounted Monte-Carlo return
    ``γ^{T−t}·r``. ``reward`` is the rollout's final reward, broadcast to its states (only its
    value at the last state is read).
    """
    values = values.detach()
    squeeze = values.ndim == 1
    if squeeze:
        values = values[None]
    n = int(is_last.numel())
    if values.shape[-1] != n or reward.numel() != n:
        raise ProbeError(f"values have {values.shape[-1]} states, reward {reward.numel()}, is_last {n}: they must match.")
    if n == 0:
        raise ProbeError("no states: a rollout of length 0 has no s_0.")
    if not bool(is_last[-1]):
        raise ProbeError("the last state of the batch is not a rollout's final state: pass whole rollouts.")
    reward = reward.to(values.dtype)
    next_values = torch.zeros_like(values)
    next_values[:, :-1] = values[:, 1:]
    if td_lambda == 0.0:
        targets = torch.where(is_last, reward, gamma * next_values)
    else:
        # backward scan over the padded [rollout, step] grid; positions past a rollout's end are
        # never read because the end state resets the recursion to r.
        ends = torch.nonzero(is_last).flatten()
        starts = torch.cat([ends.new_zeros(1), ends[:-1] + 1])
        lengths = ends - starts + 1
        n_rollouts, max_len = int(ends.numel()), int(lengths.max())
        row = torch.repeat_interleave(torch.arange(n_rollouts, device=values.device), lengths)
        col = torch.arange(n, device=values.device) - starts[row]
        p = values.shape[0]
        v_next = values.new_zeros(p, n_rollouts, max_len)
        v_next[:, row, col] = next_values
        end_mask = torch.zeros(n_rollouts, max_len, dtype=torch.bool, device=values.device)
        end_mask[row, col] = is_last
        r_end = reward[ends]
        if max_len <= _LAMBDA_MATMUL_MAX_LEN:
            # closed form: G_t = Σ_{k≥t} (γλ)^{k−t} e_k with e_k = γ(1−λ)V(s_{k+1}) before the end and
            # e_T = r, i.e. one [.., L] @ [L, L] matmul instead of L dependent steps (5x faster at L = 48)
            # (padded positions past an end hold V = 0, so they add nothing)
            e = torch.where(end_mask, r_end[:, None], gamma * (1.0 - td_lambda) * v_next)
            returns = e @ _lambda_decay(max_len, gamma * td_lambda, values.dtype).to(values.device)
        else:  # a [L, L] matrix would be large: the backward scan
            returns = values.new_zeros(p, n_rollouts, max_len)
            g_next = values.new_zeros(p, n_rollouts)
            for t in range(max_len - 1, -1, -1):
                boot = gamma * ((1.0 - td_lambda) * v_next[:, :, t] + td_lambda * g_next)
                g_next = torch.where(end_mask[:, t], r_end, boot)
                returns[:, :, t] = g_next
        targets = returns[:, row, col]
    return targets[0] if squeeze else targets


def monte_carlo_targets(values: Float[Tensor, "*probe state"], reward: Float[Tensor, " state"]) -> Float[Tensor, "*probe state"]:
    """``mode="final_reward"``: every state's target is its rollout's final reward."""
    return reward.to(values.dtype).expand_as(values).clone()



def td_errors(
    values: Float[np.ndarray, " T_plus_1"],
    reward: float,
    gamma: float,
    *,
    align: Alignment = "arrival",
) -> Float[np.ndarray, " T_plus_1"]:
    """TD errors of one rollout from its value trace ``V(s_0) .. V(s_T)`` (length T+1).

    ``align="arrival"`` (default): ``[NaN, γV(s_1)−V(s_0), .., γV(s_T)−V(s_{T−1})]``, aligned with
    the states s_0..s_T at which each surprise is observed; the terminal error is dropped.
    ``align="source"``: ``[δ_0 .. δ_T]`` with ``δ_t = γV(s_{t+1})−V(s_t)`` and the terminal
    ``δ_T = r − V(s_T)``. See the module docstring.
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size == 0:
        raise ValueError("values is empty: a rollout has at least the state s_0.")
    if not np.isfinite(v).all():
        raise ValueError("values contain NaN or inf; check the value probe's output.")
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must lie in [0, 1], got {gamma}.")
    source = np.empty_like(v)
    source[:-1] = gamma * v[1:] - v[:-1]
    source[-1] = float(reward) - v[-1]
    if align == "source":
        return source
    if align == "arrival":
        arrival = np.full_like(v, np.nan)
        arrival[1:] = source[:-1]
        return arrival
    raise ValueError(f"align must be 'arrival' or 'source', got {align!r}.")


def td_error_traces(
    value_traces: Sequence[Float[np.ndarray, " T_plus_1"]],
    rewards: Sequence[float],
    gamma: float,
    *,
    align: Alignment = "arrival",
) -> list[Float[np.ndarray, " T_plus_1"]]:
    """:func:`td_errors` for many rollouts (``value_traces[j]`` earned ``rewards[j]``)."""
    if len(value_traces) != len(rewards):
        raise ValueError(f"{len(value_traces)} value traces but {len(rewards)} rewards: give one reward per trace.")
    return [td_errors(v, r, gamma, align=align) for v, r in zip(value_traces, rewards)]



class Transitions(NamedTuple):
    """One sequence of tabular transitions, in order (any object with these five fields will do)."""

    states: Int[np.ndarray, " T"]
    actions: Int[np.ndarray, " T"]
    rewards: Float[np.ndarray, " T"]
    next_states: Int[np.ndarray, " T"]
    done: Bool[np.ndarray, " T"]


def q_learning_td_errors(
    transitions: Transitions,
    n_states: int,
    n_actions: int,
    alpha: float,
    gamma: float,
    *,
    legal: Bool[np.ndarray, "n_states n_actions"] | None = None,
    q0: float = 0.0,
) -> tuple[Float[np.ndarray, " T"], Float[np.ndarray, " T"], Float[np.ndarray, "T n_actions"]]:
    """Tabular Q-learning run along one sequence of ``transitions`` (Q carries over across episodes).

    For each step ``t`` (state ``s``, action ``a``, reward ``r``, next state ``s'``)::

        δ_t = r + γ · max_{a' legal in s'} Q(s', a') · (1 − done_t) − Q(s, a)
        Q(s, a) ← Q(s, a) + α · δ_t

    Returns ``(td_errors, q_chosen, q_before)``: δ_t, ``Q(s_t, a_t)`` before the update, and the
    whole row ``Q(s_t, ·)`` before the update (for choice likelihoods). ``legal`` restricts the max
    to legal actions (all actions when None).
    """
    s = np.asarray(transitions.states, dtype=np.int64)
    a = np.asarray(transitions.actions, dtype=np.int64)
    r = np.asarray(transitions.rewards, dtype=np.float64)
    s2 = np.asarray(transitions.next_states, dtype=np.int64)
    d = np.asarray(transitions.done, dtype=bool)
    T = s.size
    if not (a.size == r.size == s2.size == d.size == T):
        raise ValueError(f"states, actions, rewards, next_states, done must have equal lengths; got "
                         f"{[s.size, a.size, r.size, s2.size, d.size]}.")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}.")
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must lie in [0, 1], got {gamma}.")
    if T and (s.min() < 0 or s.max() >= n_states or s2.min() < 0 or s2.max() >= n_states):
        raise ValueError(f"states must lie in [0, {n_states}).")
    if T and (a.min() < 0 or a.max() >= n_actions):
        raise ValueError(f"actions must lie in [0, {n_actions}).")
    mask = np.ones((n_states, n_actions), dtype=bool) if legal is None else np.asarray(legal, dtype=bool)
    q = np.full((n_states, n_actions), float(q0))
    td = np.empty(T)
    q_chosen = np.empty(T)
    q_before = np.empty((T, n_actions))
    for t in range(T):
        q_before[t] = q[s[t]]
        q_chosen[t] = q[s[t], a[t]]
        boot = 0.0 if d[t] else float(np.max(q[s2[t]][mask[s2[t]]]))
        td[t] = r[t] + gamma * boot - q[s[t], a[t]]
        q[s[t], a[t]] += alpha * td[t]
    return td, q_chosen, q_before
