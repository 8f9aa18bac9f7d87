"""The causal studies of §2.4 of the paper: ablation (value vs random sets), dose-response, steering;
and the probe's TD trace under an intervention (the causal check of dopamine neurons).

Each study runs all of its conditions (every value set, random draw, dose and factor, plus the
baseline when none is given) as one :func:`~reward_circuits.interventions.sweep.sweep`: one batched
generation instead of one pass per condition (``sweep_config`` sizes it; inside
:func:`~reward_circuits.interventions.sweep.per_condition_passes` they run one pass per condition).
The intervention engine (:mod:`reward_circuits.interventions`) runs them; the random controls and
statistics come from the analyses beside this module."""

from __future__ import annotations

import math
from dataclasses import KW_ONLY, dataclass
from typing import Any, Iterable, Literal, Mapping, Sequence

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from ..interventions.hooks import Intervention, InterventionLike, PositionScope, PositionSpec, ablation_interventions, scale
from ..interventions.scoring import (ScoredRun, activation_means, examples_of, initial_values, prompt_seqs,
                                     resolve_probe_hook, rollout_states)
from ..interventions.sweep import SweepConfig, SweepResult, sweep
from ..models import Generation, GenerationConfig, ModelAdapter, layer_of
from ..neurons import NeuronSet
from ..options import options_of
from .controls import matched_random_sets, uniform_random_sets
from .resampling import shift_vs_random
from .stats import mean_std, rank_by_score
from .td import td_errors

# Studies
# ---------------------------------------------------------------------------------------------


def _draw_seed(seed: int, *parts: int) -> int:
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, *[int(p) & 0xFFFFFFFF for p in parts]]).generate_state(1)[0])


def ablation_conditions(neuron_sets: Mapping[Any, NeuronSet], n_random_draws: int = 3, seed: int = 0,
                        mode: Literal["zero", "mean"] = "zero", means: Mapping[str, Tensor] | None = None,
                        positions: PositionSpec = "all", random_sets: Mapping[Any, Sequence[Sequence[int]]] | None = None,
                        ) -> tuple[dict[str, list], dict[str, list]]:
    """The conditions of :func:`ablation_study` (``value/{layer}``, ``random/{layer}/{draw}``) and,
    per layer key, the seeds of its random draws (``None`` for sets given in ``random_sets``)."""
    if n_random_draws < 0:
        raise ValueError("n_random_draws must be >= 0.")
    conds: dict[str, list] = {}
    draws: dict[str, list] = {}
    for layer, ns in neuron_sets.items():
        conds[f"value/{layer}"] = ablation_interventions(ns, mode, means, positions)
        given = (random_sets or {}).get(layer)
        if given is not None:
            sets = [NeuronSet(ns.hook_name, [int(x) for x in dims], ns.d, kind="random", layer=ns.layer) for dims in given]
            draws[str(layer)] = [None] * len(sets)
        else:
            lay = layer_of(ns.hook_name) if ns.layer is None else ns.layer
            draws[str(layer)] = [_draw_seed(seed, -1 if lay is None else lay, draw) for draw in range(n_random_draws)]
            sets = [NeuronSet.random(ns.hook_name, ns.d, len(ns), seed=s, layer=ns.layer, exclude=ns.indices)
                    for s in draws[str(layer)]]
        for d, rnd in enumerate(sets):
            conds[f"random/{layer}/{d}"] = ablation_interventions(rnd, mode, means, positions)
    return conds, draws


def _swept_or_sweep(adapter, task, examples, conds: dict, config, sweep_config, swept: SweepResult | None, study: str):
    """Run the study's own sweep, or check that a shared sweep holds every condition it needs."""
    if swept is None:
        return sweep(adapter, task, conds, config, examples=examples, sweep_config=sweep_config) if conds else None
    missing = [k for k in conds if k not in swept.conditions]
    if missing:
        raise ValueError(f"swept= lacks the {study} conditions {missing[:4]}{'...' if len(missing) > 4 else ''}: sweep "
                         f"the conditions of {study.replace(' ', '_')}_conditions(...) with the same arguments.")
    if swept.n_examples != len(examples):
        raise ValueError(f"swept= covers {swept.n_examples} examples but the {study} has {len(examples)}: pass the "
                         "examples the sweep ran on.")
    return swept


