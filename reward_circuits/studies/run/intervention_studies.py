"""The intervention stage's studies, in the order they run (see :mod:`.interventions`).

:func:`prepare_run` fixes everything before any generation (examples, the probe hook check, the
activation means, the dose and steering layers) in an :class:`InterventionRun`;
:func:`build_conditions` lists every condition of every study (:class:`StudyConditions`), which
:func:`run_studies` generates as one batched sweep and reads back study by study into
:class:`StudyFindings` (ablation and its controls, final-reward vs TD, transfer, dose-response,
steering, confidence). :mod:`.intervention_sections` renders the findings.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from ...analysis.causal import (ablation_conditions, ablation_study, dose_conditions, dose_response,
                               steering_conditions, steering_control_conditions, steering_control_sets, steering_study,
                               steering_vs_random)
from ...analysis.confidence import confidence_study
from ...analysis.controls import control_sets, score_controls
from ...analysis.resampling import hierarchical_vs_random
from ...analysis.stats import bootstrap_ci, paired_bootstrap_diff, verdict
from ...interventions import SweepResult, ablation_interventions, activation_means, initial_values, sweep
from ...interventions.scoring import examples_of, prompt_seqs, resolve_probe_hook
from ...models import GenerationConfig, ModelAdapter
from ...neurons import NeuronSet

if TYPE_CHECKING:
    from .interventions import InterventionInputs, InterventionStudyConfig


def full_scores(layer, ns: NeuronSet, probe, dose_scores: Mapping | None) -> tuple[Float[Tensor, " d"], str]:
    """A ranking of every dimension of ``ns.hook_name`` for the dose-response curve."""
    if dose_scores is not None and layer in dose_scores:
        return torch.as_tensor(dose_scores[layer], dtype=torch.float64), "given scores"
    if probe is not None and ns.hook_name in list(getattr(probe, "hook_names", [])):
        return probe.input_weight_norms(ns.hook_name).double(), "probe input-weight L1 norms"
    scores = torch.full((ns.d,), -math.inf, dtype=torch.float64)
    scores[torch.as_tensor(ns.indices)] = torch.arange(len(ns), 0, -1, dtype=torch.float64)
    return scores, "value-set order (dimensions outside the set unranked)"


def transfer_entry(ns: NeuronSet, swept: SweepResult, key: str, value_sets: Mapping[Any, NeuronSet],
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
        draws = np.asarray([swept[f"ablation/random/{layer}/{d}"].rewards for d in range(n_draws)], dtype=float)
        diff, p = paired_bootstrap_diff(run.rewards, draws.mean(0), seed=seed)
        entry.update({"minus_random": diff.to_dict(), "p_value": p,
                      "verdict_transfers": verdict(diff, expected_sign=-1)})
        if n_draws > 1:  # the claim registry's test: the random draws' own spread counts
            entry["vs_draws"] = hierarchical_vs_random(run.rewards, draws, seed=seed).to_dict()
    diff, p = paired_bootstrap_diff(run.rewards, own_rewards, seed=seed)
    entry.update({"minus_own": diff.to_dict(), "p_value_vs_own": p})
    return entry


# ---- before any generation ---------------------------------------------------------------------


@dataclass
class InterventionRun:
    """One run of the stage: its inputs and settings, and what is fixed before any generation."""

    adapter: ModelAdapter
    task: Any
    inputs: "InterventionInputs"
    study: "InterventionStudyConfig"
    generation: GenerationConfig
    out: Path
    examples: list
    t_start: float
    probe_names: list[str] = field(default_factory=list)
    means: Any = None  # per-hook activation means (mean-ablation), or None
    magnitudes: dict = field(default_factory=dict)
    transfer_sets: dict = field(default_factory=dict)
    dose_layer: Any = None
    steer_layer: Any = None
    probe_hook: str | None = None  # the hook whose V(s_0) is read; its default is fixed after the sweep
    passes: int = 0  # generation passes so far

    @property
    def value_sets(self) -> Mapping[Any, NeuronSet]:
        return self.inputs.value_sets

    @property
    def probe(self) -> Any:
        return self.inputs.probe

    @property
    def layers(self) -> list:
        return list(self.inputs.value_sets)


def _check_probe_hook(run: InterventionRun) -> None:
    """Check the probe hook before any expensive generation; the default is fixed once the steered
    layer is known (the steered hook when the probe reads it)."""
    probe, probe_hook, value_sets = run.probe, run.probe_hook, run.value_sets
    run.probe_names = list(getattr(probe, "hook_names", []) or []) if probe is not None else []
    if probe is not None:
        if probe_hook is not None and probe_hook not in run.probe_names:
            raise ValueError(f"probe_hook {probe_hook!r} is not one of the probe's hooks {run.probe_names}.")
        usable = [value_sets[l].hook_name for l in run.layers if value_sets[l].hook_name in run.probe_names]
        if probe_hook is None and not usable and len(run.probe_names) != 1:
            raise ValueError(f"say which probe hook to read: probe_hook= one of {run.probe_names}.")


def prepare_run(adapter: ModelAdapter, task, inputs: "InterventionInputs", out_dir: str | os.PathLike,
                study: "InterventionStudyConfig", generation: GenerationConfig | None, examples) -> InterventionRun:
    """The examples (first ``study.max_examples``), the generation settings, the probe-hook check,
    the activation means (mean-ablation), and the dose and steering layers."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    examples = examples_of(task, examples)
    if study.max_examples is not None:
        examples = examples[: int(study.max_examples)]
    config = generation or GenerationConfig(max_new_tokens=getattr(task, "max_new_tokens", 64))
    run = InterventionRun(adapter=adapter, task=task, inputs=inputs, study=study, generation=config, out=out,
                          examples=examples, t_start=time.perf_counter(), probe_hook=inputs.probe_hook)
    _check_probe_hook(run)
    value_sets, final_reward_sets = inputs.value_sets, inputs.final_reward_sets
    run.transfer_sets = dict(inputs.transfer_sets or {})
    if study.ablation_mode == "mean" or (study.run_dose and "mean" in study.dose_modes):
        hooks = sorted({ns.hook_name for ns in value_sets.values()} |
                       {ns.hook_name for ns in (final_reward_sets or {}).values()} |
                       {ns.hook_name for ns in run.transfer_sets.values()})
        run.means = activation_means(adapter, prompt_seqs(adapter, task, examples), hooks)
    run.magnitudes = dict(inputs.magnitudes or {})
    # the dose-response and steering layer is fixed before any generation (see the config)
    run.dose_layer = run.layers[0] if study.dose_layer is None else study.dose_layer
    run.steer_layer = run.layers[0] if study.steer_layer is None else study.steer_layer
    return run


