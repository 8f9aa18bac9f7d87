"""The value stage's report section: its figures, summary, tables and notes, from the steps' results
(:mod:`.value_steps`)."""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from ...analysis.splits import n_groups
from ...models import layer_of
from ...report import Section, Table, new_figure, save_figure
from .value_steps import LayerFit, ValueFindings, ValueStageInputs, rkey


def prune_x(ratio: float) -> float:
    """x position of a prune ratio: −log10(1 − ratio) (0 → 0, 0.9 → 1, 0.99 → 2, 0.999 → 3)."""
    return float(-np.log10(max(1.0 - ratio, 1e-6)))


def set_ratio_ticks(ax, ratios: Sequence[float]) -> None:
    """Label a prune-ratio axis (positions from :func:`prune_x`) at the usual ratios."""
    shown = [r for r in ratios if r in (0, 0.5, 0.9, 0.95, 0.99, 0.999)] or list(ratios)
    ax.set_xticks([prune_x(r) for r in shown])
    ax.set_xticklabels([rkey(r) for r in shown])
    ax.set_xlabel("prune ratio (fraction of input dims masked, log-scaled)")


def value_section(inp: ValueStageInputs, fit: LayerFit, found: ValueFindings) -> Section:
    """The stage's section (key ``"value"``): figures written to the stage's directory first."""
    figures = [_auc_figure(inp, fit, found), _prune_figure(inp, fit, found)]
    iou = _iou_figure(inp, fit, found)
    if iou is not None:
        figures.append(iou)
    summary = value_summary(inp, fit, found)
    return Section(key="value", title="Value probes and value neurons", summary=summary,
                   tables=value_tables(inp, fit, found), figures=figures, notes=value_notes(inp, fit, found))


# ---- figures -----------------------------------------------------------------------------------


def _auc_figure(inp: ValueStageInputs, fit: LayerFit, found: ValueFindings) -> str:
    hooks, auc_test, auc_ci, pooled, surface = inp.hooks, fit.auc_test, fit.auc_ci, found.pooled.pooled, found.surface.surface
    layer_x = [layer_of(h) if layer_of(h) is not None else i for i, h in enumerate(hooks)]
    fig, ax = new_figure(6.5, 4)
    ax.errorbar(layer_x, [auc_test[h] for h in hooks],
                yerr=[[auc_test[h] - auc_ci[h].low for h in hooks], [auc_ci[h].high - auc_test[h] for h in hooks]],
                fmt="o-", capsize=3, label="value probe V(s_0), test (95% CI)")
    ax.plot(layer_x, [fit.floors[h].auc.estimate for h in hooks], "x:", color="green", label="logistic floor, test")
    ax.plot(layer_x, [fit.auc_val[h] for h in hooks], "o--", alpha=0.5, label="validation (layer choice)")
    for t in (pooled.tasks if pooled else []):
        ax.plot([layer_x[hooks.index(h)] for h in pooled.hooks], [pooled.auc[t][h].estimate if pooled.auc[t][h] else np.nan
                for h in pooled.hooks], "d-.", alpha=0.8, label=f"pooled probe, {t} test")
    for name, style in (("hook_embed", ":"), ("bag_of_tokens", "-.")):
        if surface[name] is not None:
            ax.axhline(surface[name], ls=style, color="gray" if name == "hook_embed" else "purple", label=f"surface: {name}")
    ax.axhline(0.5, color="k", lw=0.5)
    ax.set_xlabel("layer")
    ax.set_ylabel("AUC of V(s_0) vs reward")
    ax.set_title("Value probe AUC by layer")
    ax.legend(fontsize=8)
    return save_figure(fig, inp.out / "value_auc_by_layer.png")


def _prune_figure(inp: ValueStageInputs, fit: LayerFit, found: ValueFindings) -> str:
    ratios, curve, best_key = inp.ratios, found.sets.curve, fit.best_key
    fig, ax = new_figure(6.5, 4)
    xs = [prune_x(r) for r in ratios]
    ax.plot(xs, [curve["l1"][r] for r in ratios], "o-", lw=2, label=f"L1 pruning, layer {best_key} (best)")
    ax.plot(xs, [curve["random"][r] for r in ratios], "s--", label=f"random masks, layer {best_key}")
    for h, c in found.sets.curves_other.items():
        ax.plot(xs, [c[r] for r in ratios], "-", lw=1, alpha=0.6, label=f"L1 pruning, layer {inp.key_of[h]}")
    ax.axhline(0.5, color="k", lw=0.5)
    set_ratio_ticks(ax, ratios)
    ax.set_ylabel("test AUC of V(s_0)")
    ax.set_title("Pruning the probe's input dimensions (no retraining)")
    ax.legend(fontsize=8)
    return save_figure(fig, inp.out / "value_prune_curve.png")


