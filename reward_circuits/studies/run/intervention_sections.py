"""The intervention stage's report sections, from :mod:`.intervention_studies`' findings: ``"ablation"``
(with its controls, final-reward vs TD, transfer and dose-response), ``"steering"`` and ``"confidence"``."""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from ...analysis.stats import bootstrap_ci
from ...io import nan_to_none
from ...report import Section, Table
from .intervention_figures import plot_ablation, plot_confidence, plot_dose_response, plot_steering
from .intervention_studies import InterventionRun, StudyFindings


def _fmt_diff(d: Mapping | None) -> str:
    return "" if not d else f"{d['estimate']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"


def _ablation_summary(run: InterventionRun, found: StudyFindings) -> dict:
    study, baseline, dose, steer, transfer = run.study, found.baseline, found.dose, found.steer, found.transfer
    controlled, fr_summary = found.controlled, found.final_reward
    return {
        "mode": study.ablation_mode, "n_examples": len(run.examples), "n_random_draws": study.n_random_draws,
        "baseline_acc": baseline.accuracy, "layers": found.per_layer,
        "final_reward_vs_td": fr_summary or None, "dose_response": dose, "transfer": transfer or None,
        "sweep": {k: v for k, v in found.swept.summary().items() if k != "accuracy"},
        "study_layer": {"dose": run.dose_layer if dose is not None else None,
                        "steering": run.steer_layer if steer is not None else None,
                        "worst_by_ablation": found.worst_layer},
        "generation_passes": run.passes, "seconds": found.seconds,
        "baseline_acc_ci": bootstrap_ci(np.asarray(baseline.rewards, dtype=float), seed=study.seed).to_dict(),
        "controlled_ablation": {l: c.to_dict() for l, c in controlled.items()} or None,
        "verdicts": {**{f"layer {l}: value neurons matter more than {k} random neurons": c.controls[k].verdict
                        for l, c in controlled.items() for k in c.controls},
                     **{f"layer {l}: TD-probe neurons matter more than final-reward-probe neurons": e["verdict_td_matters_more"]
                        for l, e in fr_summary.items() if "verdict_td_matters_more" in e},
                     **{f"{name}: value neurons transfer (matter more than random)": e["verdict_transfers"]
                        for name, e in transfer.items() if "verdict_transfers" in e}},
    }