@dataclass
class AblationOptions:
    """Settings of :func:`ablation_study`, given as its keywords, in this order by position, or as one
    ``options=AblationOptions(...)``. ``config``: the generation settings; ``baseline``: a precomputed
    no-intervention run; ``positions``: where the ablation acts; ``sweep_config`` sizes the sweep;
    ``random_sets`` gives the random draws per layer; ``swept`` a sweep that already holds the conditions."""

    n_random_draws: int = 3
    seed: int = 0
    mode: Literal["zero", "mean"] = "zero"
    means: Mapping[str, Tensor] | None = None
    config: GenerationConfig | None = None
    baseline: ScoredRun | None = None
    positions: PositionSpec = "all"
    _: KW_ONLY
    sweep_config: SweepConfig | None = None
    random_sets: Mapping[Any, Sequence[Sequence[int]]] | None = None
    swept: SweepResult | None = None


def ablation_study(adapter: ModelAdapter, task, examples, neuron_sets: Mapping[Any, NeuronSet], *args,
                   **options) -> dict[str, dict]:
    """Accuracy with each layer's value neurons ablated vs ``n_random_draws`` random sets of the same
    size (drawn with seeds derived from ``seed``, layer and draw, excluding the value neurons; or the
    sets given per layer in ``random_sets``).

    The baseline (no intervention) is generated once (or taken from ``baseline``). ``mode="mean"``
    needs ``means[hook_name]`` (computed over the examples' prompts with :func:`activation_means`
    when ``means`` is None). ``swept``: a :class:`~reward_circuits.interventions.SweepResult` that
    already holds the conditions of :func:`ablation_conditions` (e.g. one sweep shared by several
    studies, see :meth:`SweepResult.subset`); nothing is generated then. Returns, per layer key
    (``str(layer)``): ``baseline_acc``, ``value_acc``, ``random_acc_mean``, ``random_acc_std``
    (sample std over draws), ``random_accs``, ``n_neurons``, ``hook_name``, ``mode``, ``random_seeds``.

    ``args``/``options``: the fields of :class:`AblationOptions` (``n_random_draws=3``, ``seed=0``,
    ``mode="zero"``, ``means=None``, ``config=None``, ``baseline=None``, ``positions="all"`` by
    position or keyword; ``sweep_config``, ``random_sets``, ``swept`` by keyword), or ``options=``.
    """
    o = options_of(AblationOptions, args, options, where="ablation_study")
    examples, means, baseline, mode = examples_of(task, examples), o.means, o.baseline, o.mode
    if mode == "mean" and means is None:
        means = activation_means(adapter, prompt_seqs(adapter, task, examples),
                                 sorted({ns.hook_name for ns in neuron_sets.values()}))
    conds, draws = ablation_conditions(neuron_sets, o.n_random_draws, o.seed, mode, means, o.positions, o.random_sets)
    if baseline is None:
        conds = {"baseline": [], **conds}
    swept = _swept_or_sweep(adapter, task, examples, conds, o.config, o.sweep_config, o.swept, "ablation")
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


def _dose_sizes(scores: Float[Tensor, " d"], fractions: Sequence[float]) -> tuple[Tensor, list[float], list[int], list[str]]:
    """Ranking of every dim, the kept fractions, their set sizes ``k = max(1, round(f·d))`` and notes."""
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
    return order, kept, ks, notes


@dataclass
class DoseOptions:
    """Settings of :func:`dose_response`, given as its keywords, in this order by position, or as one
    ``options=DoseOptions(...)``; :func:`dose_conditions` takes the fields that define the conditions
    (``fractions``, ``modes``, ``n_random_draws``, ``seed``, ``means``, ``positions``, ``magnitudes``,
    by position in that order). ``magnitudes``: per-dimension mean |activation| (adds matched draws)."""

    fractions: Sequence[float] = (0.005, 0.01, 0.02, 0.05, 0.1)
    modes: Sequence[str] = ("zero", "mean")
    n_random_draws: int = 3
    seed: int = 0
    means: Mapping[str, Tensor] | None = None
    config: GenerationConfig | None = None
    baseline: ScoredRun | None = None
    positions: PositionSpec = "all"
    _: KW_ONLY
    sweep_config: SweepConfig | None = None
    magnitudes: Float[np.ndarray, " d"] | None = None
    swept: SweepResult | None = None


_DOSE_CONDITION_FIELDS = ("fractions", "modes", "n_random_draws", "seed", "means", "positions", "magnitudes")