def _iou_figure(inp: ValueStageInputs, fit: LayerFit, found: ValueFindings) -> str | None:
    ratios, iou_tasks, iou_seed_curve = inp.ratios, found.across.iou_tasks, found.robust.iou_seed_curve
    if iou_tasks is None and iou_seed_curve is None:
        return None
    xs = [prune_x(r) for r in ratios]
    fig, ax = new_figure(6.5, 4)
    if iou_tasks is not None:
        ax.plot(xs, [iou_tasks[r][0] for r in ratios], "o-", label="across tasks (store vs second store)")
    if iou_seed_curve is not None:
        ax.plot(xs, [iou_seed_curve[r][0] for r in ratios], "^-", alpha=0.7, label="same data, another probe seed")
    ax.plot(xs, [found.across.iou_random[rkey(r)] for r in ratios], "k--", label="random sets (expected)")
    set_ratio_ticks(ax, ratios)
    ax.set_ylabel("IoU of kept input dims")
    ax.set_title(f"Overlap of value-neuron sets, layer {fit.best_key}")
    ax.legend(fontsize=8)
    return save_figure(fig, inp.out / "value_iou_curve.png")


# ---- summary -----------------------------------------------------------------------------------


def value_summary(inp: ValueStageInputs, fit: LayerFit, found: ValueFindings) -> dict:
    """The stage's summary (``summary.json``'s ``"value"``); ``timings_s`` closes with the stage's total."""
    hooks, key_of, ratios, probe, sp = inp.hooks, inp.key_of, inp.ratios, fit.probe, inp.splits
    sets, across, surface, robust, pooled = found.sets, found.across, found.surface, found.robust, found.pooled
    curve, neurons, iou_tasks = sets.curve, sets.neurons, across.iou_tasks
    return {
        "auc_by_layer": {key_of[h]: fit.auc_test[h] for h in hooks},
        "auc_by_layer_val": {key_of[h]: fit.auc_val[h] for h in hooks},
        "auc_by_layer_ci": {key_of[h]: fit.auc_ci[h].to_dict() for h in hooks},
        "logistic_floor_by_layer": {key_of[h]: fit.floors[h].to_dict() for h in hooks},
        "probe_reaches_logistic_floor": {key_of[h]: fit.floor_check[h] for h in hooks},
        "probe_training": {key_of[h]: {"weight_decay": probe.weight_decay_.get(h), "best_epoch": probe.best_epoch_.get(h),
                                       "validation_auc": probe.validation_auc_.get(h)} for h in hooks},
        "massive_activations": {key_of[h]: fit.massive[h].to_dict() for h in hooks},
        "massive_in_value_set": sets.massive_in_sets,
        "value_sets_exclude_massive": inp.stage.exclude_massive,
        "target_variants": found.targets.targets.to_dict(),
        "verdicts": {claim: v for claim, _, v in surface.claims},
        "probe_vs_surface": surface.probe_vs_surface,
        "best_layer": fit.best_key,
        "best_hook": fit.best_hook,
        "best_layer_selected_on": "validation split (not the test split)",
        "prune_curve": {rkey(r): curve["l1"][r] for r in ratios},
        "prune_curve_random": {rkey(r): curve["random"][r] for r in ratios},
        "prune_curve_random_std": {rkey(r): curve["random_std"][r] for r in ratios},
        "prune_curve_other_layers": {key_of[h]: {rkey(r): c[r] for r in ratios} for h, c in sets.curves_other.items()},
        "n_kept_by_ratio": {rkey(r): curve["n_kept"][r] for r in ratios},
        "n_value_neurons": len(neurons),
        "value_neurons": neurons.indices,
        "value_neuron_scores": neurons.scores,
        "iou_across_tasks": ({rkey(r): v[0] for r, v in iou_tasks.items()} if iou_tasks is not None else None),
        "iou_across_tasks_by_layer": across.iou_tasks_by_layer,
        "iou_across_tasks_reason": across.iou_reason,
        "second_store_auc": across.second_auc,
        "iou_random_baseline": across.iou_random,
        "iou_random_baseline_magnitude_matched": across.iou_random_matched,
        "pooled": pooled.pooled.to_dict(key_of) if pooled.pooled else None,
        "pooled_reason": pooled.reason,
        "iou_across_tasks_over_seeds": found.iou_seeds,
        "length_control": found.length_control,
        "iou_same_data_other_seed": ({rkey(r): v[0] for r, v in robust.iou_seed_curve.items()} if robust.iou_seed_curve else None),
        "td_vs_final_reward": found.targets.td_vs_mc,
        "surface_baseline_auc": surface.surface,
        "surface_baseline_notes": surface.surface_reasons,
        "robustness": {"architecture": robust.arch, "rotation": robust.rot},
        "config": dict(vars(inp.cfg)),
        "splits": {"train": int(sp.fit.size), "val": int(sp.val.size), "test": int(sp.test.size),
                   "grouped_by_prompt": sp.groups is not None,
                   "distinct_prompts": n_groups(sp.groups, range(len(inp.store))) if sp.groups is not None else None,
                   "second_store": sp.second.counts() if sp.second is not None else None},
        "timings_s": {**inp.timings, "total_s": time.perf_counter() - inp.t_start},
        "files": {"probe": "value_probe/", "value_neurons": "value_neurons.json", "value_neurons_by_layer": "value_neurons_by_layer.json"},
    }


