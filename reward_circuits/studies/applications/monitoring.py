"""Regression monitoring of two model versions: does the reward subsystem survive a fine-tune?

A :class:`ValueSnapshot` is what one model version's value analysis leaves behind: value-neuron
sets per layer and held-out ``V(s_0)`` with rewards. It is read from a run directory of
``reward-circuits run`` (probe + store + the value stage's saved split ``value/splits.json`` are
re-read: the test rollouts the stage held out, never a re-split) or of ``reward-circuits
applications`` (``value/value_snapshot.json``). :func:`compare_snapshots` reports the IoU of the
value neurons per layer (with the analytic random baseline), the AUC shift with a bootstrap
interval (paired over shared prompts when the two versions saw the same prompts), and a one-line
verdict; ``reward-circuits compare A B`` exits non-zero on a regression.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from ...neurons import NeuronSet, expected_random_iou, iou
from ...analysis.stats import Interval, bootstrap_auc_ci, paired_bootstrap_auc_diff, unpaired_bootstrap_auc_diff
from ...io import atomic_write_json, nan_to_none
from ...report import Section, Table, new_figure, save_figure

SNAPSHOT_FILE = "value_snapshot.json"
Verdict = Literal["same", "regression", "improvement", "neurons moved", "inconclusive at this n"]


@dataclass
class CompareConfig:
    """Settings of ``reward-circuits compare`` (every option is one field)."""

    auc_tolerance: float = field(default=0.05, metadata={"help": "an AUC drop at least this large, with an interval excluding 0, is a regression"})
    iou_same: float = field(default=0.5, metadata={"help": "mean value-neuron IoU at or above which the neurons count as the same"})
    n_boot: int = field(default=2000, metadata={"help": "bootstrap replicates of the AUC shift"})
    seed: int = field(default=0, metadata={"help": "seed of the bootstrap"})
    fail_on_inconclusive: bool = field(default=False, metadata={"help": "also exit non-zero when the verdict is 'inconclusive at this n'"})
    out: str | None = field(default=None, metadata={"help": "report directory (summary.json + report.html); none: print only"})

    def __post_init__(self):
        if not 0 < self.auc_tolerance < 0.5:
            raise ValueError(f"auc_tolerance must lie in (0, 0.5), got {self.auc_tolerance}.")
        if not 0 < self.iou_same <= 1:
            raise ValueError(f"iou_same must lie in (0, 1], got {self.iou_same}.")
        if self.n_boot < 100:
            raise ValueError(f"n_boot must be >= 100 for a usable interval, got {self.n_boot}.")


@dataclass
class ValueSnapshot:
    """One model version's value neurons (per layer) and held-out ``V(s_0)`` against rewards."""

    source: str
    model: str
    hook: str
    neuron_sets: dict[str, NeuronSet]
    ids: list[str]
    rewards: np.ndarray
    values: np.ndarray

    def __post_init__(self):
        self.rewards = np.asarray(self.rewards, dtype=np.float64).reshape(-1)
        self.values = np.asarray(self.values, dtype=np.float64).reshape(-1)
        if not (len(self.ids) == self.rewards.size == self.values.size):
            raise ValueError(f"{len(self.ids)} ids, {self.rewards.size} rewards, {self.values.size} values: they must match.")
        if not self.neuron_sets:
            raise ValueError(f"{self.source}: no value-neuron sets.")

    def auc(self, n_boot: int = 2000, seed: int = 0) -> Interval:
        """AUC of ``V(s_0)`` with a stratified bootstrap interval (:func:`~reward_circuits.analysis.stats.bootstrap_auc_ci`)."""
        return bootstrap_auc_ci(self.rewards, self.values, n_boot=n_boot, seed=seed, what=f"V(s_0) of {self.source}")

    def save(self, run_dir: str | os.PathLike) -> Path:
        """Write ``run_dir/value/value_snapshot.json`` and ``value_neurons_by_layer.json``."""
        value_dir = Path(run_dir) / "value"
        atomic_write_json(value_dir / "value_neurons_by_layer.json", {k: s.to_dict() for k, s in self.neuron_sets.items()})
        atomic_write_json(value_dir / SNAPSHOT_FILE, nan_to_none({
            "source": self.source, "model": self.model, "hook": self.hook, "ids": self.ids,
            "rewards": self.rewards.tolist(), "values": self.values.tolist()}))
        return value_dir / SNAPSHOT_FILE

    @classmethod
    def from_dir(cls, run_dir: str | os.PathLike) -> ValueSnapshot:
        """Read a run directory of ``reward-circuits applications`` or ``reward-circuits run``."""
        run_dir = Path(run_dir)
        value_dir = run_dir / "value"
        sets_path = value_dir / "value_neurons_by_layer.json"
        if not sets_path.exists():
            raise FileNotFoundError(f"{run_dir} is not a run directory: no value/value_neurons_by_layer.json. "
                                    "Give a directory written by `reward-circuits run` or `reward-circuits applications`.")
        with open(sets_path) as f:
            sets = {k: NeuronSet.from_dict(v) for k, v in json.load(f).items()}
        snap = value_dir / SNAPSHOT_FILE
        if snap.exists():
            with open(snap) as f:
                d = json.load(f)
            return cls(str(run_dir), d["model"], d["hook"], sets, d["ids"], d["rewards"], d["values"])
        return cls._from_main_job(run_dir, sets)

    @classmethod
    def _from_main_job(cls, run_dir: Path, sets: dict[str, NeuronSet]) -> ValueSnapshot:
        from ...analysis.probes import ValueProbe
        from ...analysis.splits import SPLIT_FILE, read_split_file
        from ...data.store import ActivationStore

        summary_path = run_dir / "summary.json"
        if not summary_path.exists():
            raise FileNotFoundError(f"{run_dir} has no summary.json: was `reward-circuits run` finished there?")
        with open(summary_path) as f:
            summary = json.load(f)
        cfg = summary.get("config", {})
        value = summary.get("value", {})
        hook = value.get("best_hook")
        if not hook or not cfg.get("tasks"):
            raise ValueError(f"{summary_path} lacks the value section's best_hook or the config's tasks.")
        slug = cfg["tasks"][0].replace(":", "_").replace("/", "_")
        store = ActivationStore(run_dir / "store" / slug)
        probe = ValueProbe.load(run_dir / "value" / "value_probe")
        # the value stage's own held-out rollouts (prompt-grouped), never a re-split: one could hold
        # rollouts, or copies of prompts, the probe trained on
        test = read_split_file(run_dir / "value" / SPLIT_FILE, store, "primary").test
        values = probe.initial_values(store, test, [hook])[0]
        ids = [store.rollout_ids[i] for i in test]
        return cls(str(run_dir), str(summary.get("model", store.model)), hook, sets, ids, np.asarray(store.rewards)[test], values)


