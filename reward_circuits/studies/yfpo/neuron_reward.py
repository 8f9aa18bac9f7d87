"""The neuron reward: mean (standardised, signed) activation of selected MLP neurons over response tokens.

A :class:`NeuronReward` holds the selected neurons as ``(layer, index)`` pairs of
``blocks.L.mlp.hook_post`` (the input of the HF module the hook name maps to, e.g. Llama's
``layers.L.mlp.down_proj`` or GPT-2's ``h.L.mlp.c_proj``), one sign per
neuron (+1 when it is higher on correct answers, estimated on the training pairs with the base
model) and its mean/std over training response tokens. The score of a sequence is

    r = mean over response tokens t and neurons n of  sign_n · (a_n(t) − μ_n) / σ_n

and the margin of a preference pair is ``r(chosen) − r(rejected)``. The loss adds
``−β_aux · log σ(margin)`` to DPO's (:func:`yfpo_loss`). Standardising puts the margin in units
that do not depend on a neuron's scale, and the sign lets a neuron that is *lower* on correct
answers count as evidence too; both are computed the same way for value, AttnLRP and random
neurons, so the selection method is the only difference between the conditions.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from ...models import ModelAdapter, TokenBatch
from .attnlrp import mlp_down_projections


def auxiliary_loss(margin: Float[Tensor, " batch"], beta_aux: float) -> Float[Tensor, " batch"]:
    """``−β_aux · log σ(margin)``: positive, and smaller the more the chosen response's neurons
    exceed the rejected one's."""
    return -beta_aux * F.logsigmoid(margin)


def yfpo_loss(dpo_per_pair: Float[Tensor, " batch"], margin: Float[Tensor, " batch"], beta_aux: float) -> Tensor:
    """Mean over pairs of DPO loss − β_aux · log σ(margin)."""
    return (dpo_per_pair + auxiliary_loss(margin, beta_aux)).mean()


@dataclass
class NeuronReward:
    """Selected neurons with their signs and standardisation (see the module docstring).

    Attributes:
        kind: ``"value"``, ``"attnlrp"``, ``"random"``, ...
        neurons: ``(layer, index)`` pairs of ``blocks.L.mlp.hook_post``.
        signs: one ±1 per neuron.
        mean, std: per neuron, over training response tokens of the base model.
        provenance: how the neurons were chosen.
    """

    kind: str
    neurons: list[tuple[int, int]]
    signs: list[float] = field(default_factory=list)
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)
    provenance: dict = field(default_factory=dict)

    def __post_init__(self):
        self.neurons = [(int(a), int(b)) for a, b in self.neurons]
        if not self.neurons:
            raise ValueError("a NeuronReward needs at least one neuron.")
        if len(set(self.neurons)) != len(self.neurons):
            raise ValueError("duplicate (layer, index) pairs in neurons.")
        n = len(self.neurons)
        self.signs = [float(s) for s in self.signs] or [1.0] * n
        self.mean = [float(s) for s in self.mean] or [0.0] * n
        self.std = [float(s) for s in self.std] or [1.0] * n
        for name in ("signs", "mean", "std"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} entries for {n} neurons.")
        if any(s <= 0 for s in self.std):
            raise ValueError("std must be positive for every neuron (a constant neuron carries no reward signal).")

    @property
    def layers(self) -> list[int]:
        return sorted({layer for layer, _ in self.neurons})

    def hook_names(self) -> list[str]:
        return [f"blocks.{layer}.mlp.hook_post" for layer in self.layers]

    def to_dict(self) -> dict:
        return asdict(self)

    def score(self, acts: dict[int, Float[Tensor, "batch pos d_mlp"]], response_mask: Int[Tensor, "batch pos"]) -> Float[Tensor, " batch"]:
        """Per sequence: mean over response tokens and neurons of the signed standardised activation
        (``acts[layer]`` = the layer's ``mlp.hook_post``)."""
        return self.score_columns(torch.stack([acts[layer][..., idx] for layer, idx in self.neurons], -1), response_mask)

    def score_columns(self, a: Float[Tensor, "batch pos neuron"], response_mask: Int[Tensor, "batch pos"]) -> Float[Tensor, " batch"]:
        """:meth:`score` from the neurons' activations already gathered, in ``self.neurons`` order."""
        dev, dt = a.device, a.dtype
        z = (a - torch.tensor(self.mean, device=dev, dtype=dt)) / torch.tensor(self.std, device=dev, dtype=dt)
        z = (z * torch.tensor(self.signs, device=dev, dtype=dt)).mean(-1)
        m = response_mask.to(device=dev, dtype=dt)
        return (z * m).sum(1) / m.sum(1).clamp_min(1.0)

    def calibrate(self, stats: NeuronStats) -> NeuronReward:
        """A copy whose signs/mean/std come from ``stats`` (a pass of the base model over pairs)."""
        sign = torch.sign(stats.chosen_mean - stats.rejected_mean)
        sign[sign == 0] = 1.0
        return NeuronReward(self.kind, self.neurons, sign.tolist(), stats.mean.tolist(),
                            stats.std.clamp_min(1e-6).tolist(), {**self.provenance, "calibrated_on_pairs": stats.n_pairs})


