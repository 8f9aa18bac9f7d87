"""Train a sae-lens SAE on activations you already have: a tensor, a padded batch, or a Store.

    from reward_circuits.sae import SAETrainConfig, collect_activations, train_sae

    acts = collect_activations(store, "blocks.5.hook_resid_post")          # [n_tokens, d]
    trained = train_sae(acts, SAETrainConfig(epochs=30), hook_name="blocks.5.hook_resid_post")
    trained.sae.encode(acts[:4])                                           # a sae-lens SAE

Padding never reaches the SAE: a padded ``[batch, pos, d]`` tensor must come with its attention
mask (only ``mask == 1`` positions are kept), and a Store holds unpadded rollouts by construction.
Training is sae-lens' own ``training_forward_pass`` (its MSE + L1 / TopK auxiliary losses) driven
by a plain Adam loop over shuffled mini-batches; the result is converted to the *inference* SAE
class (``StandardSAE`` / ``TopKSAE``), exactly what ``SAE.load_from_disk`` returns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from .config import SAETrainConfig

__all__ = ["TrainedSAE", "collect_activations", "to_inference_sae", "train_sae"]


@dataclass
class TrainedSAE:
    """An inference sae-lens ``SAE`` and how its training went."""

    sae: object  # sae_lens.SAE
    config: SAETrainConfig
    n_activations: int
    loss_curve: list[float] = field(default_factory=list)  # mean total loss per epoch
    scale_factor: float = 1.0  # input scale used in training (already folded into the weights)


def collect_activations(
    source,
    hook_name: str | None = None,
    *,
    attention_mask: Int[Tensor, "batch pos"] | None = None,
    indices: Sequence[int] | None = None,
    include_prompt: bool = False,
) -> Float[Tensor, "n d"]:
    """Rows of activations ready for an SAE, with padding positions removed.

    ``source`` is one of

    * a ``[n, d]`` tensor (used as is);
    * a ``[batch, pos, d]`` tensor with its ``attention_mask`` (required: rows where the mask is 0
      are padding and are dropped);
    * a :class:`~reward_circuits.data.Store` and a ``hook_name`` (``indices`` selects rollouts,
      ``include_prompt`` adds prompt positions before ``s_0``).
    """
    if isinstance(source, Tensor):
        if source.ndim == 2:
            if attention_mask is not None:
                raise ValueError("attention_mask given for a 2-D [n, d] tensor: it applies to [batch, pos, d] tensors only.")
            return source.detach().to(torch.float32)
        if source.ndim == 3:
            if attention_mask is None:
                raise ValueError(
                    "a [batch, pos, d] tensor needs its attention_mask so padding positions can be dropped; "
                    "pass attention_mask= (or flatten the valid positions to [n, d] yourself).")
            if tuple(attention_mask.shape) != tuple(source.shape[:2]):
                raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)} but the activations "
                                 f"are {tuple(source.shape)}: they must agree on [batch, pos].")
            return source.detach()[attention_mask.to(source.device).bool()].to(torch.float32)
        raise ValueError(f"activations must be [n, d] or [batch, pos, d], got shape {tuple(source.shape)}.")
    if hasattr(source, "iter_batches"):
        if hook_name is None:
            raise ValueError("reading a Store needs hook_name=, e.g. 'blocks.5.hook_resid_post'.")
        parts = [b.acts[hook_name] for b in source.iter_batches(hook_name, indices=indices, include_prompt=include_prompt)]
        if not parts:
            raise ValueError("the store (or the chosen indices) holds no rollouts.")
        return torch.cat(parts).to(torch.float32)
    raise TypeError(f"cannot read activations from {type(source).__name__}: give a tensor or a Store.")


def to_inference_sae(training_sae):
    """The inference sae-lens SAE (``StandardSAE`` / ``TopKSAE``) with ``training_sae``'s weights."""
    from sae_lens import SAE

    cfg_dict = training_sae.cfg.get_inference_sae_cfg_dict()
    sae = SAE.from_dict(cfg_dict)
    state = {k: v.detach().clone() for k, v in training_sae.state_dict().items()}
    training_sae.process_state_dict_for_saving_inference(state)
    sae.load_state_dict(state)
    return sae.eval()


def train_sae(
    activations,
    config: SAETrainConfig | None = None,
    *,
    hook_name: str | None = None,
    model_name: str | None = None,
    attention_mask: Int[Tensor, "batch pos"] | None = None,
    progress: bool = False,
) -> TrainedSAE:
    """Train one SAE on ``activations`` (anything :func:`collect_activations` accepts).

    ``hook_name`` / ``model_name`` go into the SAE's ``cfg.metadata`` (sae-lens uses
    ``metadata.hook_name`` to know where the SAE attaches). Deterministic given ``config.seed``.
    """
    from sae_lens import StandardTrainingSAE, TopKTrainingSAE
    from sae_lens.saes.sae import TrainStepInput

    config = config or SAETrainConfig()
    x_all = collect_activations(activations, hook_name if not isinstance(activations, Tensor) else None,
                                attention_mask=attention_mask)
    n, d_in = x_all.shape
    if n == 0:
        raise ValueError("no activations to train on (all positions were padding?).")
    if not torch.isfinite(x_all).all():
        raise ValueError("activations contain NaN or inf; run the model in float32 and check its inputs.")
    scale = 1.0
    if config.normalize == "mean_norm":
        mean_norm = float(x_all.norm(dim=-1).mean())
        if mean_norm == 0:
            raise ValueError("activations are all zero: normalize='mean_norm' cannot rescale them.")
        scale = math.sqrt(d_in) / mean_norm
    x_all = x_all * scale

    torch.manual_seed(config.seed)
    cfg = config.sae_lens_config(d_in, hook_name=hook_name, model_name=model_name)
    sae = (StandardTrainingSAE if config.architecture == "standard" else TopKTrainingSAE)(cfg)
    if config.init_b_dec_to_mean:
        with torch.no_grad():
            sae.b_dec.copy_(x_all.mean(0))
    sae.train()
    coefficients = {name: (c.value if hasattr(c, "value") else float(c)) for name, c in sae.get_coefficients().items()}
    opt = torch.optim.Adam(sae.parameters(), lr=config.lr)
    gen = torch.Generator().manual_seed(config.seed)
    since_fired = torch.zeros(cfg.d_sae, dtype=torch.long)
    curve: list[float] = []
    step = 0
    bar = tqdm(range(config.epochs), desc=f"train SAE {hook_name or ''}".strip(), disable=not progress, leave=False)
    for _ in bar:
        order = torch.randperm(n, generator=gen)
        total, batches = 0.0, 0
        for start in range(0, n, config.batch_size):
            batch = x_all[order[start:start + config.batch_size]]
            out = sae.training_forward_pass(TrainStepInput(
                sae_in=batch, coefficients=coefficients, dead_neuron_mask=since_fired >= config.dead_window,
                n_training_steps=step, is_logging_step=False))
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            opt.step()
            fired = (out.feature_acts.detach() > 0).any(0)
            since_fired = torch.where(fired, torch.zeros_like(since_fired), since_fired + 1)
            total += float(out.loss.detach())
            batches += 1
            step += 1
        curve.append(total / max(batches, 1))
        bar.set_postfix(loss=f"{curve[-1]:.4g}")
    sae.eval()
    inference = to_inference_sae(sae)
    if scale != 1.0:
        inference.fold_activation_norm_scaling_factor(scale)
    return TrainedSAE(sae=inference, config=config, n_activations=int(n), loss_curve=curve, scale_factor=float(scale))
