"""Neuron sets: the dimensions of one hook point that an analysis singles out.

A :class:`NeuronSet` is what value-neuron pruning, dopamine ranking or a random draw produce, and
what every intervention hook accepts. It knows its hook point, its width, the score of each kept
dimension and where it came from (model, dataset, seed, ...); it saves to and loads from JSON.
:func:`iou` compares two sets and :func:`expected_random_iou` gives the analytic chance level.

A leaf value type (it imports only :mod:`reward_circuits.io`), so that both the intervention engine
(:mod:`reward_circuits.interventions`) and the analyses above it (:mod:`reward_circuits.analysis`)
can use it without one depending on the other.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from math import comb
from typing import Hashable, Iterable, Sequence

import numpy as np
import torch
from jaxtyping import Bool
from torch import Tensor

from .io import atomic_write_json
from .reprs import short_list


@dataclass
class NeuronSet:
    """A set of dimensions of one hook point.

    Attributes:
        hook_name: TransformerLens hook name, e.g. ``"blocks.5.hook_resid_post"``.
        indices: the kept dimensions, best first.
        d: the width of the hook point (e.g. d_model = 576).
        scores: one score per index (same order), e.g. the L1 norm of the probe's weight column.
        kind: ``"value"``, ``"dopamine"``, ``"random"``, ...
        layer: layer index of the hook point, if it has one.
        provenance: where it came from: model, dataset, seed, prune ratio, ...
    """

    hook_name: str
    indices: list[int]
    d: int
    scores: list[float] = field(default_factory=list)
    kind: str = "value"
    layer: int | None = None
    provenance: dict = field(default_factory=dict)

    def __post_init__(self):
        self.indices = [int(i) for i in self.indices]
        self.scores = [float(s) for s in self.scores]
        if self.scores and len(self.scores) != len(self.indices):
            raise ValueError(f"{len(self.indices)} indices but {len(self.scores)} scores: give one score per index or none.")
        bad = [i for i in self.indices if not 0 <= i < self.d]
        if bad:
            raise ValueError(f"indices {bad[:5]} outside [0, {self.d}) for hook {self.hook_name!r}.")
        if len(set(self.indices)) != len(self.indices):
            raise ValueError("indices contain duplicates.")

    def __len__(self) -> int:
        return len(self.indices)

    def __repr__(self) -> str:
        return (f"NeuronSet(hook={self.hook_name!r}, n={len(self)} of {self.d}, dims={short_list(self.indices, 4)}, "
                f"kind={self.kind!r}, source={self._source()!r})")

    def _source(self) -> str:
        """Where the set came from in a few words, from :attr:`provenance` (its scalar entries):
        ``"prune 0.99, model=…, seed=0"``."""
        prov = self.provenance or {}
        parts = [f"prune {prov['prune_ratio']:g}"] if isinstance(prov.get("prune_ratio"), (int, float)) else []
        parts += [str(prov["mode"])] if isinstance(prov.get("mode"), str) else []
        for key, v in prov.items():
            if key not in ("prune_ratio", "mode", "store", "score") and isinstance(v, (str, int, float, bool)):
                parts.append(f"{key}={v:.4g}" if isinstance(v, float) else f"{key}={v}")
        out = ""
        for part in parts:  # whole entries, up to about 100 characters
            if len(out) + len(part) > 100:
                return f"{out}, …" if out else part[:100] + "…"
            out = f"{out}, {part}" if out else part
        return out or "—"

    def mask(self) -> Bool[Tensor, " d"]:
        m = torch.zeros(self.d, dtype=torch.bool)
        m[self.indices] = True
        return m

    def iou(self, other: "NeuronSet | Sequence[int]") -> float:
        return iou(self.indices, other.indices if isinstance(other, NeuronSet) else other)

    def top(self, k: int) -> "NeuronSet":
        """The first ``k`` indices (best first)."""
        return NeuronSet(self.hook_name, self.indices[:k], self.d, self.scores[:k], self.kind, self.layer,
                         {**self.provenance, "top_k": k})

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "NeuronSet":
        return cls(**d)

    def save(self, path: str | os.PathLike) -> None:
        atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "NeuronSet":
        with open(path) as f:
            return cls.from_dict(json.load(f))

    @classmethod
    def random(cls, hook_name: str, d: int, k: int, seed: int, layer: int | None = None,
               exclude: Sequence[int] = ()) -> "NeuronSet":
        """``k`` dimensions drawn uniformly (seeded), optionally avoiding ``exclude`` (:func:`random_dims`)."""
        idx = random_dims(d, k, seed, exclude)
        return cls(hook_name, idx.tolist(), d, kind="random", layer=layer, provenance={"seed": seed})


def random_dims(d: int, k: int, rng: np.random.Generator | int, exclude: Sequence[int] = ()) -> np.ndarray:
    """``k`` distinct dims drawn uniformly from ``0..d-1`` outside ``exclude`` (``rng``: a generator
    to continue, or a seed). The one uniform random draw of the package: :meth:`NeuronSet.random`,
    the control sets of :mod:`reward_circuits.analysis.controls`, random masks, pools and latents."""
    pool = np.setdiff1d(np.arange(d), np.asarray(list(exclude), dtype=np.int64))
    if not 0 <= k <= pool.size:
        left = f"{pool.size} of {d} dims are left after excluding {d - pool.size}" if pool.size < d else f"there are {d} dims"
        raise ValueError(f"cannot draw {k} distinct dims: {left}; draw fewer dims (or exclude fewer).")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    return rng.choice(pool, size=k, replace=False)


def _item(x) -> Hashable:
    """Integers of any type as ``int``; lists/arrays (``(layer, neuron)`` read back from JSON) as tuples."""
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (list, tuple, np.ndarray)):
        return tuple(_item(v) for v in x)
    return x


def iou(a: Iterable, b: Iterable) -> float:
    """Intersection over union of two sets of items: dims, or ``(layer, neuron)`` pairs (1.0 for two
    empty sets: they are identical). The one IoU of the package."""
    sa, sb = {_item(x) for x in a}, {_item(x) for x in b}
    union = len(sa | sb)
    return 1.0 if union == 0 else len(sa & sb) / union


def expected_random_iou(n: int, k1: int, k2: int | None = None) -> float:
    """Expected IoU of two independent uniformly random subsets of sizes k1, k2 of n items.

    Exact: sum over the hypergeometric overlap j of P(j) * j / (k1 + k2 - j).
    """
    k2 = k1 if k2 is None else k2
    if not (0 <= k1 <= n and 0 <= k2 <= n):
        raise ValueError(f"subset sizes {k1}, {k2} must lie in [0, {n}].")
    if k1 == 0 and k2 == 0:
        return 1.0
    total = comb(n, k2)
    exp = 0.0
    for j in range(max(0, k1 + k2 - n), min(k1, k2) + 1):
        p = comb(k1, j) * comb(n - k1, k2 - j) / total
        exp += p * j / (k1 + k2 - j)
    return exp
