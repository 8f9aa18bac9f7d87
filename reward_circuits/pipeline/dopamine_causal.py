"""The dopamine stage's causal check: ablate the dopamine set, uniform and magnitude-matched random
sets of its size, all in one batched generation, and compare them paired on the same examples."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from jaxtyping import Float

from ..analysis.dopamine_controls import matched_draws, paired_control_comparison
from ..analysis.dopamine_metrics import td_trace_change
from ..analysis.controls import massive_activations
from ..neurons import NeuronSet
from ..report import Table

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


def run_dopamine_causal_check(
    adapter,
    probe,
    dopamine_set: NeuronSet,
    rollouts: Sequence[tuple[Sequence[int], Sequence[int]]],
    task,
    examples: Sequence,
    *,
    config=None,
    n_random_draws: int = 3,
    seed: int = 0,
    magnitudes: Float[np.ndarray, " d"] | None = None,
    massive_factor: float = 10.0,
    n_boot: int = 2000,
) -> tuple[dict, Table]:
    """Ablate the top dopamine neurons (zero) and compare with random sets of the same size.

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
    from ..interventions import sweep, zero_ablate
    from ..analysis.causal import traces_of_states
    from ..interventions.scoring import rollout_states

    hook, gamma = dopamine_set.hook_name, float(probe.cfg.gamma)
    pairs = [(list(p), list(r)) for p, r in rollouts]
    # the probe reads the ablated hook itself and the forward stops there, so a zero-ablation's
    # trace is the probe on the clean states with those dims zeroed: one forward serves every set
    # (equal to teacher-forcing under each ablation; tests/test_dopamine_causal.py checks it)
    states = rollout_states(adapter, hook, pairs)
    before = traces_of_states(probe, hook, states, gamma)

    def zeroed(dims: Sequence[int]) -> list:
        idx = torch.as_tensor(list(dims), dtype=torch.long)
        return [st.index_fill(1, idx, 0.0) for st in states]
    random_sets = [NeuronSet.random(hook, dopamine_set.d, len(dopamine_set), seed=seed + 1 + i,
                                    layer=dopamine_set.layer, exclude=dopamine_set.indices)
                   for i in range(n_random_draws)]
    matched_sets = ([NeuronSet(hook, dims, dopamine_set.d, kind="random_matched", layer=dopamine_set.layer,
                               provenance={"seed": seed, "draw": i})
                     for i, dims in enumerate(matched_draws(dopamine_set.indices, magnitudes, n_random_draws, seed,
                                                            factor=massive_factor))]
                    if magnitudes is not None else [])
    # every condition's accuracy from one batched generation (interventions.sweep)
    conditions = {"baseline": [], "dopamine": [(hook, zero_ablate(dopamine_set))]}
    conditions.update({f"random/{i}": [(hook, zero_ablate(ns))] for i, ns in enumerate(random_sets)})
    conditions.update({f"matched/{i}": [(hook, zero_ablate(ns))] for i, ns in enumerate(matched_sets)})
    result = sweep(adapter, task, conditions, config, examples=list(examples))
    accuracy = result.accuracies()
    baseline_acc = accuracy["baseline"]
    per_rollout: dict[str, np.ndarray] = {}

    def measure(name: str, ns: NeuronSet) -> dict:
        after = traces_of_states(probe, hook, zeroed(ns.indices), gamma)
        change = td_trace_change(before, after)
        per_rollout[name] = _per_rollout_abs_change(before, after)
        return {"accuracy": accuracy[name], "td_mean_abs_change": change["mean_abs_change"],
                "td_change_at_positive_events": change["positive_event"]["change"],
                "td_change_at_negative_events": change["negative_event"]["change"]}

    dop = measure("dopamine", dopamine_set)
    rand = [measure(f"random/{i}", ns) for i, ns in enumerate(random_sets)]
    matched = [measure(f"matched/{i}", ns) for i, ns in enumerate(matched_sets)]

    def stats(runs: list[dict], key: str) -> tuple[float | None, float | None]:
        vals = [r[key] for r in runs if r[key] is not None]
        return (float(np.mean(vals)), float(np.std(vals))) if vals else (None, None)

    summary = {"hook": hook, "n_neurons": len(dopamine_set), "n_rollouts": len(pairs), "n_examples": len(examples),
               "baseline_acc": baseline_acc, "dopamine": dop, "random": rand,
               "random_mean": {k: stats(rand, k)[0] for k in dop}, "random_std": {k: stats(rand, k)[1] for k in dop}}
    rows = [["none (baseline)", baseline_acc, None, None, None]]
    rows.append(["top dopamine neurons", dop["accuracy"], dop["td_mean_abs_change"],
                 dop["td_change_at_positive_events"], dop["td_change_at_negative_events"]])
    keys = ("accuracy", "td_mean_abs_change", "td_change_at_positive_events", "td_change_at_negative_events")
    rows.append([f"random (mean of {n_random_draws})"] + [stats(rand, k)[0] for k in keys])
    if magnitudes is None:
        summary["matched_reason"] = "no per-dim magnitudes of the hook were given"
    else:
        massive = massive_activations(np.asarray(magnitudes, dtype=np.float64), hook, massive_factor)
        summary.update(matched=matched, matched_sets=[ns.indices for ns in matched_sets],
                       matched_mean={k: stats(matched, k)[0] for k in dop}, matched_std={k: stats(matched, k)[1] for k in dop},
                       massive_in_dopamine_set=massive.contained_in(dopamine_set.indices), massive_dims=massive.dims)
        rows.append([f"magnitude-matched random (mean of {len(matched_sets)})"] + [stats(matched, k)[0] for k in keys])
        by_kind = {"uniform": [f"random/{i}" for i in range(len(random_sets))],
                   "magnitude_matched": [f"matched/{i}" for i in range(len(matched_sets))]}
        acc = paired_control_comparison(result["dopamine"].rewards, {k: [result[n].rewards for n in names]
                                        for k, names in by_kind.items() if names}, expected_sign=-1, n_boot=n_boot, seed=seed)
        trace = paired_control_comparison(per_rollout["dopamine"], {k: [per_rollout[n] for n in names]
                                          for k, names in by_kind.items() if names}, expected_sign=1, n_boot=n_boot, seed=seed)
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
    table = Table(f"Causal check: zero-ablating {len(dopamine_set)} dims of {hook}",
                  ["ablated", "accuracy", "mean |Δδ|", "Δδ at positive events", "Δδ at negative events"], rows)
    return summary, table
