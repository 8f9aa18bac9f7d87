"""Which layers did fine-tuning change? Per layer, the summed Euclidean (Frobenius) distance between
corresponding weight and bias tensors of two models, in full precision.

Marks et al.'s public code measured this on int8-loaded weights, where rounding hides small updates
(a LoRA update of a few 1e-3 is below an int8 step). Here every tensor must be float32 or float64:
a half-precision or quantised model is refused with the fix (load it with ``dtype=torch.float32``);
an upcast cannot recover the precision the lower-precision load already lost.

Which layers *could* the fine-tune change, and which did it? :func:`changed_layers` puts each layer's
relative weight change ``||W_tuned − W_base|| / ||W_base||`` next to its floor — the same measure
between the base and a second copy of the base (0 for one checkpoint; float32 rounding is the
tolerance) — and names the layers above it, beside the modules the LoRA adapter wrapped (the peft
model's LoRA layers, saved by ``finetune_grpo``; else the tensors that differ). With a LoRA on every
linear layer, every layer can change and does: the divergence ranking then singles out no layer.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from ...report import Section, Table, new_figure, save_figure

FULL_PRECISION = (torch.float32, torch.float64)
RTOL = 1e-6  # relative weight change below this is float32 rounding (eps 1.2e-7), not a fine-tuning update
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
    base_norm: list[float] = field(default_factory=list)  # per layer, sqrt(sum ||W_base||^2) (relative change)
    changed_tensors: list[str] = field(default_factory=list)  # tensors that differ beyond float32 rounding
    squared_distance: list[float] = field(default_factory=list)  # per layer sum ||ΔW||^2

    def relative(self) -> list[float]:
        """Per layer ``sqrt(sum ||ΔW||²) / sqrt(sum ||W_base||²)`` (NaN without the norms)."""
        if len(self.base_norm) != len(self.layers) or len(self.squared_distance) != len(self.layers):
            return [math.nan] * len(self.layers)
        return [math.sqrt(q) / n if n > 0 else math.nan for q, n in zip(self.squared_distance, self.base_norm)]

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


def layer_divergence(base, tuned, rtol: float = RTOL) -> LayerDivergence:
    """Per-layer summed Euclidean distance between corresponding tensors of ``base`` and ``tuned``
    (``nn.Module`` or state dicts with the same keys and shapes, all float32/float64); a tensor whose
    distance exceeds ``rtol`` × its base norm is listed in ``changed_tensors``."""
    a = full_precision_state(base, "base model")
    b = full_precision_state(tuned, "fine-tuned model")
    if set(a) != set(b):
        missing = sorted(set(a) ^ set(b))[:5]
        raise ValueError(f"the two models' tensors differ ({missing} ...): compare two checkpoints of one architecture "
                         "(merge LoRA adapters into the weights first: peft's merge_and_unload()).")
    per_layer: dict[int, list[tuple[float, float]]] = {}
    outside, changed = 0.0, []
    for key in sorted(a):
        x, y = a[key], b[key]
        if x.shape != y.shape:
            raise ValueError(f"{key}: shapes differ {tuple(x.shape)} vs {tuple(y.shape)}.")
        d = float(torch.linalg.vector_norm(x.double() - y.double()))
        norm = float(torch.linalg.vector_norm(x.double()))
        if d > rtol * max(norm, 1e-30):
            changed.append(key)
        m = LAYER_PATTERN.search(key)
        if m is None:
            outside += d
        else:
            per_layer.setdefault(int(m.group(1)), []).append((d, norm))
    if not per_layer:
        raise ValueError("no per-layer tensors found (expected names like 'model.layers.3.mlp...' or 'blocks.3...').")
    layers = sorted(per_layer)
    dist = [float(math.fsum(d for d, _ in per_layer[l])) for l in layers]
    return LayerDivergence(layers, dist, [len(per_layer[l]) for l in layers], float(outside),
                           [math.sqrt(math.fsum(n * n for _, n in per_layer[l])) for l in layers], changed,
                           [float(math.fsum(d * d for d, _ in per_layer[l])) for l in layers])


def layer_of(name: str) -> int | None:
    """The layer index in a parameter or module name (``model.layers.3.mlp.up_proj`` → 3), else None."""
    m = LAYER_PATTERN.search(name + ".")
    return int(m.group(1)) if m else None


def module_kinds(names: Sequence[str]) -> dict[int, list[str]]:
    """Per layer, the module kinds among ``names`` (``model.layers.3.self_attn.q_proj`` → layer 3:
    ``self_attn.q_proj``; a parameter's ``.weight``/``.bias`` suffix dropped)."""
    out: dict[int, set[str]] = {}
    for n in names:
        n = re.sub(r"\.(weight|bias)$", "", n)
        m = LAYER_PATTERN.search(n + ".")
        if m is not None:
            out.setdefault(int(m.group(1)), set()).add(n[m.end():].rstrip(".") or "(layer)")
    return {l: sorted(v) for l, v in sorted(out.items())}


@dataclass
class ChangedLayers:
    """Per layer the fine-tune's relative weight change next to its floor; the layers above the floor;
    the modules the fine-tune could change (``source``: "LoRA adapter" or "weights that differ")."""

    layers: list[int]
    relative_change: list[float]
    floor: list[float]
    changed: list[int]
    could_change: dict[int, list[str]]
    source: str

    def summary(self) -> dict:
        kinds = sorted({k for v in self.could_change.values() for k in v})
        return {"layers_above_floor": self.changed, "relative_change": dict(zip(map(str, self.layers), self.relative_change)),
                "floor": dict(zip(map(str, self.layers), self.floor)), "could_change_layers": sorted(self.could_change),
                "could_change_modules": kinds, "could_change_source": self.source,
                "every_layer_could_change": sorted(self.could_change) == self.layers,
                "n_layers_above_floor": len(self.changed), "n_layers": len(self.layers), "sentence": self.sentence()}

    def table(self) -> Table:
        rows = [[l, r, f, "yes" if l in self.changed else "no", ", ".join(self.could_change.get(l, [])) or "none"]
                for l, r, f in zip(self.layers, self.relative_change, self.floor)]
        return Table("Which layers the fine-tune could change and did: relative weight change vs the base-vs-base floor",
                     ["layer", "||ΔW|| / ||W||", "floor", "above floor", f"modules it could change ({self.source})"], rows)

    def sentence(self) -> str:
        n, kinds = len(self.layers), sorted({k for v in self.could_change.values() for k in v})
        could = (f"every layer ({n})" if sorted(self.could_change) == self.layers
                 else f"layers {sorted(self.could_change)}")
        return (f"The fine-tune could change {could} ({self.source}: {', '.join(kinds)}); "
                f"{len(self.changed)} of {n} layers changed above the base-vs-base floor"
                + (f": {self.changed}." if len(self.changed) < n else "."))


def changed_layers(divergence: LayerDivergence, floor: LayerDivergence | None = None,
                   lora_modules: Sequence[str] | None = None, rtol: float = RTOL) -> ChangedLayers:
    """Name the layers whose relative weight change exceeds the floor: ``floor`` is the same measure
    between the base and a second copy of it (None: one checkpoint, floor 0), plus the float32
    tolerance ``rtol``. ``lora_modules`` (from the peft model) name what the fine-tune could change;
    without them, the tensors that differ do."""
    rel = divergence.relative()
    if floor is not None and floor.layers != divergence.layers:
        raise ValueError(f"the floor covers layers {floor.layers}, the divergence {divergence.layers}: compare one architecture.")
    base = floor.relative() if floor is not None else [0.0] * len(rel)
    fl = [b + rtol for b in base]
    changed = [l for l, r, f in zip(divergence.layers, rel, fl) if math.isfinite(r) and r > f]
    if lora_modules is not None:
        return ChangedLayers(divergence.layers, rel, fl, changed, module_kinds(lora_modules), "LoRA adapter")
    return ChangedLayers(divergence.layers, rel, fl, changed, module_kinds(divergence.changed_tensors), "weights that differ")

