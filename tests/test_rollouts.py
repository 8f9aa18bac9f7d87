"""Rollouts on the tiny model: generation + scoring, save/load round trip, and loading a model
from a local HF directory (the hub code path, offline)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from reward_circuits.models import GenerationConfig, load_model
from reward_circuits.data.rollouts import Rollout, accuracy, generate_rollouts, load_rollouts, save_rollouts
from reward_circuits.tasks import Example, Task, arithmetic_task

pytestmark = pytest.mark.usefixtures("one_thread")

BACKENDS = ["transformer_lens", "nnsight"]


def _even_length(response: str, example: Example) -> float:
    """A binary, verifiable toy reward that the random model earns about half of the time."""
    return 1.0 if len(response) % 2 == 0 else 0.0


@pytest.fixture(scope="module")
def toy_task() -> Task:
    qs = ["What is 2+2?", "Hi", "Say something long, please.", "x", "Count: 1 2 3", "Why?"]
    return Task(name="toy", examples=[Example(id=f"q{i}", question=q, answer="4") for i, q in enumerate(qs)],
                reward_fn=_even_length, instruction="Answer briefly.", max_new_tokens=7)


@pytest.mark.parametrize("backend", BACKENDS)
def test_generate_rollouts_scores_every_response(tiny_adapters, toy_task, backend):
    ad = tiny_adapters[backend]
    rolls = generate_rollouts(ad, toy_task, GenerationConfig(max_new_tokens=7, progress=False, batch_size=4))
    assert len(rolls) == len(toy_task)
    assert [r.id for r in rolls] == [f"toy/q{i}/s0" for i in range(len(toy_task))]
    gens = ad.generate([toy_task.render(ex, ad.tokenizer) for ex in toy_task], GenerationConfig(max_new_tokens=7, progress=False))
    for r, ex, g in zip(rolls, toy_task, gens):
        assert r.task == "toy" and r.example_id == ex.id and r.gold == "4"
        assert r.prompt_ids == ad.tokenizer(toy_task.render(ex, ad.tokenizer), add_special_tokens=False)["input_ids"]
        assert r.prompt_ids[-1] == ad.tokenizer.convert_tokens_to_ids("<|assistant|>")
        assert (r.response_ids, r.response_text, r.finish_reason) == (g.response_ids, g.text, g.finish_reason)
        assert 1 <= len(r.response_ids) <= 7
        assert r.reward == _even_length(r.response_text, ex)
    rewards = {r.reward for r in rolls}
    assert rewards == {0.0, 1.0}, "the toy reward should see both outcomes on these prompts"
    assert accuracy(rolls) == sum(r.reward for r in rolls) / len(rolls)


def test_greedy_rollouts_are_the_same_on_both_backends(tiny_adapters, toy_task):
    cfg = GenerationConfig(max_new_tokens=7, progress=False)
    a = generate_rollouts(tiny_adapters["transformer_lens"], toy_task, cfg)
    b = generate_rollouts(tiny_adapters["nnsight"], toy_task, cfg)
    assert a == b


@pytest.mark.parametrize("backend", BACKENDS)
def test_several_samples_per_prompt(tiny_adapters, toy_task, backend):
    ad = tiny_adapters[backend]
    cfg = GenerationConfig(max_new_tokens=6, do_sample=True, seed=5, progress=False)
    rolls = generate_rollouts(ad, toy_task, cfg, samples_per_prompt=3)
    ids = [r.id for r in rolls]
    assert len(ids) == 3 * len(toy_task) == len(set(ids))
    assert {i.rsplit("/", 1)[1] for i in ids} == {"s0", "s1", "s2"}
    assert all(r.reward in (0.0, 1.0) for r in rolls)
    by_ex = {}
    for r in rolls:
        by_ex.setdefault(r.example_id, []).append(tuple(r.response_ids))
    assert any(len(set(v)) > 1 for v in by_ex.values()), "samples of one prompt should differ"
    again = generate_rollouts(ad, toy_task, cfg, samples_per_prompt=3)
    assert [r.response_ids for r in again] == [r.response_ids for r in rolls]  # seeded
    with pytest.raises(ValueError, match="greedy"):
        generate_rollouts(ad, toy_task, GenerationConfig(max_new_tokens=3, progress=False), samples_per_prompt=2)
    with pytest.raises(ValueError):
        generate_rollouts(ad, toy_task, cfg, samples_per_prompt=0)


def test_arithmetic_task_uses_its_token_budget(tl_adapter):
    task = arithmetic_task(n=3, max_new_tokens=3, seed=1)
    cfg = GenerationConfig(max_new_tokens=task.max_new_tokens, progress=False)
    rolls = generate_rollouts(tl_adapter, task, cfg)
    assert len(rolls) == 3 and len({r.id for r in rolls}) == 3
    for r, ex in zip(rolls, task):
        assert len(r.response_ids) <= 3
        assert r.gold == ex.answer and r.reward in (0.0, 1.0)
        assert r.reward == task.reward(r.response_text, ex)


def test_non_binary_task_reward_is_refused(tl_adapter, toy_task):
    half = dataclasses.replace(toy_task, reward_fn=lambda resp, ex: 0.5)
    with pytest.raises(ValueError, match="binary"):
        generate_rollouts(tl_adapter, half, GenerationConfig(max_new_tokens=2, progress=False))


def test_save_load_round_trip(tmp_path, tl_adapter, toy_task):
    rolls = generate_rollouts(tl_adapter, toy_task, GenerationConfig(max_new_tokens=7, progress=False))
    path = tmp_path / "rollouts"
    save_rollouts(rolls, path)
    back = load_rollouts(path)
    assert back == rolls
    assert all(isinstance(t, int) for r in back for t in r.prompt_ids + r.response_ids)
    # overwriting an existing directory is atomic and leaves no temp dirs behind
    save_rollouts(rolls[:2], path)
    assert load_rollouts(path) == rolls[:2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rollouts"]
    with pytest.raises(FileNotFoundError):
        load_rollouts(tmp_path / "nope")


def test_save_load_round_trip_keeps_meta(tmp_path):
    r = Rollout(id="t/e/s0", task="t", example_id="e", prompt_ids=[1, 2], response_ids=[3], response_text="a",
                reward=1.0, gold="a", finish_reason="eos", meta={"temperature": 0.7, "source": "x"})
    save_rollouts([r], tmp_path / "r")
    assert load_rollouts(tmp_path / "r") == [r]


# ---- a model from a local HF directory ------------------------------------------------------------


@pytest.fixture(scope="module")
def saved_model_dir(tiny_hf, tmp_path_factory):
    hf, tok = tiny_hf
    d = tmp_path_factory.mktemp("hf") / "tiny-llama"
    hf.save_pretrained(d)
    tok.save_pretrained(d)
    return d


@pytest.mark.parametrize("backend", BACKENDS)
def test_load_model_from_local_directory(saved_model_dir, tiny_hf, tiny_adapters, backend):
    hf, tok = tiny_hf
    ad = load_model(str(saved_model_dir), backend=backend)
    assert ad.backend == backend and ad.name == str(saved_model_dir)
    assert (ad.n_layers, ad.d_model, ad.d_mlp) == (2, 32, 64)
    assert ad.tokenizer.pad_token_id == tok.pad_token_id and ad.tokenizer.eos_token_id == tok.eos_token_id
    texts = ["What is 7+5?", "Hi", "<|user|>x<|end|><|assistant|>"]
    batch = ad.tokenize(texts)
    assert torch.equal(batch.input_ids, tiny_adapters[backend].tokenize(texts).input_ids)
    with torch.no_grad():
        ref = hf(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    got = ad.forward(batch)
    m = batch.attention_mask.bool()
    assert float((got - ref)[m].abs().max()) < 1e-4
    assert torch.equal(got, tiny_adapters[backend].forward(batch))
    cfg = GenerationConfig(max_new_tokens=6, progress=False)
    assert [g.text for g in ad.generate(texts, cfg)] == [g.text for g in tiny_adapters[backend].generate(texts, cfg)]
    assert ad.chat_prompt([{"role": "user", "content": "hi"}]) == "<|user|>hi<|end|><|assistant|>"
