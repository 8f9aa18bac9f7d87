"""Evidence for the Sparse Reward Subsystem claims from the main job's ``summary.json`` (its value,
ablation, confidence and dopamine sections), so a run, resumed or not, and a committed summary get
the same verdicts. Each builder reads one section; a section a run did not write gives no evidence.
The other studies' summaries (sae-td, irm, yfpo, applications) go through
:mod:`~reward_circuits.analysis.claims.study_evidence`, called from here too.

What a summary holds sets the test, and the method says which:

* random-set controls with per-example outcomes kept (``controls[kind].vs_draws``, a hierarchical
  bootstrap) use them; older summaries keep only each draw's accuracy: the value set is then ranked
  among the draws (5 draws: p ≥ 1/6);
* dopamine: the candidates' *signed* held-out Pearson with δ against random sets of the same size
  (the z over 1,000 random sets), never the absolute value;
* a difference a study reported with its own two-sided p keeps that p (halved on its side);
  an interval without one gets a normal approximation.
"""

from __future__ import annotations

import math
from typing import Callable

from scipy import stats

from ..resampling import SignedTest, rank_vs_draws
from .study_evidence import STUDY_BUILDERS
from .verdicts import Evidence

Builder = Callable[[dict], list[Evidence]]


def _signed(d: dict) -> SignedTest:
    """A :class:`~reward_circuits.analysis.resampling.SignedTest` back from its ``to_dict`` (None → NaN)."""
    return SignedTest(**{k: (math.nan if v is None and k in ("estimate", "low", "high", "p_greater", "p_less") else v)
                         for k, v in d.items()})


def _iv(d: dict) -> tuple[float, float]:
    return float(d["low"]), float(d["high"])


def value_evidence(summary: dict) -> list[Evidence]:
    """Probe AUC above chance, probe vs the bag-of-tokens surface, probe vs its logistic floor (best layer)."""
    v = summary["value"]
    layer = str(v["best_layer"])
    scope = f"layer {layer}"
    auc = v["auc_by_layer_ci"][layer]
    out = [Evidence.from_interval("srs.value_probe_auc", auc["estimate"], _iv(auc), auc["n"], "rollouts",
                                  "percentile bootstrap interval; normal approximation for p", scope=scope)]
    surf = v.get("probe_vs_surface")
    if surf:
        d = surf["probe_minus_bag_of_tokens"]
        out.append(Evidence.from_interval("srs.value_probe_beats_surface", d["estimate"], _iv(d), d["n"], "rollouts",
                                          "paired bootstrap over rollouts (the study's two-sided p, halved)",
                                          scope=scope, p_two_sided=surf.get("p_value")))
    neuron_layers = {layer} | set((summary.get("ablation") or {}).get("controlled_ablation", {}))
    for key, floor in (v.get("logistic_floor_by_layer") or {}).items():
        probe = v["auc_by_layer_ci"].get(key)
        if key not in neuron_layers:  # a premise only where neurons are read: no α spent on other layers
            continue
        if not probe or not floor.get("auc"):
            continue
        f = floor["auc"]
        se = math.hypot((probe["high"] - probe["low"]) / 3.92, (f["high"] - f["low"]) / 3.92)
        est = probe["estimate"] - f["estimate"]
        out.append(Evidence.from_interval("srs.value_probe_floor", est, (est - 1.96 * se, est + 1.96 * se), probe["n"],
                                          "rollouts", "difference of two bootstrap intervals (treated as unpaired: "
                                          "conservative); normal approximation", scope=f"layer {key}"))
    return out