def dose_conditions(scores: Float[Tensor, " d"], hook: str, *args, **options) -> dict[str, list]:
    """The conditions of :func:`dose_response`: ``{mode}/{i}/value``, ``{mode}/{i}/random/{draw}``
    and, with ``magnitudes``, ``{mode}/{i}/matched/{draw}`` (random sets matched to the top-k on
    per-dimension mean |activation|, :func:`~reward_circuits.analysis.controls.matched_random_sets`).

    ``args``/``options``: ``fractions``, ``modes``, ``n_random_draws``, ``seed``, ``means``,
    ``positions``, ``magnitudes`` of :class:`DoseOptions` (by position in that order, or keyword)."""
    o = options_of(DoseOptions, args, options, where="dose_conditions", order=_DOSE_CONDITION_FIELDS,
                   names=_DOSE_CONDITION_FIELDS)
    return _dose_conditions(scores, hook, o, o.means)


def _dose_conditions(scores: Float[Tensor, " d"], hook: str, o: DoseOptions, means: Mapping[str, Tensor] | None) -> dict[str, list]:
    order, kept, ks, _ = _dose_sizes(scores, o.fractions)
    d = int(order.numel())
    lay = layer_of(hook)
    conds: dict[str, list] = {}
    for mode in o.modes:
        for i, k in enumerate(ks):
            top = NeuronSet(hook, order[:k].tolist(), d, kind="value", layer=lay, provenance={"fraction": kept[i]})
            conds[f"{mode}/{i}/value"] = ablation_interventions(top, mode, means, o.positions)
            for draw in range(o.n_random_draws):
                rnd = NeuronSet.random(hook, d, k, seed=_draw_seed(o.seed, k, draw), layer=lay, exclude=top.indices)
                conds[f"{mode}/{i}/random/{draw}"] = ablation_interventions(rnd, mode, means, o.positions)
            if o.magnitudes is not None:
                matched = matched_random_sets(top.indices, np.asarray(o.magnitudes), o.n_random_draws,
                                              seed=_draw_seed(o.seed, k, -2))
                for draw, dims in enumerate(matched):
                    ns = NeuronSet(hook, dims, d, kind="random", layer=lay)
                    conds[f"{mode}/{i}/matched/{draw}"] = ablation_interventions(ns, mode, means, o.positions)
    return conds


def dose_response(adapter: ModelAdapter, task, examples, scores: Float[Tensor, " d"], hook: str, *args,
                  **options) -> dict:
    """Accuracy as the top-``fraction`` dimensions of ``hook`` by ``scores`` (higher = more
    value-like; ``-inf`` never chosen) are ablated, for each mode, vs random sets of the same size:
    uniform draws and, with ``magnitudes`` (per-dimension mean |activation|), draws matched to the
    top set on magnitude (a top set holding a massive-activation dim is compared with sets that hold
    one too).

    ``k = max(1, round(fraction · d))``. ``swept``: a sweep that already holds the conditions of
    :func:`dose_conditions` (nothing is generated then). Returns ``{hook, fractions, n_neurons,
    baseline_acc, curves: {mode: {value_acc: [...], random_acc_mean: [...], random_acc_std: [...],
    matched_acc_mean: [...], ...}}}`` (lists aligned with ``fractions``; fractions needing more
    ranked dims than exist are dropped, noted).

    ``args``/``options``: the fields of :class:`DoseOptions` (``fractions``, ``modes``,
    ``n_random_draws=3``, ``seed=0``, ``means=None``, ``config=None``, ``baseline=None``,
    ``positions="all"`` by position or keyword; ``sweep_config``, ``magnitudes``, ``swept`` by
    keyword), or ``options=``.
    """
    o = options_of(DoseOptions, args, options, where="dose_response")
    examples, means, baseline, n_random_draws = examples_of(task, examples), o.means, o.baseline, o.n_random_draws
    _, kept, ks, notes = _dose_sizes(scores, o.fractions)
    if "mean" in o.modes and means is None:
        means = activation_means(adapter, prompt_seqs(adapter, task, examples), [hook])
    conds = _dose_conditions(scores, hook, o, means)
    if baseline is None:
        conds = {"baseline": [], **conds}
    swept = _swept_or_sweep(adapter, task, examples, conds, o.config, o.sweep_config, o.swept, "dose")
    if baseline is None:
        baseline = swept["baseline"].scored_run()
    kinds = ("random", "matched") if o.magnitudes is not None else ("random",)
    curves = {}
    for mode in o.modes:
        curve: dict[str, list] = {"value_acc": [swept[f"{mode}/{i}/value"].accuracy for i in range(len(ks))]}
        for kind in kinds:
            accs = [[swept[f"{mode}/{i}/{kind}/{draw}"].accuracy for draw in range(n_random_draws)] for i in range(len(ks))]
            stats = [mean_std(a) for a in accs]
            curve.update({f"{kind}_acc_mean": [m for m, _ in stats], f"{kind}_acc_std": [sd for _, sd in stats],
                          f"{kind}_accs": accs})
        curves[mode] = curve
    return {"hook": hook, "d": int(torch.as_tensor(scores).numel()), "fractions": kept, "n_neurons": ks,
            "baseline_acc": baseline.accuracy, "n_random_draws": n_random_draws, "curves": curves, "notes": notes,
            "n_examples": len(examples), "controls": list(kinds)}