# ---- every condition of every study, in one sweep ----------------------------------------------


@dataclass
class StudyConditions:
    """Every condition of every study (``{name: interventions}``), the controlled layers' random sets,
    and the dose-response's arguments and ranking (None when it does not run)."""

    conds: dict[str, list]
    controls: dict[Any, dict[str, list[list[int]]]]
    dose_args: dict | None = None
    dose_source: str | None = None
    steering_controls: dict | None = None  # {kind, sets, factors}: random sets steered beside the value set


def build_conditions(run: InterventionRun) -> StudyConditions:
    """Baseline, ablations (value, random, magnitude-matched, final-reward, transfer), doses, steering factors."""
    study, value_sets, means, seed = run.study, run.value_sets, run.means, run.study.seed
    mode, n_draws = study.ablation_mode, study.n_random_draws
    conds: dict[str, list] = {"baseline": []}
    controls: dict[Any, dict[str, list[list[int]]]] = {}
    for layer in run.layers[: study.controlled_layers]:
        ns = value_sets[layer]
        if run.magnitudes.get(ns.hook_name) is not None and n_draws:
            controls[layer] = control_sets(ns.indices, np.asarray(run.magnitudes[ns.hook_name]), n_draws=n_draws, seed=seed)
    # a controlled layer's uniform control draws are also its random column in the ablation table
    ab_conds, _ = ablation_conditions(value_sets, n_draws, seed, mode, means, "all",
                                      {l: c["uniform"] for l, c in controls.items()})
    conds.update({f"ablation/{k}": v for k, v in ab_conds.items()})
    for layer, c in controls.items():
        ns = value_sets[layer]
        for d, dims in enumerate(c["magnitude_matched"]):
            control = NeuronSet(ns.hook_name, list(dims), ns.d, kind="control", layer=ns.layer)
            conds[f"matched/{layer}/{d}"] = ablation_interventions(control, mode, means)
    for layer, ns in (run.inputs.final_reward_sets or {}).items():
        conds[f"final_reward/{layer}"] = ablation_interventions(ns, mode, means)
    for name, ns in run.transfer_sets.items():
        conds[f"transfer/{name}"] = ablation_interventions(ns, mode, means)
    res = StudyConditions(conds, controls)
    if study.run_dose and study.dose_fractions:
        ns = value_sets[run.dose_layer]
        scores, res.dose_source = full_scores(run.dose_layer, ns, run.probe, run.inputs.dose_scores)
        res.dose_args = dict(scores=scores, hook=ns.hook_name, fractions=study.dose_fractions, modes=study.dose_modes,
                             n_random_draws=study.dose_random_draws, seed=seed, means=means,
                             magnitudes=run.magnitudes.get(ns.hook_name))
        conds.update({f"dose/{k}": v for k, v in dose_conditions(**res.dose_args).items()})
    if study.run_steering and study.steering_factors:
        ns = value_sets[run.steer_layer]
        conds.update({f"steering/{k}": v for k, v in steering_conditions(ns, study.steering_factors).items()})
        factors = sorted((f for f in study.steering_factors if f != 1.0), reverse=True)[: study.steering_control_factors]
        if study.steering_random_draws and factors:
            kind, sets = steering_control_sets(ns, run.magnitudes.get(ns.hook_name), study.steering_random_draws, seed)
            res.steering_controls = {"kind": kind, "sets": sets, "factors": factors}
            conds.update({f"steering_random/{k}": v for k, v in steering_control_conditions(ns, sets, factors).items()})
    return res