def sparsity_evidence(summary: dict) -> list[Evidence]:
    """The 99%-pruned probe vs the unpruned one and vs random masks of the same size (best layer)."""
    v = summary["value"]
    l1, rnd, sd = v["prune_curve"], v["prune_curve_random"], v["prune_curve_random_std"]
    ratio = "0.99"
    k = 2 if (summary.get("config") or {}).get("quick") else 5  # random masks per ratio (value_steps)
    scope, auc = f"layer {v['best_layer']}", v["auc_by_layer_ci"][str(v["best_layer"])]
    se_auc = (auc["high"] - auc["low"]) / 3.92
    drop = l1[ratio] - l1["0"]
    out = [Evidence.from_interval("srs.sparsity_vs_unpruned", drop, (drop - 1.96 * se_auc, drop + 1.96 * se_auc),
                                  auc["n"], "rollouts", "the unpruned AUC's interval as the difference's "
                                  "(no replicates kept); normal approximation", scope=scope)]
    if sd.get(ratio) is not None and k > 1:
        se = sd[ratio] * math.sqrt(k / (k - 1)) * math.sqrt(1 + 1 / k)  # one set vs the mean of k (std was ddof 0)
        est, q = l1[ratio] - rnd[ratio], float(stats.t.ppf(0.975, k - 1))
        out.append(Evidence.from_interval("srs.sparsity_vs_random_masks", est, (est - q * se, est + q * se), k,
                                          "random masks", f"t test of the pruned AUC against {k} random masks "
                                          f"({k - 1} df)", scope=scope, df=k - 1))
    return out


def _control_evidence(claim_id: str, value_acc: float, control: dict, scope: str) -> Evidence:
    """Value set vs one control kind: the hierarchical test when kept, else the rank among the draws."""
    if control.get("vs_draws"):
        return Evidence.from_test(claim_id, _signed(control["vs_draws"]), scope=scope)
    return Evidence.from_test(claim_id, rank_vs_draws(value_acc, control["accuracies"]), scope=scope)


def ablation_evidence(summary: dict) -> list[Evidence]:
    """Value-set ablation vs each random-control kind at every ablated layer."""
    out = []
    for layer, ca in summary["ablation"]["controlled_ablation"].items():
        for kind, control in ca["controls"].items():
            out.append(_control_evidence("srs.ablation_vs_random", ca["value_accuracy"]["estimate"], control,
                                         f"layer {layer}, {kind}"))
    return out


def dose_evidence(summary: dict) -> list[Evidence]:
    """Per ablation mode and control kind: the value-ranked shares' accuracy averaged over the
    doses, ranked among the random draws averaged alike (draw j at every dose). The main job draws
    one set per dose: p ≥ 1/2, and the notes say what would test it."""
    d, out = summary["ablation"]["dose_response"], []
    scope = f"layer {d['layer']}" if d.get("layer") is not None else layer_of(d.get("hook", ""))
    doses = ", ".join(f"{f:g}" for f in d["fractions"])
    for mode, curve in d["curves"].items():
        for kind in ("random", "matched"):
            draws = curve.get(f"{kind}_accs") or []
            k = min((len(a) for a in draws), default=0)
            if k == 0 or len(draws) != len(curve["value_acc"]):
                continue
            per_draw = [sum(a[j] for a in draws) / len(draws) for j in range(k)]
            value = sum(curve["value_acc"]) / len(curve["value_acc"])
            out.append(Evidence.from_test("srs.dose_response", rank_vs_draws(value, per_draw),
                                          scope=f"{scope}, {mode}, {kind}", notes=f"mean over doses {doses}"))
    return out


def final_reward_and_transfer_evidence(summary: dict) -> list[Evidence]:
    """TD-probe vs final-reward-probe neurons (paired over examples) and transfer vs random sets."""
    a, out = summary["ablation"], []
    for layer, e in (a.get("final_reward_vs_td") or {}).items():
        d = e.get("final_reward_minus_td")
        if d:  # the claim's estimand is TD − final reward: the sign flips
            out.append(Evidence.from_interval("srs.td_vs_final_reward_neurons", -d["estimate"], (-d["high"], -d["low"]),
                                              d["n"], "examples", "paired bootstrap over examples (two-sided p, halved)",
                                              scope=f"layer {layer}", p_two_sided=e.get("p_value")))
    for name, e in (a.get("transfer") or {}).items():
        d, scope = e.get("minus_random"), f"{layer_of(e.get('hook_name', ''))}, {name}"
        if e.get("vs_draws"):
            out.append(Evidence.from_test("srs.transfer", _signed(e["vs_draws"]), scope=scope))
        elif d:
            out.append(Evidence.from_interval(
                "srs.transfer", d["estimate"], _iv(d), d["n"], "examples",
                "paired bootstrap over examples against the mean of the random draws (the draws' own spread is not "
                "in this interval)", scope=scope, p_two_sided=e.get("p_value")))
    return out


