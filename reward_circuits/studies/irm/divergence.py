"""Which layers did fine-tuning change? Per layer, the summed Euclidean (Frobenius) distance between
corresponding weight and bias tensors of two models, in full precision.

Marks et al.'s public code measured this on int8-loaded weights, where rounding hides small updates
(a LoRA update of a few 1e-3 is below an int8 step). Here every tensor must be float32 or float64:
a half-precision or quantised model is refused with the fix (load it with ``dtype=torch.float32``);
an upcast cannot recover the precision the lower-precision load already lost.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ...report import Section, Table, new_figure, save_figure

FULL_PRECISION = (torch.float32, torch.float64)
LAYER_PATTERN = re.compile(r"(?:^|\.)(?:layers|h|blocks|layer)\.(\d+)\.")


class PrecisionError(ValueError):
    """A model's weights are not in full precision (layer divergence would be rounded away)."""


def full_precision_state(model_or_state, what: str = "model") -> dict[str, Tensor]:
    """The state dict of ``model_or_state`` (an ``nn.Module`` or a mapping), checked to be float32/64."""
    if isinstance(model_or_state, torch.nn.Module):
        cfg = getattr(model_or_state, "config", None)
        if getattr(cfg, "quantization_config", None) is not None or getattr(model_or_state, "is_quantized", False):
            raise PrecisionError(f"{what} is quantised ({type(getattr(cfg, 'quantization_config', None)).__name__}); "
                                 "load it without quantisation and with dtype=torch.float32.")
        state = model_or_state.state_dict()
    elif isinstance(model_or_state, Mapping):
        state = dict(model_or_state)
    else:
        raise TypeError(f"{what}: expected an nn.Module or a state dict, got {type(model_or_state).__name__}.")
    low = sorted({str(v.dtype) for v in state.values() if v.dtype not in FULL_PRECISION})
    if low:
        raise PrecisionError(
            f"{what} has tensors in {low}: layer divergence needs full-precision weights (float32/float64), "
            "otherwise rounding hides small fine-tuning updates. Reload it with "
            "`AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)` and without load_in_8bit/4bit."
        )
    return state


@dataclass
class LayerDivergence:
    """``distance[l]`` = sum over the layer's tensors of ``||W_base - W_tuned||_2``."""

    layers: list[int]
    distance: list[float]
    n_tensors: list[int]
    outside_layers: float  # the same sum over tensors not in any layer (embeddings, final norm, unembedding)

    def top_layers(self, k: int) -> list[int]:
        order = sorted(range(len(self.layers)), key=lambda i: (-self.distance[i], self.layers[i]))
        return [self.layers[i] for i in order[:k]]

    def top_over_median(self) -> float:
        """How much the most diverged layer stands out: its distance over the median layer's (NaN if all 0)."""
        med = float(np.median(self.distance))
        return max(self.distance) / med if med > 0 else float("nan")

    def figure(self, path) -> str:
        fig, ax = new_figure(6.5, 3.2)
        ax.bar(self.layers, self.distance, color="tab:blue")
        ax.set_xlabel("layer")
        ax.set_ylabel("summed L2 distance of weights")
        ax.set_title("Layer divergence: base vs fine-tuned (float32)")
        return save_figure(fig, path)

    def table(self, k: int = 5) -> Table:
        top = self.top_layers(k)
        rows = [[l, self.distance[self.layers.index(l)], self.n_tensors[self.layers.index(l)]] for l in top]
        return Table(f"Top {len(top)} layers by weight divergence", ["layer", "summed L2 distance", "tensors"], rows)

    def section(self, k: int = 5) -> Section:
        return Section("divergence", "Layer divergence", {"top_layers": self.top_layers(k), "distance": self.distance,
                                                          "outside_layers": self.outside_layers}, [self.table(k)])


def layer_divergence(base, tuned) -> LayerDivergence:
    """Per-layer summed Euclidean distance between corresponding tensors of ``base`` and ``tuned``
    (``nn.Module`` or state dicts with the same keys and shapes, all float32/float64)."""
    a = full_precision_state(base, "base model")
    b = full_precision_state(tuned, "fine-tuned model")
    if set(a) != set(b):
        missing = sorted(set(a) ^ set(b))[:5]
        raise ValueError(f"the two models' tensors differ ({missing} ...): compare two checkpoints of one architecture "
                         "(merge LoRA adapters into the weights first: peft's merge_and_unload()).")
    per_layer: dict[int, list[float]] = {}
    outside = 0.0
    for key in sorted(a):
        x, y = a[key], b[key]
        if x.shape != y.shape:
            raise ValueError(f"{key}: shapes differ {tuple(x.shape)} vs {tuple(y.shape)}.")
        d = float(torch.linalg.vector_norm(x.double() - y.double()))
        m = LAYER_PATTERN.search(key)
        if m is None:
            outside += d
        else:
            per_layer.setdefault(int(m.group(1)), []).append(d)
    if not per_layer:
        raise ValueError("no per-layer tensors found (expected names like 'model.layers.3.mlp...' or 'blocks.3...').")
    layers = sorted(per_layer)
    dist = [float(math.fsum(per_layer[l])) for l in layers]
    return LayerDivergence(layers, dist, [len(per_layer[l]) for l in layers], float(outside))

