"""The dopamine stage's causal check: ablate the dopamine set, uniform and magnitude-matched random
sets of its size, all in one batched generation, and compare them paired on the same examples."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from jaxtyping import Float

from ...analysis.dopamine_controls import matched_draws, paired_control_comparison
from ...analysis.dopamine_metrics import td_trace_change
from ...analysis.controls import massive_activations
from ...neurons import NeuronSet
from ...report import Table

CLAIM_ACCURACY = "ablating the dopamine set lowers accuracy more than {kind} random sets (paired over examples)"
CLAIM_TRACE = "ablating the dopamine set moves the TD-error traces more than {kind} random sets (paired over rollouts)"


def _per_rollout_abs_change(before: Sequence[np.ndarray], after: Sequence[np.ndarray]) -> np.ndarray:
    """Mean |δ_after − δ_before| of each rollout over its defined tokens (NaN when none)."""
    out = []
    for b, a in zip(before, after):
        d = np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))
        d = d[np.isfinite(d)]
        out.append(float(d.mean()) if d.size else np.nan)
    return np.asarray(out)


@dataclass
class DopamineCausalSettings:
    """Settings of :func:`run_dopamine_causal_check`, passed as its keywords (or ``settings=``).

    ``magnitudes`` (per-dim mean |activation| of the hook) adds ``n_random_draws`` magnitude-matched
    random sets; ``massive_factor`` marks massive-activation dims (mean |activation| > factor x median)."""

    n_random_draws: int = 3
    seed: int = 0
    magnitudes: Float[np.ndarray, " d"] | None = None
    massive_factor: float = 10.0
    n_boot: int = 2000


def run_dopamine_causal_check(
    adapter,
    probe,
    dopamine_set: NeuronSet,
    rollouts: Sequence[tuple[Sequence[int], Sequence[int]]],
    task,
    examples: Sequence,
    *,
    config=None,
    **settings,
) -> tuple[dict, Table]:
    """Ablate the top dopamine neurons (zero) and compare with random sets of the same size.

    ``settings``: the fields of :class:`DopamineCausalSettings` as keywords (``n_random_draws=3``,
    ``seed=0``, ``magnitudes=None``, ``massive_factor=10.0``, ``n_boot=2000``), or one
    ``settings=DopamineCausalSettings(...)``; ``config`` is the :class:`GenerationConfig`.

    Reports, for the dopamine set and each random draw: task accuracy when generating under the
    ablation, and how the probe's TD-error traces of the given (held-out) rollouts change when they
    are teacher-forced under it (:func:`~reward_circuits.dopamine.td_trace_change`). The probe reads
    the ablated hook itself, so the trace change is entirely direct (the probe's own sensitivity to
    those dims: nothing downstream of the hook is read); the random sets measure how much an
    ablation of that size moves the traces anyway. The accuracy comparison is the causal one.

    With ``magnitudes`` (per-dim mean |activation| of the hook) ``n_random_draws`` magnitude-matched
    random sets join the uniform ones as extra conditions of the same batched generation: zeroing a
    massive-activation dim moves everything downstream, so the dopamine set must beat sets of its
    own magnitude profile. Both kinds are compared with the dopamine ablation paired over the same
    examples (accuracy) and rollouts (mean |Δδ|), each with a bootstrap interval and a verdict.
    """
    from ...interventions import sweep

    s = settings["settings"] if set(settings) == {"settings"} else DopamineCausalSettings(**settings)
    clean = _clean_traces(adapter, probe, dopamine_set.hook_name, [(list(p), list(r)) for p, r in rollouts])
    sets = _control_sets(dopamine_set, s)
    # every condition's accuracy from one batched generation (interventions.sweep)
    result = sweep(adapter, task, sets.conditions(), config, examples=list(examples))
    runs = _measure(probe, sets, clean, result.accuracies())
    summary = {"hook": sets.hook, "n_neurons": len(dopamine_set), "n_rollouts": len(rollouts), "n_examples": len(examples),
               "baseline_acc": runs.baseline_acc, "dopamine": runs.dop, "random": runs.rand,
               "random_mean": {k: _stats(runs.rand, k)[0] for k in runs.dop},
               "random_std": {k: _stats(runs.rand, k)[1] for k in runs.dop}}
    rows = [["none (baseline)", runs.baseline_acc, None, None, None]]
    rows.append(["top dopamine neurons", runs.dop["accuracy"], runs.dop["td_mean_abs_change"],
                 runs.dop["td_change_at_positive_events"], runs.dop["td_change_at_negative_events"]])
    rows.append([f"random (mean of {s.n_random_draws})"] + [_stats(runs.rand, k)[0] for k in _KEYS])
    if s.magnitudes is None:
        summary["matched_reason"] = "no per-dim magnitudes of the hook were given"
    else:
        rows += _matched_comparison(sets, runs, result, s, summary)
    table = Table(f"Causal check: zero-ablating {len(dopamine_set)} dims of {sets.hook}",
                  ["ablated", "accuracy", "mean |Δδ|", "Δδ at positive events", "Δδ at negative events"], rows)
    return summary, table


_KEYS = ("accuracy", "td_mean_abs_change", "td_change_at_positive_events", "td_change_at_negative_events")


def _stats(runs: list[dict], key: str) -> tuple[float | None, float | None]:
    vals = [r[key] for r in runs if r[key] is not None]
    return (float(np.mean(vals)), float(np.std(vals))) if vals else (None, None)


@dataclass
class _ControlSets:
    """The dopamine set and its uniform and magnitude-matched random sets of the same size."""

    dopamine: NeuronSet
    random: list[NeuronSet]
    matched: list[NeuronSet]

    @property
    def hook(self) -> str:
        return self.dopamine.hook_name

    def conditions(self) -> dict[str, list]:
        from ...interventions import zero_ablate

        hook = self.hook
        conditions = {"baseline": [], "dopamine": [(hook, zero_ablate(self.dopamine))]}
        conditions.update({f"random/{i}": [(hook, zero_ablate(ns))] for i, ns in enumerate(self.random)})
        conditions.update({f"matched/{i}": [(hook, zero_ablate(ns))] for i, ns in enumerate(self.matched)})
        return conditions


def _control_sets(dopamine_set: NeuronSet, s: DopamineCausalSettings) -> _ControlSets:
    hook, seed = dopamine_set.hook_name, s.seed
    random_sets = [NeuronSet.random(hook, dopamine_set.d, len(dopamine_set), seed=seed + 1 + i,
                                    layer=dopamine_set.layer, exclude=dopamine_set.indices)
                   for i in range(s.n_random_draws)]
    matched_sets = ([NeuronSet(hook, dims, dopamine_set.d, kind="random_matched", layer=dopamine_set.layer,
                               provenance={"seed": seed, "draw": i})
                     for i, dims in enumerate(matched_draws(dopamine_set.indices, s.magnitudes, s.n_random_draws, seed,
                                                            factor=s.massive_factor))]
                    if s.magnitudes is not None else [])
    return _ControlSets(dopamine_set, random_sets, matched_sets)


@dataclass
class _Measured:
    """Accuracy and TD-trace change of every ablation; per-rollout mean |Δδ| by condition."""

    baseline_acc: float
    dop: dict
    rand: list[dict]
    matched: list[dict]
    per_rollout: dict[str, np.ndarray]


def _clean_traces(adapter, probe, hook: str, pairs: list) -> tuple[list, list, float]:
    """The rollouts' clean states at the hook, the probe's TD-error traces on them, and γ."""
    from ...analysis.causal import traces_of_states
    from ...interventions.scoring import rollout_states

    gamma = float(probe.cfg.gamma)
    # the probe reads the ablated hook itself and the forward stops there, so a zero-ablation's
    # trace is the probe on the clean states with those dims zeroed: one forward serves every set
    # (equal to teacher-forcing under each ablation; tests/test_dopamine_causal.py checks it)
    states = rollout_states(adapter, hook, pairs)
    return states, traces_of_states(probe, hook, states, gamma), gamma


def _measure(probe, sets: _ControlSets, clean: tuple[list, list, float], accuracy: dict) -> _Measured:
    from ...analysis.causal import traces_of_states

    hook, (states, before, gamma) = sets.hook, clean
    per_rollout: dict[str, np.ndarray] = {}

    def measure(name: str, ns: NeuronSet) -> dict:
        idx = torch.as_tensor(list(ns.indices), dtype=torch.long)
        after = traces_of_states(probe, hook, [st.index_fill(1, idx, 0.0) for st in states], gamma)
        change = td_trace_change(before, after)
        per_rollout[name] = _per_rollout_abs_change(before, after)
        return {"accuracy": accuracy[name], "td_mean_abs_change": change["mean_abs_change"],
                "td_change_at_positive_events": change["positive_event"]["change"],
                "td_change_at_negative_events": change["negative_event"]["change"]}

    dop = measure("dopamine", sets.dopamine)
    rand = [measure(f"random/{i}", ns) for i, ns in enumerate(sets.random)]
    matched = [measure(f"matched/{i}", ns) for i, ns in enumerate(sets.matched)]
    return _Measured(accuracy["baseline"], dop, rand, matched, per_rollout)


def _matched_comparison(sets: _ControlSets, runs: _Measured, result, s: DopamineCausalSettings, summary: dict) -> list:
    """Massive dims, the matched sets' means, and the dopamine set paired against both kinds of random
    sets (accuracy over examples, mean |Δδ| over rollouts); fills ``summary``, returns the table's rows."""
    hook, matched, dop, per_rollout = sets.hook, runs.matched, runs.dop, runs.per_rollout
    massive = massive_activations(np.asarray(s.magnitudes, dtype=np.float64), hook, s.massive_factor)
    summary.update(matched=matched, matched_sets=[ns.indices for ns in sets.matched],
                   matched_mean={k: _stats(matched, k)[0] for k in dop}, matched_std={k: _stats(matched, k)[1] for k in dop},
                   massive_in_dopamine_set=massive.contained_in(sets.dopamine.indices), massive_dims=massive.dims)
    rows = [[f"magnitude-matched random (mean of {len(sets.matched)})"] + [_stats(matched, k)[0] for k in _KEYS]]
    by_kind = {"uniform": [f"random/{i}" for i in range(len(sets.random))],
               "magnitude_matched": [f"matched/{i}" for i in range(len(sets.matched))]}
    acc = paired_control_comparison(result["dopamine"].rewards, {k: [result[n].rewards for n in names]
                                    for k, names in by_kind.items() if names}, expected_sign=-1, n_boot=s.n_boot, seed=s.seed)
    trace = paired_control_comparison(per_rollout["dopamine"], {k: [per_rollout[n] for n in names]
                                      for k, names in by_kind.items() if names}, expected_sign=1, n_boot=s.n_boot, seed=s.seed)
    summary["paired"] = {"accuracy": {k: v.to_dict() for k, v in acc.items()},
                         "td_mean_abs_change": {k: v.to_dict() for k, v in trace.items()}}
    summary["verdicts"] = {**{CLAIM_ACCURACY.format(kind=k.replace("_", "-")): v.verdict for k, v in acc.items()},
                           **{CLAIM_TRACE.format(kind=k.replace("_", "-")): v.verdict for k, v in trace.items()}}
    for k in by_kind:
        if k in acc or k in trace:
            a, t = acc.get(k), trace.get(k)
            rows.append([f"dopamine − {k.replace('_', '-')} (paired: 95% CI; verdict)",
                         f"{a.difference} {a.verdict}" if a else None, f"{t.difference} {t.verdict}" if t else None,
                         None, None])
    return rows
