"""Hyper-parameters of :class:`~reward_circuits.analysis.probes.ValueProbe` (validated dataclass)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

from ..errors import ProbeError

ACTIVATIONS = ("relu", "gelu", "tanh")
"""Hidden non-linearities a probe may use."""


@dataclass
class ValueProbeConfig:
    """Hyper-parameters of :class:`ValueProbe`.

    The defaults train well at any store size: the batch size is scaled to the store (about
    ``steps_per_epoch`` optimiser steps per epoch), a stratified ``validation_fraction`` of the
    training rollouts is held out, training stops per probe when the validation log loss of
    ``V(s_0)`` has not improved for ``patience`` epochs (each probe keeps its best epoch's weights), and the
    weight decay is chosen per hook among the ``weight_decay`` candidates on that validation split
    (all candidates train stacked in the same pass). ``validation_fraction=0`` with one weight
    decay trains exactly ``epochs`` epochs on all given rollouts (the pre-0.2 behaviour).

    Attributes:
        hidden: width of the probe's hidden layer.
        gamma: discount factor of the TD targets, in (0, 1].
        td_lambda: λ of TD(λ) in [0, 1]; 0 is TD(0) (target ``γ·V(s_{t+1})``), 1 the discounted
            Monte-Carlo return. Default 0.9: TD(0) moves the reward back one state per update, and
            ``V(s_0)`` (the prompt's last token, what the AUC scores) sits a whole answer away from it;
            early stopping ends training before it arrives. On the validation split of the paper
            profile's ``word_problems:0`` store (120 rollouts, 11 layers) the mean validation AUC was
            0.511 for TD(0), 0.552/0.563/0.562/0.574 for λ = 0.8/0.9/0.95/0.98 (indistinguishable at
            this n); 0.9 is the TD(λ) the target-variant table already used, so no λ was picked on
            a test split.
        mode: ``"td"`` (TD(λ) with ``td_lambda``) or ``"final_reward"`` (Monte-Carlo: every state's
            target is the rollout's final reward - the paper's appendix comparison).
        lr: AdamW learning rate.
        weight_decay: AdamW (decoupled) weight decay, or a tuple of candidates chosen per hook on
            the validation split (needs ``validation_fraction > 0``).
        epochs: at most this many passes over the training rollouts (early stopping ends sooner).
        batch_states: about this many states per optimisation step (whole rollouts per batch);
            ``None`` scales it to the store: ``n_train_states / steps_per_epoch``, within [32, 4096].
        steps_per_epoch: optimiser steps per epoch aimed at when ``batch_states`` is ``None``.
        validation_fraction: share of the training rollouts held out (stratified by reward) for
            early stopping and the choice of weight decay; 0 disables both.
        patience: epochs without a better validation score before a probe stops.
        select_by: the validation score of early stopping and of the weight-decay choice:
            ``"log_loss"`` (default; binary cross-entropy of ``V(s_0)`` against the reward, a proper
            scoring rule and much less noisy than the AUC on a few dozen rollouts: on planted
            stores the AUC picked lucky early epochs) or ``"auc"``.
        activation: hidden non-linearity.
        standardize: standardise inputs per dimension with training-state mean/std.
        seed: seeds the initialisation (a ``torch.Generator`` per probe), the batch order
            (``shuffle_seed = seed + epoch``) and the validation split.
        device: torch device.
        probe_chunk: probes computed per forward/backward inside each optimisation step (``None``:
            all of them on an accelerator; on the CPU as many as keep the ``[probe, state, d]`` block
            near 2^20 floats). The data pass and the optimiser step are shared either way and the
            result is the same; on the CPU one probe of a big batch at a time keeps its block in
            cache, which measured faster than one batched matmul over all probes
            (bench/bench_probes.py), while small batches gain from batching (3x on d=64).
        cache_mb: when the training split's states (all hooks, float32) take at most this many MiB
            they are read from the store once and kept in RAM (:class:`ArrayRollouts`) instead of
            re-read, gathered and cast every epoch; same batches, same result. Larger splits stream,
            so the extra RAM of training is bounded by this budget however large the store grows;
            0 always streams.
    """

    hidden: int = 64
    gamma: float = 0.99
    td_lambda: float = 0.9
    mode: Literal["td", "final_reward"] = "td"
    lr: float = 2e-3
    weight_decay: float | tuple[float, ...] = (0.0, 0.1, 1.0)
    epochs: int = 100
    batch_states: int | None = None
    steps_per_epoch: int = 16
    validation_fraction: float = 0.2
    patience: int = 10
    select_by: Literal["auc", "log_loss"] = "log_loss"
    activation: Literal["relu", "gelu", "tanh"] = "relu"
    standardize: bool = True
    seed: int = 0
    device: str = "cpu"
    probe_chunk: int | None = None
    cache_mb: float = 256.0

    def __post_init__(self):
        if not (isinstance(self.hidden, int) and self.hidden >= 1):
            raise ProbeError(f"hidden must be a positive int, got {self.hidden!r}.")
        if not 0.0 < self.gamma <= 1.0:
            raise ProbeError(f"gamma must be in (0, 1], got {self.gamma!r}.")
        if not 0.0 <= self.td_lambda <= 1.0:
            raise ProbeError(f"td_lambda must be in [0, 1], got {self.td_lambda!r}.")
        if self.mode not in ("td", "final_reward"):
            raise ProbeError(f"mode must be 'td' or 'final_reward', got {self.mode!r}.")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ProbeError(f"lr must be a positive number, got {self.lr!r}.")
        decays = self.weight_decays
        if not decays or not all(isinstance(w, (int, float)) and math.isfinite(w) and w >= 0 for w in decays):
            raise ProbeError(f"weight_decay must be a number >= 0 or a non-empty tuple of them, got {self.weight_decay!r}.")
        if len(set(decays)) != len(decays):
            raise ProbeError(f"weight_decay candidates repeat: {self.weight_decay!r}.")
        if isinstance(self.weight_decay, (list, tuple)):
            self.weight_decay = tuple(float(w) for w in self.weight_decay)
        if not (isinstance(self.epochs, int) and self.epochs >= 1):
            raise ProbeError(f"epochs must be a positive int, got {self.epochs!r}.")
        if not (isinstance(self.cache_mb, (int, float)) and math.isfinite(self.cache_mb) and self.cache_mb >= 0):
            raise ProbeError(f"cache_mb must be a number of MiB >= 0 (0 streams every epoch from the store), got {self.cache_mb!r}.")
        if self.probe_chunk is not None and not (isinstance(self.probe_chunk, int) and self.probe_chunk >= 1):
            raise ProbeError(f"probe_chunk must be a positive int or None, got {self.probe_chunk!r}.")
        if self.batch_states is not None and not (isinstance(self.batch_states, int) and self.batch_states >= 1):
            raise ProbeError(f"batch_states must be a positive int or None (scaled to the store), got {self.batch_states!r}.")
        if not (isinstance(self.steps_per_epoch, int) and self.steps_per_epoch >= 1):
            raise ProbeError(f"steps_per_epoch must be a positive int, got {self.steps_per_epoch!r}.")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ProbeError(f"validation_fraction must be in [0, 1), got {self.validation_fraction!r}.")
        if len(decays) > 1 and self.validation_fraction == 0:
            raise ProbeError(f"{len(decays)} weight_decay candidates need a validation split to choose among them: "
                             "set validation_fraction > 0 or give one weight_decay.")
        if not (isinstance(self.patience, int) and self.patience >= 1):
            raise ProbeError(f"patience must be a positive int, got {self.patience!r}.")
        if self.select_by not in ("auc", "log_loss"):
            raise ProbeError(f"select_by must be 'auc' or 'log_loss', got {self.select_by!r}.")
        if self.activation not in ACTIVATIONS:
            raise ProbeError(f"activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}.")
        if not isinstance(self.seed, int):
            raise ProbeError(f"seed must be an int, got {self.seed!r}.")

    @property
    def weight_decays(self) -> tuple[float, ...]:
        """The weight-decay candidates (one when ``weight_decay`` is a number)."""
        w = self.weight_decay
        return tuple(float(x) for x in w) if isinstance(w, (list, tuple)) else (float(w),)

    def replace(self, **changes) -> ValueProbeConfig:
        """A copy with some fields changed (validated again)."""
        return ValueProbeConfig(**{**asdict(self), **changes})
