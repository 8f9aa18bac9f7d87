"""The intervention stage's figures: ablation bars (the paper's Table 1), dose-response, steering and
the confidence signals, each written as a PNG into the stage's directory."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping

import numpy as np

from ...report import new_figure, save_figure


def _nan(x) -> float:
    return math.nan if x is None else float(x)


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