# ---- the studies, read from the sweep ----------------------------------------------------------


@dataclass
class StudyFindings:
    """What every study found; ``seconds`` is the stage's time up to the confidence study's end."""

    swept: SweepResult
    baseline: Any  # the baseline's ScoredRun
    per_layer: dict  # ablation: value vs random, by layer (Table 1)
    notes_ab: list[str]
    controlled: dict[str, Any]  # value set vs uniform and magnitude-matched controls, by layer
    worst_layer: Any
    final_reward: dict[str, dict]  # final-reward (Monte-Carlo) vs TD probe neurons, by layer
    transfer: dict[str, dict]
    dose: dict | None = None
    notes_dose: list[str] = field(default_factory=list)
    steer: dict | None = None
    conf: dict | None = None
    seconds: float = 0.0


def _ablation(run: InterventionRun, cond: StudyConditions, swept: SweepResult, baseline) -> tuple[dict, list[str]]:
    """Ablation: value vs random neurons by layer (Table 1), and its notes."""
    study = run.study
    per_layer = ablation_study(run.adapter, run.task, run.examples, run.value_sets, study.n_random_draws, study.seed,
                               study.ablation_mode, run.means, run.generation, baseline,
                               random_sets={l: c["uniform"] for l, c in cond.controls.items()},
                               swept=swept.subset("ablation/"))
    notes_ab = [f"{len(run.examples)} examples; {study.ablation_mode}-ablation active on every forward of generation; "
                f"{study.n_random_draws} random draws per layer (same size, excluding the value neurons); std is the "
                f"sample std over draws. All {len(swept)} conditions of the studies ran as one batched sweep "
                f"({swept.n_rows} rows in {swept.n_passes} passes, {swept.seconds:.0f} s)."]
    return per_layer, notes_ab


def _controlled(run: InterventionRun, cond: StudyConditions, swept: SweepResult, baseline) -> dict[str, Any]:
    """Value set vs uniform and magnitude-matched random controls (paired tests, verdicts)."""
    controlled: dict[str, Any] = {}
    for layer, c in cond.controls.items():
        ns = run.value_sets[layer]
        outcomes = {"uniform": [swept[f"ablation/random/{layer}/{d}"].rewards for d in range(len(c["uniform"]))],
                    "magnitude_matched": [swept[f"matched/{layer}/{d}"].rewards for d in range(len(c["magnitude_matched"]))]}
        controlled[str(layer)] = score_controls(swept[f"ablation/value/{layer}"].rewards, outcomes, c, ns.indices,
                                                np.asarray(run.magnitudes[ns.hook_name]), hook=ns.hook_name,
                                                baseline=baseline.rewards, seed=run.study.seed)
    return controlled


def _worst_layer(run: InterventionRun, per_layer: dict):
    def harm(l):
        e = per_layer[str(l)]
        return (e["random_acc_mean"] - e["value_acc"]) if math.isfinite(e["random_acc_mean"]) else (e["baseline_acc"] - e["value_acc"])

    return max(run.layers, key=harm)


def _default_probe_hook(run: InterventionRun) -> None:
    """The probe hook, when not given: the steered hook if the probe reads it, else a value layer's, else its only one."""
    if run.probe is not None and run.probe_hook is None:
        value_sets, names = run.value_sets, run.probe_names
        steered = value_sets[run.steer_layer].hook_name
        usable = [value_sets[l].hook_name for l in run.layers if value_sets[l].hook_name in names]
        run.probe_hook = resolve_probe_hook(run.probe, None, steered if steered in names else (usable[0] if usable else None))