@contextlib.contextmanager
def capture_mlp_neurons(model: torch.nn.Module, layers: Sequence[int], *, first_call_only: bool = True) -> Iterator[dict[int, Tensor]]:
    """Inside the block, ``acts[layer]`` is ``blocks.L.mlp.hook_post`` (with its autograd graph) from
    the HF model's forward: the input of the module that hook name maps to
    (:func:`~reward_circuits.models.hf_module`; training needs the HF model's own graph, so this
    stays on HF modules). ``first_call_only``: keep the first forward's values (DPO runs the policy,
    then the reference through the same modules when training a PEFT adapter). Hooks are removed
    on exit, also on an exception."""
    downs = mlp_down_projections(model)
    missing = [layer for layer in layers if layer not in downs]
    if missing:
        raise ValueError(f"layers {missing} have no blocks.L.mlp.hook_post module (model has {len(downs)} layers).")
    acts: dict[int, Tensor] = {}

    def make(layer):
        def hook(module, args):
            if not (first_call_only and layer in acts):
                acts[layer] = args[0]
        return hook

    handles = [downs[layer].register_forward_pre_hook(make(layer)) for layer in layers]
    try:
        yield acts
    finally:
        for h in handles:
            h.remove()


@dataclass
class NeuronStats:
    """Per-neuron statistics over the response tokens of preference pairs (base model)."""

    mean: Float[Tensor, " neuron"]
    std: Float[Tensor, " neuron"]
    chosen_mean: Float[Tensor, " neuron"]
    rejected_mean: Float[Tensor, " neuron"]
    n_pairs: int


@dataclass
class ResponseActivations:
    """Activations of some neurons on the pairs' sequences (one forward pass, kept in memory).

    ``acts[b]`` is ``[2·pairs, pos, neuron]`` for batch ``b`` (chosen rows first), ``masks[b]`` its
    completion mask."""

    neurons: list[tuple[int, int]]
    acts: list[Tensor]
    masks: list[Tensor]

    def subset(self, neurons: Sequence[tuple[int, int]]) -> ResponseActivations:
        where = {n: j for j, n in enumerate(self.neurons)}
        idx = [where[tuple(n)] for n in neurons]
        return ResponseActivations(list(map(tuple, neurons)), [a[..., idx] for a in self.acts], self.masks)

    def stats(self) -> NeuronStats:
        s1 = s2 = cnt = ch = rj = n_ch = n_rj = 0.0
        n_pairs = 0
        for a, mask in zip(self.acts, self.masks):
            a = a.double()
            m = mask.double()[..., None]
            half = a.shape[0] // 2
            s1, s2, cnt = s1 + (a * m).sum((0, 1)), s2 + (a * a * m).sum((0, 1)), cnt + m.sum()
            ch, n_ch = ch + (a[:half] * m[:half]).sum((0, 1)), n_ch + m[:half].sum()
            rj, n_rj = rj + (a[half:] * m[half:]).sum((0, 1)), n_rj + m[half:].sum()
            n_pairs += half
        mean = s1 / cnt
        std = (s2 / cnt - mean * mean).clamp_min(0).sqrt()
        return NeuronStats(mean.float(), std.float(), (ch / n_ch).float(), (rj / n_rj).float(), n_pairs)

    def margins(self, reward: NeuronReward) -> Float[Tensor, " pair"]:
        """``r(chosen) − r(rejected)`` of every pair under ``reward`` (whose neurons must be a subset)."""
        sub = self.subset(reward.neurons)
        out = []
        for a, mask in zip(sub.acts, sub.masks):
            s = reward.score_columns(a, mask)
            half = s.shape[0] // 2
            out.append(s[:half] - s[half:])
        return torch.cat(out)


@torch.no_grad()
def response_activations(model: ModelAdapter | torch.nn.Module, neurons: Sequence[tuple[int, int]], batches) -> ResponseActivations:
    """One forward per TRL preference batch (``input_ids``, ``attention_mask``, ``completion_mask``;
    chosen rows first) keeping only ``neurons``.

    ``model``: a :class:`~reward_circuits.models.ModelAdapter` (the activations are captured at
    ``blocks.L.mlp.hook_post`` on either backend and any architecture it loads) or an HF model
    (the same sites through :func:`capture_mlp_neurons`)."""
    neurons = [tuple(map(int, n)) for n in dict.fromkeys(tuple(n) for n in neurons)]
    layers = sorted({layer for layer, _ in neurons})
    acts, masks = [], []
    for batch in batches:
        if isinstance(model, ModelAdapter):
            hooks = model.validate_hooks([f"blocks.{layer}.mlp.hook_post" for layer in layers])
            tb = TokenBatch(batch["input_ids"], batch["attention_mask"]).to(model.device)
            cap = model.capture(tb, hooks)
            got = {layer: cap[f"blocks.{layer}.mlp.hook_post"] for layer in layers}
        else:
            with capture_mlp_neurons(model, layers) as got:
                model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
        acts.append(torch.stack([got[layer][..., i] for layer, i in neurons], -1).float())
        masks.append(batch["completion_mask"])
    return ResponseActivations(neurons, acts, masks)


def neuron_stats(model: ModelAdapter | torch.nn.Module, neurons: Sequence[tuple[int, int]], batches) -> NeuronStats:
    """Mean/std of each neuron over response tokens, and its mean on chosen vs rejected responses
    (``batches``: TRL preference batches, chosen rows first)."""
    return response_activations(model, neurons, batches).stats()
