"""The studies of §2.4 of the paper: ablation (value vs random sets), dose-response, steering.

Each study runs all of its conditions (every value set, random draw, dose and factor, plus the
baseline when none is given) as one :func:`~reward_circuits.interventions.sweep.sweep`: one batched
generation instead of one pass per condition (``sweep_config`` sizes it; inside
:func:`~reward_circuits.interventions.sweep.per_condition_passes` they run one pass per condition)."""

from __future__ import annotations

import math
from typing import Any, Literal, Mapping, Sequence

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from ..models import GenerationConfig, ModelAdapter, layer_of
from ..analysis.neurons import NeuronSet


from ..analysis.stats import mean_std, rank_by_score
from .hooks import Intervention, PositionScope, PositionSpec, ablation_interventions, scale
from .scoring import ScoredRun, activation_means, initial_values, prompt_seqs
from .sweep import SweepConfig, sweep
from .scoring import examples_of, resolve_probe_hook

# Studies
# ---------------------------------------------------------------------------------------------


def _draw_seed(seed: int, *parts: int) -> int:
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, *[int(p) & 0xFFFFFFFF for p in parts]]).generate_state(1)[0])


def ablation_study(adapter: ModelAdapter, task, examples, neuron_sets: Mapping[Any, NeuronSet], n_random_draws: int = 3,
                   seed: int = 0, mode: Literal["zero", "mean"] = "zero", means: Mapping[str, Tensor] | None = None,
                   config: GenerationConfig | None = None, baseline: ScoredRun | None = None,
                   positions: PositionSpec = "all", *, sweep_config: SweepConfig | None = None) -> dict[str, dict]:
    """Accuracy with each layer's value neurons ablated vs ``n_random_draws`` random sets of the same
    size (drawn with seeds derived from ``seed``, layer and draw, excluding the value neurons).

    The baseline (no intervention) is generated once (or taken from ``baseline``). ``mode="mean"``
    needs ``means[hook_name]`` (computed over the examples' prompts with :func:`activation_means`
    when ``means`` is None). Returns, per layer key (``str(layer)``): ``baseline_acc``,
    ``value_acc``, ``random_acc_mean``, ``random_acc_std`` (sample std over draws), ``random_accs``,
    ``n_neurons``, ``hook_name``, ``mode``, ``random_seeds``.
    """
    examples = examples_of(task, examples)
    if n_random_draws < 0:
        raise ValueError("n_random_draws must be >= 0.")
    if mode == "mean" and means is None:
        means = activation_means(adapter, prompt_seqs(adapter, task, examples),
                                 sorted({ns.hook_name for ns in neuron_sets.values()}))
    conds: dict[str, list] = {} if baseline is not None else {"baseline": []}
    draws: dict[str, list[int]] = {}
    for layer, ns in neuron_sets.items():
        conds[f"value/{layer}"] = ablation_interventions(ns, mode, means, positions)
        lay = layer_of(ns.hook_name) if ns.layer is None else ns.layer
        draws[str(layer)] = [_draw_seed(seed, -1 if lay is None else lay, draw) for draw in range(n_random_draws)]
        for d, s in enumerate(draws[str(layer)]):
            rnd = NeuronSet.random(ns.hook_name, ns.d, len(ns), seed=s, layer=ns.layer, exclude=ns.indices)
            conds[f"random/{layer}/{d}"] = ablation_interventions(rnd, mode, means, positions)
    swept = sweep(adapter, task, conds, config, examples=examples, sweep_config=sweep_config) if conds else None
    if baseline is None:
        baseline = swept["baseline"].scored_run()
    out: dict[str, dict] = {}
    for layer, ns in neuron_sets.items():
        seeds = draws[str(layer)]
        random_accs = [swept[f"random/{layer}/{d}"].accuracy for d in range(len(seeds))]
        mean, std = mean_std(random_accs)
        out[str(layer)] = {
            "hook_name": ns.hook_name, "mode": mode, "n_neurons": len(ns), "d": ns.d,
            "baseline_acc": baseline.accuracy, "value_acc": swept[f"value/{layer}"].accuracy,
            "random_acc_mean": mean, "random_acc_std": std, "random_accs": random_accs, "random_seeds": seeds,
            "n_examples": len(examples),
        }
    return out


