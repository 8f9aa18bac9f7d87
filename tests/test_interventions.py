"""Interventions on the tiny random Llama, on both backends (fast; no real model)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from reward_circuits.analysis.causal import ablation_study, steering_study, td_trace_under
from reward_circuits.analysis.confidence import confidence_study, next_token_confidence, parse_confidence, score_vs_reward
from reward_circuits.interventions import (
    Intervention,
    PositionScope,
    add_direction,
    as_fwd_hooks,
    generate_and_score,
    intervene,
    mean_ablate,
    patch_from,
    patch_interventions,
    resample_ablate,
    scale,
    teacher_forced_prompt,
    zero_ablate,
)
from reward_circuits.models import GenerationConfig
from reward_circuits.neurons import NeuronSet
from reward_circuits.models.tiny import tiny_adapter

BACKENDS = ["transformer_lens", "nnsight"]
MLP = "blocks.0.mlp.hook_post"
RESID0 = "blocks.0.hook_resid_post"
RESID1 = "blocks.1.hook_resid_post"
GREEDY = GenerationConfig(max_new_tokens=4, progress=False, batch_size=8)


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny models run far faster on 1 thread


@pytest.fixture(scope="module")
def adapters():
    return {b: tiny_adapter(b, seed=0) for b in BACKENDS}


@pytest.fixture(scope="module")
def batch(adapters):
    # same-length strings so that a clean cache lines up position by position
    return adapters["transformer_lens"].tokenize(["What is 2+3?", "Say hi now!!"])


@pytest.fixture(scope="module")
def batch_b(adapters):
    return adapters["transformer_lens"].tokenize(["Tell me 9*9.", "Why so blue?"])


def _run(adapter, batch, hooks=()):
    return adapter.forward(batch, fwd_hooks=as_fwd_hooks(hooks)).float()


def _assert_close(a, b, atol=1e-5):
    assert a.shape == b.shape
    assert torch.allclose(a, b, atol=atol, rtol=0), float((a - b).abs().max())


# ---- hook semantics --------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_ablate_equals_manual_zeroing(adapters, batch, backend):
    ad = adapters[backend]
    base = _run(ad, batch)
    d = ad.hook_width(MLP)
    ours = _run(ad, batch, [(MLP, zero_ablate(list(range(d))))])
    manual = _run(ad, batch, [(MLP, lambda a, hook: torch.zeros_like(a))])
    _assert_close(ours, manual, atol=0)
    assert not torch.allclose(ours, base, atol=1e-3)  # the ablation does something
    # a subset of dims, as a NeuronSet (which knows its hook)
    ns = NeuronSet(MLP, [1, 5, 40], d)

    def by_hand(a, hook):
        a = a.clone()
        a[..., [1, 5, 40]] = 0
        return a

    _assert_close(_run(ad, batch, [zero_ablate(ns)]), _run(ad, batch, [(MLP, by_hand)]), atol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_scale_one_is_identity(adapters, batch, backend):
    ad = adapters[backend]
    base = _run(ad, batch)
    _assert_close(_run(ad, batch, [(RESID0, scale([0, 3, 7], 1.0))]), base, atol=0)
    _assert_close(_run(ad, batch, [(RESID0, scale(None, 1.0))]), base, atol=0)
    assert not torch.allclose(_run(ad, batch, [(RESID0, scale(None, 3.0))]), base, atol=1e-3)


def test_hooks_do_not_edit_in_place():
    x = torch.randn(2, 5, 8)
    before = x.clone()
    for fn in [zero_ablate([1, 2]), scale(None, 2.0), mean_ablate([0], torch.ones(8)), add_direction(torch.ones(8), 2.0),
               resample_ablate([3], torch.randn(4, 8), seed=1), patch_from({"h": torch.zeros(2, 5, 8)})]:
        out = fn(x, hook=type("H", (), {"name": "h"})())
        assert out is not x
        assert torch.equal(x, before)


@pytest.mark.parametrize("backend", BACKENDS)
def test_patch_every_position_reproduces_clean_logits(adapters, batch, batch_b, backend):
    ad = adapters[backend]
    clean = ad.capture(batch, ["blocks.0.hook_resid_pre", RESID1])
    logits_a, logits_b = _run(ad, batch), _run(ad, batch_b)
    assert not torch.allclose(logits_a, logits_b, atol=1e-3)
    for name in clean:
        patched = _run(ad, batch_b, [(name, patch_from({name: clean[name]}))])
        _assert_close(patched, logits_a, atol=1e-5)
    # patch_interventions covers every hook of the cache
    _assert_close(_run(ad, batch_b, patch_interventions(clean)), logits_a, atol=1e-5)
    # misaligned positions: a clear error
    short = {RESID1: clean[RESID1][:, :-1]}
    with pytest.raises(Exception, match="positions are aligned|Positions are aligned"):
        _run(ad, batch_b, [(RESID1, patch_from(short))])


def _kinds(ad, batch):
    d_mlp, d = ad.hook_width(MLP), ad.hook_width(RESID0)
    g = torch.Generator().manual_seed(0)
    return {
        "zero": [(MLP, zero_ablate([0, 9, 33]))],
        "mean": [(MLP, mean_ablate([2, 4, 60], torch.randn(d_mlp, generator=g)))],
        "resample": [(RESID0, resample_ablate([1, 2, 3, 30], torch.randn(7, d, generator=g), seed=3))],
        "scale": [(RESID0, scale([5, 6], 4.0))],
        "add_direction": [(RESID0, add_direction(torch.randn(d, generator=g), 2.5))],
        "prompt_only": [(MLP, zero_ablate(None, positions="prompt", prompt_len=torch.tensor([4, 6])))],
        "explicit_positions": [(RESID0, scale(None, 0.0, positions=torch.tensor([0, 2])))],
    }


def test_backends_agree_for_every_kind(adapters, batch, batch_b):
    tl, nn = adapters["transformer_lens"], adapters["nnsight"]
    _assert_close(_run(tl, batch), _run(nn, batch), atol=1e-4)
    kinds_tl, kinds_nn = _kinds(tl, batch), _kinds(nn, batch)
    for kind in kinds_tl:
        _assert_close(_run(tl, batch, kinds_tl[kind]), _run(nn, batch, kinds_nn[kind]), atol=1e-4)
    clean = tl.capture(batch_b, [RESID0])
    _assert_close(_run(tl, batch, [(RESID0, patch_from(clean))]), _run(nn, batch, [(RESID0, patch_from(clean))]), atol=1e-4)


def test_backends_generate_the_same_under_ablation(adapters):
    tl, nn = adapters["transformer_lens"], adapters["nnsight"]
    prompts = ["What is 7+5?", "Hi", "abc def ghi"]
    ns = NeuronSet(RESID0, [0, 4, 11, 20], tl.d_model)
    cfg = GenerationConfig(max_new_tokens=6, progress=False)
    plain = [g.response_ids for g in tl.generate(prompts, cfg)]
    got = {b: [g.response_ids for g in ad.generate(prompts, cfg, fwd_hooks=as_fwd_hooks(zero_ablate(ns)))]
           for b, ad in adapters.items()}
    assert got["transformer_lens"] == got["nnsight"]
    big = as_fwd_hooks([(RESID0, scale(None, 0.0)), (RESID1, scale(None, 0.0))])
    assert [g.response_ids for g in tl.generate(prompts, cfg, fwd_hooks=big)] != plain  # hooks act during generation


def test_neuronset_hook_refuses_other_hook_point(adapters, batch):
    tl = adapters["transformer_lens"]
    ns = NeuronSet(RESID0, [1], tl.d_model)
    with pytest.raises(ValueError, match="built for NeuronSet"):
        _run(tl, batch, [(RESID1, zero_ablate(ns))])
    assert as_fwd_hooks(zero_ablate(ns))[0][0] == RESID0


# ---- composition with the user's own hooks ------------------------------------------------------


def test_composes_with_user_hooks_in_run_with_hooks(adapters, batch):
    tl = adapters["transformer_lens"]
    model = tl.model
    ours = Intervention(MLP, zero_ablate([3, 8, 21]))

    def user_hook(act, hook):  # the user's own steering + recording
        seen.append(act.detach().clone())
        return act + 0.5

    def both_by_hand_mlp(act, hook):
        act = act.clone()
        act[..., [3, 8, 21]] = 0
        return act

    seen: list = []
    got = model.run_with_hooks(batch.input_ids, attention_mask=batch.attention_mask,
                               fwd_hooks=[ours, (RESID1, user_hook)])  # an Intervention unpacks as (name, fn)
    seen_ours = seen[-1]
    expected = model.run_with_hooks(batch.input_ids, attention_mask=batch.attention_mask,
                                    fwd_hooks=[(MLP, both_by_hand_mlp), (RESID1, lambda a, hook: a + 0.5)])
    _assert_close(got, expected, atol=0)
    seen.clear()
    model.run_with_hooks(batch.input_ids, attention_mask=batch.attention_mask, fwd_hooks=[(RESID1, user_hook)])
    assert not torch.allclose(seen_ours, seen[-1], atol=1e-4)  # the user's hook saw our ablation's effect
    plain = model(batch.input_ids, attention_mask=batch.attention_mask)
    assert not torch.allclose(got, plain, atol=1e-3)
    # with model.hooks(...) and intervene(...) around a user's run_with_hooks: both take effect
    with model.hooks(fwd_hooks=as_fwd_hooks([ours])):
        g2 = model.run_with_hooks(batch.input_ids, attention_mask=batch.attention_mask, fwd_hooks=[(RESID1, lambda a, hook: a + 0.5)])
    _assert_close(g2, expected, atol=0)
    with intervene(model, [ours]) as m:
        g3 = m.run_with_hooks(batch.input_ids, attention_mask=batch.attention_mask, fwd_hooks=[(RESID1, lambda a, hook: a + 0.5)])
    _assert_close(g3, expected, atol=0)
    assert all(len(hp.fwd_hooks) == 0 for hp in model.hook_dict.values())
    _assert_close(model(batch.input_ids, attention_mask=batch.attention_mask), plain, atol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_intervene_adapter(adapters, batch, backend):
    ad = adapters[backend]
    base = _run(ad, batch)
    hooks = [Intervention(MLP, zero_ablate([0, 1, 2, 3]))]
    with intervene(ad, hooks) as m:
        inside = m.forward(batch).float()
        extra = m.forward(batch, fwd_hooks=[(RESID1, lambda a, hook: a * 0.0)]).float()
    _assert_close(inside, _run(ad, batch, hooks), atol=1e-6)
    _assert_close(extra, _run(ad, batch, hooks + [(RESID1, lambda a, hook: a * 0.0)]), atol=1e-6)
    _assert_close(_run(ad, batch), base, atol=0)


# ---- positions during generation ------------------------------------------------------------------


def _recorder(store):
    def rec(act, hook):
        store.append(act.detach().clone())
        return act

    return rec


@pytest.mark.parametrize("backend", BACKENDS)
def test_prompt_vs_generated_positions_during_generation(adapters, backend):
    ad = adapters[backend]
    prompts = ["What is 7+5?", "Hi there"]
    cfg = GenerationConfig(max_new_tokens=4, progress=False)
    for which in ("prompt", "generated", "all"):
        seen: list = []
        hooks = [(RESID0, zero_ablate(None, positions=which)), (RESID0, _recorder(seen))]
        ad.generate(prompts, cfg, fwd_hooks=hooks)
        assert len(seen) >= 2 and seen[0].shape[1] > 1 and all(s.shape[1] == 1 for s in seen[1:])
        prefill_zero = bool((seen[0] == 0).all())
        decode_zero = [bool((s == 0).all()) for s in seen[1:]]
        assert prefill_zero == (which in ("prompt", "all"))
        assert all(z == (which in ("generated", "all")) for z in decode_zero)
    # same generations on both backends under a generated-only ablation
    gens = {b: [g.response_ids for g in a.generate(prompts, cfg, fwd_hooks=[(RESID0, zero_ablate(None, positions="generated"))])]
            for b, a in adapters.items()}
    assert gens["transformer_lens"] == gens["nnsight"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_prompt_len_under_teacher_forcing(adapters, backend):
    ad = adapters[backend]
    batch = ad.pad([[10, 11, 12, 13, 14, 15], [20, 21, 22, 23, 24, 25]])
    for scope_kwargs, ctx in [({"prompt_len": torch.tensor([2, 4])}, None), ({}, torch.tensor([2, 4]))]:
        seen: list = []
        hooks = [(RESID0, zero_ablate(None, positions="generated", **scope_kwargs)), (RESID0, _recorder(seen))]
        if ctx is None:
            ad.forward(batch, hooks)
        else:
            with teacher_forced_prompt(ctx):
                ad.forward(batch, hooks)
        a = seen[0]
        zero_cols = [(a[i] == 0).all(-1) for i in range(2)]
        assert zero_cols[0].tolist() == [False, False, True, True, True, True]
        assert zero_cols[1].tolist() == [False, False, False, False, True, True]
    # outside the block a full-sequence forward is all prompt again
    seen = []
    ad.forward(batch, [(RESID0, zero_ablate(None, positions="generated")), (RESID0, _recorder(seen))])
    assert not bool((seen[0] == 0).all(-1).any())


def test_position_scope_rules():
    dev = torch.device("cpu")
    assert PositionScope("prompt").select(3, 1, dev) == "nowhere"
    assert PositionScope("generated").select(3, 1, dev) is None
    assert PositionScope("generated").select(3, 7, dev) == "nowhere"
    m = PositionScope(slice(-1, None)).select(2, 5, dev)
    assert m[:, -1].all() and not m[:, :-1].any()
    assert PositionScope(torch.tensor([4])).select(2, 1, dev) == "nowhere"
    with pytest.raises(ValueError):
        PositionScope("middle")


# ---- exceptions leave no hooks behind ---------------------------------------------------------------


class Boom(RuntimeError):
    pass


def _boom(act, hook):
    raise Boom("inside a hook")


@pytest.mark.parametrize("backend", BACKENDS)
def test_hooks_removed_when_an_exception_escapes(adapters, batch, backend):
    ad = adapters[backend]
    base = _run(ad, batch)
    base_gen = [g.response_ids for g in ad.generate(["What is 7+5?"], GREEDY)]

    with pytest.raises(Exception):
        ad.forward(batch, [(MLP, zero_ablate([1])), (RESID1, _boom)])
    with pytest.raises(Exception):
        ad.generate(["What is 7+5?"], GREEDY, fwd_hooks=[(MLP, zero_ablate([1])), (RESID1, _boom)])
    with pytest.raises(Boom):
        with intervene(ad, [Intervention(MLP, zero_ablate(None))]) as m:
            m.forward(batch)
            raise Boom("inside the context manager")
    if backend == "transformer_lens":
        assert all(len(hp.fwd_hooks) == 0 for hp in ad.model.hook_dict.values())
        with pytest.raises(Boom):
            with intervene(ad.model, [Intervention(MLP, zero_ablate(None))]):
                raise Boom("raw model")
        assert len(ad.model.hook_dict[MLP].fwd_hooks) == 0
        assert len(ad.model.hook_dict[RESID1].fwd_hooks) == 0
    _assert_close(_run(ad, batch), base, atol=0)
    assert [g.response_ids for g in ad.generate(["What is 7+5?"], GREEDY)] == base_gen


# ---- studies ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fake_task():
    from reward_circuits.tasks import Example, Task

    exs = [Example(f"q{i}", q, "0") for i, q in enumerate(["What is 1+1?", "Name a colour.", "Hello?", "Count to 3.",
                                                           "Say yes.", "2*3=?"])]
    # reward depends on the (random) model's output, so ablations can move it
    return Task("fake", exs, lambda resp, ex: 1.0 if resp[:1] and resp[0] in "abcdefghijklmnopqrstuvwxyz0123456789" else 0.0)


def test_ablation_study_keys_and_random_draws(adapters, fake_task):
    tl = adapters["transformer_lens"]
    sets = {0: NeuronSet(RESID0, [0, 1, 2, 3], tl.d_model, layer=0), 1: NeuronSet(RESID1, [5, 6, 7, 8], tl.d_model, layer=1)}
    res = ablation_study(tl, fake_task, None, sets, n_random_draws=3, seed=0, config=GREEDY)
    assert set(res) == {"0", "1"}
    for layer, e in res.items():
        assert {"baseline_acc", "value_acc", "random_acc_mean", "random_acc_std", "n_neurons"} <= set(e)
        assert e["n_neurons"] == 4 and len(e["random_accs"]) == 3 and len(set(e["random_seeds"])) == 3
        assert e["random_acc_std"] == pytest.approx(float(np.std(e["random_accs"], ddof=1)))
        assert e["random_acc_mean"] == pytest.approx(float(np.mean(e["random_accs"])))
        assert all(0.0 <= a <= 1.0 for a in e["random_accs"] + [e["value_acc"], e["baseline_acc"]])
    base = generate_and_score(tl, fake_task, None, (), GREEDY)
    assert res["0"]["baseline_acc"] == base.accuracy
    # value accuracy is exactly what a direct run under the same ablation gives
    direct = generate_and_score(tl, fake_task, None, [zero_ablate(sets[1])], GREEDY).accuracy
    assert res["1"]["value_acc"] == direct
    # each random draw is the recorded seed's set (same size, no value neuron), re-run directly
    for s, acc in zip(res["1"]["random_seeds"], res["1"]["random_accs"]):
        rnd = NeuronSet.random(RESID1, tl.d_model, 4, seed=s, exclude=sets[1].indices)
        assert not set(rnd.indices) & set(sets[1].indices)
        assert generate_and_score(tl, fake_task, None, [zero_ablate(rnd)], GREEDY).accuracy == acc
    accs = [generate_and_score(tl, fake_task, None, [zero_ablate(NeuronSet.random(RESID1, tl.d_model, 4, seed=s))],
                               GREEDY).accuracy for s in range(6)]
    assert len(set(accs)) > 1  # random sets do differ on this task, so the check above has teeth
    # deterministic: same seed, same random accuracies
    again = ablation_study(tl, fake_task, None, {1: sets[1]}, n_random_draws=3, seed=0, config=GREEDY, baseline=base)
    assert again["1"]["random_accs"] == res["1"]["random_accs"]


def test_mean_mode_ablation_runs(adapters, fake_task):
    tl = adapters["transformer_lens"]
    sets = {0: NeuronSet(MLP, [0, 1], tl.d_mlp, layer=0)}
    res = ablation_study(tl, fake_task, fake_task.examples[:3], sets, n_random_draws=1, mode="mean", config=GREEDY)
    assert res["0"]["mode"] == "mean" and res["0"]["random_acc_std"] == 0.0


class LinearProbe:
    """A stand-in value probe: V(s) = sigmoid(w · s)."""

    def __init__(self, hook, d, seed=0):
        self.hook_names = [hook]
        self.w = torch.randn(d, generator=torch.Generator().manual_seed(seed))

    def predict_value(self, acts, hook=None):
        return torch.sigmoid(acts.float() @ self.w)

    def input_weight_norms(self, hook):
        return self.w.abs()


@pytest.mark.parametrize("backend", BACKENDS)
def test_steering_value_shift_sees_intervention_on_probe_hook(adapters, fake_task, backend):
    ad = adapters[backend]
    probe = LinearProbe(RESID1, ad.d_model)
    ns = NeuronSet(RESID1, list(range(ad.d_model)), ad.d_model)
    res = steering_study(ad, fake_task, fake_task.examples[:4], ns, factors=(0.0, 1.0), probe=probe, config=GREEDY)
    assert res["factors"]["1"]["mean_value_shift"] == 0.0
    # factor 0 on every dim of the probe's own hook: V = sigmoid(0) = 0.5 exactly
    assert res["factors"]["0"]["mean_value"] == pytest.approx(0.5, abs=1e-6)
    assert res["factors"]["0"]["mean_value_shift"] == pytest.approx(0.5 - res["baseline_value"], abs=1e-6)
    assert res["factors"]["1"]["accuracy"] == res["baseline_acc"]


def test_td_trace_under(adapters):
    tl, nn = adapters["transformer_lens"], adapters["nnsight"]
    probe = LinearProbe(RESID1, tl.d_model, seed=1)
    gens = tl.generate(["What is 7+5?", "Hi"], GenerationConfig(max_new_tokens=5, progress=False))
    values = td_trace_under(tl, probe, RESID1, gens, (), what="value")
    for g, v in zip(gens, values):
        assert v.shape == (len(g.response_ids) + 1,)
        acts = tl.capture(tl.pad([g.prompt_ids + g.response_ids]), [RESID1])[RESID1][0]
        manual = probe.predict_value(acts[len(g.prompt_ids) - 1:]).numpy()
        np.testing.assert_allclose(v, manual, atol=1e-5)
    td = td_trace_under(tl, probe, RESID1, gens, (), gamma=0.9)
    assert math.isnan(td[0][0])
    np.testing.assert_allclose(td[0][1:], 0.9 * values[0][1:] - values[0][:-1], atol=1e-9)
    # an ablation restricted to generated tokens leaves V(s_0) alone and changes later states
    hooks = [(RESID1, scale(None, 0.0, positions="generated"))]
    for ad in (tl, nn):
        under = td_trace_under(ad, probe, RESID1, gens, hooks, what="value")
        for v0, v1 in zip(values, under):
            assert v1[0] == pytest.approx(v0[0], abs=1e-5)
            np.testing.assert_allclose(v1[1:], 0.5, atol=1e-6)


# ---- confidence -------------------------------------------------------------------------------------


def test_score_vs_reward_on_hand_data():
    r = score_vs_reward([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
    assert r["auc"] == pytest.approx(0.75)
    assert r["spearman"] == pytest.approx(2 / (2 * math.sqrt(5)))  # ranks (1,3,2,4) vs (1.5,1.5,3.5,3.5)
    assert r["n"] == 4 and r["note"] == ""
    perfect = score_vs_reward([0.9, 0.1, 0.8, 0.2], [1, 0, 1, 0])
    assert perfect["auc"] == 1.0 and perfect["spearman"] == pytest.approx(math.sqrt(0.8))
    const_r = score_vs_reward([0.1, 0.2, 0.3], [1, 1, 1])
    assert math.isnan(const_r["auc"]) and math.isnan(const_r["spearman"]) and "rewards" in const_r["note"]
    const_s = score_vs_reward([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1])
    assert math.isnan(const_s["spearman"]) and const_s["auc"] == 0.5 and "constant" in const_s["note"]
    with_nan = score_vs_reward([0.1, float("nan"), 0.9, 0.2], [0, 1, 1, 0])
    assert with_nan["n"] == 3 and with_nan["auc"] == 1.0
    assert math.isnan(score_vs_reward([], [])["auc"])


def test_parse_confidence():
    assert parse_confidence("0.85") == 0.85
    assert parse_confidence("I'd say 0.7, maybe 0.9") == 0.7
    assert parse_confidence("85%") == 0.85
    assert parse_confidence("7") == 1.0 and parse_confidence("-0.2") == 0.0
    assert parse_confidence(".5 sure") == 0.5
    assert math.isnan(parse_confidence("very confident")) and math.isnan(parse_confidence(""))


def test_next_token_confidence_matches_manual(adapters, capsys):
    tl = adapters["transformer_lens"]
    gens = tl.generate(["What is 7+5?", "Hi"], GenerationConfig(max_new_tokens=4, progress=False))
    got = next_token_confidence(tl, gens, batch_size=1)
    assert "next-token confidence" in capsys.readouterr().err  # its progress bar (minutes at paper scale)
    assert np.allclose(next_token_confidence(tl, gens, progress=False), got, atol=1e-6)  # batch size: float noise only
    assert capsys.readouterr().err == ""
    for g, p in zip(gens, got):
        ids = torch.tensor([g.prompt_ids + g.response_ids])
        with torch.no_grad():
            logits = tl.model(ids)[0].float().log_softmax(-1)
        P = len(g.prompt_ids)
        manual = torch.stack([logits[P - 1 + j, t].exp() for j, t in enumerate(g.response_ids)]).mean()
        assert p == pytest.approx(float(manual), abs=1e-5)
    assert (got > 0).all() and (got <= 1).all()


def test_confidence_study(adapters, fake_task):
    tl = adapters["transformer_lens"]
    exs = fake_task.examples[:4]
    run = generate_and_score(tl, fake_task, exs, (), GREEDY)
    rewards = [1.0, 0.0, 1.0, 0.0]  # hand-set so every metric is defined
    res = confidence_study(tl, fake_task, exs, rewards, [0.9, 0.2, 0.7, 0.4], run.generations, GREEDY,
                           verbalized=[0.8, float("nan"), 0.6, 0.9])
    assert res["value_neurons"]["auc"] == 1.0 and res["value_neurons"]["spearman"] == pytest.approx(math.sqrt(0.8))
    assert res["verbalized"]["parse_rate"] == 0.75 and res["verbalized"]["n"] == 3
    assert set(res["next_token_prob"]) >= {"spearman", "auc", "n"}
    # the full path (verbalized generation + no probe) never crashes, even with one reward class
    res2 = confidence_study(tl, fake_task, exs, [1.0] * 4, None, run.generations, GREEDY)
    assert math.isnan(res2["value_neurons"]["auc"]) and 0.0 <= res2["verbalized"]["parse_rate"] <= 1.0
    assert math.isnan(res2["next_token_prob"]["auc"]) and res2["next_token_prob"]["note"]


def test_verbalized_confidence_of_a_base_model_without_chat_template(adapters, fake_task, monkeypatch):
    """A base model (Gemma 3 270M) has no chat template: the question becomes one more few-shot turn
    after its own answer instead of raising in apply_chat_template (seen on the real model)."""
    from reward_circuits.analysis.confidence import verbalized_confidence

    tl = adapters["transformer_lens"]
    exs = fake_task.examples[:3]
    run = generate_and_score(tl, fake_task, exs, (), GREEDY)
    seen = []
    real_sweep = __import__("reward_circuits.analysis.confidence", fromlist=["sweep"]).sweep

    def spy(adapter, prompts, conds, cfg, **kw):
        seen.extend(prompts)
        assert cfg.stop_strings == ("\nQuestion:",)
        return real_sweep(adapter, prompts, conds, cfg, **kw)

    monkeypatch.setattr("reward_circuits.analysis.confidence.sweep", spy)
    monkeypatch.setattr(tl.tokenizer, "chat_template", None)
    conf, replies = verbalized_confidence(tl, fake_task, exs, run.generations, GREEDY)
    assert len(conf) == len(replies) == 3
    for ex, g, prompt in zip(exs, run.generations, seen):
        assert prompt.startswith(fake_task.render(ex, tl.tokenizer)) and g.text in prompt
        assert "\n\nQuestion: " in prompt[len(fake_task.render(ex, tl.tokenizer)):] and prompt.endswith("\nAnswer:")


# ---- the stage ----------------------------------------------------------------------------------------


def test_intervention_stage_smoke(adapters, fake_task, tmp_path):
    import json

    from reward_circuits.studies.run.interventions import InterventionInputs, InterventionStudyConfig, run_intervention_stage
    from reward_circuits.report import Report

    tl = adapters["transformer_lens"]
    probe = LinearProbe(RESID1, tl.d_model)
    sets = {0: NeuronSet(RESID0, [0, 1], tl.d_model, layer=0), 1: NeuronSet(RESID1, [2, 3], tl.d_model, layer=1)}
    fr = {1: NeuronSet(RESID1, [3, 4], tl.d_model, layer=1, kind="final_reward")}
    result = run_intervention_stage(
        tl, fake_task, InterventionInputs(sets, probe=probe, final_reward_sets=fr), tmp_path,
        InterventionStudyConfig(n_random_draws=1, steering_factors=(0.0, 1.0, 2.0), max_examples=3,
                                dose_fractions=(0.05, 0.1), dose_modes=("zero",), dose_random_draws=1, dose_layer=1),
        GREEDY)
    sections = result.to_sections()
    assert [s.key for s in sections] == ["ablation", "steering", "confidence"]
    assert result.worst_layer in (0, 1)
    ab, st, cf = (s.summary for s in sections)
    assert set(ab["layers"]) == {"0", "1"} and ab["final_reward_vs_td"]["1"]["iou_with_td"] == pytest.approx(1 / 3)
    assert ab["dose_response"]["n_neurons"] == [2, 3] and "zero" in ab["dose_response"]["curves"]
    assert ab["dose_response"]["ranking"] == "probe input-weight L1 norms"
    assert set(st["factors"]) == {"0", "1", "2"} and st["factors"]["1"]["mean_value_shift"] == 0.0
    assert {"value_neurons", "next_token_prob", "verbalized"} <= set(cf)
    for s in sections:
        for f in s.figures:
            assert (tmp_path / f).stat().st_size > 1000
    rep = Report(tmp_path)
    for s in sections:
        rep.add(s)
    json.loads((tmp_path / "summary.json").read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