def iou_evidence(summary: dict) -> list[Evidence]:
    """Cross-task IoU of value neurons vs random sets at the best layer: over probe seed pairs
    against joint relabellings (uniform and magnitude-matched) when the stage measured them; an
    older summary's one probe seed gives the estimate only (no interval, no test)."""
    v = summary["value"]
    by_layer = v.get("iou_across_tasks_by_layer") or {}
    above = sum(x["iou"] > x["random"] for x in by_layer.values())
    where = f"above random at {above} of {len(by_layer)} layers" if by_layer else ""
    seeds = v.get("iou_across_tasks_over_seeds")
    if seeds:
        scope = f"layer {v['best_layer']}"
        return [Evidence.from_test("srs.cross_task_iou", _signed(seeds[key]), scope=f"{scope}, {kind}",
                                   notes=f"IoU {', '.join(f'{x:.3g}' for x in seeds['iou'])} over seed pairs "
                                         f"{seeds['seeds']} (top {seeds['n_kept']} dims); expected random "
                                         f"{seeds['random']:.3g}; one seed pair {where}")
                for key, kind in (("vs_random", "uniform"), ("vs_matched", "magnitude_matched")) if seeds.get(key)]
    e = by_layer[str(v["best_layer"])]
    return [Evidence("srs.cross_task_iou", e["iou"] - e["random"], (math.nan, math.nan), 1, "probe seeds", math.nan,
                     "one probe seed per task: no interval (the test needs IoUs over several seeds)",
                     scope=f"layer {v['best_layer']}",
                     notes=f"IoU {e['iou']:.3g} vs random {e['random']:.3g}; {where}")]


def layer_of(hook: str) -> str:
    """``"layer N"`` for a ``blocks.N.…`` hook (the scope premises are measured at), else the hook."""
    parts = str(hook).split(".")
    return f"layer {parts[1]}" if len(parts) > 2 and parts[0] == "blocks" and parts[1].isdigit() else str(hook)


def confidence_evidence(summary: dict) -> list[Evidence]:
    """Spearman of V(s0) with the reward (Fisher z interval) on the stage's examples."""
    c = summary["confidence"]["value_neurons"]
    r, n = c["spearman"], c["n"]
    if n < 4 or not math.isfinite(r):
        return []
    z, se = math.atanh(max(min(r, 0.999999), -0.999999)), 1.06 / math.sqrt(n - 3)  # Fieller's se for Spearman
    return [Evidence.from_interval("srs.confidence_v_s0", r, (math.tanh(z - 1.96 * se), math.tanh(z + 1.96 * se)), n,
                                   "prompts", "Spearman with a Fisher-z interval (Fieller se 1.06/sqrt(n-3))",
                                   notes=f"source: {summary['confidence'].get('source', '?')}; next-token "
                                         f"probability Spearman {summary['confidence']['next_token_prob']['spearman']:.3g}")]


def confidence_paired_evidence(summary: dict) -> list[Evidence]:
    """V(s0) against the next-token probability and the verbalized confidence: the paired AUC
    difference on the same evaluation prompts (the confidence study's ``paired`` tests)."""
    paired, out = summary["confidence"]["paired"], []
    for claim_id, key in (("srs.confidence_vs_next_token", "value_minus_next_token"),
                          ("srs.confidence_vs_verbalized", "value_minus_verbalized")):
        test = paired.get(key)
        if test and test.get("estimate") is not None:
            out.append(Evidence.from_test(claim_id, _signed(test)))
    return out


def steering_evidence(summary: dict) -> list[Evidence]:
    """Per controlled factor: the value set's accuracy shift from the baseline against the random
    sets' steered in the same sweep (hierarchical test of |shift|, the draws' own spread in it)."""
    s = summary["steering"]
    vs, out = s["vs_random"], []
    for key, e in vs["factors"].items():
        if e.get("vs_draws"):
            out.append(Evidence.from_test("srs.steering_vs_random", _signed(e["vs_draws"]),
                                          scope=f"layer {s['layer']}, factor {key}, {vs['kind']}",
                                          notes=f"accuracy: baseline {e['baseline_acc']:.3g}, value set {e['value_acc']:.3g}, "
                                                f"random sets {', '.join(f'{a:.3g}' for a in e['random_accs'])}"))
    return out