def dose_response(adapter: ModelAdapter, task, examples, scores: Float[Tensor, " d"], hook: str,
                  fractions: Sequence[float] = (0.005, 0.01, 0.02, 0.05, 0.1), modes: Sequence[str] = ("zero", "mean"),
                  n_random_draws: int = 3, seed: int = 0, means: Mapping[str, Tensor] | None = None,
                  config: GenerationConfig | None = None, baseline: ScoredRun | None = None,
                  positions: PositionSpec = "all", *, sweep_config: SweepConfig | None = None) -> dict:
    """Accuracy as the top-``fraction`` dimensions of ``hook`` by ``scores`` (higher = more
    value-like; ``-inf`` never chosen) are ablated, for each mode, vs random sets of the same size.

    ``k = max(1, round(fraction · d))``. Returns ``{hook, fractions, n_neurons, baseline_acc,
    curves: {mode: {value_acc: [...], random_acc_mean: [...], random_acc_std: [...]}}}`` (lists
    aligned with ``fractions``; fractions needing more ranked dims than exist are dropped, noted).
    """
    examples = examples_of(task, examples)
    scores = torch.as_tensor(scores, dtype=torch.float64).reshape(-1)
    d = int(scores.numel())
    n_ranked = int(torch.isfinite(scores).sum())
    order = torch.as_tensor(rank_by_score(scores, nonfinite="last"))
    kept, ks, notes = [], [], []
    for f in fractions:
        k = max(1, int(round(float(f) * d)))
        if k > n_ranked:
            notes.append(f"fraction {f} needs {k} ranked dims but only {n_ranked} have a score; skipped.")
            continue
        if k in ks:
            notes.append(f"fraction {f} gives the same {k} dims as fraction {kept[ks.index(k)]}; skipped.")
            continue
        kept.append(float(f))
        ks.append(k)
    if "mean" in modes and means is None:
        means = activation_means(adapter, prompt_seqs(adapter, task, examples), [hook])
    conds: dict[str, list] = {} if baseline is not None else {"baseline": []}
    lay = layer_of(hook)
    for mode in modes:
        for i, k in enumerate(ks):
            top = NeuronSet(hook, order[:k].tolist(), d, kind="value", layer=lay, provenance={"fraction": kept[i]})
            conds[f"{mode}/{i}/value"] = ablation_interventions(top, mode, means, positions)
            for draw in range(n_random_draws):
                rnd = NeuronSet.random(hook, d, k, seed=_draw_seed(seed, k, draw), layer=lay, exclude=top.indices)
                conds[f"{mode}/{i}/random/{draw}"] = ablation_interventions(rnd, mode, means, positions)
    swept = sweep(adapter, task, conds, config, examples=examples, sweep_config=sweep_config) if conds else None
    if baseline is None:
        baseline = swept["baseline"].scored_run()
    curves = {}
    results: dict[tuple[str, int], tuple[float, list[float]]] = {
        (mode, i): (swept[f"{mode}/{i}/value"].accuracy,
                    [swept[f"{mode}/{i}/random/{draw}"].accuracy for draw in range(n_random_draws)])
        for mode in modes for i in range(len(ks))}
    for mode in modes:
        stats = [mean_std(results[(mode, i)][1]) for i in range(len(ks))]
        curves[mode] = {
            "value_acc": [results[(mode, i)][0] for i in range(len(ks))],
            "random_acc_mean": [s[0] for s in stats], "random_acc_std": [s[1] for s in stats],
            "random_accs": [results[(mode, i)][1] for i in range(len(ks))],
        }
    return {"hook": hook, "d": d, "fractions": kept, "n_neurons": ks, "baseline_acc": baseline.accuracy,
            "n_random_draws": n_random_draws, "curves": curves, "notes": notes, "n_examples": len(examples)}






def steering_study(adapter: ModelAdapter, task, examples, neurons: NeuronSet,
                   factors: Sequence[float] = (0, 0.5, 1.5, 2, 4), probe=None, probe_hook: str | None = None,
                   config: GenerationConfig | None = None, baseline: ScoredRun | None = None,
                   positions: PositionSpec = "all", *, sweep_config: SweepConfig | None = None) -> dict:
    """Scale the ``neurons`` by each factor throughout generation: accuracy and the mean change of
    the probe's ``V(s_0)`` against no intervention (``mean_value_shift``; NaN without a probe).

    Factor 1 is the identity, so its entry is the baseline (not regenerated). Returns
    ``{hook_name, n_neurons, baseline_acc, baseline_value, factors: {str(factor): {factor,
    accuracy, mean_value, mean_value_shift}}}``.
    """
    examples = examples_of(task, examples)
    hooks_of = {f"{float(f):g}": [Intervention(neurons.hook_name, scale(neurons, f, positions=positions))]
                for f in factors if float(f) != 1.0}  # factor 1 is the identity: the baseline
    conds: dict[str, list] = dict(hooks_of) if baseline is not None else {"baseline": [], **hooks_of}
    swept = sweep(adapter, task, conds, config, examples=examples, sweep_config=sweep_config) if conds else None
    if baseline is None:
        baseline = swept["baseline"].scored_run()
    seqs = prompt_seqs(adapter, task, examples)
    if probe is not None:
        probe_hook = resolve_probe_hook(probe, probe_hook, neurons.hook_name)
        v0 = initial_values(adapter, probe, probe_hook, seqs)
    out = {}
    for f in factors:
        key = f"{float(f):g}"
        acc = baseline.accuracy if float(f) == 1.0 else swept[key].accuracy
        entry = {"factor": float(f), "accuracy": acc, "mean_value": math.nan, "mean_value_shift": math.nan}
        if probe is not None:
            v = v0 if float(f) == 1.0 else initial_values(adapter, probe, probe_hook, seqs, hooks_of[key])
            entry["mean_value"] = float(v.mean())
            entry["mean_value_shift"] = float((v - v0).mean())
        out[key] = entry
    return {"hook_name": neurons.hook_name, "n_neurons": len(neurons), "probe_hook": probe_hook,
            "baseline_acc": baseline.accuracy, "baseline_value": float(v0.mean()) if probe is not None else math.nan,
            "positions": PositionScope.of(positions).describe(), "factors": out, "n_examples": len(examples)}


# ---------------------------------------------------------------------------------------------