@dataclass
class ComparisonResult:
    a: str
    b: str
    iou_by_layer: dict[str, float]
    iou_random_by_layer: dict[str, float]
    mean_iou: float
    auc_a: Interval
    auc_b: Interval
    auc_shift: Interval  # B − A
    paired: bool
    n_shared: int
    verdict: Verdict
    line: str
    config: CompareConfig

    @property
    def is_regression(self) -> bool:
        return self.verdict == "regression"

    def exit_code(self) -> int:
        if self.is_regression:
            return 1
        if self.verdict == "inconclusive at this n" and self.config.fail_on_inconclusive:
            return 1
        return 0

    def to_summary(self) -> dict:
        return nan_to_none({"a": self.a, "b": self.b, "verdict": self.verdict, "line": self.line,
                            "iou_by_layer": self.iou_by_layer, "iou_random_by_layer": self.iou_random_by_layer,
                            "mean_iou": self.mean_iou, "auc_a": self.auc_a.to_dict(), "auc_b": self.auc_b.to_dict(),
                            "auc_shift_b_minus_a": self.auc_shift.to_dict(), "paired_over_shared_prompts": self.paired,
                            "n_shared_prompts": self.n_shared, "exit_code": self.exit_code(),
                            "config": {k: v for k, v in vars(self.config).items()}})

    def section(self, out_dir: str | os.PathLike | None = None) -> Section:
        figures = []
        if out_dir is not None:
            figures.append(self.plot(Path(out_dir) / "compare.png"))
        layers = sorted(self.iou_by_layer, key=lambda k: (not k.lstrip("-").isdigit(), int(k) if k.lstrip("-").isdigit() else 0, k))
        tables = [Table("Value-neuron IoU per layer (A vs B)", ["layer", "IoU", "random baseline"],
                        [[k, self.iou_by_layer[k], self.iou_random_by_layer[k]] for k in layers]),
                  Table("AUC of V(s_0) on held-out rollouts (95% bootstrap)", ["version", "AUC", "low", "high", "n"],
                        [[name, i.estimate, i.low, i.high, i.n] for name, i in
                         (("A: " + self.a, self.auc_a), ("B: " + self.b, self.auc_b), ("shift B − A", self.auc_shift))])]
        notes = [self.line, "The shift is " + ("paired over the prompts both versions saw" if self.paired else
                                               "from independent bootstraps (the versions share too few prompts to pair)") + "."]
        return Section("compare", "Regression monitoring: two model versions", self.to_summary(), tables, figures, notes)

    def plot(self, path) -> str:
        fig, (ax1, ax2) = new_figure(10, 3.8, 1, 2)
        layers = list(self.iou_by_layer)
        x = np.arange(len(layers))
        ax1.bar(x - 0.2, [self.iou_by_layer[k] for k in layers], 0.4, label="IoU A vs B")
        ax1.bar(x + 0.2, [self.iou_random_by_layer[k] for k in layers], 0.4, label="random sets (expected)")
        ax1.set_xticks(x)
        ax1.set_xticklabels(layers)
        ax1.set_xlabel("layer")
        ax1.set_ylabel("IoU of value neurons")
        ax1.set_ylim(0, 1.05)
        ax1.legend(fontsize=7)
        for j, (name, i) in enumerate((("A", self.auc_a), ("B", self.auc_b))):
            ax2.errorbar([j], [i.estimate], yerr=[[i.estimate - i.low], [i.high - i.estimate]], fmt="o", capsize=4)
        ax2.set_xticks([0, 1])
        ax2.set_xticklabels(["A", "B"])
        ax2.axhline(0.5, color="k", lw=0.5)
        ax2.set_ylabel("AUC of V(s_0)")
        ax2.set_title(f"verdict: {self.verdict}")
        return save_figure(fig, path)