# ---- tables and notes --------------------------------------------------------------------------


def value_tables(inp: ValueStageInputs, fit: LayerFit, found: ValueFindings) -> list[Table]:
    """Claims, AUC by layer, pruning, targets, robustness, rotation, and the across-task and pooled tables."""
    hooks, key_of, ratios, best_key = inp.hooks, inp.key_of, inp.ratios, fit.best_key
    auc_val, auc_test, auc_ci, floors = fit.auc_val, fit.auc_test, fit.auc_ci, fit.floors
    curve, targets, arch, rot = found.sets.curve, found.targets.targets, found.robust.arch, found.robust.rot
    iou_tasks, iou_tasks_by_layer, pooled = found.across.iou_tasks, found.across.iou_tasks_by_layer, found.pooled.pooled
    tables = [
        Table("Statements and their interval readings (95% bootstrap CI, n; unadjusted: the Claims section holds the verdicts)",
              ["statement", "evidence", "interval reading (unadjusted; the verdict is in the Claims section)"], [list(c) for c in found.surface.claims]),
        Table("Held-out AUC of V(s_0) by layer (95% bootstrap CI over test rollouts) and the logistic floor",
              ["layer", "hook", "val AUC", "test AUC", "95% CI", "logistic floor (95% CI)", "reaches floor", "massive dims in value set"],
              [[key_of[h], h, auc_val[h], auc_test[h], f"[{auc_ci[h].low:.3f}, {auc_ci[h].high:.3f}]", str(floors[h].auc),
                fit.floor_check[h], str(found.sets.massive_in_sets[key_of[h]] or "none")] for h in hooks]
              + [["surface", k, None, v, None, None, None, None] for k, v in found.surface.surface.items() if v is not None]),
        Table(f"Pruning layer {best_key} (test AUC, no retraining)", ["prune ratio", "dims kept", "L1 pruning", "random (mean)", "random (std)"],
              [[rkey(r), curve["n_kept"][r], curve["l1"][r], curve["random"][r], curve["random_std"][r]] for r in ratios]),
        Table(f"Value targets on the same split (n={targets.n_test} test rollouts; paired bootstrap differences)",
              targets.table_columns(), targets.table_rows()),
        Table("Architecture robustness (99% pruned sets)", ["variant", "test AUC", "value neurons (top 5)"],
              [[n, arch["auc"][n], str(arch["kept_dims"][n][:5])] for n in found.robust.variants]
              + [["mean pairwise IoU", arch["mean_pairwise_iou"], f"random baseline {arch['random_baseline_iou']:.3g}"]]),
        Table("Rotation check (random orthogonal Q on the states)", ["quantity", "original basis", "rotated basis"],
              [["test AUC", rot["auc_original"], rot["auc_rotated"]],
               ["test AUC at 99% pruning", rot["auc_pruned_original"], rot["auc_pruned_rotated"]],
               ["L1 mass in top 1%", rot["top_l1_mass_original"], rot["top_l1_mass_rotated"]],
               ["(uniform L1 mass)", rot["uniform_mass"], rot["uniform_mass"]]]),
    ]
    if iou_tasks_by_layer:
        tables.append(Table("Value neurons (1% at 99% pruning) across tasks, every layer: IoU vs random sets",
                            ["layer", "n dims", "IoU", "uniform random", "magnitude-matched random"],
                            [[k, e["n"], e["iou"], e["random"], e["matched_random"]]
                             for k, e in iou_tasks_by_layer.items()]))
    if iou_tasks is not None:
        tables.append(Table(f"IoU of value-neuron sets across tasks, layer {best_key}", ["prune ratio", "IoU", "random baseline"],
                            [[rkey(r), v[0], v[1]] for r, v in iou_tasks.items()]))
    if pooled is not None:
        tables.append(pooled.table(key_of))
    return tables


