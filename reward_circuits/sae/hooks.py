"""Remove SAE latents from a hook point's activation, keeping everything the SAE does not explain.

:func:`remove_latents` returns a TransformerLens hook function ``(activation, hook) -> activation``::

    f      = sae.encode(x)
    error  = x − sae.decode(f)                 # what the SAE fails to reconstruct
    f'     = f with the chosen latents set to 0
    x'     = sae.decode(f') + error

so with no latents chosen ``x' == x`` up to float rounding, and the edit is exactly the chosen
latents' decoder contributions. It is an :class:`~reward_circuits.interventions.InterventionHook`:
it takes ``positions=`` / ``prompt_len=`` like every other intervention, never edits in place,
knows its hook point (``sae.cfg.metadata.hook_name``, or ``hook_name=``), and so runs unchanged

* in ``model.run_with_hooks(x, fwd_hooks=[(name, hook)])`` next to a user's own hooks;
* on both adapters: ``adapter.forward(batch, fwd_hooks=as_fwd_hooks(hook))``, ``capture``, ``generate``.
"""

from __future__ import annotations

from typing import Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from ..interventions.hooks import InterventionHook, PositionSpec

__all__ = ["LatentRemovalHook", "remove_latents"]


class LatentRemovalHook(InterventionHook):
    """Zero chosen SAE latents in the activation, keep the SAE's error term (see module docstring)."""

    kind = "sae_latent_removal"

    def __init__(self, sae, latents: Sequence[int] | Tensor, *, hook_name: str | None = None,
                 positions: PositionSpec = "all", prompt_len: int | Tensor | None = None):
        super().__init__(None, positions, prompt_len)
        latents = torch.as_tensor(list(latents) if not isinstance(latents, Tensor) else latents, dtype=torch.long).reshape(-1)
        d_sae = int(sae.cfg.d_sae)
        if latents.numel() and (int(latents.min()) < 0 or int(latents.max()) >= d_sae):
            raise ValueError(f"latent indices must lie in [0, {d_sae}) for this SAE; got min {int(latents.min())}, "
                             f"max {int(latents.max())}.")
        if latents.unique().numel() != latents.numel():
            raise ValueError("latent indices contain duplicates.")
        self.sae = sae
        self.latents = latents
        self.width = int(sae.cfg.d_in)
        self.hook_name = hook_name or getattr(sae.cfg.metadata, "hook_name", None)

    def _params(self) -> str:
        return f"latents={self.latents.numel()}, "

    @torch.no_grad()
    def edit(self, selected: Float[Tensor, "batch pos d"], idx, hook,
             activation: Float[Tensor, "batch pos d"]) -> Float[Tensor, "batch pos d"]:
        sae = self.sae
        x = selected.to(sae.device, sae.dtype)
        feats = sae.encode(x)
        error = x - sae.decode(feats)
        if self.latents.numel():
            feats = feats.clone()
            feats[..., self.latents.to(feats.device)] = 0
        out = sae.decode(feats) + error
        return out.to(activation.device, activation.dtype)


def remove_latents(sae, latents: Sequence[int] | Tensor, *, hook_name: str | None = None,
                   positions: PositionSpec = "all", prompt_len: int | Tensor | None = None) -> LatentRemovalHook:
    """A hook that removes ``latents`` of ``sae`` from the activation and keeps the SAE error term.

    ``hook_name`` defaults to ``sae.cfg.metadata.hook_name``; the hook refuses to run at another
    hook point. Pair it with its site via ``as_fwd_hooks(hook)`` or ``(hook.hook_name, hook)``.
    """
    return LatentRemovalHook(sae, latents, hook_name=hook_name, positions=positions, prompt_len=prompt_len)