def dopamine_evidence(summary: dict) -> list[Evidence]:
    """Signed held-out Pearson(act, δ) of the candidates vs random sets of the same size (z over the draws)."""
    d = summary["dopamine"]
    if d.get("status") != "ok":
        return []
    c = d["corr_with_td_error"]
    est, sd = c["candidates"] - c["random"], c["random_std"]
    n_draws = (d.get("metrics") or {}).get("random", {}).get("n_draws", 1000)
    return [Evidence.from_interval("srs.dopamine_positive_rpe", est, (est - 1.96 * sd, est + 1.96 * sd), n_draws,
                                   "random sets", f"signed mean Pearson with δ against {n_draws} random sets of "
                                   "the same size (z; normal tails)", scope=layer_of(d.get("hook", "")),
                                   notes=f"z = {d.get('candidates_z_vs_random', math.nan):.3g}; surprise AUC "
                                         f"{(d.get('auc_surprise') or {}).get('candidates', math.nan) if isinstance(d.get('auc_surprise'), dict) else d.get('auc_surprise')}")]


def dopamine_causal_evidence(summary: dict) -> list[Evidence]:
    """The TD-trace change under the dopamine ablation, ranked among each random-control kind's
    draws; premise not met where the value probe reads the ablated hook (a direct read-out)."""
    d = summary["dopamine"]
    c = d["causal"]
    read_out = c.get("hook") == d.get("value_hook")
    out = []
    for kind in ("random", "matched"):
        draws = [x["td_mean_abs_change"] for x in c.get(kind) or []]
        if draws:
            out.append(Evidence.from_test(
                "srs.dopamine_causal_trace", rank_vs_draws(c["dopamine"]["td_mean_abs_change"], draws),
                scope=f"{layer_of(c.get('hook', ''))}, {kind}", premise_met=False if read_out else None,
                notes="the value probe reads the ablated hook: the trace change is a direct read-out." if read_out else ""))
    return out


def _length_evidence(claim_id: str, lc: dict, scope: str, where: str) -> Evidence:
    raw = lc["raw"]
    return Evidence.from_test(claim_id, _signed(lc["controlled"]), scope=scope,
                              notes=f"{where}; raw r {raw['estimate']:.3g} [{raw['low']:.3g}, {raw['high']:.3g}]")


def length_control_evidence(summary: dict) -> list[Evidence]:
    """The dopamine and value correlations with position and tokens-to-end partialled out: V(s_t)
    from the value stage's held-out test rollouts (measured whenever the value stage ran), else
    from the dopamine stage's; the dopamine candidates' where the dopamine stage ranked them."""
    out = []
    d = summary.get("dopamine") or {}
    lc = (d.get("metrics") or {}).get("length_control") or {}
    if lc.get("dopamine"):
        out.append(_length_evidence("srs.dopamine_survives_length", lc["dopamine"], layer_of(d.get("hook", "")),
                                    "dopamine candidates vs δ on the held-out rollouts"))
    v = (summary.get("value") or {}).get("length_control")
    if v:
        out.append(_length_evidence("srs.value_survives_length", v, layer_of(v.get("hook", "")),
                                    f"V(s_t) vs reward on the probe's {v['n_rollouts']} test rollouts"))
    elif lc.get("value"):
        out.append(_length_evidence("srs.value_survives_length", lc["value"], layer_of(d.get("hook", "")),
                                    "V(s_t) vs reward on the dopamine stage's held-out rollouts"))
    return out


BUILDERS: tuple[Builder, ...] = (value_evidence, sparsity_evidence, ablation_evidence, dose_evidence,
                                 final_reward_and_transfer_evidence, iou_evidence, confidence_evidence,
                                 confidence_paired_evidence, steering_evidence, dopamine_evidence,
                                 dopamine_causal_evidence, length_control_evidence, *STUDY_BUILDERS)


def evidence_from_summary(summary: dict, builders: tuple[Builder, ...] = BUILDERS) -> list[Evidence]:
    """Every piece of evidence the main job's summary holds; a section it lacks gives none."""
    out: list[Evidence] = []
    for build in builders:
        try:
            out += build(summary)
        except (KeyError, TypeError, AttributeError):
            continue  # the run did not write this section (or an older layout of it): not measured
    return out
