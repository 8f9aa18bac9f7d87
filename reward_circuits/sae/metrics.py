"""How good an SAE is on a set of activations: :func:`evaluate_sae` → :class:`SAEQuality`.

* ``mse``: mean over tokens and dimensions of ``(x̂ − x)²``;
* ``explained_variance``: ``1 − Σ‖x − x̂‖² / Σ‖x − mean(x)‖²`` (1 is perfect, 0 is no better than
  the mean activation);
* ``l0``: mean number of non-zero latents per token;
* ``dead_fraction``: fraction of latents that never fire on these activations.

Also :func:`encode_all`, batched latent activations for correlation analyses.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from jaxtyping import Float
from torch import Tensor

__all__ = ["SAEQuality", "encode_all", "evaluate_sae"]


@dataclass(frozen=True)
class SAEQuality:
    mse: float
    explained_variance: float
    l0: float
    dead_fraction: float
    n_tokens: int
    d_sae: int

    def to_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def encode_all(sae, activations: Float[Tensor, "n d"], batch_size: int = 4096) -> Float[Tensor, "n d_sae"]:
    """``sae.encode`` over ``activations`` in batches (float32, on the CPU)."""
    out = [sae.encode(activations[i:i + batch_size].to(sae.device, sae.dtype)).float().cpu()
           for i in range(0, activations.shape[0], batch_size)]
    return torch.cat(out) if out else torch.zeros(0, sae.cfg.d_sae)


@torch.no_grad()
def evaluate_sae(sae, activations: Float[Tensor, "n d"], batch_size: int = 4096) -> SAEQuality:
    """Reconstruction MSE, explained variance, L0 and dead-latent fraction of ``sae`` on ``activations``.

    ``activations`` are ``[n, d_in]`` rows with padding already removed
    (:func:`~reward_circuits.sae.training.collect_activations` gives them).
    """
    if activations.ndim != 2:
        raise ValueError(f"activations must be [n, d_in] (padding removed), got shape {tuple(activations.shape)}; "
                         "use collect_activations(...) first.")
    n, d = activations.shape
    if n == 0:
        raise ValueError("no activations to evaluate on.")
    if d != sae.cfg.d_in:
        raise ValueError(f"activations have d={d} but the SAE takes d_in={sae.cfg.d_in}: wrong hook point?")
    x = activations.float()
    mean = x.mean(0)
    sq_err, sq_dev, l0_sum = 0.0, 0.0, 0.0
    fired = torch.zeros(sae.cfg.d_sae, dtype=torch.bool)
    for i in range(0, n, batch_size):
        xb = x[i:i + batch_size]
        acts = sae.encode(xb.to(sae.device, sae.dtype))
        recon = sae.decode(acts).float().cpu()
        acts = acts.float().cpu()
        sq_err += float(((recon - xb) ** 2).sum())
        sq_dev += float(((xb - mean) ** 2).sum())
        active = acts != 0
        l0_sum += float(active.sum())
        fired |= active.any(0)
    ev = 1.0 - sq_err / sq_dev if sq_dev > 0 else float("nan")
    return SAEQuality(mse=sq_err / (n * d), explained_variance=ev, l0=l0_sum / n,
                      dead_fraction=float((~fired).float().mean()), n_tokens=int(n), d_sae=int(sae.cfg.d_sae))
