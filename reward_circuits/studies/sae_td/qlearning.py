"""The Q-learning model of an agent's in-context behaviour: Q-values, TD errors, and (α, β) fits.

:class:`Trajectory` holds one experiment's transitions (all episodes in order; Q carries over).
:func:`q_learning_trace` runs tabular Q-learning with fixed α, γ (the paper's: γ = 0.99, α = 0.1
for two-step and grid, 0.05 for graph) and returns per-step TD errors and Q-values.
:class:`QLearningFit` fits α and the softmax inverse temperature β by maximum likelihood of the
agent's own choices (``P(a | s) ∝ exp(β · Q(s, a))`` over the legal actions), sklearn-style.

The TD math itself is :func:`reward_circuits.analysis.td.q_learning_td_errors`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from jaxtyping import Bool, Float, Int
from scipy.optimize import minimize
from scipy.special import logsumexp

from ...analysis.td import q_learning_td_errors

__all__ = ["GAMMA", "PAPER_ALPHA", "QLearningFit", "QTrace", "Trajectory", "choice_log_likelihood", "q_learning_trace"]

GAMMA = 0.99
PAPER_ALPHA = {"two_step": 0.1, "grid": 0.1, "graph": 0.05}


@dataclass
class Trajectory:
    """One experiment's transitions in order. ``scored[t]``: the choice counts in likelihood fits
    (False for random-policy steps, whose updates still shape Q)."""

    states: Int[np.ndarray, " T"]
    actions: Int[np.ndarray, " T"]
    rewards: Float[np.ndarray, " T"]
    next_states: Int[np.ndarray, " T"]
    done: Bool[np.ndarray, " T"]
    legal: Bool[np.ndarray, "n_states n_actions"]
    scored: Bool[np.ndarray, " T"] | None = None

    def __post_init__(self):
        self.states = np.asarray(self.states, dtype=np.int64)
        self.actions = np.asarray(self.actions, dtype=np.int64)
        self.rewards = np.asarray(self.rewards, dtype=np.float64)
        self.next_states = np.asarray(self.next_states, dtype=np.int64)
        self.done = np.asarray(self.done, dtype=bool)
        self.legal = np.asarray(self.legal, dtype=bool)
        self.scored = np.ones(self.states.size, dtype=bool) if self.scored is None else np.asarray(self.scored, dtype=bool)
        n = self.states.size
        if any(x.size != n for x in (self.actions, self.rewards, self.next_states, self.done, self.scored)):
            raise ValueError("trajectory arrays must all have one entry per step.")
        if n and not self.legal[self.states, self.actions].all():
            t = int(np.flatnonzero(~self.legal[self.states, self.actions])[0])
            raise ValueError(f"step {t}: action {self.actions[t]} is not legal in state {self.states[t]} by `legal`.")

    @property
    def n_states(self) -> int:
        return self.legal.shape[0]

    @property
    def n_actions(self) -> int:
        return self.legal.shape[1]

    def __len__(self) -> int:
        return int(self.states.size)


@dataclass
class QTrace:
    td_errors: Float[np.ndarray, " T"]
    q_chosen: Float[np.ndarray, " T"]  # Q(s_t, a_t) before the update
    q_before: Float[np.ndarray, "T n_actions"]  # Q(s_t, ·) before the update


def q_learning_trace(traj: Trajectory, alpha: float, gamma: float = GAMMA) -> QTrace:
    """Q-learning along ``traj`` with fixed ``alpha``, ``gamma`` (Q starts at 0)."""
    td, qc, qb = q_learning_td_errors(traj, traj.n_states, traj.n_actions, alpha, gamma, legal=traj.legal)
    return QTrace(td, qc, qb)


def choice_log_likelihood(trajs: Sequence[Trajectory], alpha: float, beta: float, gamma: float = GAMMA) -> tuple[float, int]:
    """Σ log P(a_t | s_t) under softmax(β·Q) over legal actions, on scored steps; and their count."""
    total, n = 0.0, 0
    for traj in trajs:
        tr = q_learning_trace(traj, alpha, gamma)
        keep = traj.scored
        if not keep.any():
            continue
        logits = np.where(traj.legal[traj.states[keep]], beta * tr.q_before[keep], -np.inf)
        total += float(np.sum(logits[np.arange(keep.sum()), traj.actions[keep]] - logsumexp(logits, axis=1)))
        n += int(keep.sum())
    return total, n


@dataclass
class QLearningFit:
    """Maximum-likelihood α ∈ [alpha_min, 1] and β ∈ [beta_min, beta_max] of a Q-learner's choices.

    >>> fit = QLearningFit().fit(trajectories)
    >>> fit.alpha_, fit.beta_, fit.log_likelihood_
    """

    gamma: float = GAMMA
    alpha_min: float = 1e-3
    beta_min: float = 1e-3
    beta_max: float = 50.0
    starts: tuple[tuple[float, float], ...] = ((0.1, 1.0), (0.5, 5.0), (0.03, 10.0))
    alpha_: float = field(default=float("nan"), init=False)
    beta_: float = field(default=float("nan"), init=False)
    log_likelihood_: float = field(default=float("nan"), init=False)
    n_choices_: int = field(default=0, init=False)

    def fit(self, trajectories: Sequence[Trajectory]) -> QLearningFit:
        trajs = list(trajectories)
        _, n = choice_log_likelihood(trajs, 0.1, 1.0, self.gamma)
        if n == 0:
            raise ValueError("no scored choices to fit: every step was random-policy (scored=False).")

        def nll(p):
            return -choice_log_likelihood(trajs, float(p[0]), float(p[1]), self.gamma)[0]

        bounds = [(self.alpha_min, 1.0), (self.beta_min, self.beta_max)]
        best = None
        for a0, b0 in self.starts:
            res = minimize(nll, x0=np.array([a0, b0]), bounds=bounds, method="L-BFGS-B")
            if best is None or res.fun < best.fun:
                best = res
        self.alpha_, self.beta_ = float(best.x[0]), float(best.x[1])
        self.log_likelihood_ = -float(best.fun)
        self.n_choices_ = n
        return self

    def to_dict(self) -> dict:
        return {"alpha": self.alpha_, "beta": self.beta_, "log_likelihood": self.log_likelihood_, "n_choices": self.n_choices_}
