"""The language model as an in-context RL agent: it reads the episode history and picks an action token.

:func:`play` runs one *experiment* (one seeded environment, many episodes, one growing context):
the first ``random_episodes`` episodes follow a uniform random policy (as in the paper), later
ones the model, which chooses by the log-probabilities of the legal action tokens at the end of the
context (renormalised over the legal set; sampled or greedy). It returns an :class:`Experiment`:
every step's transition, the model's log-probs, where each step sits in the token sequence, and
(optionally) the activations of every token at chosen hook points, read during the same passes.

Contexts are fed chunk by chunk through a :class:`ContextSession`: on a TransformerLens
``HookedTransformer`` with a KV cache (each token runs once), otherwise by re-running the whole
context through ``adapter.forward`` (exact on any backend, slower). ``fwd_hooks`` (e.g. an SAE
latent-removal hook) are active on every pass in both cases.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Literal, Sequence

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from ..models import FwdHooks, ModelAdapter
from .environments import TextEnvironment, make_environment
from .qlearning import Trajectory

__all__ = ["ActionTokenError", "ActionTokens", "ContextSession", "Experiment", "StepRecord", "action_tokens", "choice_logprobs",
           "play", "replay_logprobs"]

Policy = Literal["sample", "greedy"]


class ActionTokenError(ValueError):
    """An action whose ``" " + name`` is not a single token of the model's tokenizer."""


@dataclass
class StepRecord:
    episode: int  # 1-based
    state: int
    action: int
    action_name: str
    reward: float
    next_state: int
    done: bool
    policy: Literal["random", "model"]
    decision_pos: int  # last token before the action: where the choice is read
    action_pos: int  # the action token
    outcome_pos: int  # last token of the text after the action (reward / next state revealed)
    legal: list[str] = field(default_factory=list)
    logprobs: list[float] | None = None  # model log-probs over ``legal`` (renormalised); None for random steps


@dataclass
class Experiment:
    """One environment played for many episodes in one context."""

    task: str
    seed: int
    token_ids: list[int]
    steps: list[StepRecord]
    episode_spans: list[tuple[int, int]]  # [start, end) token range of each episode
    n_states: int
    action_names: list[str]
    legal: np.ndarray
    activations: dict[str, Float[Tensor, "pos d"]] = field(default_factory=dict)

    def trajectory(self) -> Trajectory:
        s = self.steps
        return Trajectory([r.state for r in s], [r.action for r in s], [r.reward for r in s], [r.next_state for r in s],
                          [r.done for r in s], self.legal, scored=[r.policy == "model" for r in s])

    def episode_rewards(self, policy: str | None = None) -> np.ndarray:
        """Total reward of each episode (only episodes played by ``policy`` when given)."""
        out: dict[int, float] = {}
        pol: dict[int, str] = {}
        for r in self.steps:
            out[r.episode] = out.get(r.episode, 0.0) + r.reward
            pol[r.episode] = r.policy
        return np.array([v for e, v in sorted(out.items()) if policy is None or pol[e] == policy])


@dataclass(frozen=True)
class ActionTokens:
    """How a set of legal actions is written in tokens: a shared ``prefix`` (often empty), then per
    action its remaining tokens, whose first token (``choice``) differs between actions."""

    prefix: tuple[int, ...]
    rest: dict[str, tuple[int, ...]]
    choice: dict[str, int]


def action_tokens(tokenizer, names: Sequence[str]) -> ActionTokens:
    """Tokens of ``" " + name`` for each action. The agent chooses by the first token after the
    common prefix; raises :class:`ActionTokenError` if two actions share it."""
    seqs = {n: tuple(tokenizer(" " + n, add_special_tokens=False)["input_ids"]) for n in names}
    if any(len(s) == 0 for s in seqs.values()):
        raise ActionTokenError(f"an action in {list(names)} tokenizes to nothing.")
    k = 0
    while all(len(s) > k + 1 for s in seqs.values()) and len({s[k] for s in seqs.values()}) == 1 and len(seqs) > 1:
        k += 1
    choice = {n: s[k] for n, s in seqs.items()}
    if len(set(choice.values())) != len(choice):
        raise ActionTokenError(f"actions {list(names)} are not told apart by one next token with this tokenizer "
                               f"({seqs}); the agent chooses by one next token: use names whose first tokens differ.")
    first = next(iter(seqs.values()))
    return ActionTokens(tuple(first[:k]), {n: s[k:] for n, s in seqs.items()}, choice)


