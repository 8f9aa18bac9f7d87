"""The intervention stage of the main job: ablation (§2.4 + Appendix A), dose-response, steering
(the paper's open question on amplifying value neurons) and confidence signals.

:func:`run_intervention_stage` takes the value stage's neuron sets and probe as
:class:`InterventionInputs`, its settings as :class:`InterventionStudyConfig`, and returns an
:class:`InterventionStageResult` with three report sections, keyed ``"ablation"`` (dose-response
and the final-reward-vs-TD comparison inside), ``"steering"`` and ``"confidence"``, with PNG
figures written into ``out_dir``.

Cost: every study runs its conditions (value set, random draws, doses, steering factors) as one
batched generation through :func:`~reward_circuits.interventions.sweep` (row-scoped hooks, shared
prompt rows for generated-positions-only conditions, finished rows leave the batch); the accuracies
are identical to one pass per condition under greedy decoding (tested).
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Literal, Mapping

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from ..analysis.causal import (ablation_conditions, ablation_study, dose_conditions, dose_response,
                               steering_conditions, steering_study)
from ..analysis.confidence import confidence_study
from ..interventions import SweepResult, ablation_interventions, activation_means, initial_values, sweep
from ..interventions.scoring import examples_of, prompt_seqs, resolve_probe_hook
from ..io import nan_to_none
from ..models import GenerationConfig, ModelAdapter
from ..analysis.controls import control_sets, score_controls
from ..neurons import NeuronSet
from ..analysis.stats import bootstrap_ci, paired_bootstrap_diff, verdict
from ..report import Section, Table, new_figure, save_figure


def _nan(x) -> float:
    return math.nan if x is None else float(x)


# ---- figures ----------------------------------------------------------------------------------


def plot_ablation(per_layer: Mapping[str, dict], out_dir: Path, final_reward: Mapping[str, dict] | None = None,
                  name: str = "ablation_bars.png") -> str:
    """Grouped bars per layer: baseline, value neurons ablated, random neurons ablated (mean ± std)
    and, when given, final-reward (Monte-Carlo) probe neurons ablated - the paper's Table 1."""
    layers = list(per_layer)
    x = np.arange(len(layers))
    series = [("baseline", [per_layer[l]["baseline_acc"] for l in layers], None, "#888888"),
              ("value neurons ablated", [per_layer[l]["value_acc"] for l in layers], None, "#d62728"),
              ("random neurons ablated", [per_layer[l]["random_acc_mean"] for l in layers],
               [per_layer[l]["random_acc_std"] for l in layers], "#1f77b4")]
    if final_reward:
        series.append(("final-reward probe neurons ablated",
                       [_nan(final_reward.get(l, {}).get("final_reward_acc")) for l in layers], None, "#ff7f0e"))
    fig, ax = new_figure(max(6.0, 1.6 * len(layers) + 2), 4.0)
    w = 0.8 / len(series)
    for i, (label, ys, err, color) in enumerate(series):
        bars = ax.bar(x + (i - (len(series) - 1) / 2) * w, [_nan(y) for y in ys], w, yerr=err, capsize=3,
                      label=label, color=color)
        ax.bar_label(bars, labels=[f"{_nan(y):.2f}" if math.isfinite(_nan(y)) else "n/a" for y in ys],
                     fontsize=7, padding=2)
    ax.set_xticks(x, [f"layer {l}\n({per_layer[l]['n_neurons']} dims)" for l in layers])
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.05)
    ax.set_title(f"Ablating value neurons vs random neurons ({next(iter(per_layer.values()))['mode'] if per_layer else ''}-ablation)")
    ax.legend(fontsize=8, loc="upper right")
    return save_figure(fig, out_dir / name)