def steering_conditions(neurons: NeuronSet, factors: Sequence[float] = (0, 0.5, 1.5, 2, 4),
                        positions: PositionSpec = "all") -> dict[str, list]:
    """The conditions of :func:`steering_study`: one per factor other than 1 (the identity), keyed ``f"{factor:g}"``."""
    return {f"{float(f):g}": [Intervention(neurons.hook_name, scale(neurons, f, positions=positions))]
            for f in factors if float(f) != 1.0}


@dataclass
class SteeringOptions:
    """Settings of :func:`steering_study`, given as its keywords, in this order by position, or as one
    ``options=SteeringOptions(...)``. ``probe`` / ``probe_hook``: the value probe whose ``V(s_0)`` is
    read (none: no value shift); ``sweep_config`` sizes the sweep; ``swept`` already holds the conditions."""

    factors: Sequence[float] = (0, 0.5, 1.5, 2, 4)
    probe: Any = None
    probe_hook: str | None = None
    config: GenerationConfig | None = None
    baseline: ScoredRun | None = None
    positions: PositionSpec = "all"
    _: KW_ONLY
    sweep_config: SweepConfig | None = None
    swept: SweepResult | None = None


def steering_study(adapter: ModelAdapter, task, examples, neurons: NeuronSet, *args, **options) -> dict:
    """Scale the ``neurons`` by each factor throughout generation: accuracy and the mean change of
    the probe's ``V(s_0)`` against no intervention (``mean_value_shift``; NaN without a probe).

    Factor 1 is the identity, so its entry is the baseline (not regenerated). ``swept``: a sweep
    that already holds the conditions of :func:`steering_conditions` (nothing is generated). Returns
    ``{hook_name, n_neurons, baseline_acc, baseline_value, factors: {str(factor): {factor,
    accuracy, mean_value, mean_value_shift}}}``.

    ``args``/``options``: the fields of :class:`SteeringOptions` (``factors``, ``probe=None``,
    ``probe_hook=None``, ``config=None``, ``baseline=None``, ``positions="all"`` by position or
    keyword; ``sweep_config``, ``swept`` by keyword), or ``options=``.
    """
    o = options_of(SteeringOptions, args, options, where="steering_study")
    examples, factors, probe, probe_hook, baseline = examples_of(task, examples), o.factors, o.probe, o.probe_hook, o.baseline
    positions = o.positions
    hooks_of = steering_conditions(neurons, factors, positions)
    conds: dict[str, list] = dict(hooks_of) if baseline is not None else {"baseline": [], **hooks_of}
    swept = _swept_or_sweep(adapter, task, examples, conds, o.config, o.sweep_config, o.swept, "steering")
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


def steering_control_sets(neurons: NeuronSet, magnitudes: Float[np.ndarray, " d"] | None, n_draws: int = 3,
                          seed: int = 0) -> tuple[str, list[list[int]]]:
    """Random sets to steer beside the value set: magnitude-matched (:func:`~.controls.matched_random_sets`,
    the ablation's matched draws for the same seed) when ``magnitudes`` are known, else uniform."""
    if magnitudes is not None:
        return "magnitude_matched", matched_random_sets(neurons.indices, np.asarray(magnitudes), n_draws, seed)
    return "uniform", uniform_random_sets(neurons.indices, neurons.d, n_draws, seed)


