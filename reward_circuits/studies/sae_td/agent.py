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

from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Literal, Self

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from ...models import FwdHooks, ModelAdapter
from ...tasks.base import bos_prefix
from .environments import TextEnvironment, make_environment
from .qlearning import Trajectory

__all__ = ["ActionTokenError", "ActionTokens", "ContextSession", "Experiment", "StepRecord", "action_tokens", "choice_logprobs",
           "play", "play_many", "replay_logprobs"]

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
    """Feed several contexts (rows) chunk by chunk and read their next-token logits, hooks active throughout.

    Use as a context manager (hooks and caches are released on exit, also on an exception)::

        with ContextSession(adapter, n_rows=4, fwd_hooks=hooks, capture=["blocks.5.hook_resid_post"]) as s:
            logits = s.feed([ids_0, ids_1, [], ids_3])   # next-token logits per row (None for an empty chunk)
            s.activations()                              # per row: {hook: [pos, d]} for every token fed

    On a TransformerLens ``HookedTransformer`` the rows share one batched KV cache: each chunk is
    right-padded to the longest one with masked pad tokens, which TransformerLens skips both as keys
    and when counting positions, so every row sees exactly its own tokens (tested against running
    each row alone and against full recomputation). Otherwise (``use_cache=False`` or another
    backend) every call re-runs the rows' whole contexts through ``adapter.forward``.
    ``dry=True`` only records tokens (for random-policy play without captures).
    """

    def __init__(self, adapter: ModelAdapter, n_rows: int = 1, fwd_hooks: FwdHooks = (), capture: Sequence[str] = (),
                 use_cache: bool | None = None, dry: bool = False):
        if n_rows < 1:
            raise ValueError(f"n_rows must be >= 1, got {n_rows}.")
        self.adapter = adapter
        self.n_rows = n_rows
        self.fwd_hooks = list(fwd_hooks)
        self.capture = list(capture)
        self.dry = dry
        if self.fwd_hooks:
            adapter.validate_hooks([n for n, _ in self.fwd_hooks])
        if self.capture:
            adapter.validate_hooks(self.capture)
        cache_ok = adapter.backend == "transformer_lens" and hasattr(getattr(adapter, "model", None), "blocks")
        if use_cache and not cache_ok:
            raise ValueError("use_cache=True needs a TransformerLens HookedTransformer adapter; use use_cache=None.")
        self.use_cache = cache_ok if use_cache is None else bool(use_cache)
        self.ids: list[list[int]] = [[] for _ in range(n_rows)]
        self._chunks: list[dict[str, list[Tensor]]] = [{h: [] for h in self.capture} for _ in range(n_rows)]
        self._lengths: list[int] = []
        self._stack: ExitStack | None = None
        self._cache = None

    def __enter__(self) -> Self:
        self._stack = ExitStack()
        self._stack.enter_context(torch.no_grad())
        if self.use_cache and not self.dry:
            from transformer_lens.cache.key_value_cache import (
                TransformerLensKeyValueCache,
            )

            model = self.adapter.model
            self._cache = TransformerLensKeyValueCache.init_cache(model.cfg, model.cfg.device, self.n_rows)

            def saver(name):
                def save(act, hook):
                    for i, n in enumerate(self._lengths):
                        if n:
                            self._chunks[i][name].append(act[i, :n].detach().float().cpu())
                return save

            hooks = self.fwd_hooks + [(n, saver(n)) for n in self.capture]
            self._stack.enter_context(model.hooks(fwd_hooks=hooks))
        return self

    def __exit__(self, *exc) -> None:
        if self._stack is not None:
            self._stack.close()
            self._stack = None
        self._cache = None

    def feed(self, chunks: Sequence[Sequence[int]]) -> list[Float[Tensor, " vocab"] | None]:
        """Append ``chunks[i]`` to row ``i``; the next-token logits of each row given a non-empty chunk."""
        if self._stack is None:
            raise RuntimeError("use the ContextSession in a `with` block.")
        if len(chunks) != self.n_rows:
            raise ValueError(f"feed() needs one chunk per row ({self.n_rows}), got {len(chunks)}.")
        chunks = [[int(t) for t in c] for c in chunks]
        if not self.dry:
            longest = max(range(self.n_rows), key=lambda i: len(self.ids[i]) + len(chunks[i]))
            self.adapter.check_context(len(self.ids[longest]) + len(chunks[longest]),
                                       f"the in-context RL episode history of row {longest}")
        for i, c in enumerate(chunks):
            self.ids[i].extend(c)
        rows = [i for i, c in enumerate(chunks) if c]
        out: list[Tensor | None] = [None] * self.n_rows
        if self.dry or not rows:
            return out
        if not self.use_cache:
            batch = self.adapter.pad([self.ids[i] for i in rows], "left")
            logits = self.adapter.forward(batch, fwd_hooks=self.fwd_hooks)[:, -1].float()
            for k, i in enumerate(rows):
                out[i] = logits[k]
            return out
        model = self.adapter.model
        width = max(len(c) for c in chunks)
        pad_id = self.adapter.tokenizer.pad_token_id or 0
        tokens = torch.full((self.n_rows, width), pad_id, dtype=torch.long)
        mask = torch.zeros((self.n_rows, width), dtype=torch.long)
        for i, c in enumerate(chunks):
            tokens[i, :len(c)] = torch.tensor(c, dtype=torch.long)
            mask[i, :len(c)] = 1
        self._lengths = [len(c) for c in chunks]
        device = model.cfg.device
        resid = model(tokens.to(device), attention_mask=mask.to(device), past_kv_cache=self._cache,
                      stop_at_layer=model.cfg.n_layers)
        last = torch.tensor([len(chunks[i]) - 1 for i in rows], device=resid.device)
        resid = resid[torch.tensor(rows, device=resid.device), last][:, None]
        if model.cfg.normalization_type is not None:
            resid = model.ln_final(resid)
        logits = model.unembed(resid)[:, 0].float()
        for k, i in enumerate(rows):
            out[i] = logits[k]
        return out

    def activations(self) -> list[dict[str, Float[Tensor, "pos d"]]]:
        """Per row: activations of every token fed so far at the ``capture`` hook points (float32, CPU)."""
        if not self.capture:
            return [{} for _ in range(self.n_rows)]
        if self.dry:
            raise RuntimeError("a dry session captures nothing: open it with dry=False.")
        if self.use_cache:
            return [{h: torch.cat(v) if v else torch.zeros(0, self.adapter.d_model) for h, v in row.items()}
                    for row in self._chunks]
        batch = self.adapter.pad(self.ids, "left")
        acts = self.adapter.capture(batch, self.capture, fwd_hooks=self.fwd_hooks)
        keep = batch.attention_mask.bool().cpu()
        return [{h: a[i][keep[i]].float().cpu() for h, a in acts.items()} for i in range(self.n_rows)]