def choice_logprobs(logits: Float[Tensor, " vocab"], token_ids: Sequence[int]) -> Float[np.ndarray, " n"]:
    """Log-probabilities of the given next tokens, renormalised over that set."""
    sel = logits.float()[torch.as_tensor(list(token_ids), device=logits.device)]
    return torch.log_softmax(sel, -1).cpu().numpy().astype(np.float64)


class ContextSession:
    """Feed a context chunk by chunk and read the next-token logits, with hooks active throughout.

    Use as a context manager (hooks and caches are released on exit, also on an exception)::

        with ContextSession(adapter, fwd_hooks, capture=["blocks.5.hook_resid_post"]) as s:
            logits = s.feed(ids)          # next-token logits after the whole context so far
            s.activations()               # {hook: [pos, d]} for every token fed
    """

    def __init__(self, adapter: ModelAdapter, fwd_hooks: FwdHooks = (), capture: Sequence[str] = (),
                 use_cache: bool | None = None):
        self.adapter = adapter
        self.fwd_hooks = list(fwd_hooks)
        self.capture = list(capture)
        if self.fwd_hooks:
            adapter.validate_hooks([n for n, _ in self.fwd_hooks])
        if self.capture:
            adapter.validate_hooks(self.capture)
        cache_ok = adapter.backend == "transformer_lens" and hasattr(getattr(adapter, "model", None), "blocks")
        if use_cache and not cache_ok:
            raise ValueError("use_cache=True needs a TransformerLens HookedTransformer adapter; use use_cache=None.")
        self.use_cache = cache_ok if use_cache is None else use_cache
        self.ids: list[int] = []
        self._chunks: dict[str, list[Tensor]] = {h: [] for h in self.capture}
        self._stack: ExitStack | None = None

    def __enter__(self) -> "ContextSession":
        self._stack = ExitStack()
        self._stack.enter_context(torch.no_grad())
        if self.use_cache:
            from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache

            model = self.adapter.model
            self._cache = TransformerLensKeyValueCache.init_cache(model.cfg, model.cfg.device, 1)

            def saver(name):
                def save(act, hook):
                    self._chunks[name].append(act[0].detach().float().cpu())
                return save

            hooks = self.fwd_hooks + [(n, saver(n)) for n in self.capture]
            self._stack.enter_context(model.hooks(fwd_hooks=hooks))
        return self

    def __exit__(self, *exc) -> None:
        if self._stack is not None:
            self._stack.close()
            self._stack = None
        self._cache = None

    def feed(self, ids: Sequence[int]) -> Float[Tensor, " vocab"]:
        """Append ``ids`` to the context; return the next-token logits after it."""
        if self._stack is None:
            raise RuntimeError("use the ContextSession in a `with` block.")
        ids = [int(i) for i in ids]
        if not ids:
            raise ValueError("feed() got no tokens.")
        self.ids.extend(ids)
        if not self.use_cache:
            batch = self.adapter.pad([self.ids])
            return self.adapter.forward(batch, fwd_hooks=self.fwd_hooks)[0, -1].float()
        model = self.adapter.model
        tokens = torch.tensor([ids], device=model.cfg.device)
        resid = model(tokens, attention_mask=torch.ones_like(tokens), past_kv_cache=self._cache,
                      stop_at_layer=model.cfg.n_layers)
        if model.cfg.normalization_type is not None:
            resid = model.ln_final(resid)
        return model.unembed(resid[:, -1:])[0, -1].float()

    def activations(self) -> dict[str, Float[Tensor, "pos d"]]:
        """Activations of every token fed so far at the ``capture`` hook points (float32, CPU)."""
        if not self.capture:
            return {}
        if self.use_cache:
            return {h: torch.cat(v) for h, v in self._chunks.items()}
        batch = self.adapter.pad([self.ids])
        acts = self.adapter.capture(batch, self.capture, fwd_hooks=self.fwd_hooks)
        return {h: a[0].float().cpu() for h, a in acts.items()}


