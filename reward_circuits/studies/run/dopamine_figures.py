"""Figures of the dopamine stage: neuron traces over surprise rollouts (the paper's Figure 8) and
the held-out correlation distributions of candidates, random dims and value neurons."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

from ...analysis.dopamine import DopamineScoreDetails, event_positions
from ...analysis.dopamine_metrics import DopamineMetrics
from ...neurons import NeuronSet
from ...data.store import ActivationStore
from ...report import new_figure, save_figure

TRACE_FIGURE = "dopamine_traces.png"
DISTRIBUTION_FIGURE = "dopamine_metric_distribution.png"


def token_labels(store: ActivationStore, i: int, n_states: int, token_strings: Sequence[Sequence[str]] | None,
                  max_chars: int = 8) -> list[str] | None:
    """Tick labels for states s_0..s_T of rollout ``i`` (response tokens; s_0 shown as ``<s0>``)."""
    tokens = None
    if token_strings is not None and i < len(token_strings) and token_strings[i] is not None:
        tokens = list(token_strings[i])
    elif isinstance(store.records[i].meta, dict) and store.records[i].meta.get("response_tokens") is not None:
        tokens = list(store.records[i].meta["response_tokens"])
    if tokens is None:
        return None
    if len(tokens) == n_states - 1:
        tokens = ["<s0>"] + tokens
    if len(tokens) != n_states:
        return None
    out = []
    for t in tokens:
        t = str(t).replace("\n", "\\n").replace("\t", "\\t")
        out.append(t if len(t) <= max_chars else t[: max_chars - 1] + "…")
    return out


def pick_example(td: dict[int, np.ndarray], candidates: Sequence[int], sign: int) -> tuple[int, int] | None:
    """The rollout (and its event position) with the strongest event of the given sign."""
    best = None
    for i, p in zip(candidates, event_positions(td, candidates, k=1, sign=sign)):
        if len(p):
            strength = sign * td[int(i)][p[0]]
            if best is None or strength > best[0]:
                best = (strength, int(i), int(p[0]))
    return None if best is None else (best[1], best[2])


def trace_figure(store: ActivationStore, hook: str, neurons: NeuronSet, details: DopamineScoreDetails,
                  td: dict[int, np.ndarray], examples: list[tuple[str, int, int]],
                  token_strings: Sequence[Sequence[str]] | None, path: Path) -> None:
    """Like the paper's Figure 8: top-3 dopamine neurons over one positive- and one negative-surprise rollout."""
    fig, axes = new_figure(12, 3.6 * len(examples), nrows=len(examples))
    axes = np.atleast_1d(axes)
    top = neurons.indices[:3]
    colors = ["tab:red", "tab:blue", "tab:green"]
    for ax, (title, i, event) in zip(axes, examples):
        acts = store.get(i, hook).numpy().astype(np.float64)
        n_states = acts.shape[0]
        x = np.arange(n_states)
        for color, j in zip(colors, top):
            z = (acts[:, j] - details.mean[j]) / (details.std[j] if details.std[j] > 0 else 1.0)
            ax.plot(x, z, color=color, lw=1.4, label=f"dim {j} (z)")
        ax.axvline(event, color="gray", ls=":", lw=1)
        ax.set_ylabel("activation (z-scored)")
        ax2 = ax.twinx()
        ax2.plot(x, td[i], color="black", ls="--", marker=".", lw=1, label="TD error δ (arrival)")
        ax2.axhline(0, color="black", lw=0.5, alpha=0.4)
        ax2.set_ylabel("TD error δ")
        ax.set_title(f"{title}: rollout {store.records[i].id} (reward {store.records[i].reward:g})", fontsize=10)
        labels = token_labels(store, i, n_states, token_strings)
        stride = max(1, math.ceil(n_states / 60))
        ticks = x[::stride]
        ax.set_xticks(ticks)
        if labels is not None:
            ax.set_xticklabels([labels[t] for t in ticks], rotation=90, fontsize=7)
            ax.set_xlabel("response token")
        else:
            ax.set_xlabel("state t (s_0 = prompt's last token)")
        handles = ax.get_legend_handles_labels()
        handles2 = ax2.get_legend_handles_labels()
        ax.legend(handles[0] + handles2[0], handles[1] + handles2[1], fontsize=7, loc="upper left")
    fig.suptitle(f"Dopamine neurons at {hook}: activation vs TD error", fontsize=11)
    fig.tight_layout()
    save_figure(fig, path)


def distribution_figure(metrics: DopamineMetrics, path: Path) -> None:
    """Per-dimension held-out Pearson with δ and with V: candidates vs random pool vs value neurons."""

    groups = [("dopamine\ncandidates", metrics.candidates.pearson_td, metrics.candidates.pearson_value),
              ("random dims\n(pool)", metrics.random.pool_pearson_td, metrics.random.pool_pearson_value)]
    if metrics.value_neurons is not None:
        groups.append(("value\nneurons", metrics.value_neurons.pearson_td, metrics.value_neurons.pearson_value))
    fig, axes = new_figure(10, 4, ncols=2)
    rng = np.random.default_rng(0)
    for ax, which, title in ((axes[0], 1, "Pearson(activation, TD error)"), (axes[1], 2, "Pearson(activation, V)")):
        data = [np.asarray([v for v in g[which] if v is not None and np.isfinite(v)], dtype=float) for g in groups]
        positions = np.arange(1, len(groups) + 1)
        nonempty = [(p, d) for p, d in zip(positions, data) if d.size]
        if nonempty:
            ax.boxplot([d for _, d in nonempty], positions=[p for p, _ in nonempty], widths=0.5, showfliers=False)
        for p, d in zip(positions, data):
            ax.scatter(p + rng.uniform(-0.15, 0.15, d.size), d, s=10, alpha=0.6)
        ax.axhline(0, color="gray", lw=0.6)
        ax.set_xticks(positions)
        ax.set_xticklabels([g[0] for g in groups], fontsize=8)
        ax.set_title(f"held-out {title}", fontsize=10)
    p = metrics.permutation.p_value if metrics.permutation is not None else None
    fig.suptitle(f"{metrics.hook}: {metrics.n_test_rollouts} held-out rollouts, {metrics.n_test_tokens} tokens"
                 + (f"; permutation p = {p:.3g}" if p is not None and np.isfinite(p) else ""), fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)