def _episodes(env: TextEnvironment, tokenizer, rng: np.random.Generator, n_episodes: int, random_episodes: int,
              policy: str, bar) -> Iterator[list[int]]:
    """One experiment as a generator: yields the tokens to feed whenever it needs the model's next-token
    logits (and receives them); returns (steps, episode spans, tokens still to feed)."""
    cache: dict[tuple[str, ...], ActionTokens] = {}

    def tokens_for(legal: list[str]) -> ActionTokens:
        if tuple(legal) not in cache:
            cache[tuple(legal)] = action_tokens(tokenizer, legal)
        return cache[tuple(legal)]

    def encode(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    steps: list[StepRecord] = []
    spans: list[tuple[int, int]] = []
    # the intro, after BOS when the tokenizer puts one first (Gemma 3 degrades without it)
    bos = [tokenizer.bos_token_id] if bos_prefix(tokenizer) else []
    pending: list[int] = bos + encode(env.render_history())
    sent = 0
    for ep in range(1, n_episodes + 1):
        start = sent + len(pending)
        pending += encode(env.reset())
        model_turn = ep > random_episodes
        while not env.done:
            legal = env.legal_actions()
            at = tokens_for(legal)
            pending += list(at.prefix)
            decision_pos = sent + len(pending) - 1
            if model_turn:
                logits = yield pending
                sent += len(pending)
                pending = []
                lp = choice_logprobs(logits, [at.choice[a] for a in legal])
                p = np.exp(lp)
                k = int(np.argmax(lp)) if policy == "greedy" else int(rng.choice(len(legal), p=p / p.sum()))
            else:
                lp, k = None, int(rng.integers(len(legal)))
            action = legal[k]
            action_pos = sent + len(pending)
            pending += list(at.rest[action])
            res = env.step(action)
            pending += encode(res.text)
            steps.append(StepRecord(ep, res.state, res.action, action, res.reward, res.next_state, res.done,
                                    "model" if model_turn else "random", decision_pos, action_pos,
                                    sent + len(pending) - 1, legal, None if lp is None else [float(x) for x in lp]))
        spans.append((start, sent + len(pending)))
        if bar is not None:
            bar.update(1)
    return steps, spans, pending


@dataclass
class PlaySettings:
    """How :func:`play_many` plays, passed as its keywords (or ``settings=``): ``n_episodes`` per
    experiment, the first ``random_episodes`` by the random policy, then the model's ``policy``;
    ``fwd_hooks`` run during play, ``capture`` names hooks whose activations are kept, ``progress``
    is True for a tqdm bar over episodes or an open tqdm bar to update."""

    n_episodes: int = 10
    random_episodes: int = 3
    policy: Policy = "sample"
    fwd_hooks: FwdHooks = ()
    capture: Sequence[str] = ()
    use_cache: bool | None = None
    env_kwargs: dict | None = None
    progress: bool | object = False


def play_many(adapter: ModelAdapter, task: str, seeds: Sequence[int], **settings) -> list[Experiment]:
    """Play one experiment per seed, all in one batch: one forward pass per decision round.

    Each experiment is what :func:`play` gives for its seed (the rows of the batch never see each
    other). ``settings``: the fields of :class:`PlaySettings` as keywords (``n_episodes=10``,
    ``random_episodes=3``, ``policy="sample"``, ``fwd_hooks=()``, ``capture=()``, ``use_cache=None``,
    ``env_kwargs=None``, ``progress=False``), or one ``settings=PlaySettings(...)``.
    """
    ps = settings["settings"] if set(settings) == {"settings"} else PlaySettings(**settings)
    n_episodes, random_episodes, policy, capture, progress = ps.n_episodes, ps.random_episodes, ps.policy, ps.capture, ps.progress
    fwd_hooks, use_cache, env_kwargs = ps.fwd_hooks, ps.use_cache, ps.env_kwargs
    if not 0 <= random_episodes <= n_episodes:
        raise ValueError(f"random_episodes must lie in [0, n_episodes={n_episodes}], got {random_episodes}.")
    if policy not in ("sample", "greedy"):
        raise ValueError(f"policy must be 'sample' or 'greedy', got {policy!r}.")
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("no seeds: give one seed per experiment.")
    envs = [make_environment(task, seed=s, **(env_kwargs or {})) for s in seeds]
    own_bar = progress is True
    bar = tqdm(total=len(seeds) * n_episodes, desc=f"{task} episodes", leave=False) if own_bar else (progress or None)
    dry = random_episodes == n_episodes and not capture
    gens = [_episodes(env, adapter.tokenizer, np.random.default_rng([s, 7]), n_episodes, random_episodes, policy, bar)
            for env, s in zip(envs, seeds)]
    n = len(gens)
    results: list[tuple | None] = [None] * n
    requests: list[list[int] | None] = [None] * n
    tails: list[list[int]] = [[] for _ in range(n)]

    def advance(i: int, value) -> None:
        try:
            requests[i] = gens[i].send(value)
        except StopIteration as stop:
            results[i], requests[i] = stop.value, None
            tails[i] = list(stop.value[2])

    try:
        with ContextSession(adapter, n, fwd_hooks, capture, use_cache=use_cache, dry=dry) as session:
            for i in range(n):
                advance(i, None)
            while any(r is not None for r in requests) or any(tails):
                asked = [r is not None for r in requests]
                chunks = [requests[i] if asked[i] else tails[i] for i in range(n)]
                for i in range(n):
                    if not asked[i]:
                        tails[i] = []
                logits = session.feed(chunks)
                for i in range(n):
                    if asked[i]:
                        advance(i, logits[i])
            acts = session.activations() if capture else [{} for _ in range(n)]
            ids = [list(r) for r in session.ids]
    finally:
        if own_bar:
            bar.close()
    out = []
    for i, env in enumerate(envs):
        steps, spans, _ = results[i]
        out.append(Experiment(env.name, seeds[i], ids[i], steps, spans, env.n_states, list(env.action_names),
                              env.legal_mask(), acts[i]))
    return out


def play(adapter: ModelAdapter, task: str, *, seed: int = 0, **kwargs) -> Experiment:
    """Play one experiment: ``n_episodes`` episodes of ``task`` in one context (see module docstring).

    Deterministic given ``seed`` (the environment and the agent's sampling both derive from it).
    ``random_episodes = n_episodes`` plays the random policy only (no model call unless capturing).
    Other keyword arguments as :func:`play_many`.
    """
    return play_many(adapter, task, [seed], **kwargs)[0]


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