def play(
    adapter: ModelAdapter,
    task: str | TextEnvironment,
    *,
    seed: int = 0,
    n_episodes: int = 10,
    random_episodes: int = 3,
    policy: Policy = "sample",
    fwd_hooks: FwdHooks = (),
    capture: Sequence[str] = (),
    use_cache: bool | None = None,
    env_kwargs: dict | None = None,
) -> Experiment:
    """Play one experiment: ``n_episodes`` episodes of ``task`` in one context (see module docstring).

    Deterministic given ``seed`` (the environment and the agent's sampling both derive from it).
    ``random_episodes = n_episodes`` plays the random policy only (no model call except captures).
    """
    if not 0 <= random_episodes <= n_episodes:
        raise ValueError(f"random_episodes must lie in [0, n_episodes={n_episodes}], got {random_episodes}.")
    if policy not in ("sample", "greedy"):
        raise ValueError(f"policy must be 'sample' or 'greedy', got {policy!r}.")
    env = task if isinstance(task, TextEnvironment) else make_environment(task, seed=seed, **(env_kwargs or {}))
    tok = adapter.tokenizer
    tokens_cache: dict[tuple[str, ...], ActionTokens] = {}

    def tokens_for(legal: list[str]) -> ActionTokens:
        key = tuple(legal)
        if key not in tokens_cache:
            tokens_cache[key] = action_tokens(tok, legal)
        return tokens_cache[key]
    rng = np.random.default_rng([int(seed), 7])
    steps: list[StepRecord] = []
    spans: list[tuple[int, int]] = []
    needs_model = random_episodes < n_episodes or bool(capture)

    def encode(text: str) -> list[int]:
        return tok(text, add_special_tokens=False)["input_ids"]

    with ContextSession(adapter, fwd_hooks, capture, use_cache=use_cache) as session:
        pending: list[int] = encode(env.render_history())  # the intro

        def flush() -> Tensor | None:
            nonlocal pending
            logits = session.feed(pending) if (pending and needs_model) else None
            if not needs_model:
                session.ids.extend(pending)
            pending = []
            return logits

        for ep in range(1, n_episodes + 1):
            start = len(session.ids) + len(pending)
            pending += encode(env.reset())
            model_turn = ep > random_episodes
            while not env.done:
                legal = env.legal_actions()
                at = tokens_for(legal)
                pending += list(at.prefix)
                decision_pos = len(session.ids) + len(pending) - 1
                if model_turn:
                    lp = choice_logprobs(flush(), [at.choice[a] for a in legal])
                    k = int(np.argmax(lp)) if policy == "greedy" else int(rng.choice(len(legal), p=np.exp(lp) / np.exp(lp).sum()))
                else:
                    lp, k = None, int(rng.integers(len(legal)))
                action = legal[k]
                action_pos = len(session.ids) + len(pending)
                pending += list(at.rest[action])
                res = env.step(action)
                pending += encode(res.text)
                steps.append(StepRecord(ep, res.state, res.action, action, res.reward, res.next_state, res.done,
                                        "model" if model_turn else "random", decision_pos, action_pos,
                                        len(session.ids) + len(pending) - 1, legal,
                                        None if lp is None else [float(x) for x in lp]))
            spans.append((start, len(session.ids) + len(pending)))
        if needs_model and pending:
            session.feed(pending)
        elif pending:
            session.ids.extend(pending)
        acts = session.activations()
        ids = list(session.ids)
    return Experiment(env.name, int(seed), ids, steps, spans, env.n_states, list(env.action_names), env.legal_mask(), acts)


@torch.no_grad()
def replay_logprobs(adapter: ModelAdapter, experiment: Experiment, fwd_hooks: FwdHooks = (),
                    capture: Sequence[str] = ()) -> tuple[list[np.ndarray | None], dict[str, Tensor]]:
    """Teacher-forced re-read of ``experiment``'s context under ``fwd_hooks``: the model's log-probs over
    the legal actions at every model step (None at random steps), and captures. One forward pass."""
    batch = adapter.pad([experiment.token_ids])
    names = list(capture)
    logits = adapter.forward(batch, fwd_hooks=fwd_hooks)[0]
    acts = {}
    if names:
        acts = {h: a[0].float().cpu() for h, a in adapter.capture(batch, names, fwd_hooks=fwd_hooks).items()}
    out: list[np.ndarray | None] = []
    for r in experiment.steps:
        if r.policy != "model":
            out.append(None)
            continue
        at = action_tokens(adapter.tokenizer, r.legal)
        out.append(choice_logprobs(logits[r.decision_pos], [at.choice[a] for a in r.legal]))
    return out, acts
