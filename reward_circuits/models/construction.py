"""Building adapters: wrap a loaded HF model (:func:`from_hf`) or load one by name (:func:`load_model`)."""

from __future__ import annotations

import os



from .base import DEFAULT_BACKEND, Backend, ModelAdapter
from .nnsight_adapter import NNsightAdapter
from .transformer_lens_adapter import TransformerLensAdapter

# ---- construction -----------------------------------------------------------------------------


def from_hf(hf_model, tokenizer, backend: Backend = DEFAULT_BACKEND, name: str | None = None,
            remote: bool = False) -> ModelAdapter:
    """Wrap an already loaded HF causal LM (both backends run the same weights)."""
    from .loading import hooked_transformer_from_hf, prepare_tokenizer

    prepare_tokenizer(tokenizer)
    if backend == "transformer_lens":
        device = str(next(hf_model.parameters()).device)
        gen_eos = getattr(getattr(hf_model, "generation_config", None), "eos_token_id", None)
        return TransformerLensAdapter(hooked_transformer_from_hf(hf_model, tokenizer, device=device), name=name,
                                      generation_eos=gen_eos)
    if backend == "nnsight":
        from nnsight import LanguageModel
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lm = LanguageModel(hf_model, tokenizer=tokenizer)
        return NNsightAdapter(lm, name=name, remote=remote)
    raise ValueError(f"unknown backend {backend!r}: use 'transformer_lens' or 'nnsight'.")


def load_model(name: str = "default", backend: Backend = DEFAULT_BACKEND, device: str = "cpu",
               remote: bool = False, **hf_kwargs) -> ModelAdapter:
    """Load ``default`` (packaged SmolLM2-135M-Instruct, offline), ``gemma-3-270m`` (packaged Gemma 3
    270M base model, offline), ``qwen2.5-0.5b`` (packaged Qwen2.5 Coder 0.5B Instruct, a code-tuned
    instruct model, offline), a local HF directory or a hub id.

    ``remote=True`` (nnsight) runs on NDIF; ``device_map="auto"`` (nnsight) spreads a big model.
    """
    from ..configs import check_device
    from .loading import DEFAULT_MODEL, GEMMA_MODEL, QWEN_MODEL, is_default, is_gemma, is_qwen, load_hf

    if isinstance(name, os.PathLike):
        name = os.fspath(name)
    if not isinstance(name, str):
        raise TypeError(f"model name must be a string: 'default', 'gemma-3-270m', 'qwen2.5-0.5b', a local HF directory or a hub id; "
                        f"got {type(name).__name__} ({name!r:.60}). An already loaded HF model goes to from_hf(model, tokenizer).")
    if backend not in ("transformer_lens", "nnsight"):
        raise ValueError(f"unknown backend {backend!r}: use 'transformer_lens' or 'nnsight'.")
    if remote and backend != "nnsight":
        raise ValueError("remote=True needs backend='nnsight' (NDIF).")
    if "device_map" not in hf_kwargs:
        device = check_device(device)
    hf, tok = load_hf(name, device=device, **hf_kwargs)
    display = DEFAULT_MODEL if is_default(name) else GEMMA_MODEL if is_gemma(name) else QWEN_MODEL if is_qwen(name) else name
    return from_hf(hf, tok, backend=backend, name=display, remote=remote)
