"""Tiny randomly initialised models for tests and examples (no weights to download).

``tiny_hf_model()`` is a 2-layer Llama with a character-level tokenizer that has a chat template,
so the whole pipeline (prompts → generation → store → probes → hooks) runs in milliseconds.
"""

from __future__ import annotations

import string

import torch

_CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def tiny_tokenizer():
    """A character-level fast tokenizer with pad/bos/eos and a chat template."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>"]
    chars = list(string.ascii_letters + string.digits + string.punctuation + " \n")
    vocab = {t: i for i, t in enumerate(specials + chars)}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tk.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", bos_token="<s>", eos_token="<|end|>",
                                  additional_special_tokens=specials[3:])
    tok.chat_template = _CHAT_TEMPLATE
    tok.padding_side = "left"
    # the char-level decoder joins with spaces by default; decode by concatenation instead
    from tokenizers import decoders

    tok.backend_tokenizer.decoder = decoders.Fuse()
    return tok


def tiny_hf_model(n_layers: int = 2, d_model: int = 32, d_mlp: int = 64, n_heads: int = 4, n_kv_heads: int = 2,
                  seed: int = 0):
    """(LlamaForCausalLM with random weights, tokenizer)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = tiny_tokenizer()
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=d_model, intermediate_size=d_mlp, num_hidden_layers=n_layers,
        num_attention_heads=n_heads, num_key_value_heads=n_kv_heads, max_position_embeddings=512,
        pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        rms_norm_eps=1e-5, tie_word_embeddings=False,
    )
    cfg.architectures = ["LlamaForCausalLM"]
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg).eval()
    # larger init than default so activations and generations vary across prompts
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 2:
                p.normal_(0, 0.2)
    model.generation_config.pad_token_id = tok.pad_token_id
    return model, tok


def tiny_gpt2_model(n_layers: int = 2, d_model: int = 32, n_heads: int = 4, seed: int = 0):
    """(GPT2LMHeadModel with random weights, tokenizer): absolute position embeddings, so left
    padding changes results unless position ids are taken from the attention mask."""
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = tiny_tokenizer()
    cfg = GPT2Config(vocab_size=len(tok), n_embd=d_model, n_layer=n_layers, n_head=n_heads, n_positions=256,
                     pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                     tie_word_embeddings=False)
    cfg.architectures = ["GPT2LMHeadModel"]
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():
        model.transformer.wpe.weight.normal_(0, 0.5)  # position embeddings that matter
    model.generation_config.pad_token_id = tok.pad_token_id
    return model, tok


def tiny_adapter(backend: str = "transformer_lens", seed: int = 0, **kw):
    """A :class:`~reward_circuits.model.ModelAdapter` over a tiny random Llama."""
    from .construction import from_hf

    hf, tok = tiny_hf_model(seed=seed, **kw)
    return from_hf(hf, tok, backend=backend, name=f"tiny-llama-seed{seed}")
