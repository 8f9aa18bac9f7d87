"""The packaged default model (SmolLM2-135M-Instruct) on both backends. Slow-ish: run with
``-m real_model``. Loaded once for the module; both backends wrap the same HF weights."""

from __future__ import annotations

import pytest
import torch

from reward_circuits.data.capture import build_store
from reward_circuits.models.loading import DEFAULT_MODEL, load_hf
from reward_circuits.models import GenerationConfig, from_hf
from reward_circuits.data.rollouts import generate_rollouts
from reward_circuits.tasks import arithmetic_task

# one torch thread: on a shared 2-core machine two OpenMP threads spin against other processes and
# run ~60x slower; one thread keeps the module well under 90 s.
pytestmark = [pytest.mark.real_model, pytest.mark.usefixtures("one_thread")]

QUESTIONS = ["What is 7+5?", "Name the capital of France and explain in one sentence why it is famous."]


@pytest.fixture(scope="module")
def real():
    hf, tok = load_hf("default")
    return {
        "hf": hf,
        "tok": tok,
        "transformer_lens": from_hf(hf, tok, "transformer_lens", name=DEFAULT_MODEL),
        "nnsight": from_hf(hf, tok, "nnsight", name=DEFAULT_MODEL),
    }


@pytest.fixture(scope="module")
def prompts(real):
    return [real["transformer_lens"].chat_prompt([{"role": "user", "content": q}]) for q in QUESTIONS]


def test_default_model_shape_and_tokenizer(real):
    tl, nn = real["transformer_lens"], real["nnsight"]
    for ad in (tl, nn):
        assert (ad.n_layers, ad.d_model, ad.d_mlp) == (30, 576, 1536)
        assert ad.name == DEFAULT_MODEL
    tok = real["tok"]
    assert tok.pad_token_id != tok.eos_token_id  # pad never hides a real <|im_end|>
    assert tok.convert_ids_to_tokens(tok.eos_token_id) == "<|im_end|>"


def test_logits_agree_across_backends_left_padded(real, prompts):
    tl, nn = real["transformer_lens"], real["nnsight"]
    batch = tl.tokenize(prompts, padding_side="left")
    assert (batch.attention_mask == 0).any()
    a, b = tl.forward(batch), nn.forward(batch)
    m = batch.attention_mask.bool()
    assert a.shape == b.shape and a.shape[-1] >= 49152
    assert float((a - b)[m].abs().max()) < 1e-3
    assert torch.equal(a.argmax(-1)[m], b.argmax(-1)[m])
    with torch.no_grad():
        ref = real["hf"](input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    assert float((a - ref)[m].abs().max()) < 1e-3
    # padding did not change the short prompt's last-token logits
    single = tl.forward(tl.tokenize(prompts[:1]))
    assert float((single[0, -1] - a[0, -1]).abs().max()) < 1e-3


def test_greedy_generation_identical_on_both_backends(real, prompts):
    cfg = GenerationConfig(max_new_tokens=12, progress=False)
    a = real["transformer_lens"].generate(prompts, cfg)
    b = real["nnsight"].generate(prompts, cfg)
    assert [g.response_ids for g in a] == [g.response_ids for g in b]
    assert [g.text for g in a] == [g.text for g in b]
    assert "12" in a[0].text  # the instruct model answers 7+5
    # and both equal plain HF greedy decoding
    tok, batch = real["tok"], real["transformer_lens"].tokenize(prompts)
    with torch.no_grad():
        out = real["hf"].generate(input_ids=batch.input_ids, attention_mask=batch.attention_mask, max_new_tokens=12,
                                  do_sample=False, pad_token_id=tok.pad_token_id, temperature=None, top_p=None, top_k=None)
    for g, row in zip(a, out[:, batch.input_ids.shape[1]:].tolist()):
        assert g.response_ids == row[: len(g.response_ids)]


def test_store_of_two_rollouts_reads_back(real, tmp_path):
    tl, nn = real["transformer_lens"], real["nnsight"]
    task = arithmetic_task(n=2, max_new_tokens=10, seed=0)
    rolls = generate_rollouts(tl, task, GenerationConfig(max_new_tokens=10, progress=False))
    assert len(rolls) == 2 and all(r.reward in (0.0, 1.0) for r in rolls)
    hooks = ["hook_embed", "blocks.0.hook_resid_post", "blocks.15.hook_resid_post", "blocks.29.hook_resid_post"]
    s_tl = build_store(tl, rolls, hooks, tmp_path / "tl", batch_size=2, progress=False)
    s_nn = build_store(nn, rolls, hooks, tmp_path / "nn", batch_size=2, progress=False)
    for store in (s_tl, s_nn):
        assert len(store) == 2 and store.model == DEFAULT_MODEL and store.manifest["complete"]
        assert store.d("blocks.15.hook_resid_post") == 576
    by_id = {r.id: r for r in rolls}
    for i, rec in enumerate(s_tl.records):
        r = by_id[rec.id]
        assert rec.reward == r.reward and rec.n_steps == len(r.response_ids) + 1
        seq = torch.tensor([list(r.prompt_ids) + list(r.response_ids)])
        with torch.no_grad():
            _, cache = tl.model.run_with_cache(seq, attention_mask=torch.ones_like(seq), names_filter=hooks,
                                               return_type=None)
        j = s_nn.index_of([rec.id])[0]
        for h in hooks:
            ref = cache[h][0, len(r.prompt_ids) - 1:]
            got = s_tl.get(i, h)
            assert got.shape == ref.shape
            torch.testing.assert_close(got, ref, rtol=2e-3, atol=2e-3)
            torch.testing.assert_close(s_nn.get(j, h), got, rtol=2e-3, atol=2e-3)
