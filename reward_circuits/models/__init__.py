"""Models: one :class:`ModelAdapter` interface, one backend per file.

- :mod:`.base`: the interface (tokenize, capture, forward, generate, TransformerLens-style
  ``run_with_hooks`` / ``hooks`` / ``run_with_cache``) and its value types.
- :mod:`.decoding`: the decoding engine over any adapter's ``decoding_session`` (batched and
  streamed generation, shared prompt prefix, stop strings, paired sampling); ``ModelAdapter.generate``
  / ``generate_plan`` / ``decode`` / ``decode_stream`` delegate to it.
- :mod:`.generation`: what a generation is asked for and gives (configs, plans, row labels, samplers).
- :mod:`.hook_names`: canonical TransformerLens hook names and their HF module sites.
- :mod:`.transformer_lens_adapter`: a ``HookedTransformer`` (KV-cached decoding via :mod:`.tl_attention`).
- :mod:`.nnsight_adapter`: an nnsight ``LanguageModel`` (local, ``device_map`` or NDIF ``remote=True``).
- :mod:`.loading`: the packaged default model (offline GGUF → HF directory) and the hub path.
- :mod:`.construction`: :func:`load_model` and :func:`from_hf`.
- :mod:`.tiny`: tiny random models for tests and examples.
"""

from .base import (DEFAULT_BACKEND, Backend, DecodingSession, FwdHooks, Generation, GenerationConfig, GenerationPlan,
                   HookFn, ModelAdapter, RowLabels, TokenBatch, generation_config)
from .construction import from_hf, load_model
from .hook_names import HookNameError, execution_order, hf_module, hf_site, layer_of, resid_hooks
from .nnsight_adapter import NNsightAdapter
from .transformer_lens_adapter import TransformerLensAdapter

__all__ = [
    "Backend", "DEFAULT_BACKEND", "DecodingSession", "FwdHooks", "Generation", "GenerationConfig", "GenerationPlan",
    "HookFn", "HookNameError", "ModelAdapter", "NNsightAdapter", "RowLabels", "TokenBatch", "TransformerLensAdapter",
    "execution_order", "from_hf", "generation_config", "hf_module", "hf_site", "layer_of", "load_model", "resid_hooks",
]
