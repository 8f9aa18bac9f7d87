"""The figures of docs/analyses/, drawn from the committed ``summary.json`` files under docs/results/.

The docs build draws them (docs/hooks.py ``on_files``), so a figure always shows the committed
results; nothing here is typed by hand. To look at them outside the build:

    PYTHONPATH=. python docs/gen_figures.py [OUT_DIR]     # default: site-figures/

Runs shown: the default job (``2026-12-06/main``: SmolLM2-135M-Instruct, ``arithmetic:1``, 200 rollouts,
held-out n in prompts) and the paper profile (``2026-12-06/paper-smollm2``: SmolLM2-135M-Instruct,
``word_problems:0``, 1,000 rollouts, n = 400 held-out prompts); the confidence figure adds Gemma 3 270M (``2026-12-06/gemma``).
Intervals are the 95% intervals the summaries hold (prompt-resampled bootstrap for AUCs and accuracies).
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np

from reward_circuits.report import new_figure
from reward_circuits.report.figures import DPI

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
RUNS = (("2026-12-06/main", "C0"), ("2026-12-06/paper-smollm2", "C1"))


def summary(run: str) -> dict:
    return json.loads((RESULTS / run / "summary.json").read_text())


def label(run: str, s: dict) -> str:
    return f"{run} ({s['model']}, {s['config']['tasks'][0]})"


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    return buf.getvalue()


def value_auc_by_layer() -> bytes:
    fig, ax = new_figure(7, 3.8)
    for shift, (run, color) in zip((-0.4, 0.4), RUNS):
        s = summary(run)
        ci = s["value"]["auc_by_layer_ci"]
        layers = np.array([int(k) for k in ci])
        est = np.array([c["estimate"] for c in ci.values()])
        err = np.array([[c["estimate"] - c["low"], c["high"] - c["estimate"]] for c in ci.values()]).T
        n = next(iter(ci.values()))["n"]
        ax.errorbar(layers + shift, est, yerr=err, fmt="o-", color=color, capsize=2, lw=1,
                    label=f"{label(run, s)}: n = {n} held-out prompts")
        floor = [s["value"]["logistic_floor_by_layer"][k]["auc"]["estimate"] for k in ci]
        ax.plot(layers + shift, floor, ls=":", color=color, lw=1, label=f"logistic floor ({run})")
    ax.axhline(0.5, color="grey", lw=0.8)
    ax.set(xlabel="layer (hook_resid_post)", ylabel="held-out AUC of V(s0)", ylim=(0.1, 1.0),
           title="Value probes by layer (95% intervals)")
    ax.legend(fontsize=7, loc="lower left")
    return _png(fig)


def value_pruning() -> bytes:
    fig, axes = new_figure(8, 3.4, ncols=2)
    for ax, (run, color) in zip(axes, RUNS):
        s = summary(run)
        v = s["value"]
        ratios = list(v["prune_curve"])
        x = np.arange(len(ratios))
        ax.plot(x, list(v["prune_curve"].values()), "o-", color=color, label="L1-ranked (value neurons kept)")
        rnd = np.array(list(v["prune_curve_random"].values()))
        sd = np.array([v["prune_curve_random_std"].get(r) or 0.0 for r in ratios])
        ax.errorbar(x, rnd, yerr=sd, fmt="s--", color="grey", capsize=2, label="random masks (mean ± sd)")
        ax.axhline(0.5, color="k", lw=0.6)
        ax.set_xticks(x, ratios, fontsize=6, rotation=60)
        ax.set(xlabel="prune ratio", ylabel="held-out AUC of V(s0)", ylim=(0.2, 0.9),
               title=f"{run}, layer {v['best_layer']}")
        ax.title.set_fontsize(8)
        ax.legend(fontsize=6)
    return _png(fig)


def value_iou() -> bytes:
    fig, ax = new_figure(5.5, 3.2)
    ratios = ["0.5", "0.9", "0.99"]
    x = np.arange(len(ratios))
    for shift, (run, color) in zip((-0.27, 0.0), RUNS):
        iou = summary(run)["value"]["iou_across_tasks"]
        ax.bar(x + shift, [iou[k] for k in ratios], 0.27, color=color, label=f"the two tasks' sets ({run})")
    base = summary(RUNS[0][0])["value"]["iou_random_baseline"]
    ax.bar(x + 0.27, [base[k] for k in ratios], 0.27, color="grey", label="two random sets (analytic)")
    ax.set_xticks(x, [f"prune {k}" for k in ratios])
    ax.set(ylabel="IoU of kept dimensions", title="Value neurons across tasks")
    ax.legend(fontsize=7)
    return _png(fig)


def ablation() -> bytes:
    fig, ax = new_figure(6.5, 3.6)
    labels, value, value_err, rand, rand_err, base = [], [], [], [], [], []
    for run, _ in RUNS:
        for layer, c in summary(run)["ablation"]["controlled_ablation"].items():
            labels.append(f"{run}\nL{layer}, n={c['value_accuracy']['n']}")
            va, ua = c["value_accuracy"], c["controls"]["uniform"]["accuracy"]
            value.append(va["estimate"]); value_err.append([va["estimate"] - va["low"], va["high"] - va["estimate"]])
            rand.append(ua["estimate"]); rand_err.append([ua["estimate"] - ua["low"], ua["high"] - ua["estimate"]])
            base.append(c["baseline_accuracy"]["estimate"])
    x = np.arange(len(labels))
    ax.bar(x - 0.2, value, 0.4, yerr=np.array(value_err).T, capsize=3, label="value neurons (1%) zero-ablated")
    ax.bar(x + 0.2, rand, 0.4, yerr=np.array(rand_err).T, capsize=3, color="grey", label="uniform random sets")
    ax.scatter(x, base, marker="_", s=400, color="k", zorder=3, label="no ablation")
    ax.set_xticks(x, labels, fontsize=8)
    ax.set(ylabel="accuracy (95% interval)", ylim=(0, 1), title="Zero-ablating 1% of a layer")
    ax.legend(fontsize=7)
    return _png(fig)


def confidence() -> bytes:
    fig, ax = new_figure(6, 3.2)
    signals = ("value_neurons", "next_token_prob", "verbalized")
    runs = (*RUNS, ("2026-12-06/gemma", "C2"))
    x = np.arange(len(signals))
    for i, (run, color) in enumerate(runs):
        s = summary(run)
        c = s["confidence"]
        ax.bar(x + (i - 1) * 0.27, [c[k]["auc"] for k in signals], 0.27, color=color,
               label=f"{run} ({s['model']}, n={c['n_examples']})")
    ax.axhline(0.5, color="grey", lw=0.8)
    ax.set_xticks(x, ["V(s0) of the value neurons", "next-token probability", "verbalized"], fontsize=8)
    ax.set(ylabel="AUC vs correctness", ylim=(0, 1), title="Confidence signals")
    ax.legend(fontsize=7)
    return _png(fig)


def dopamine() -> bytes:
    fig, axes = new_figure(7.5, 3.2, ncols=2)
    for i, (run, color) in enumerate(RUNS):
        d = summary(run)["dopamine"]
        r, a = d["corr_with_td_error"], d["auc_surprise"]
        axes[0].bar(i - 0.2, r["candidates_abs"], 0.4, color=color)
        axes[0].bar(i + 0.2, r["random_abs"], 0.4, yerr=r["random_abs_std"], color="grey", capsize=3)
        axes[1].bar(i - 0.2, a["candidates"], 0.4, color=color)
        axes[1].bar(i + 0.2, a["random"], 0.4, yerr=a["random_std"], color="grey", capsize=3)
    names = [f"{run}\nlayer {summary(run)['dopamine']['hook'].split('.')[1]}" for run, _ in RUNS]
    axes[0].set_xticks([0, 1], [f"{n}" for n in names], fontsize=7)
    axes[0].set(ylabel="mean |r| with δ (held out)", title="candidates vs random sets (grey, mean ± sd)")
    axes[1].set_xticks([0, 1], names, fontsize=7)
    axes[1].axhline(0.5, color="k", lw=0.8)
    axes[1].set(ylabel="surprise AUC", ylim=(0, 1), title="sign of surprise")
    for ax in axes:
        ax.title.set_fontsize(8)
    return _png(fig)


FIGURES = (value_auc_by_layer, value_pruning, value_iou, ablation, confidence, dopamine)


def render_all() -> dict[str, bytes]:
    """File name → PNG bytes of every figure."""
    return {f"{make.__name__}.png": make() for make in FIGURES}


def main(argv: list[str]) -> None:
    out = Path(argv[0]) if argv else Path("site-figures")
    out.mkdir(parents=True, exist_ok=True)
    for name, png in render_all().items():
        (out / name).write_bytes(png)
        print(out / name)


if __name__ == "__main__":
    main(sys.argv[1:])