def _comparison_tables(run: InterventionRun, found: StudyFindings) -> list[Table]:
    """Final-reward vs TD neurons, transfer, and dose-response tables (those that ran)."""
    fr_summary, transfer, dose = found.final_reward, found.transfer, found.dose
    tables = []
    if fr_summary:
        tables.append(Table("Final-reward (Monte-Carlo) probe neurons vs TD probe neurons",
                            ["layer", "n TD", "TD ablated", "n final-reward", "final-reward ablated", "random mean",
                             "baseline", "IoU", "final-reward − TD (95% CI)", "p", "verdict: TD neurons matter more"],
                            [[l, e["n_td"], e["td_value_acc"], e["n_final_reward"], e["final_reward_acc"],
                              e["random_acc_mean"], e["baseline_acc"], e["iou_with_td"], _fmt_diff(e.get("final_reward_minus_td")),
                              e.get("p_value"), e.get("verdict_td_matters_more", "")] for l, e in fr_summary.items()]))
    if transfer:
        tables.append(Table(f"Transfer: value neurons found elsewhere, ablated on these {len(run.examples)} examples",
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
        tables.append(Table(f"Dose-response at layer {run.dose_layer} ({dose['ranking']})",
                            ["mode", "fraction", "n neurons", "value ablated", "uniform random mean", "uniform random std",
                             "magnitude-matched random mean"], rows))
    return tables


def ablation_section(run: InterventionRun, found: StudyFindings) -> Section:
    """Section ``"ablation"``: Table 1, the controlled comparisons, final-reward vs TD, transfer, dose-response."""
    ab_summary = _ablation_summary(run, found)
    baseline, notes_ab = found.baseline, list(found.notes_ab)
    ab_rows = [[l, e["hook_name"], e["n_neurons"], e["baseline_acc"], e["value_acc"], e["random_acc_mean"],
                e["random_acc_std"], e["baseline_acc"] - e["value_acc"], e["baseline_acc"] - e["random_acc_mean"]]
               for l, e in found.per_layer.items()]
    tables = [Table("Accuracy under ablation (value vs random neurons)",
                    ["layer", "hook", "n neurons", "baseline", "value ablated", "random mean", "random std",
                     "drop (value)", "drop (random)"], ab_rows)]
    for l, c in found.controlled.items():
        tables.append(Table(f"Layer {l}: value set vs random controls on the same {c.value_accuracy.n} examples "
                            f"(95% bootstrap CIs; paired bootstrap p; verdict on 'value neurons matter more')",
                            list(c.TABLE_COLUMNS), c.table_rows()))
        notes_ab += c.notes()
    figures = [plot_ablation(found.per_layer, run.out, found.final_reward or None)]
    tables += _comparison_tables(run, found)
    if found.dose is not None and found.dose["fractions"]:
        figures.append(plot_dose_response(found.dose, run.out))
    n_ex = max(len(run.examples), 1)
    p0 = float(baseline.accuracy)
    se = (p0 * (1 - p0) / n_ex) ** 0.5
    ab_summary["accuracy_standard_error"] = se
    notes_noise = [f"Sampling noise: with {n_ex} examples per pass the binomial standard error of an accuracy near "
                   f"{p0:.2f} is {se:.3f}; differences smaller than ~2×{se:.2f} (and the spread of the random draws) "
                   "are not evidence of an effect. Raise --eval-examples for a tighter table."]
    return Section("ablation", "Ablating value neurons", nan_to_none(ab_summary), tables, figures,
                   notes_noise + notes_ab + found.notes_dose)


def steering_section(run: InterventionRun, steer: dict | None) -> Section:
    """Section ``"steering"``: accuracy and value shift per factor (or skipped)."""
    if steer is None:
        return Section("steering", "Steering (amplifying) value neurons", {"skipped": True}, notes=["skipped"])
    rows = [[e["factor"], e["accuracy"], e["mean_value"], e["mean_value_shift"]]
            for e in sorted(steer["factors"].values(), key=lambda e: e["factor"])]
    notes = [f"Value neurons of layer {run.steer_layer} ({steer['hook_name']}, {steer['n_neurons']} dims) multiplied by "
             "each factor on every forward of generation. Value shift: mean change of the probe's V(s_0) at the "
             "prompt's last token under the intervention (capture sees the post-intervention activation)."]
    if run.probe is None:
        notes.append("No probe given: value shifts are undefined.")
    vs = steer.get("vs_random")
    if vs:
        notes.append(f"Control: {vs['n_draws']} {vs['kind'].replace('_', '-')} random sets of the same size scaled by "
                     f"the factors {', '.join(vs['factors'])} in the same sweep; accuracy (value set / random sets): "
                     + "; ".join(f"x{k} {e['value_acc']:.3f} / {', '.join(f'{a:.3f}' for a in e['random_accs'])}"
                                 for k, e in vs["factors"].items()) + ".")
    return Section("steering", "Steering (amplifying) value neurons", nan_to_none(steer),
                   [Table("Accuracy and value shift per factor", ["factor", "accuracy", "mean V(s_0)", "mean ΔV(s_0)"], rows)],
                   [plot_steering(steer, run.out)], notes)


def confidence_section(run: InterventionRun, conf: dict | None) -> Section:
    """Section ``"confidence"``: Spearman and AUC of each confidence signal against reward (or skipped)."""
    if conf is None:
        return Section("confidence", "Confidence signals vs correctness", {"skipped": True}, notes=["skipped"])
    rows = []
    for key, label in (("value_neurons", "value neurons V(s_0)"), ("next_token_prob", "next-token probability"),
                       ("verbalized", "verbalized confidence")):
        e = conf[key]
        rows.append([label, e["spearman"], e["auc"], e["n"], e.get("parse_rate", ""), e["note"]])
    notes = [f"{conf['n_examples']} examples from {conf['source']}; mean reward {conf['mean_reward']:.3f}. "
             "Verbalized: 'How confident are you that this answer is correct? Reply with a number between 0 and 1.' "
             "after the model's own answer; first number parsed, clipped to [0, 1]."]
    notes += [f"{k}: {conf[k]['note']}" for k in ("value_neurons", "next_token_prob", "verbalized") if conf[k]["note"]]
    for key, t in (conf.get("paired") or {}).items():
        if t.get("estimate") is not None and math.isfinite(t["estimate"]):
            notes.append(f"AUC(V(s_0)) − AUC({key.removeprefix('value_minus_').replace('_', '-')}), paired on the same "
                         f"{t['n']} prompts: {t['estimate']:+.3f} [{t['low']:.3f}, {t['high']:.3f}], one-sided p "
                         f"{t['p_greater']:.3g} ({t['method']}).")
    return Section("confidence", "Confidence signals vs correctness", nan_to_none(conf),
                   [Table("Spearman and AUC against reward", ["signal", "Spearman ρ", "AUC", "n", "parse rate", "note"], rows)],
                   [plot_confidence(conf, run.out)], notes)