def steering_control_conditions(neurons: NeuronSet, random_sets: Sequence[Sequence[int]], factors: Sequence[float],
                                positions: PositionSpec = "all") -> dict[str, list]:
    """Each random set scaled by each factor (other than 1): ``f"{factor:g}/{draw}"``."""
    out = {}
    for d, dims in enumerate(random_sets):
        control = NeuronSet(neurons.hook_name, [int(x) for x in dims], neurons.d, kind="control", layer=neurons.layer)
        out.update({f"{float(f):g}/{d}": [Intervention(control.hook_name, scale(control, f, positions=positions))]
                    for f in factors if float(f) != 1.0})
    return out


def steering_vs_random(swept: SweepResult, value_swept: SweepResult, baseline: ScoredRun, factors: Sequence[float],
                       n_draws: int, seed: int = 0) -> dict[str, dict]:
    """Per factor: does scaling the value set move accuracy further from the baseline than scaling
    the random sets (:func:`~.resampling.shift_vs_random`, the draws' own spread in the test)?
    ``swept`` holds :func:`steering_control_conditions`' keys, ``value_swept`` :func:`steering_conditions`'."""
    out = {}
    base = np.asarray(baseline.rewards, dtype=np.float64)
    for f in factors:
        key = f"{float(f):g}"
        value = np.asarray(value_swept[key].rewards, dtype=np.float64)
        draws = np.asarray([swept[f"{key}/{d}"].rewards for d in range(n_draws)], dtype=np.float64)
        entry = {"factor": float(f), "value_acc": float(value.mean()), "random_accs": draws.mean(1).tolist(),
                 "baseline_acc": float(base.mean())}
        if n_draws > 1:
            entry["vs_draws"] = shift_vs_random(value, draws, base, seed=seed).to_dict()
        out[key] = entry
    return out


# The probe's TD trace under intervention (causal check for dopamine neurons)
# ---------------------------------------------------------------------------------------------


def traces_of_states(probe, hook: str, states: Sequence[Float[Tensor, "T_plus_1 d"]], gamma: float = 0.99,
                     what: Literal["td", "value"] = "td") -> list[Float[np.ndarray, " T_plus_1"]]:
    """``V(s_0) .. V(s_T)`` (``what="value"``) or the arrival-aligned TD errors
    ``[NaN, γV(s_1)−V(s_0), ..]`` (``what="td"``, the convention of :func:`~reward_circuits.analysis.td.td_errors`)
    of each rollout's states."""
    if what not in ("td", "value"):
        raise ValueError(f"what must be 'td' or 'value', got {what!r}.")
    traces = []
    for st in states:
        v = probe.predict_value(st, hook=hook).reshape(-1).cpu().numpy().astype(np.float64)
        # arrival-aligned; the reward term is the terminal error, which arrival alignment drops
        traces.append(v if what == "value" else td_errors(v, 0.0, gamma, align="arrival"))
    return traces


def td_trace_under(adapter: ModelAdapter, probe, hook: str, rollout_token_ids: Sequence[Generation] | Sequence[tuple],
                   fwd_hooks: Iterable[InterventionLike] | None = (), gamma: float = 0.99, *,
                   what: Literal["td", "value"] = "td", batch_size: int = 8) -> list[Float[np.ndarray, " T_plus_1"]]:
    """Teacher-force each rollout (prompt + response ids: a :class:`Generation` or a
    ``(prompt_ids, response_ids)`` pair) with ``fwd_hooks`` active, read ``hook`` at the states
    ``s_0`` (prompt's last token) .. ``s_T`` (last response token) and return per rollout

    * ``what="value"``: ``V(s_0) .. V(s_T)``;
    * ``what="td"`` (default): arrival-aligned TD errors ``[NaN, γV(s_1)−V(s_0), .., γV(s_T)−V(s_{T−1})]``
      (the convention of :func:`~reward_circuits.analysis.td.td_errors`, ready for ``td_trace_change``).

    Position scopes without ``prompt_len`` see the true prompt/response split (via
    :func:`~reward_circuits.interventions.hooks.teacher_forced_prompt`), so ``positions="generated"``
    means the response tokens here too.
    """
    if what not in ("td", "value"):
        raise ValueError(f"what must be 'td' or 'value', got {what!r}.")
    states = rollout_states(adapter, hook, rollout_token_ids, fwd_hooks, batch_size=batch_size)
    return traces_of_states(probe, hook, states, gamma, what)
