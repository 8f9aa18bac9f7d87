"""Draw the figures of docs/analyses/ from the real-model figures quoted in docs/results/real_model.json.

    PYTHONPATH=. python docs/gen_figures.py        # rewrites docs/assets/figures/*.png

Intervals: accuracies are k/n with a Wilson 95% interval (``scipy.stats.binomtest``); an AUC gets
±1.96 × the standard error the closing note states for its n (≈ 0.07 at n = 48–60).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy.stats import binomtest

from reward_circuits.report import new_figure, save_figure

HERE = Path(__file__).resolve().parent
RESULTS = json.loads((HERE / "results" / "real_model.json").read_text())
OUT = HERE / "assets" / "figures"
RUNS = (("latest", "C0"), ("previous", "C1"))


def wilson(p: float, n: int) -> tuple[float, float]:
    ci = binomtest(round(p * n), n).proportion_ci(0.95, method="wilson")
    return ci.low, ci.high


def value_auc_by_layer():
    fig, ax = new_figure(7, 3.8)
    for shift, (run, color) in zip((-0.4, 0.4), RUNS):
        r = RESULTS["value"][run]
        layers = np.array([int(k) for k in r["auc_by_layer"]])
        auc = np.array(list(r["auc_by_layer"].values()))
        ax.errorbar(layers + shift, auc, yerr=1.96 * r["auc_se"], fmt="o-", color=color, capsize=2, lw=1,
                    label=f"{run} ({r['source']}): n={r['n_test']} held-out rollouts")
        ax.axhline(r["bag_of_tokens"], color=color, ls=":", lw=1, label=f"bag-of-tokens baseline ({run})")
    ax.axhline(0.5, color="grey", lw=0.8)
    ax.set(xlabel="layer (hook_resid_post)", ylabel="held-out AUC of V(s0)", ylim=(0.1, 1.0),
           title="Value probes by layer (±1.96·SE, SE≈0.07)")
    ax.legend(fontsize=7, loc="lower left")
    return save_figure(fig, OUT / "value_auc_by_layer.png")


def value_pruning():
    fig, ax = new_figure(6, 3.5)
    labels, vals, rands, errs = [], [], [], []
    for run, _ in RUNS:
        r = RESULTS["value"][run]
        labels.append(f"{run}\nL{r['best_layer']}, 0% pruned")
        vals.append(r["auc_best"]); rands.append(np.nan)
        p = r["prune"]["0.99"]
        labels.append(f"{run}\nL{r['best_layer']}, 99% pruned")
        vals.append(p["value"]); rands.append(p["random"])
        errs += [1.96 * r["auc_se"]] * 2
    x = np.arange(len(labels))
    ax.bar(x - 0.2, vals, 0.4, yerr=errs, capsize=3, label="L1-pruned probe (value neurons kept)")
    ax.bar(x + 0.2, rands, 0.4, yerr=errs, capsize=3, label="random pruning, same ratio")
    ax.axhline(0.5, color="grey", lw=0.8)
    ax.set_xticks(x, labels, fontsize=7)
    ax.set(ylabel="held-out AUC of V(s0)", ylim=(0, 1), title="Pruning to the top 1% (±1.96·SE)")
    ax.legend(fontsize=7)
    return save_figure(fig, OUT / "value_pruning.png")


def value_iou():
    fig, ax = new_figure(5.5, 3.2)
    ratios = ["0.5", "0.9", "0.99"]
    x = np.arange(len(ratios))
    for shift, (run, color) in zip((-0.27, 0.0), RUNS):
        iou = RESULTS["value"][run]["iou_tasks"]
        ax.bar(x + shift, [iou[k][0] for k in ratios], 0.27, color=color, label=f"arithmetic vs word problems ({run})")
    ax.bar(x + 0.27, [RESULTS["value"]["latest"]["iou_tasks"][k][1] for k in ratios], 0.27, color="grey",
           label="two random sets (analytic)")
    ax.set_xticks(x, [f"prune {k}" for k in ratios])
    ax.set(ylabel="IoU of kept dimensions", title="Value neurons across tasks")
    ax.legend(fontsize=7)
    return save_figure(fig, OUT / "value_iou.png")


def ablation():
    fig, ax = new_figure(6.5, 3.6)
    labels, value, value_err, rand, rand_sd = [], [], [], [], []
    for run, _ in RUNS:
        r = RESULTS["interventions"][run]
        for layer, a in sorted(r["ablation"].items()):
            labels.append(f"{run}\nL{layer}")
            lo, hi = wilson(a["value"], r["n"])
            value.append(a["value"]); value_err.append([a["value"] - lo, hi - a["value"]])
            rand.append(a["random_mean"]); rand_sd.append(a["random_sd"])
    x = np.arange(len(labels))
    ax.bar(x - 0.2, value, 0.4, yerr=np.array(value_err).T, capsize=3, label="value neurons zero-ablated (Wilson 95%)")
    ax.bar(x + 0.2, rand, 0.4, yerr=rand_sd, capsize=3, label="random dims, 3 draws (mean ± sd)")
    for run, _ in RUNS:
        b = RESULTS["interventions"][run]["baseline"]
        ax.axhline(b, ls=":", lw=1, color="k")
    ax.set_xticks(x, labels, fontsize=8)
    ax.set(ylabel="accuracy (n = 32 prompts per pass)", ylim=(0, 1),
           title="Zero-ablating 1% of a layer (dotted: no ablation, 0.44 / 0.47)")
    ax.legend(fontsize=7)
    return save_figure(fig, OUT / "ablation.png")


def confidence():
    fig, ax = new_figure(5.5, 3.2)
    signals = list(RESULTS["interventions"]["latest"]["confidence"])
    x = np.arange(len(signals))
    for shift, (run, color) in zip((-0.2, 0.2), RUNS):
        c = RESULTS["interventions"][run]["confidence"]
        ax.bar(x + shift, [c[s][1] for s in signals], 0.4, color=color, label=f"{run} (n=32)")
    ax.axhline(0.5, color="grey", lw=0.8)
    ax.set_xticks(x, signals, fontsize=8)
    ax.set(ylabel="AUC vs correctness", ylim=(0, 1), title="Confidence signals")
    ax.legend(fontsize=7)
    return save_figure(fig, OUT / "confidence.png")


def dopamine():
    fig, axes = new_figure(7.5, 3.2, ncols=2)
    for i, (run, color) in enumerate(RUNS):
        d = RESULTS["dopamine"][run]
        axes[0].bar(i - 0.2, d["mean_abs_r"], 0.4, color=color)
        axes[0].bar(i + 0.2, d["random_mean_abs_r"][0], 0.4, yerr=d["random_mean_abs_r"][1], color="grey", capsize=3)
        axes[1].bar(i - 0.2, d["surprise_auc"], 0.4, color=color)
        axes[1].bar(i + 0.2, d["random_surprise_auc"][0], 0.4, yerr=d["random_surprise_auc"][1], color="grey", capsize=3)
    names = [f"{run}\nL{RESULTS['dopamine'][run]['layer']}, p={RESULTS['dopamine'][run]['p_vs_random']}" for run, _ in RUNS]
    axes[0].set_xticks([0, 1], names, fontsize=7)
    axes[0].set(ylabel="mean |r| with δ (held out)", title="candidates vs random sets (grey, mean ± sd)")
    axes[1].set_xticks([0, 1], [f"{run}" for run, _ in RUNS], fontsize=7)
    axes[1].axhline(0.5, color="k", lw=0.8)
    axes[1].set(ylabel="surprise AUC", ylim=(0, 1), title="sign of surprise")
    for ax in axes:
        ax.title.set_fontsize(8)
    return save_figure(fig, OUT / "dopamine.png")


FIGURES = (value_auc_by_layer, value_pruning, value_iou, ablation, confidence, dopamine)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for make in FIGURES:
        print(OUT / make())


if __name__ == "__main__":
    main()
