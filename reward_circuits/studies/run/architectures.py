"""Two (or more) architectures side by side, layers in relative depth: ``reward-circuits architectures A B``.

Reads finished main-job run directories (``reward-circuits run --model ...``) of models whose
layer counts and widths differ (e.g. SmolLM2-135M, 30 layers × 576, and Gemma 3 270M, 18 × 640),
so neuron indices cannot be compared across them. What can be compared is *where* and *how much*:
per layer, at relative depth ``layer / (n_layers - 1)``, the held-out AUC of V(s_0) (95% bootstrap
interval) against the logistic floor, and the IoU of the two tasks' value neurons within each model
against uniform and magnitude-matched random sets (the paper's "shared across tasks" claim, per
architecture). :func:`compare_architectures` returns an :class:`ArchitectureComparison`; its
:meth:`~ArchitectureComparison.section` is the report section ``architectures``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ...io import nan_to_none
from ...models.loading import relative_depth
from ...report import Section, Table, new_figure, save_figure


@dataclass
class ArchitectureRun:
    """What one run says per layer, keyed by layer, with the layer's relative depth."""

    source: str
    model: str
    n_layers: int
    d_model: int
    tasks: list[str]
    accuracy: dict[str, float]
    best_layer: str | None
    auc: dict[str, dict]  # layer -> Interval dict
    floor: dict[str, dict | None]
    iou_tasks: dict[str, dict]  # layer -> {iou, random, matched_random, n}
    massive: dict[str, list[int]]

    def depth(self, layer: str) -> float:
        return relative_depth(int(layer), self.n_layers)

    @classmethod
    def from_dir(cls, run_dir: str | os.PathLike) -> "ArchitectureRun":
        path = Path(run_dir) / "summary.json"
        if not path.is_file():
            raise FileNotFoundError(f"{run_dir}: no summary.json; give the output directory of a finished "
                                    "`reward-circuits run`.")
        s = json.loads(path.read_text())
        value = s.get("value")
        if not value or "auc_by_layer_ci" not in value:
            raise ValueError(f"{path} has no value section with per-layer intervals: run the value stage there "
                             "(`reward-circuits run --stages rollouts,store,value`).")
        layers = [k for k in value["auc_by_layer_ci"] if k.lstrip("-").isdigit() and int(k) >= 0]
        floors = value.get("logistic_floor_by_layer") or {}
        massive = (value.get("massive_activations") or {})
        return cls(
            source=str(run_dir), model=str(s.get("model")), n_layers=int(s["n_layers"]), d_model=int(s["d_model"]),
            tasks=list(s.get("rollouts", {}).get("tasks", [])), accuracy=dict(s.get("rollouts", {}).get("accuracy", {})),
            best_layer=str(value.get("best_layer")), auc={k: value["auc_by_layer_ci"][k] for k in layers},
            floor={k: _interval(floors.get(k)) for k in layers},
            iou_tasks=dict(value.get("iou_across_tasks_by_layer") or {}),
            massive={k: list(_dims(massive.get(k) or massive.get(f"blocks.{k}.hook_resid_post"))) for k in layers},
        )


def _interval(x) -> dict | None:
    if isinstance(x, dict) and "estimate" in x:
        return x
    if isinstance(x, dict) and "auc" in x:
        return _interval(x["auc"])
    return None


def _dims(x) -> list[int]:
    if isinstance(x, dict):
        return list(x.get("dims", []))
    return list(x or [])


