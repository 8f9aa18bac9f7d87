"""reward_circuits.studies.sae_td: environments, Q-learning TD errors, (α, β) fits, the LM agent on the tiny model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reward_circuits.analysis.td import Transitions, q_learning_td_errors
from reward_circuits.studies.sae_td import (
    ActionTokenError,
    GraphTask,
    GridWorld,
    IllegalActionError,
    QLearningFit,
    Trajectory,
    TwoStepTask,
    action_tokens,
    make_environment,
    play,
    play_many,
    q_learning_trace,
    replay_logprobs,
    word_list,
)

pytestmark = pytest.mark.usefixtures("one_thread")


# ---- Q-learning ---------------------------------------------------------------------------------


def test_q_learning_matches_hand_computed_td_errors():
    # 2 states, 2 actions, alpha 0.5, gamma 0.9
    # t0: s1 a1 r1, terminal   δ = 1 − 0 = 1;                Q(s1,a1) = .5
    # t1: s0 a0 r0 -> s1       δ = 0 + .9·max Q(s1) − 0 = .45; Q(s0,a0) = .225
    # t2: s1 a1 r0, terminal   δ = 0 − .5 = −.5 (no bootstrap at the end: −.05 if it did)
    args = Transitions([1, 0, 1], [1, 0, 1], [1, 0, 0], [1, 1, 1], [True, False, True])
    td, q_chosen, q_before = q_learning_td_errors(args, n_states=2, n_actions=2, alpha=0.5, gamma=0.9)
    np.testing.assert_allclose(td, [1.0, 0.45, -0.5])
    np.testing.assert_allclose(q_chosen, [0.0, 0.0, 0.5])
    np.testing.assert_allclose(q_before[2], [0.0, 0.5])
    # the bootstrap max runs over legal actions only
    td_legal, _, _ = q_learning_td_errors(args, 2, 2, 0.5, 0.9, legal=np.array([[True, True], [True, False]]))
    np.testing.assert_allclose(td_legal, [1.0, 0.0, -0.5])
    with pytest.raises(ValueError, match="alpha"):
        q_learning_td_errors(Transitions([0], [0], [0], [0], [True]), 1, 1, alpha=1.5, gamma=0.9)


def simulate_q_agent(alpha, beta, n_episodes, seed=0):
    """A softmax Q-learner playing the two-step task (its own update code, not the library's)."""
    env = TwoStepTask(seed=seed)
    rng = np.random.default_rng(seed + 100)
    legal = env.legal_mask()
    q = np.zeros(legal.shape)
    rows = []
    for _ in range(n_episodes):
        env.reset()
        while not env.done:
            s = env.state
            acts = env.legal_actions()
            idx = [env.action_names.index(a) for a in acts]
            p = np.exp(beta * q[s, idx] - np.max(beta * q[s, idx]))
            a = acts[rng.choice(len(acts), p=p / p.sum())]
            res = env.step(a)
            boot = 0.0 if res.done else q[res.next_state][legal[res.next_state]].max()
            q[res.state, res.action] += alpha * (res.reward + 0.99 * boot - q[res.state, res.action])
            rows.append((res.state, res.action, res.reward, res.next_state, res.done))
    s, a, r, s2, d = map(np.array, zip(*rows))
    return Trajectory(s, a, r, s2, d, legal)


def test_alpha_recovered_from_synthetic_q_learner():
    traj = simulate_q_agent(alpha=0.3, beta=6.0, n_episodes=700)
    fit = QLearningFit().fit([traj])
    assert fit.n_choices_ == 1400
    assert abs(fit.alpha_ - 0.3) < 0.12, fit
    assert 3.0 < fit.beta_ < 10.0, fit
    other = QLearningFit().fit([simulate_q_agent(alpha=0.05, beta=6.0, n_episodes=700, seed=1)])
    assert other.alpha_ < fit.alpha_  # the fit tells a slow learner from a fast one


def test_q_trace_and_fit_skip_random_steps():
    traj = simulate_q_agent(alpha=0.3, beta=6.0, n_episodes=20)
    tr = q_learning_trace(traj, alpha=0.1)
    assert tr.td_errors.shape == (40,) and tr.q_before.shape == (40, 6)
    traj.scored[:] = False
    with pytest.raises(ValueError, match="no scored choices"):
        QLearningFit().fit([traj])


# ---- environments -----------------------------------------------------------------------------------


def rollout(env, n_episodes, seed):
    rng = np.random.default_rng(seed)
    rewards = []
    for _ in range(n_episodes):
        env.reset()
        while not env.done:
            legal = env.legal_actions()
            rewards.append(env.step(legal[rng.integers(len(legal))]).reward)
    return env.render_history(), rewards


@pytest.mark.parametrize("task", ["two_step", "grid", "graph"])
def test_environments_are_deterministic_given_seed(task):
    a, ra = rollout(make_environment(task, seed=3), 12, seed=0)
    b, rb = rollout(make_environment(task, seed=3), 12, seed=0)
    c, _ = rollout(make_environment(task, seed=4), 12, seed=0)
    assert a == b and ra == rb
    assert a != c  # the seed matters (transitions, rewarded room or node names)


@pytest.mark.parametrize("task", ["two_step", "grid", "graph"])
def test_environments_reject_illegal_actions(task):
    env = make_environment(task, seed=0)
    with pytest.raises(IllegalActionError, match="reset"):
        env.legal_actions()
    env.reset()
    legal = env.legal_actions()
    bad = next(a for a in env.action_names if a not in legal) if len(legal) < len(env.action_names) else "jump"
    with pytest.raises(IllegalActionError, match=r"not legal.*legal actions are"):
        env.step(bad)
    with pytest.raises(IllegalActionError, match="not finished"):
        env.reset()


def test_environment_specifics():
    env = GridWorld(seed=0, size=3)
    env.reset()
    assert env.legal_actions() == ["down", "right"]  # (0,0): the corner
    g = GraphTask(seed=2, n_nodes=6)
    assert set(g.names) <= set(word_list()) and len(set(g.names)) == 6
    assert g.adjacency.sum(1).min() >= 2 and (g.adjacency == g.adjacency.T).all()
    t = TwoStepTask(seed=0)
    t.reset()
    res = t.step("A")
    assert res.text.startswith(" to planet") and not res.done
    assert t.render_history().endswith("Trip 1: spaceship A" + res.text)
    with pytest.raises(ValueError, match="word list"):
        GraphTask(seed=0, n_nodes=5, words=["a", "b"])
    with pytest.raises(ValueError, match="unknown task"):
        make_environment("maze")


def test_word_list_is_single_token_for_default_tokenizer():
    words = word_list()
    assert len(words) >= 100 and len(set(words)) == len(words)
    from transformers import AutoTokenizer

    from reward_circuits.models.loading import ModelLoadError, resolve_model_path

    try:
        tok = AutoTokenizer.from_pretrained(resolve_model_path("default"))
    except (ModelLoadError, OSError) as e:  # the packaged model is not on this machine
        pytest.skip(f"default tokenizer unavailable: {e}")
    at = action_tokens(tok, words)  # every word is one distinct token: no shared prefix
    assert at.prefix == () and all(len(r) == 1 for r in at.rest.values())
    for env in (TwoStepTask(), GridWorld()):
        assert action_tokens(tok, env.action_names).prefix == ()


# ---- the agent on the tiny model ----------------------------------------------------------------


def test_action_tokens_need_distinct_choice_tokens(tl_adapter):
    at = action_tokens(tl_adapter.tokenizer, ["up", "down"])  # char-level: " up" = [' ', 'u', 'p']
    assert len(at.prefix) == 1 and at.choice["up"] != at.choice["down"]
    assert action_tokens(tl_adapter.tokenizer, ["apple", "apricot"]).prefix == tuple(tl_adapter.tokenizer(" ap")["input_ids"])
    with pytest.raises(ActionTokenError, match="one next token"):
        action_tokens(tl_adapter.tokenizer, ["ant", "antelope"])


@pytest.mark.parametrize("task", ["two_step", "grid"])
def test_cached_session_matches_full_recompute_and_nnsight(tiny_adapters, task):
    tl, nn = tiny_adapters["transformer_lens"], tiny_adapters["nnsight"]
    hook = "blocks.1.hook_resid_post"
    kw = {"seed": 1, "n_episodes": 2, "random_episodes": 1, "capture": [hook]}
    cached = play(tl, task, **kw)
    full = play(tl, task, use_cache=False, **kw)
    other = play(nn, task, **kw)
    assert [s.action for s in cached.steps] == [s.action for s in full.steps] == [s.action for s in other.steps]
    model_steps = [s for s in cached.steps if s.policy == "model"]
    assert model_steps and all(s.logprobs is not None for s in model_steps)
    for a, b, c in zip(cached.steps, full.steps, other.steps):
        if a.logprobs is not None:
            np.testing.assert_allclose(a.logprobs, b.logprobs, atol=1e-4)
            np.testing.assert_allclose(a.logprobs, c.logprobs, atol=1e-3)
    assert cached.activations[hook].shape == (len(cached.token_ids), tl.d_model)
    torch.testing.assert_close(cached.activations[hook], other.activations[hook], atol=1e-3, rtol=1e-3)
    replayed, _ = replay_logprobs(tl, cached)
    for r, s in zip(replayed, cached.steps):
        if s.logprobs is not None:
            np.testing.assert_allclose(r, s.logprobs, atol=1e-4)


def test_play_bookkeeping(tl_adapter):
    exp = play(tl_adapter, "two_step", seed=0, n_episodes=3, random_episodes=3)
    assert all(s.policy == "random" for s in exp.steps) and len(exp.steps) == 6
    tok = tl_adapter.tokenizer
    for s in exp.steps:
        assert tok.decode([exp.token_ids[s.action_pos]]) == s.action_name[0]  # the choice token is the action's
        assert s.decision_pos == s.action_pos - 1 and s.outcome_pos > s.action_pos
    assert exp.episode_spans[0][1] == exp.episode_spans[1][0] and exp.episode_spans[-1][1] == len(exp.token_ids)
    text = tok.decode(exp.token_ids)
    env = TwoStepTask(seed=0)
    assert text.startswith(env.intro()) and text.count("Trip ") == 3
    assert len(exp.trajectory()) == 6 and not exp.trajectory().scored.any()
    with pytest.raises(ValueError, match="random_episodes"):
        play(tl_adapter, "two_step", n_episodes=2, random_episodes=3)


@pytest.mark.parametrize("use_cache", [True, False])
def test_batched_experiments_equal_single_runs(tl_adapter, use_cache):
    """Rows of different lengths share one padded, cached batch; each must equal its solo run."""
    hook = "blocks.0.hook_resid_post"
    kw = {"n_episodes": 2, "random_episodes": 0, "capture": [hook], "use_cache": use_cache}
    many = play_many(tl_adapter, "grid", [0, 1, 2], **kw)
    for seed, exp in zip([0, 1, 2], many):
        solo = play(tl_adapter, "grid", seed=seed, **kw)
        assert exp.token_ids == solo.token_ids and [s.action for s in exp.steps] == [s.action for s in solo.steps]
        for a, b in zip(exp.steps, solo.steps):
            np.testing.assert_allclose(a.logprobs, b.logprobs, atol=1e-4)
        torch.testing.assert_close(exp.activations[hook], solo.activations[hook], atol=1e-4, rtol=1e-4)
    assert len({len(e.token_ids) for e in many}) > 1  # the rows really had different lengths