def plot_dose_response(dose: dict, out_dir: Path, name: str = "dose_response.png") -> str:
    fig, ax = new_figure(6.5, 4.0)
    fr = np.asarray(dose["fractions"], dtype=float) * 100
    colors = {"zero": "#d62728", "mean": "#9467bd"}
    for mode, c in dose["curves"].items():
        col = colors.get(mode, None)
        ax.plot(fr, [_nan(v) for v in c["value_acc"]], "o-", color=col, label=f"value neurons ({mode})")
        ax.errorbar(fr, [_nan(v) for v in c["random_acc_mean"]], yerr=[_nan(v) for v in c["random_acc_std"]],
                    fmt="s--", color=col, alpha=0.6, capsize=3, label=f"uniform random ({mode})")
        if "matched_acc_mean" in c:
            ax.plot(fr, [_nan(v) for v in c["matched_acc_mean"]], "^:", color=col, alpha=0.8,
                    label=f"magnitude-matched random ({mode})")
    ax.axhline(dose["baseline_acc"], color="#888888", lw=1, ls=":", label="baseline")
    ax.set_xscale("log")
    ax.set_xticks(fr, [f"{v:g}%\n({k})" for v, k in zip(fr, dose["n_neurons"])])
    ax.minorticks_off()
    ax.set_xlabel(f"% of {dose['hook']} dimensions ablated (number of dims)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.05)
    ax.set_title("Dose-response")
    ax.legend(fontsize=8)
    return save_figure(fig, out_dir / name)


def plot_steering(steer: dict, out_dir: Path, name: str = "steering.png") -> str:
    fig, ax = new_figure(6.5, 4.0)
    entries = list(steer["factors"].values())
    if not any(e["factor"] == 1.0 for e in entries):  # the identity point is the baseline
        entries.append({"factor": 1.0, "accuracy": steer["baseline_acc"],
                        "mean_value_shift": 0.0 if math.isfinite(_nan(steer.get("baseline_value"))) else math.nan})
    entries.sort(key=lambda e: e["factor"])
    f = [e["factor"] for e in entries]
    ax.plot(f, [_nan(e["accuracy"]) for e in entries], "o-", color="#d62728", label="accuracy")
    ax.set_xlabel(f"scale factor on {steer['n_neurons']} value neurons ({steer['hook_name']})")
    ax.set_ylabel("accuracy", color="#d62728")
    ax.set_ylim(0, 1.05)
    ax.axvline(1.0, color="#888888", lw=1, ls=":")
    shifts = [_nan(e["mean_value_shift"]) for e in entries]
    if any(math.isfinite(s) for s in shifts):
        ax2 = ax.twinx()
        ax2.plot(f, shifts, "s--", color="#1f77b4", label="mean ΔV(s_0)")
        ax2.set_ylabel("mean change of V(s_0)", color="#1f77b4")
        ax2.axhline(0.0, color="#1f77b4", lw=0.5, alpha=0.5)
    ax.set_title("Steering value neurons (0 = ablate, 1 = identity, >1 = amplify)")
    return save_figure(fig, out_dir / name)


def plot_confidence(conf: dict, out_dir: Path, name: str = "confidence.png") -> str:
    fig, ax = new_figure(6.5, 4.0)
    names = ["value_neurons", "next_token_prob", "verbalized"]
    labels = ["value neurons V(s_0)", "next-token prob.", "verbalized"]
    x = np.arange(len(names))
    for dx, metric, label, color in ((-0.2, "auc", "AUC vs reward", "#2ca02c"),
                                     (0.2, "spearman", "Spearman ρ vs reward", "#17becf")):
        ys = [_nan(conf[n][metric]) for n in names]
        bars = ax.bar(x + dx, [y if math.isfinite(y) else 0.0 for y in ys], 0.4, label=label, color=color)
        ax.bar_label(bars, labels=[f"{y:.2f}" if math.isfinite(y) else "n/a" for y in ys], fontsize=7, padding=2)
    ax.axhline(0.5, color="#2ca02c", lw=0.8, ls=":")
    ax.axhline(0.0, color="#444444", lw=0.8)
    ax.set_xticks(x, [f"{l}\n(n={conf[n]['n']})" for l, n in zip(labels, names)])
    ax.set_ylim(-1, 1.1)
    ax.set_title("Which confidence signal tracks correctness?")
    ax.legend(fontsize=8)
    return save_figure(fig, out_dir / name)


# ---- the stage ----------------------------------------------------------------------------------


def _full_scores(layer, ns: NeuronSet, probe, dose_scores: Mapping | None) -> tuple[Float[Tensor, " d"], str]:
    """A ranking of every dimension of ``ns.hook_name`` for the dose-response curve."""
    if dose_scores is not None and layer in dose_scores:
        return torch.as_tensor(dose_scores[layer], dtype=torch.float64), "given scores"
    if probe is not None and ns.hook_name in list(getattr(probe, "hook_names", [])):
        return probe.input_weight_norms(ns.hook_name).double(), "probe input-weight L1 norms"
    scores = torch.full((ns.d,), -math.inf, dtype=torch.float64)
    scores[torch.as_tensor(ns.indices)] = torch.arange(len(ns), 0, -1, dtype=torch.float64)
    return scores, "value-set order (dimensions outside the set unranked)"


def _fmt_diff(d: Mapping | None) -> str:
    return "" if not d else f"{d['estimate']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"


def _transfer_entry(ns: NeuronSet, swept: SweepResult, key: str, value_sets: Mapping[Any, NeuronSet],
                    per_layer: Mapping[str, dict], baseline, seed: int) -> dict:
    """Accuracy with a foreign value set ablated, paired against the random draws and this task's own
    value set at the same hook (when the ablation study covered that hook)."""
    run = swept[key]
    entry: dict[str, Any] = {"hook_name": ns.hook_name, "n_neurons": len(ns), "accuracy": run.accuracy,
                             "accuracy_ci": bootstrap_ci(np.asarray(run.rewards, dtype=float), seed=seed).to_dict(),
                             "baseline_acc": baseline.accuracy,
                             "provenance": {k: v for k, v in (ns.provenance or {}).items() if k in ("model", "seed", "prune_ratio")}}
    own = [l for l, v in value_sets.items() if v.hook_name == ns.hook_name]
    if not own:
        entry["note"] = f"no value set of this task at {ns.hook_name}: no paired comparison"
        return entry
    layer = own[0]
    n_draws = len(per_layer[str(layer)]["random_accs"])
    own_rewards = np.asarray(swept[f"ablation/value/{layer}"].rewards, dtype=float)
    entry.update({"own_value_acc": float(own_rewards.mean()), "iou_with_own": value_sets[layer].iou(ns),
                  "random_acc_mean": per_layer[str(layer)]["random_acc_mean"]})
    if n_draws:
        random = np.mean([swept[f"ablation/random/{layer}/{d}"].rewards for d in range(n_draws)], axis=0)
        diff, p = paired_bootstrap_diff(run.rewards, random, seed=seed)
        entry.update({"minus_random": diff.to_dict(), "p_value": p,
                      "verdict_transfers": verdict(diff, expected_sign=-1)})
    diff, p = paired_bootstrap_diff(run.rewards, own_rewards, seed=seed)
    entry.update({"minus_own": diff.to_dict(), "p_value_vs_own": p})
    return entry


@dataclass
class InterventionStudyConfig:
    """Settings of the intervention studies (ablation, final-reward comparison, dose-response, steering, confidence)."""

    n_random_draws: int = 3
    steering_factors: tuple[float, ...] = (0.0, 0.5, 1.5, 2.0, 4.0)
    seed: int = 0
    max_examples: int | None = None
    ablation_mode: Literal["zero", "mean"] = "zero"
    dose_fractions: tuple[float, ...] = (0.005, 0.01, 0.02, 0.05)
    dose_modes: tuple[str, ...] = ("zero", "mean")
    dose_random_draws: int = 1
    # default: the first value layer (the main job's best by validation AUC), fixed before any
    # generation: choosing the layer whose ablation hurt most on these same examples would select on noise
    dose_layer: int | None = None
    steer_layer: int | None = None
    run_dose: bool = True
    run_steering: bool = True
    run_confidence: bool = True
    # value set vs uniform and magnitude-matched random sets, paired on the same examples, for the
    # first ``controlled_layers`` value layers (needs ``InterventionInputs.magnitudes``)
    controlled_layers: int = 1

    def __post_init__(self):
        self.steering_factors = tuple(float(f) for f in self.steering_factors)
        self.dose_fractions = tuple(float(f) for f in self.dose_fractions)
        self.dose_modes = tuple(self.dose_modes)
        if self.ablation_mode not in ("zero", "mean"):
            raise ValueError(f"ablation_mode must be 'zero' or 'mean', got {self.ablation_mode!r}.")
        bad = [m for m in self.dose_modes if m not in ("zero", "mean")]
        if bad:
            raise ValueError(f"dose_modes {bad}: use 'zero' and/or 'mean'.")
        if any(not 0 < f < 1 for f in self.dose_fractions):
            raise ValueError(f"dose_fractions must lie in (0, 1), got {list(self.dose_fractions)}.")
        if self.n_random_draws < 0 or self.dose_random_draws < 0:
            raise ValueError("n_random_draws and dose_random_draws must be >= 0.")
        if self.max_examples is not None and self.max_examples < 1:
            raise ValueError(f"max_examples must be >= 1 or None, got {self.max_examples}.")


@dataclass
class InterventionInputs:
    """What the studies intervene on, from the value stage.

    ``value_sets``: ``{layer: NeuronSet}`` of value neurons (e.g. top 1% by probe weight norm).
    ``probe``, ``probe_hook``: a fitted value probe and the hook whose ``V(s_0)`` is read for the
    steering value shift and the confidence comparison (default: the steered hook if the probe has
    it, or its only hook). ``final_reward_sets``: ``{layer: NeuronSet}`` from a final-reward
    (Monte-Carlo) probe, ablated next to the TD probe's (Appendix A). ``dose_scores``: ``{layer:
    scores[d]}`` ranking for the dose-response (default: the probe's input-weight norms, else the
    value set's own order). ``confidence_inputs``: optional ``{examples, rewards, generations,
    value_scores, next_token_probs, verbalized}`` (e.g. from the main rollouts); missing pieces are
    computed from the baseline run. ``transfer_sets``: ``{name: NeuronSet}`` of value neurons found
    elsewhere (another task's probe, another model of the same family), ablated on these examples
    next to this task's own value set and random sets at the same hook (the paper's transfer).
    """

    value_sets: Mapping[int, NeuronSet]
    probe: Any = None
    probe_hook: str | None = None
    final_reward_sets: Mapping[int, NeuronSet] | None = None
    dose_scores: Mapping[int, Tensor] | None = None
    confidence_inputs: Mapping[str, Any] | None = None
    magnitudes: Mapping[str, Any] | None = None  # {hook: mean |activation| per dim}, for matched controls
    # {name: NeuronSet} found on another task (or model), ablated on these examples: transfer
    transfer_sets: Mapping[str, NeuronSet] | None = None

    def __post_init__(self):
        if not self.value_sets:
            raise ValueError("value_sets is empty: give {layer: NeuronSet} of value neurons.")


@dataclass
class InterventionStageResult:
    """The studies' report sections and the layer whose value-neuron ablation hurt most."""

    ablation: Section
    steering: Section
    confidence: Section
    worst_layer: int

    def __repr__(self) -> str:
        keys = [s.key for s in self.to_sections()]
        return f"InterventionStageResult(worst_layer={self.worst_layer}, sections={keys})"

    def to_sections(self) -> list[Section]:
        return [self.ablation, self.steering, self.confidence]


def run_intervention_stage(
    adapter: ModelAdapter,
    task,
    inputs: InterventionInputs,
    out_dir: str | os.PathLike,
    study: InterventionStudyConfig | None = None,
    generation: GenerationConfig | None = None,
    examples=None,
) -> InterventionStageResult:
    """Ablation, dose-response, steering and confidence on ``examples`` (default: the task's; first
    ``study.max_examples``). Summaries are JSON-ready (NaN → None, layer and factor keys as strings)."""
    study = study or InterventionStudyConfig()
    value_sets, probe, probe_hook = inputs.value_sets, inputs.probe, inputs.probe_hook
    final_reward_sets, dose_scores, confidence_inputs = inputs.final_reward_sets, inputs.dose_scores, inputs.confidence_inputs
    n_random_draws, steering_factors, seed = study.n_random_draws, study.steering_factors, study.seed
    max_examples, ablation_mode = study.max_examples, study.ablation_mode
    dose_fractions, dose_modes, dose_random_draws = study.dose_fractions, study.dose_modes, study.dose_random_draws
    dose_layer, steer_layer = study.dose_layer, study.steer_layer
    run_dose, run_steering, run_confidence = study.run_dose, study.run_steering, study.run_confidence
    config = generation
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    examples = examples_of(task, examples)
    if max_examples is not None:
        examples = examples[: int(max_examples)]
    config = config or GenerationConfig(max_new_tokens=getattr(task, "max_new_tokens", 64))
    layers = list(value_sets)
    passes = {"n": 0}
    t_start = time.perf_counter()

    # check the probe hook before any expensive generation; the default is fixed once the steered
    # layer is known (the steered hook when the probe reads it)
    probe_names = list(getattr(probe, "hook_names", []) or []) if probe is not None else []
    if probe is not None:
        if probe_hook is not None and probe_hook not in probe_names:
            raise ValueError(f"probe_hook {probe_hook!r} is not one of the probe's hooks {probe_names}.")
        usable = [value_sets[l].hook_name for l in layers if value_sets[l].hook_name in probe_names]
        if probe_hook is None and not usable and len(probe_names) != 1:
            raise ValueError(f"say which probe hook to read: probe_hook= one of {probe_names}.")

    means = None
    transfer_sets = dict(inputs.transfer_sets or {})
    if ablation_mode == "mean" or (run_dose and "mean" in dose_modes):
        hooks = sorted({ns.hook_name for ns in value_sets.values()} |
                       {ns.hook_name for ns in (final_reward_sets or {}).values()} |
                       {ns.hook_name for ns in transfer_sets.values()})
        means = activation_means(adapter, prompt_seqs(adapter, task, examples), hooks)
    magnitudes = dict(inputs.magnitudes or {})
    # the dose-response and steering layer is fixed before any generation (see the config)
    dose_layer = layers[0] if dose_layer is None else dose_layer
    steer_layer = layers[0] if steer_layer is None else steer_layer

    # ---- every condition of every study, in one sweep ----
    conds: dict[str, list] = {"baseline": []}
    controls: dict[Any, dict[str, list[list[int]]]] = {}
    for layer in layers[: study.controlled_layers]:
        ns = value_sets[layer]
        if magnitudes.get(ns.hook_name) is not None and n_random_draws:
            controls[layer] = control_sets(ns.indices, np.asarray(magnitudes[ns.hook_name]), n_draws=n_random_draws, seed=seed)
    # a controlled layer's uniform control draws are also its random column in the ablation table
    ab_conds, _ = ablation_conditions(value_sets, n_random_draws, seed, ablation_mode, means, "all",
                                      {l: c["uniform"] for l, c in controls.items()})
    conds.update({f"ablation/{k}": v for k, v in ab_conds.items()})
    for layer, c in controls.items():
        ns = value_sets[layer]
        for d, dims in enumerate(c["magnitude_matched"]):
            control = NeuronSet(ns.hook_name, list(dims), ns.d, kind="control", layer=ns.layer)
            conds[f"matched/{layer}/{d}"] = ablation_interventions(control, ablation_mode, means)
    for layer, ns in (final_reward_sets or {}).items():
        conds[f"final_reward/{layer}"] = ablation_interventions(ns, ablation_mode, means)
    for name, ns in transfer_sets.items():
        conds[f"transfer/{name}"] = ablation_interventions(ns, ablation_mode, means)
    dose_args = None
    if run_dose and dose_fractions:
        ns = value_sets[dose_layer]
        scores, source = _full_scores(dose_layer, ns, probe, dose_scores)
        dose_args = dict(scores=scores, hook=ns.hook_name, fractions=dose_fractions, modes=dose_modes,
                         n_random_draws=dose_random_draws, seed=seed, means=means,
                         magnitudes=magnitudes.get(ns.hook_name))
        conds.update({f"dose/{k}": v for k, v in dose_conditions(**dose_args).items()})
    if run_steering and steering_factors:
        conds.update({f"steering/{k}": v for k, v in steering_conditions(value_sets[steer_layer], steering_factors).items()})
    swept = sweep(adapter, task, conds, config, examples=examples)
    passes["n"] += swept.n_passes
    baseline = swept["baseline"].scored_run()

    # ---- ablation: value vs random (Table 1) ----
    per_layer = ablation_study(adapter, task, examples, value_sets, n_random_draws, seed, ablation_mode, means,
                               config, baseline, random_sets={l: c["uniform"] for l, c in controls.items()},
                               swept=swept.subset("ablation/"))
    notes_ab = [f"{len(examples)} examples; {ablation_mode}-ablation active on every forward of generation; "
                f"{n_random_draws} random draws per layer (same size, excluding the value neurons); std is the "
                f"sample std over draws. All {len(swept)} conditions of the studies ran as one batched sweep "
                f"({swept.n_rows} rows in {swept.n_passes} passes, {swept.seconds:.0f} s)."]

    def harm(l):
        e = per_layer[str(l)]
        return (e["random_acc_mean"] - e["value_acc"]) if math.isfinite(e["random_acc_mean"]) else (e["baseline_acc"] - e["value_acc"])

    # ---- value set vs uniform and magnitude-matched random controls (paired tests, verdicts) ----
    controlled: dict[str, Any] = {}
    for layer, c in controls.items():
        ns = value_sets[layer]
        outcomes = {"uniform": [swept[f"ablation/random/{layer}/{d}"].rewards for d in range(len(c["uniform"]))],
                    "magnitude_matched": [swept[f"matched/{layer}/{d}"].rewards for d in range(len(c["magnitude_matched"]))]}
        controlled[str(layer)] = score_controls(swept[f"ablation/value/{layer}"].rewards, outcomes, c, ns.indices,
                                                np.asarray(magnitudes[ns.hook_name]), hook=ns.hook_name,
                                                baseline=baseline.rewards, seed=seed)
    worst_layer = max(layers, key=harm)

    if probe is not None and probe_hook is None:
        steered = value_sets[steer_layer].hook_name
        usable = [value_sets[l].hook_name for l in layers if value_sets[l].hook_name in probe_names]
        probe_hook = resolve_probe_hook(probe, None, steered if steered in probe_names else (usable[0] if usable else None))

    # ---- final-reward (Monte-Carlo) vs TD probe neurons (Appendix A) ----
    fr_summary: dict[str, dict] = {}
    for layer, ns in (final_reward_sets or {}).items():
        run = swept[f"final_reward/{layer}"]
        td = per_layer.get(str(layer))
        fr_summary[str(layer)] = {
            "hook_name": ns.hook_name, "n_final_reward": len(ns), "final_reward_acc": run.accuracy,
            "td_value_acc": td["value_acc"] if td else math.nan, "n_td": td["n_neurons"] if td else None,
            "random_acc_mean": td["random_acc_mean"] if td else math.nan,
            "baseline_acc": baseline.accuracy,
            "iou_with_td": value_sets[layer].iou(ns) if layer in value_sets else math.nan,
        }
        if td is not None:
            diff, p = paired_bootstrap_diff(run.rewards, swept[f"ablation/value/{layer}"].rewards, seed=seed)
            fr_summary[str(layer)].update({"final_reward_minus_td": diff.to_dict(), "p_value": p,
                                           "verdict_td_matters_more": verdict(diff, expected_sign=1)})

    # ---- transfer: value neurons found elsewhere, ablated on these examples ----
    transfer = {name: _transfer_entry(ns, swept, f"transfer/{name}", value_sets, per_layer, baseline, seed)
                for name, ns in transfer_sets.items()}

    # ---- dose-response ----
    dose = None
    notes_dose: list[str] = []
    if dose_args is not None:
        dose = dose_response(adapter, task, examples, config=config, baseline=baseline, swept=swept.subset("dose/"),
                             **dose_args)
        dose["layer"] = dose_layer
        dose["ranking"] = source
        notes_dose = list(dose.get("notes", []))

    # ---- steering ----
    steer = None
    if run_steering and steering_factors:
        ns = value_sets[steer_layer]
        steer = steering_study(adapter, task, examples, ns, steering_factors, probe, probe_hook, config, baseline,
                               swept=swept.subset("steering/"))
        steer["layer"] = steer_layer

    # ---- confidence ----
    conf = None
    if run_confidence:
        ci = dict(confidence_inputs or {})
        c_examples = list(ci.get("examples", examples))
        c_gens = list(ci.get("generations", baseline.generations if "examples" not in ci else []))
        c_rewards = list(ci.get("rewards", baseline.rewards if "examples" not in ci else []))
        if len(c_gens) != len(c_examples) or len(c_rewards) != len(c_examples):
            raise ValueError("confidence_inputs with 'examples' must also give matching 'generations' and 'rewards'.")
        values = ci.get("value_scores")
        if values is None and probe is not None:
            values = initial_values(adapter, probe, probe_hook, [g.prompt_ids for g in c_gens])
        conf = confidence_study(adapter, task, c_examples, c_rewards, values, c_gens, config,
                                next_token_probs=ci.get("next_token_probs"), verbalized=ci.get("verbalized"))
        conf["probe_hook"] = probe_hook
        conf["source"] = "confidence_inputs" if confidence_inputs else "baseline generations of this stage"
        conf["n_examples"] = len(c_examples)
        if ci.get("verbalized") is None:
            passes["n"] += 1

    elapsed = time.perf_counter() - t_start

    # ---- sections ----
    ab_summary = {
        "mode": ablation_mode, "n_examples": len(examples), "n_random_draws": n_random_draws,
        "baseline_acc": baseline.accuracy, "layers": per_layer,
        "final_reward_vs_td": fr_summary or None, "dose_response": dose, "transfer": transfer or None,
        "sweep": {k: v for k, v in swept.summary().items() if k != "accuracy"},
        "study_layer": {"dose": dose_layer if dose is not None else None, "steering": steer_layer if steer is not None else None,
                        "worst_by_ablation": worst_layer},
        "generation_passes": passes["n"], "seconds": elapsed,
        "baseline_acc_ci": bootstrap_ci(np.asarray(baseline.rewards, dtype=float), seed=seed).to_dict(),
        "controlled_ablation": {l: c.to_dict() for l, c in controlled.items()} or None,
        "verdicts": {**{f"layer {l}: value neurons matter more than {k} random neurons": c.controls[k].verdict
                        for l, c in controlled.items() for k in c.controls},
                     **{f"layer {l}: TD-probe neurons matter more than final-reward-probe neurons": e["verdict_td_matters_more"]
                        for l, e in fr_summary.items() if "verdict_td_matters_more" in e},
                     **{f"{name}: value neurons transfer (matter more than random)": e["verdict_transfers"]
                        for name, e in transfer.items() if "verdict_transfers" in e}},
    }
    ab_rows = [[l, e["hook_name"], e["n_neurons"], e["baseline_acc"], e["value_acc"], e["random_acc_mean"],
                e["random_acc_std"], e["baseline_acc"] - e["value_acc"], e["baseline_acc"] - e["random_acc_mean"]]
               for l, e in per_layer.items()]
    tables = [Table("Accuracy under ablation (value vs random neurons)",
                    ["layer", "hook", "n neurons", "baseline", "value ablated", "random mean", "random std",
                     "drop (value)", "drop (random)"], ab_rows)]
    for l, c in controlled.items():
        tables.append(Table(f"Layer {l}: value set vs random controls on the same {c.value_accuracy.n} examples "
                            f"(95% bootstrap CIs; paired bootstrap p; verdict on 'value neurons matter more')",
                            list(c.TABLE_COLUMNS), c.table_rows()))
        notes_ab += c.notes()
    figures = [plot_ablation(per_layer, out, fr_summary or None)]
    if fr_summary:
        tables.append(Table("Final-reward (Monte-Carlo) probe neurons vs TD probe neurons",
                            ["layer", "n TD", "TD ablated", "n final-reward", "final-reward ablated", "random mean",
                             "baseline", "IoU", "final-reward − TD (95% CI)", "p", "verdict: TD neurons matter more"],
                            [[l, e["n_td"], e["td_value_acc"], e["n_final_reward"], e["final_reward_acc"],
                              e["random_acc_mean"], e["baseline_acc"], e["iou_with_td"], _fmt_diff(e.get("final_reward_minus_td")),
                              e.get("p_value"), e.get("verdict_td_matters_more", "")] for l, e in fr_summary.items()]))
    if transfer:
        tables.append(Table(f"Transfer: value neurons found elsewhere, ablated on these {len(examples)} examples",
                            ["set", "hook", "n", "accuracy", "own value set ablated", "random mean", "IoU with own",
                             "transfer − random (95% CI)", "p", "verdict: transfers"],
                            [[name, e["hook_name"], e["n_neurons"], e["accuracy"], e.get("own_value_acc"),
                              e.get("random_acc_mean"), e.get("iou_with_own"), _fmt_diff(e.get("minus_random")),
                              e.get("p_value"), e.get("verdict_transfers", e.get("note", ""))] for name, e in transfer.items()]))
    if dose is not None and dose["fractions"]:
        rows = []
        for mode, c in dose["curves"].items():
            for i, f in enumerate(dose["fractions"]):
                rows.append([mode, f, dose["n_neurons"][i], c["value_acc"][i], c["random_acc_mean"][i], c["random_acc_std"][i],
                             c.get("matched_acc_mean", [None] * (i + 1))[i]])
        tables.append(Table(f"Dose-response at layer {dose_layer} ({dose['ranking']})",
                            ["mode", "fraction", "n neurons", "value ablated", "uniform random mean", "uniform random std",
                             "magnitude-matched random mean"], rows))
        figures.append(plot_dose_response(dose, out))
    n_ex = max(len(examples), 1)
    p0 = float(baseline.accuracy)
    se = (p0 * (1 - p0) / n_ex) ** 0.5
    ab_summary["accuracy_standard_error"] = se
    notes_noise = [f"Sampling noise: with {n_ex} examples per pass the binomial standard error of an accuracy near "
                   f"{p0:.2f} is {se:.3f}; differences smaller than ~2×{se:.2f} (and the spread of the random draws) "
                   "are not evidence of an effect. Raise --eval-examples for a tighter table."]
    ablation_section = Section("ablation", "Ablating value neurons", nan_to_none(ab_summary), tables, figures,
                               notes_noise + notes_ab + notes_dose)

    if steer is not None:
        rows = [[e["factor"], e["accuracy"], e["mean_value"], e["mean_value_shift"]]
                for e in sorted(steer["factors"].values(), key=lambda e: e["factor"])]
        notes = [f"Value neurons of layer {steer_layer} ({steer['hook_name']}, {steer['n_neurons']} dims) multiplied by "
                 "each factor on every forward of generation. Value shift: mean change of the probe's V(s_0) at the "
                 "prompt's last token under the intervention (capture sees the post-intervention activation)."]
        if probe is None:
            notes.append("No probe given: value shifts are undefined.")
        steering_section = (Section("steering", "Steering (amplifying) value neurons", nan_to_none(steer),
                                [Table("Accuracy and value shift per factor",
                                       ["factor", "accuracy", "mean V(s_0)", "mean ΔV(s_0)"], rows)],
                                [plot_steering(steer, out)], notes))
    else:
        steering_section = Section("steering", "Steering (amplifying) value neurons", {"skipped": True}, notes=["skipped"])

    if conf is not None:
        rows = []
        for key, label in (("value_neurons", "value neurons V(s_0)"), ("next_token_prob", "next-token probability"),
                           ("verbalized", "verbalized confidence")):
            e = conf[key]
            rows.append([label, e["spearman"], e["auc"], e["n"], e.get("parse_rate", ""), e["note"]])
        notes = [f"{conf['n_examples']} examples from {conf['source']}; mean reward {conf['mean_reward']:.3f}. "
                 "Verbalized: 'How confident are you that this answer is correct? Reply with a number between 0 and 1.' "
                 "after the model's own answer; first number parsed, clipped to [0, 1]."]
        notes += [f"{k}: {conf[k]['note']}" for k in ("value_neurons", "next_token_prob", "verbalized") if conf[k]["note"]]
        confidence_section = (Section("confidence", "Confidence signals vs correctness", nan_to_none(conf),
                                [Table("Spearman and AUC against reward", ["signal", "Spearman ρ", "AUC", "n", "parse rate", "note"], rows)],
                                [plot_confidence(conf, out)], notes))
    else:
        confidence_section = Section("confidence", "Confidence signals vs correctness", {"skipped": True}, notes=["skipped"])
    return InterventionStageResult(ablation_section, steering_section, confidence_section, worst_layer)