def value_notes(inp: ValueStageInputs, fit: LayerFit, found: ValueFindings) -> list[str]:
    """The pooled probe's notes, the logistic floor, massive dims, the split, the IoU and the rotation check."""
    hooks, key_of, best_key, best_hook, stage = inp.hooks, inp.key_of, fit.best_key, fit.best_hook, inp.stage
    pooled, rot, sp = found.pooled.pooled, found.robust.rot, inp.splits
    notes: list[str] = []
    if pooled is not None:
        notes.extend(pooled.notes())
        if best_hook in pooled.hooks:
            notes.append(f"Pooled probe at the best layer ({best_key}), claim 'V(s_0) predicts the reward above chance': "
                         + "; ".join(f"{t}: {pooled.auc[t][best_hook]} → {pooled.verdicts[t][best_hook]}"
                                     for t in pooled.tasks if pooled.auc[t][best_hook] is not None) + ".")
    out_of_floor = [key_of[h] for h in hooks if not fit.floor_check[h]]
    notes.append("Every layer's TD probe reaches the logistic floor (minus its interval half-width)." if not out_of_floor
                 else f"TD probe below the logistic floor (minus its interval) at layers {out_of_floor}: there a logistic "
                 "regression fitted to s_0 alone reads the reward better than a value function learned from every "
                 "state (docs: concepts/value-probes); interpret those layers' value neurons with care.")
    notes.append("Massive-activation dims (> %gx median |act|) per layer: " % stage.massive_factor
                 + "; ".join(f"{key_of[h]}: {fit.massive[h].dims[:5] or 'none'}" for h in hooks)
                 + (" (excluded from the value sets)." if stage.exclude_massive else "."))
    notes.append(f"Best layer {best_key} chosen by validation AUC; every AUC shown is on {sp.test.size} held-out test rollouts "
                 f"(probes trained on {sp.fit.size}).")
    if found.across.iou_reason:
        notes.append(f"IoU across tasks not computed: {found.across.iou_reason}.")
    else:
        notes.append("The second-store probe uses seed+1 so that a shared initialisation cannot inflate the IoU; "
                     "compare with the same-data/other-seed IoU.")
    seeds = found.iou_seeds
    if seeds:
        t = seeds["vs_random"]
        notes.append(f"IoU across tasks at the best layer over {len(seeds['seeds'])} probe seed pairs {seeds['seeds']} "
                     f"(top {seeds['n_kept']} dims): {', '.join(f'{x:.3g}' for x in seeds['iou'])} vs random "
                     f"{seeds['random']:.3g}; mean − random {t['estimate']:+.3g} [{t['low']:.3g}, {t['high']:.3g}], "
                     f"p {t['p_greater']:.3g} ({t['method']}).")
    rot_gap = rot["auc_pruned_original"] - rot["auc_pruned_rotated"]
    notes.append(
        f"Rotation check: AUC {rot['auc_original']:.3f} → {rot['auc_rotated']:.3f} after rotation; at 99% pruning "
        f"{rot['auc_pruned_original']:.3f} → {rot['auc_pruned_rotated']:.3f}; top-1% L1 mass "
        f"{rot['top_l1_mass_original']:.3f} → {rot['top_l1_mass_rotated']:.3f} (uniform {rot['uniform_mass']:.3f}). "
        + ("Sparsity is basis-aligned (it drops after rotation)." if rot_gap > 0.05 else
           "Pruned AUC does not drop after rotation: neuron-level sparsity is not supported by this check.")
    )
    return notes
