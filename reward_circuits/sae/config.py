"""The one training config for sparse autoencoders: :class:`SAETrainConfig`.

Defaults are the paper's (Demircan et al., ICLR 2025: standard L1 SAE, batch 256, Adam lr 1e-4,
L1 coefficient 1e-5, 30 epochs); ``architecture="topk"`` trains a TopK SAE instead. The config
validates itself in ``__post_init__`` and turns into a sae-lens training config with
:meth:`SAETrainConfig.sae_lens_config`, so the SAE that comes out is an ordinary sae-lens ``SAE``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

Architecture = Literal["standard", "topk"]
Normalization = Literal["none", "mean_norm"]


@dataclass
class SAETrainConfig:
    """How to train one SAE on a set of activations.

    ``d_sae`` wins over ``expansion_factor`` when set. ``normalize="mean_norm"`` scales inputs so
    their mean L2 norm is ``sqrt(d_in)`` during training and folds the factor into the weights
    afterwards (the saved SAE takes raw activations either way).
    """

    architecture: Architecture = field(default="standard", metadata={"help": "standard (L1, as in the paper) or topk"})
    expansion_factor: float = field(default=4.0, metadata={"help": "d_sae = expansion_factor * d_in (unless --d-sae)"})
    d_sae: int | None = field(default=None, metadata={"help": "number of latents (overrides --expansion-factor)"})
    l1_coefficient: float = field(default=1e-5, metadata={"help": "L1 sparsity coefficient (standard SAEs)"})
    k: int = field(default=32, metadata={"help": "active latents per token (topk SAEs)"})
    lr: float = field(default=1e-4, metadata={"help": "Adam learning rate"})
    batch_size: int = field(default=256, metadata={"help": "activations per Adam step"})
    epochs: int = field(default=30, metadata={"help": "passes over the activations"})
    normalize: Normalization = field(default="none", metadata={"help": "none, or mean_norm: scale to mean norm sqrt(d)"})
    init_b_dec_to_mean: bool = field(default=True, metadata={"help": "start the decoder bias at the activations' mean"})
    dead_window: int = field(default=1000, metadata={"help": "steps without firing before a latent counts as dead (topk aux loss)"})
    seed: int = field(default=0, metadata={"help": "seed of the initialisation and the shuffling"})

    def __post_init__(self):
        if self.architecture not in ("standard", "topk"):
            raise ValueError(f"architecture must be 'standard' or 'topk', got {self.architecture!r}.")
        if self.normalize not in ("none", "mean_norm"):
            raise ValueError(f"normalize must be 'none' or 'mean_norm', got {self.normalize!r}.")
        if self.d_sae is not None and self.d_sae < 1:
            raise ValueError(f"d_sae must be >= 1, got {self.d_sae}; leave it None to use expansion_factor.")
        if self.expansion_factor <= 0:
            raise ValueError(f"expansion_factor must be > 0, got {self.expansion_factor}.")
        if self.l1_coefficient < 0:
            raise ValueError(f"l1_coefficient must be >= 0, got {self.l1_coefficient}.")
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}.")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}.")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}.")
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}.")
        if self.dead_window < 1:
            raise ValueError(f"dead_window must be >= 1, got {self.dead_window}.")

    def n_latents(self, d_in: int) -> int:
        """``d_sae`` if set, else ``round(expansion_factor * d_in)``."""
        n = self.d_sae if self.d_sae is not None else int(round(self.expansion_factor * d_in))
        if self.architecture == "topk" and self.k > n:
            raise ValueError(f"k={self.k} exceeds the {n} latents: lower k or raise d_sae / expansion_factor.")
        return max(n, 1)

    def sae_lens_config(self, d_in: int, hook_name: str | None = None, model_name: str | None = None):
        """The matching sae-lens *training* config (``StandardTrainingSAEConfig`` / ``TopKTrainingSAEConfig``)."""
        from sae_lens import StandardTrainingSAEConfig, TopKTrainingSAEConfig
        from sae_lens.saes.sae import SAEMetadata

        meta = SAEMetadata(hook_name=hook_name, model_name=model_name)
        common = dict(d_in=int(d_in), d_sae=self.n_latents(d_in), dtype="float32", device="cpu", metadata=meta)
        if self.architecture == "standard":
            return StandardTrainingSAEConfig(l1_coefficient=self.l1_coefficient, **common)
        return TopKTrainingSAEConfig(k=self.k, **common)

    def to_dict(self) -> dict:
        return asdict(self)
