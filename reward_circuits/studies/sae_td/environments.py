"""In-context reinforcement-learning tasks as text: the two-step task, a small grid world, a graph task.

Each environment is a small seeded class. An *experiment* is one environment instance played for
many episodes; the whole history stays in the model's context, so the model can learn in context::

    env = TwoStepTask(seed=0)
    text = env.reset()                 # "Trip 1: spaceship"      (ends where an action goes)
    env.legal_actions()                # ["A", "B"]
    res = env.step("A")                # res.text = " to planet X, alien", res.reward = 0.0
    env.render_history()               # intro + every episode so far, exactly as the model read it

The history is the concatenation of the intro, every ``reset`` text, every action rendered as
``" " + action`` and every ``step`` text. Actions are words whose ``" " + word`` is one token in the
packaged model's tokenizer, so the model acts by a next-token choice among the legal actions.
An illegal action raises :class:`IllegalActionError` naming the legal ones.

For the Q-learning model every environment exposes integer states and actions
(``n_states``, ``action_names``, ``legal_mask``) and each :class:`StepResult` the transition.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from importlib import resources
from typing import ClassVar, Literal

import numpy as np

__all__ = ["ENVIRONMENTS", "GraphTask", "GridWorld", "IllegalActionError", "StepResult", "TaskName", "TextEnvironment",
           "TwoStepTask", "make_environment", "word_list"]

TaskName = Literal["two_step", "grid", "graph"]


class IllegalActionError(ValueError):
    """An action that is not legal in the current state (or a step outside an episode)."""


@dataclass(frozen=True)
class StepResult:
    """What one action did: the text that follows it, its reward, and the transition for Q-learning."""

    text: str
    reward: float
    done: bool
    state: int  # state the action was taken in
    action: int  # index into action_names
    next_state: int  # state reached (for a terminal step: the state the episode ended in)


def word_list() -> list[str]:
    """The packaged node-name words (each ``" " + word`` is a single token of the default model)."""
    text = resources.files("reward_circuits.studies.sae_td").joinpath("data/words.txt").read_text(encoding="utf-8")
    return [w.strip() for w in text.splitlines() if w.strip()]


class TextEnvironment(ABC):
    """Base class: history bookkeeping, legality checks, episode counting."""

    name: str = "env"
    action_names: list[str]
    n_states: int

    def __init__(self, seed: int = 0):
        self.seed = int(seed)
        self.rng = np.random.default_rng(self.seed)
        self.episode = 0
        self.state: int | None = None
        self.done = True
        self.steps_in_episode = 0
        self._pieces: list[str] = [self.intro()]

    # ---- what subclasses define ---------------------------------------------------------------
    @abstractmethod
    def intro(self) -> str:
        """Instructions shown once, before the first episode."""

    @abstractmethod
    def start_state(self) -> int: ...

    @abstractmethod
    def legal_in(self, state: int) -> list[str]: ...

    @abstractmethod
    def episode_text(self, state: int) -> str:
        """Text opening an episode (ends where the first action goes)."""

    @abstractmethod
    def transition(self, state: int, action: str) -> tuple[int, float, bool, str]:
        """(next_state, reward, done, text after the action)."""

    def begin_episode(self) -> None:
        """Per-episode dynamics (e.g. drifting reward probabilities); default: nothing."""

    # ---- the API ------------------------------------------------------------------------------
    def reset(self) -> str:
        """Start the next episode; returns its opening text."""
        if not self.done:
            raise IllegalActionError(f"episode {self.episode} is not finished: call step() until done before reset().")
        self.episode += 1
        self.steps_in_episode = 0
        self.begin_episode()
        self.state = self.start_state()
        self.done = False
        text = self.episode_text(self.state)
        self._pieces.append(text)
        return text

    def legal_actions(self) -> list[str]:
        if self.done or self.state is None:
            raise IllegalActionError("no episode is running: call reset() first.")
        return list(self.legal_in(self.state))

    def step(self, action: str) -> StepResult:
        legal = self.legal_actions()
        if action not in legal:
            raise IllegalActionError(f"{self.name}: action {action!r} is not legal in state "
                                     f"{self.state_label(self.state)}; legal actions are {legal}.")
        state = self.state
        next_state, reward, done, text = self.transition(state, action)
        self.steps_in_episode += 1
        self._pieces.append(" " + action)
        self._pieces.append(text)
        self.state, self.done = next_state, done
        return StepResult(text, float(reward), bool(done), int(state), self.action_names.index(action), int(next_state))

    def render_history(self) -> str:
        """Everything the model has read: the intro and every episode so far."""
        return "".join(self._pieces)

    def state_label(self, state: int) -> str:
        return str(state)

    def legal_mask(self) -> np.ndarray:
        """``[n_states, n_actions]`` bool: which actions are legal in which state (for Q-learning)."""
        mask = np.zeros((self.n_states, len(self.action_names)), dtype=bool)
        for s in range(self.n_states):
            for a in self.legal_in(s):
                mask[s, self.action_names.index(a)] = True
        return mask


class TwoStepTask(TextEnvironment):
    """Daw et al. (2011) two-step task: spaceship A/B → planet X/Y (70% common, 30% rare) → alien → gold.

    Each alien pays 1 with a probability that drifts between episodes (Gaussian random walk, sd
    ``drift``, reflected into [0.25, 0.75]).
    """

    name = "two_step"
    action_names: ClassVar[list[str]] = ["A", "B", "C", "D", "E", "F"]
    n_states = 3  # 0 start, 1 planet X, 2 planet Y
    _aliens: ClassVar[dict[int, list[str]]] = {1: ["C", "D"], 2: ["E", "F"]}

    def __init__(self, seed: int = 0, common: float = 0.7, drift: float = 0.025):
        if not 0.5 <= common <= 1.0:
            raise ValueError(f"common transition probability must be in [0.5, 1], got {common}.")
        self.common, self.drift = common, drift
        super().__init__(seed)
        self.pay = self.rng.uniform(0.25, 0.75, size=4)  # C, D, E, F

    def intro(self) -> str:
        return ("Each trip, pick spaceship A or B; each flies mostly to one planet, X or Y. On X ask alien C or D, "
                "on Y alien E or F, for gold (1) or nothing (0).\n")

    def start_state(self) -> int:
        return 0

    def state_label(self, state: int) -> str:
        return ["start", "planet X", "planet Y"][state]

    def legal_in(self, state: int) -> list[str]:
        return ["A", "B"] if state == 0 else list(self._aliens[state])

    def begin_episode(self) -> None:
        if self.episode > 1:
            p = self.pay + self.rng.normal(0.0, self.drift, size=4)
            p = np.where(p > 0.75, 1.5 - p, p)
            self.pay = np.where(p < 0.25, 0.5 - p, p)

    def episode_text(self, state: int) -> str:
        return f"Trip {self.episode}: spaceship"

    def transition(self, state, action):
        if state == 0:
            common_planet = 1 if action == "A" else 2
            planet = common_planet if self.rng.random() < self.common else 3 - common_planet
            return planet, 0.0, False, f" to planet {'X' if planet == 1 else 'Y'}, alien"
        reward = float(self.rng.random() < self.pay["CDEF".index(action)])
        return state, reward, True, f" gives {int(reward)}.\n"


class GridWorld(TextEnvironment):
    """A ``size × size`` grid of rooms; start at (0, 0), a rewarded room drawn by the seed.

    Moves off the grid are illegal. An episode ends at the rewarded room (reward 1) or after
    ``max_steps`` moves (reward 0).
    """

    name = "grid"
    action_names: ClassVar[list[str]] = ["up", "down", "left", "right"]
    _moves: ClassVar[dict[str, tuple[int, int]]] = {"up": (-1, 0), "down": (1, 0), "left": (0, -1), "right": (0, 1)}

    def __init__(self, seed: int = 0, size: int = 3, max_steps: int = 6):
        if size < 2:
            raise ValueError(f"size must be >= 2, got {size}.")
        if max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}.")
        self.size, self.max_steps = size, max_steps
        self.n_states = size * size
        super().__init__(seed)
        self.goal = int(self.rng.integers(1, self.n_states))

    def intro(self) -> str:
        return (f"A {self.size}x{self.size} grid of rooms (row,col). Each step, go up, down, left or right. One room "
                f"has a reward: a trip ends there (reward 1) or after {self.max_steps} steps (reward 0).\n")

    def start_state(self) -> int:
        return 0

    def state_label(self, state: int) -> str:
        return f"({state // self.size},{state % self.size})"

    def legal_in(self, state: int) -> list[str]:
        r, c = divmod(state, self.size)
        return [a for a, (dr, dc) in self._moves.items() if 0 <= r + dr < self.size and 0 <= c + dc < self.size]

    def episode_text(self, state: int) -> str:
        return f"Trip {self.episode}: at {self.state_label(state)}, go"

    def transition(self, state, action):
        r, c = divmod(state, self.size)
        dr, dc = self._moves[action]
        nxt = (r + dr) * self.size + (c + dc)
        if nxt == self.goal:
            return nxt, 1.0, True, f" to {self.state_label(nxt)}, reward 1.\n"
        if self.steps_in_episode + 1 >= self.max_steps:
            return nxt, 0.0, True, f" to {self.state_label(nxt)}, reward 0.\n"
        return nxt, 0.0, False, f" to {self.state_label(nxt)}, go"


class GraphTask(TextEnvironment):
    """Rooms named by words, joined by doors (a ring plus random chords); find the rewarded room.

    Node names are drawn from ``words`` (default: the packaged :func:`word_list`) by the seed. Each
    move goes to a neighbouring room (the action is its name). An episode ends at the rewarded
    room, the one farthest from the start (reward 1), or after ``max_steps`` moves (reward 0).
    """

    name = "graph"

    def __init__(self, seed: int = 0, n_nodes: int = 6, n_chords: int = 2, max_steps: int = 5,
                 words: list[str] | None = None):
        if n_nodes < 3:
            raise ValueError(f"n_nodes must be >= 3, got {n_nodes}.")
        pool = list(words) if words is not None else word_list()
        if len(set(pool)) < n_nodes:
            raise ValueError(f"the word list has {len(set(pool))} distinct words but n_nodes={n_nodes}: "
                             "give more words or fewer nodes.")
        rng = np.random.default_rng([int(seed), 1])
        self.names = [str(w) for w in rng.choice(sorted(set(pool)), size=n_nodes, replace=False)]
        adj = np.zeros((n_nodes, n_nodes), dtype=bool)
        for i in range(n_nodes):
            adj[i, (i + 1) % n_nodes] = adj[(i + 1) % n_nodes, i] = True
        candidates = [(i, j) for i in range(n_nodes) for j in range(i + 2, n_nodes) if not adj[i, j]]
        for k in rng.permutation(len(candidates))[:n_chords]:
            i, j = candidates[k]
            adj[i, j] = adj[j, i] = True
        self.adjacency = adj
        self.max_steps = max_steps
        self.n_states = n_nodes
        self.action_names = list(self.names)
        dist = np.full(n_nodes, -1)
        dist[0], frontier = 0, [0]
        while frontier:
            nxt = []
            for u in frontier:
                for v in np.flatnonzero(adj[u]):
                    if dist[v] < 0:
                        dist[v] = dist[u] + 1
                        nxt.append(int(v))
            frontier = nxt
        self.goal = int(np.argmax(dist))
        super().__init__(seed)

    def intro(self) -> str:
        return (f"Rooms joined by doors. Each trip starts in the {self.names[0]} room and moves through doors. One room "
                f"has a reward: a trip ends there (reward 1) or after {self.max_steps} moves (reward 0).\n")

    def start_state(self) -> int:
        return 0

    def state_label(self, state: int) -> str:
        return self.names[state]

    def legal_in(self, state: int) -> list[str]:
        return [self.names[j] for j in np.flatnonzero(self.adjacency[state])]

    def episode_text(self, state: int) -> str:
        return f"Trip {self.episode}: {self.names[state]} ->"

    def transition(self, state, action):
        nxt = self.names.index(action)
        if nxt == self.goal:
            return nxt, 1.0, True, ", reward 1.\n"
        if self.steps_in_episode + 1 >= self.max_steps:
            return nxt, 0.0, True, ", reward 0.\n"
        return nxt, 0.0, False, " ->"


ENVIRONMENTS: dict[str, type[TextEnvironment]] = {"two_step": TwoStepTask, "grid": GridWorld, "graph": GraphTask}


def make_environment(task: str, seed: int = 0, **kwargs) -> TextEnvironment:
    """A fresh environment of ``task`` ("two_step", "grid" or "graph")."""
    if task not in ENVIRONMENTS:
        raise ValueError(f"unknown task {task!r}; choose one of {sorted(ENVIRONMENTS)}.")
    return ENVIRONMENTS[task](seed=seed, **kwargs)
