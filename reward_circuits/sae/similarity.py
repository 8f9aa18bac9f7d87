"""Compare the dictionaries of two SAEs: cosine similarity of every pair of decoder directions.

``decoder_cosine_matrix(a, b)[i, j]`` is the cosine between latent ``i`` of ``a`` and latent ``j``
of ``b`` (rows of ``W_dec``, shape ``[d_sae, d_in]`` in sae-lens). Summaries such as the mean max
cosine similarity are one line on top: ``decoder_cosine_matrix(a, b).max(dim=1).values.mean()``.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

__all__ = ["decoder_cosine_matrix", "decoder_directions"]


def decoder_directions(sae_or_weights) -> Float[Tensor, "d_sae d_in"]:
    """Unit-norm decoder rows of a sae-lens SAE (or of a ``[d_sae, d_in]`` tensor), float32 on the CPU."""
    w = sae_or_weights if isinstance(sae_or_weights, Tensor) else sae_or_weights.W_dec
    w = w.detach().float().cpu()
    if w.ndim != 2:
        raise ValueError(f"decoder weights must be [d_sae, d_in], got shape {tuple(w.shape)}.")
    return w / w.norm(dim=-1, keepdim=True).clamp_min(1e-12)


@torch.no_grad()
def decoder_cosine_matrix(sae_a, sae_b) -> Float[Tensor, "d_sae_a d_sae_b"]:
    """Cosine similarity between every decoder direction of ``sae_a`` and every one of ``sae_b``.

    Both must read the same space (equal ``d_in``). Either argument may also be a ``[d_sae, d_in]``
    decoder weight tensor. A latent with an all-zero decoder row has cosine 0 with everything.
    """
    a, b = decoder_directions(sae_a), decoder_directions(sae_b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"the SAEs read different spaces: d_in {a.shape[1]} vs {b.shape[1]}.")
    return a @ b.T