def _final_reward_vs_td(run: InterventionRun, swept: SweepResult, per_layer: dict, baseline) -> dict[str, dict]:
    """Final-reward (Monte-Carlo) vs TD probe neurons (Appendix A)."""
    fr_summary: dict[str, dict] = {}
    for layer, ns in (run.inputs.final_reward_sets or {}).items():
        res = swept[f"final_reward/{layer}"]
        td = per_layer.get(str(layer))
        fr_summary[str(layer)] = {
            "hook_name": ns.hook_name, "n_final_reward": len(ns), "final_reward_acc": res.accuracy,
            "td_value_acc": td["value_acc"] if td else math.nan, "n_td": td["n_neurons"] if td else None,
            "random_acc_mean": td["random_acc_mean"] if td else math.nan,
            "baseline_acc": baseline.accuracy,
            "iou_with_td": run.value_sets[layer].iou(ns) if layer in run.value_sets else math.nan,
        }
        if td is not None:
            diff, p = paired_bootstrap_diff(res.rewards, swept[f"ablation/value/{layer}"].rewards, seed=run.study.seed)
            fr_summary[str(layer)].update({"final_reward_minus_td": diff.to_dict(), "p_value": p,
                                           "verdict_td_matters_more": verdict(diff, expected_sign=1)})
    return fr_summary


def _dose(run: InterventionRun, cond: StudyConditions, found: StudyFindings) -> None:
    """Dose-response at the dose layer, from the sweep."""
    if cond.dose_args is not None:
        dose = dose_response(run.adapter, run.task, run.examples, config=run.generation, baseline=found.baseline,
                             swept=found.swept.subset("dose/"), **cond.dose_args)
        dose["layer"] = run.dose_layer
        dose["ranking"] = cond.dose_source
        found.dose, found.notes_dose = dose, list(dose.get("notes", []))


def _steering(run: InterventionRun, cond: StudyConditions, found: StudyFindings) -> None:
    """Steering (scaling) the value neurons of the steering layer, and the random sets steered beside
    them at the largest factors, from the sweep."""
    if run.study.run_steering and run.study.steering_factors:
        ns = run.value_sets[run.steer_layer]
        steer = steering_study(run.adapter, run.task, run.examples, ns, run.study.steering_factors, run.probe,
                               run.probe_hook, run.generation, found.baseline, swept=found.swept.subset("steering/"))
        steer["layer"] = run.steer_layer
        c = cond.steering_controls
        if c is not None:
            steer["vs_random"] = {"kind": c["kind"], "n_draws": len(c["sets"]), "sets": c["sets"], "factors": steering_vs_random(
                found.swept.subset("steering_random/"), found.swept.subset("steering/"), found.baseline, c["factors"],
                len(c["sets"]), seed=run.study.seed)}
        found.steer = steer


def _confidence(run: InterventionRun, baseline) -> dict:
    """Which confidence signal tracks correctness: V(s_0), the next-token probability, the verbalized one."""
    confidence_inputs, probe, probe_hook = run.inputs.confidence_inputs, run.probe, run.probe_hook
    ci = dict(confidence_inputs or {})
    c_examples = list(ci.get("examples", run.examples))
    c_gens = list(ci.get("generations", baseline.generations if "examples" not in ci else []))
    c_rewards = list(ci.get("rewards", baseline.rewards if "examples" not in ci else []))
    if len(c_gens) != len(c_examples) or len(c_rewards) != len(c_examples):
        raise ValueError("confidence_inputs with 'examples' must also give matching 'generations' and 'rewards'.")
    values = ci.get("value_scores")
    if values is None and probe is not None:
        values = initial_values(run.adapter, probe, probe_hook, [g.prompt_ids for g in c_gens])
    conf = confidence_study(run.adapter, run.task, c_examples, c_rewards, values, c_gens, run.generation,
                            next_token_probs=ci.get("next_token_probs"), verbalized=ci.get("verbalized"))
    conf["probe_hook"] = probe_hook
    conf["source"] = "confidence_inputs" if confidence_inputs else "baseline generations of this stage"
    conf["n_examples"] = len(c_examples)
    if ci.get("verbalized") is None:
        run.passes += 1
    return conf


def run_studies(run: InterventionRun, cond: StudyConditions) -> StudyFindings:
    """One batched sweep of every condition, then each study read from it, in the stage's order."""
    swept = sweep(run.adapter, run.task, cond.conds, run.generation, examples=run.examples)
    run.passes += swept.n_passes
    baseline = swept["baseline"].scored_run()
    per_layer, notes_ab = _ablation(run, cond, swept, baseline)
    controlled = _controlled(run, cond, swept, baseline)
    worst_layer = _worst_layer(run, per_layer)
    _default_probe_hook(run)
    final_reward = _final_reward_vs_td(run, swept, per_layer, baseline)
    transfer = {name: transfer_entry(ns, swept, f"transfer/{name}", run.value_sets, per_layer, baseline, run.study.seed)
                for name, ns in run.transfer_sets.items()}
    found = StudyFindings(swept=swept, baseline=baseline, per_layer=per_layer, notes_ab=notes_ab, controlled=controlled,
                          worst_layer=worst_layer, final_reward=final_reward, transfer=transfer)
    _dose(run, cond, found)
    _steering(run, cond, found)
    if run.study.run_confidence:
        found.conf = _confidence(run, baseline)
    found.seconds = time.perf_counter() - run.t_start
    return found