@dataclass
class ArchitectureComparison:
    runs: list[ArchitectureRun]

    def rows(self) -> list[list]:
        out = []
        for r in self.runs:
            for k in sorted(r.auc, key=int):
                a, f, i = r.auc[k], r.floor.get(k), r.iou_tasks.get(k, {})
                out.append([r.model, k, round(r.depth(k), 3), a["estimate"], f"[{a['low']:.3f}, {a['high']:.3f}]", a["n"],
                            f["estimate"] if f else None, i.get("iou"), i.get("random"), i.get("matched_random"),
                            len(r.massive.get(k, [])), "best" if k == r.best_layer else ""])
        return out

    def to_summary(self) -> dict:
        return nan_to_none({"runs": [{"source": r.source, "model": r.model, "n_layers": r.n_layers, "d_model": r.d_model,
                                      "tasks": r.tasks, "accuracy": r.accuracy, "best_layer": r.best_layer,
                                      "best_relative_depth": r.depth(r.best_layer) if r.best_layer in r.auc else None,
                                      "by_layer": {k: {"relative_depth": r.depth(k), "auc": r.auc[k], "logistic_floor": r.floor.get(k),
                                                       "iou_across_tasks": r.iou_tasks.get(k), "massive_dims": r.massive.get(k)}
                                                   for k in r.auc}}
                                     for r in self.runs]})

    def plot(self, path: str | os.PathLike) -> str:
        fig, (ax1, ax2) = new_figure(11, 4.0, 1, 2)
        for r in self.runs:
            ks = sorted(r.auc, key=int)
            x = [r.depth(k) for k in ks]
            est = [r.auc[k]["estimate"] for k in ks]
            line, = ax1.plot(x, est, "o-", label=f"{r.model} (V(s_0) probe)")
            ax1.fill_between(x, [r.auc[k]["low"] for k in ks], [r.auc[k]["high"] for k in ks], color=line.get_color(), alpha=0.15)
            fl = [(r.depth(k), r.floor[k]["estimate"]) for k in ks if r.floor.get(k)]
            if fl:
                ax1.plot(*zip(*fl), "--", color=line.get_color(), alpha=0.7, label=f"{r.model} (logistic floor)")
            ik = [k for k in ks if k in r.iou_tasks]
            if ik:
                ax2.plot([r.depth(k) for k in ik], [r.iou_tasks[k]["iou"] for k in ik], "o-", color=line.get_color(),
                         label=f"{r.model}: across tasks")
                ax2.plot([r.depth(k) for k in ik], [r.iou_tasks[k].get("matched_random") or r.iou_tasks[k]["random"] for k in ik],
                         ":", color=line.get_color(), alpha=0.7, label=f"{r.model}: matched random")
        ax1.axhline(0.5, color="k", lw=0.5)
        ax1.set_xlabel("relative depth (layer / last layer)")
        ax1.set_ylabel("held-out AUC (95% CI)")
        ax1.legend(fontsize=7)
        ax2.set_xlabel("relative depth")
        ax2.set_ylabel("IoU of value neurons (1%)")
        ax2.legend(fontsize=7)
        return save_figure(fig, path)

    def section(self, out_dir: str | os.PathLike | None = None) -> Section:
        figures = [self.plot(Path(out_dir) / "architectures.png")] if out_dir is not None else []
        notes = [f"{r.model}: {r.n_layers} layers × {r.d_model}; tasks {r.tasks} (accuracy "
                 f"{', '.join(f'{t} {a:.2f}' for t, a in r.accuracy.items())}); best layer {r.best_layer} "
                 f"(relative depth {r.depth(r.best_layer):.2f}, chosen on validation)."
                 for r in self.runs if r.best_layer in r.auc]
        notes.append("Neuron indices are not comparable across architectures; each model's IoU is between its own "
                     "two tasks' value sets at the same layer.")
        table = Table("Per layer, in relative depth", ["model", "layer", "relative depth", "AUC", "95% CI", "n",
                                                       "logistic floor", "IoU across tasks", "uniform random",
                                                       "matched random", "massive dims", ""], self.rows())
        return Section("architectures", "Architectures side by side (relative depth)", self.to_summary(), [table],
                       figures, notes)


def compare_architectures(run_dirs: Sequence[str | os.PathLike]) -> ArchitectureComparison:
    """Read each finished main-job run directory; see the module docstring."""
    if len(run_dirs) < 2:
        raise ValueError("give at least two run directories (e.g. runs/default and runs/gemma).")
    return ArchitectureComparison([ArchitectureRun.from_dir(d) for d in run_dirs])
