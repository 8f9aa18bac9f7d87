"""The value stage of the main job: value probes per layer, pruning, value neurons, IoU, baselines.

:func:`run_value_stage` reproduces §2 of arXiv 2602.00986 on one activation store and returns a
:class:`ValueStageResult`: the fitted probe, the best layer, the value-neuron sets and the split,
which the next stages take as arguments, plus its report section (key ``"value"``). Protocol:

1. Stratified split: ``test_fraction`` of the rollouts are held out for every reported AUC; of the
   rest, ``val_fraction`` is a validation split used *only* to pick the best layer (choosing it on
   the test split would bias the reported AUC upward), the remainder trains the probes. Repeated
   prompts stay on one side. The split (of the second store too) is saved as ``splits.json``
   (:func:`~reward_circuits.analysis.splits.write_split_file`): a resumed run and ``compare`` read it back.
2. One stacked :class:`~reward_circuits.probes.ValueProbe` on all requested layers (plus
   ``hook_embed`` when the store has it: the surface baseline) in one pass per epoch.
3. For the best layer: L1 prune curve vs random masks, value neurons (top 1% at 99% pruning),
   TD vs final-reward (Monte-Carlo) targets, architecture robustness and the rotation check.
4. With a second store (another dataset): a probe at the best layer trained there (seed + 1, so
   a shared initialisation cannot inflate the overlap - compare with the seed-only IoU of the
   robustness block) and the IoU of the two value-neuron sets per prune ratio vs random sets.
5. Bag-of-tokens logistic regression on the prompts (when prompt token ids are given).
6. With a second store and ``pooled_probe``: one probe pooled over both tasks' training splits
   (:mod:`~reward_circuits.analysis.pooled`), its held-out AUC per task and pooled, per layer.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ...analysis.probes import ValueProbe, ValueProbeConfig
from ...analysis.splits import SPLIT_FILE, read_split_file
from ...data.protocol import Store
from ...neurons import NeuronSet
from ...report import Section
from .stage_meter import StepTimings
from .value_report import value_section
from .value_steps import cross_task_iou_by_layer  # noqa: F401  (re-exported: it lived here)
from .value_steps import ValueStageRequest, fit_layers, prepare_inputs, run_steps



def stage_config(quick: bool = False, seed: int = 0) -> ValueProbeConfig:
    """Default probe settings of the stage: :class:`ValueProbeConfig`'s defaults (batch scaled to
    the store, early stopping and weight decay on the stage's validation split), fewer epochs and
    one weight decay when ``quick``."""
    if quick:
        return ValueProbeConfig(epochs=6, weight_decay=0.0, seed=seed)
    return ValueProbeConfig(seed=seed)


@dataclass
class ValueStageConfig:
    """Settings of the value stage. ``probe`` defaults to :func:`stage_config` (its seed is replaced by ``seed``)."""

    probe: ValueProbeConfig | None = None
    seed: int = 0
    quick: bool = False  # fewer epochs, ratios and robustness variants (tests, smoke runs)
    exclude_massive: bool = False  # keep massive-activation outlier dims out of the value-neuron sets
    massive_factor: float = 10.0  # outlier: mean |activation| > factor x the layer's median
    target_variants_all_layers: bool = True  # TD(0)/TD(λ)/MC compared on every layer (else the best only)
    robustness_seeds: int = 3  # seeds per probe architecture (hidden width x activation) in the robustness table
    robustness_widths: tuple[int, ...] = (16, 64, 256)  # hidden widths of the robustness table's probe architectures
    iou_seed_pairs: int = 3  # probe seed pairs of the cross-task IoU claim at the best layer (0: none)
    n_boot: int = 2000  # bootstrap replicates of every interval
    pooled_probe: bool = True  # with a second store: one probe trained on both tasks, AUC reported per task
    test_fraction: float = 0.3
    val_fraction: float = 0.2
    verbose: bool = False  # each probe fit's epoch bar
    progress: bool = True  # one bar for the stage, advanced as each of its steps ends
    # torch intra-op threads during the stage (restored after); on a CPU shared with other jobs,
    # 1 thread can be several times faster than 2 contended ones
    num_threads: int | None = None

    def __post_init__(self):
        for name in ("test_fraction", "val_fraction"):
            v = getattr(self, name)
            if not 0 < v < 1:
                raise ValueError(f"ValueStageConfig.{name} must be in (0, 1), got {v}.")
        if self.robustness_seeds < 1:
            raise ValueError(f"robustness_seeds must be >= 1, got {self.robustness_seeds}.")
        self.robustness_widths = tuple(int(w) for w in self.robustness_widths)
        if not self.robustness_widths or any(w < 1 for w in self.robustness_widths):
            raise ValueError(f"robustness_widths must be hidden widths >= 1, got {self.robustness_widths}.")
        if self.num_threads is not None and self.num_threads < 1:
            raise ValueError(f"num_threads must be >= 1 or None, got {self.num_threads}.")


@dataclass
class ValueStageResult:
    """What the value stage found; the intervention and dopamine stages take it as their input."""

    probe: ValueProbe
    best_hook: str
    best_key: str
    auc_test: dict[str, float]  # by hook, held-out test split
    auc_val: dict[str, float]  # by hook, validation split (the layer choice)
    value_sets: dict[str, NeuronSet]  # by layer key: the top 1% at 99% pruning
    best_neurons: NeuronSet
    final_reward_neurons: NeuronSet  # the Monte-Carlo probe's 1% at the best hook
    magnitudes: dict[str, np.ndarray]  # by hook: mean |activation| per dim (matched random controls)
    train_indices: np.ndarray
    val_indices: np.ndarray
    test_indices: np.ndarray
    section: Section

    def to_sections(self) -> list[Section]:
        return [self.section]

    def layers_by_validation(self) -> list[str]:
        """Layer keys, the best first, then by validation AUC (the split that chose the best layer)."""
        hook_of = {k: s.hook_name for k, s in self.value_sets.items()}
        keys = [k for k in self.value_sets if self.auc_val.get(hook_of[k]) is not None]
        return sorted(keys, key=lambda k: (k != self.best_key, -self.auc_val[hook_of[k]]))

    @classmethod
    def load(cls, out_dir: str | os.PathLike, summary: Mapping, *, store: Store | None = None) -> "ValueStageResult":
        """Rebuild the result of a finished stage from its files (to resume a stopped run only).

        ``train_indices`` / ``val_indices`` / ``test_indices`` are the stage's own split, read from
        ``splits.json`` (:func:`~reward_circuits.analysis.splits.read_split_file`); with ``store`` (the
        primary store) its rollout ids must match the saved ones. A directory without the file (older
        runs) raises ``FileNotFoundError`` naming the fix: re-run the value stage."""
        out = Path(out_dir)
        split = read_split_file(out / SPLIT_FILE, store, "primary")
        by_layer = json.loads((out / "value_neurons_by_layer.json").read_text())
        value_sets = {k: NeuronSet.from_dict(v) for k, v in by_layer.items()}
        best = NeuronSet.load(out / "value_neurons.json")
        hook_of = {k: s.hook_name for k, s in value_sets.items()}
        return cls(
            probe=ValueProbe.load(out / "value_probe"), best_hook=best.hook_name, best_key=str(summary["best_layer"]),
            auc_test={hook_of[k]: v for k, v in summary["auc_by_layer"].items() if k in hook_of},
            auc_val={hook_of[k]: v for k, v in summary["auc_by_layer_val"].items() if k in hook_of},
            value_sets=value_sets, best_neurons=best,
            final_reward_neurons=NeuronSet.load(out / "value_neurons_final_reward.json"),
            magnitudes={h: np.asarray(v) for h, v in json.loads((out / "activation_magnitudes.json").read_text()).items()}
            if (out / "activation_magnitudes.json").exists() else {},
            train_indices=split.fit, val_indices=split.val, test_indices=split.test,
            section=Section(key="value", title="Value probes and value neurons", summary=dict(summary)),
        )


def run_value_stage(
    store: Store,
    out_dir: str | os.PathLike,
    *,
    hooks: Sequence[str] | None = None,
    second_store: Store | None = None,
    prompt_tokens: Mapping[str, Sequence[int]] | None = None,
    vocab_size: int | None = None,
    config: ValueStageConfig | None = None,
) -> ValueStageResult:
    """Run the value stage on ``store``; write figures, the probe and the value neurons to ``out_dir``.

    Args:
        hooks: the layers' hook points (default: every ``blocks.{l}.`` hook of the store).
        second_store: another dataset's store (same model) for the IoU of value neurons across tasks.
        prompt_tokens: rollout id → prompt token ids, for the bag-of-tokens baseline.
        vocab_size: tokenizer vocabulary size (default: max token id + 1).
    """
    import torch

    config = config or ValueStageConfig()
    previous_threads = torch.get_num_threads()
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    try:
        request = ValueStageRequest(store=store, out=Path(out_dir), hooks=hooks, second_store=second_store,
                                    prompt_tokens=prompt_tokens, vocab_size=vocab_size, stage=config)
        return _run_value_stage(request)
    finally:
        torch.set_num_threads(previous_threads)


def _run_value_stage(request: ValueStageRequest) -> ValueStageResult:
    """The steps of :mod:`.value_steps` in order, then :func:`~.value_report.value_section`."""
    t_start = time.perf_counter()
    request.out.mkdir(parents=True, exist_ok=True)
    stage = request.stage
    cfg = (stage.probe or stage_config(stage.quick)).replace(seed=stage.seed)
    with StepTimings(n_steps=10, desc="value stage (steps)", show=stage.progress) as timings:
        inp = prepare_inputs(request, cfg, timings, t_start)
        fit = fit_layers(inp)
        found = run_steps(inp, fit)
        section = value_section(inp, fit, found)
        sp = inp.splits
        return ValueStageResult(probe=fit.probe, best_hook=fit.best_hook, best_key=fit.best_key,
                                auc_test=dict(fit.auc_test), auc_val=dict(fit.auc_val),
                                value_sets=found.sets.all_layer_sets, best_neurons=found.sets.neurons,
                                final_reward_neurons=found.targets.mc_neurons, magnitudes=fit.magnitudes,
                                train_indices=sp.fit, val_indices=sp.val, test_indices=sp.test, section=section)