def _auc_shift(a: ValueSnapshot, b: ValueSnapshot, n_boot: int, seed: int) -> tuple[Interval, bool, int]:
    """Interval of AUC_B − AUC_A: paired over shared ids when ≥ 10 are shared with both rewards on
    each side (:func:`~reward_circuits.analysis.stats.paired_bootstrap_auc_diff`, each version
    against its own rewards), else two independent stratified bootstraps
    (:func:`~reward_circuits.analysis.stats.unpaired_bootstrap_auc_diff`)."""
    index_a = {i: k for k, i in enumerate(a.ids)}
    shared = [(index_a[i], k) for k, i in enumerate(b.ids) if i in index_a]
    ia = np.array([s[0] for s in shared], dtype=int)
    ib = np.array([s[1] for s in shared], dtype=int)
    paired = (len(shared) >= 10 and np.unique(a.rewards[ia]).size == 2 and np.unique(b.rewards[ib]).size == 2)
    if paired:
        shift, _ = paired_bootstrap_auc_diff(b.rewards[ib], b.values[ib], a.values[ia], n_boot=n_boot, seed=seed,
                                             labels_b=a.rewards[ia])
    else:
        shift, _ = unpaired_bootstrap_auc_diff(b.rewards, b.values, a.rewards, a.values, n_boot=n_boot, seed=seed)
    return shift, paired, len(shared)


def decide(shift: Interval, mean_iou: float, cfg: CompareConfig) -> Verdict:
    """regression: AUC dropped by ≥ tolerance with an interval below 0; improvement: the mirror
    image; otherwise ``same`` (interval within ±tolerance and neurons overlap ≥ ``iou_same``),
    ``neurons moved`` (AUC unchanged within tolerance, neurons do not overlap) or
    ``inconclusive at this n`` (the interval reaches past the tolerance)."""
    tol = cfg.auc_tolerance
    if shift.high < 0 and shift.estimate <= -tol:
        return "regression"
    if shift.low > 0 and shift.estimate >= tol:
        return "improvement"
    if shift.low >= -tol and shift.high <= tol:
        return "same" if mean_iou >= cfg.iou_same else "neurons moved"
    return "inconclusive at this n"


def compare_snapshots(a: ValueSnapshot, b: ValueSnapshot, cfg: CompareConfig | None = None) -> ComparisonResult:
    cfg = cfg or CompareConfig()
    layers = [k for k in a.neuron_sets if k in b.neuron_sets]
    if not layers:
        raise ValueError(f"the two versions share no layer with value neurons: A has {sorted(a.neuron_sets)}, "
                         f"B has {sorted(b.neuron_sets)}.")
    ious, rand = {}, {}
    for k in layers:
        sa, sb = a.neuron_sets[k], b.neuron_sets[k]
        if sa.d != sb.d:
            raise ValueError(f"layer {k}: widths differ ({sa.d} vs {sb.d}); compare versions of the same architecture.")
        ious[k] = iou(sa.indices, sb.indices)
        rand[k] = expected_random_iou(sa.d, len(sa), len(sb))
    mean_iou = float(np.mean(list(ious.values())))
    auc_a, auc_b = a.auc(cfg.n_boot, cfg.seed), b.auc(cfg.n_boot, cfg.seed)
    shift, paired, n_shared = _auc_shift(a, b, cfg.n_boot, cfg.seed)
    verdict = decide(shift, mean_iou, cfg)
    line = (f"{verdict}: value-neuron IoU {mean_iou:.2f} (mean over {len(layers)} layers; random "
            f"{np.mean(list(rand.values())):.3f}), AUC {auc_a.estimate:.3f} → {auc_b.estimate:.3f}, shift "
            f"{shift.estimate:+.3f} [{shift.low:+.3f}, {shift.high:+.3f}] (n={shift.n}{', paired' if paired else ''}; "
            f"tolerance ±{cfg.auc_tolerance}).")
    if math.isnan(shift.low):
        verdict, line = "inconclusive at this n", "inconclusive at this n: the AUC shift has no interval. " + line
    return ComparisonResult(a.source, b.source, ious, rand, mean_iou, auc_a, auc_b, shift, paired, n_shared, verdict, line, cfg)
