"""Sparse autoencoders on our activations, as ordinary sae-lens ``SAE`` objects.

- :mod:`.config`: :class:`SAETrainConfig` (paper defaults: standard L1 SAE, batch 256, Adam lr 1e-4,
  L1 1e-5, 30 epochs; ``architecture="topk"`` as an option), validated in ``__post_init__``.
- :mod:`.training`: :func:`collect_activations` (tensor / padded batch + mask / Store → ``[n, d]``
  rows, padding dropped) and :func:`train_sae` → :class:`TrainedSAE` (``.sae`` is a sae-lens SAE).
- :mod:`.metrics`: :func:`evaluate_sae` → :class:`SAEQuality` (MSE, explained variance, L0, dead
  fraction); :func:`encode_all` (batched latents).
- :mod:`.saving`: :func:`save_sae` / :func:`load_sae` in the sae-lens format (safetensors +
  ``cfg.json``), readable by ``SAE.load_from_disk`` and, from a hub repo, ``SAE.from_pretrained``.
- :mod:`.hooks`: :func:`remove_latents` → a hook ``(activation, hook) -> activation`` that zeroes
  latents and keeps the SAE error term (identity when no latents are removed); both backends.
- :mod:`.similarity`: :func:`decoder_cosine_matrix` between two SAEs' decoder directions.

    from reward_circuits.sae import SAETrainConfig, collect_activations, train_sae, evaluate_sae
    acts = collect_activations(store, "blocks.5.hook_resid_post")
    sae = train_sae(acts, SAETrainConfig(epochs=5), hook_name="blocks.5.hook_resid_post").sae
    evaluate_sae(sae, acts).explained_variance
    adapter.forward(batch, fwd_hooks=as_fwd_hooks(remove_latents(sae, [3, 17])))
"""

from .config import SAETrainConfig
from .hooks import LatentRemovalHook, remove_latents
from .metrics import SAEQuality, encode_all, evaluate_sae
from .saving import load_sae, save_sae
from .similarity import decoder_cosine_matrix, decoder_directions
from .training import TrainedSAE, collect_activations, to_inference_sae, train_sae

__all__ = [
    "LatentRemovalHook", "SAEQuality", "SAETrainConfig", "TrainedSAE", "collect_activations", "decoder_cosine_matrix",
    "decoder_directions", "encode_all", "evaluate_sae", "load_sae", "remove_latents", "save_sae", "to_inference_sae",
    "train_sae",
]
