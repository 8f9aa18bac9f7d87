"""One value probe pooled over tasks, with the held-out AUC reported per task.

A probe trained on one task's rollouts answers "does this layer hold *that* task's value"; the
paper's claim is a value signal shared across tasks. :func:`pooled_value_probe` trains one stacked
:class:`~reward_circuits.analysis.probes.ValueProbe` (all hooks, the caller's config) on the union
of the tasks' training splits (a :class:`~reward_circuits.data.views.ConcatStore`), stops early on
the union of their validation splits, and scores ``V(s_0)`` on every task's held-out test split
and on the pooled test split, each AUC with a bootstrap interval and its ``n`` (whole prompts
resampled when they repeat, so ``n`` counts prompts). Options: the logistic floor on the pooled
split, and the paired AUC difference pooled − single-task probe on the first task's test rollouts
(the same rollouts scored both ways).

Caveat printed with the results: when the tasks' accuracies differ, the pooled-test AUC also
credits telling the tasks apart (task identity predicts the base rate); the per-task AUCs do not.

>>> splits = {"arithmetic": task_split(store_a, 0.3, 0.2, seed=0), "word_problems": task_split(store_b, 0.3, 0.2, seed=0)}
>>> pooled = pooled_value_probe({"arithmetic": store_a, "word_problems": store_b}, splits, hooks, ValueProbeConfig())
>>> pooled.table()      # per layer: AUC on each task's test split and pooled (Interval: estimate [low, high] (n))
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..options import options_of
from ..data.protocol import Store
from ..data.views import ConcatStore
from ..report import Table
from .linear_probe import LogisticFloor, logistic_floors
from .probes import ValueProbe, ValueProbeConfig
from .splits import TaskSplit, task_split  # noqa: F401  (their home: splits; re-exported)
from .stats import Interval, Verdict, bootstrap_auc_ci, paired_bootstrap_auc_diff, verdict

POOLED = "pooled"


def shared_hooks(stores: Sequence[Store], hooks: Sequence[str]) -> list[str]:
    """The ``hooks`` every store holds with the width of the first store's."""
    first = stores[0]
    return [h for h in hooks if all(h in s.hook_names and int(s.d(h)) == int(first.d(h)) for s in stores)]


@dataclass
class PooledDifference:
    """``AUC(pooled probe) − AUC(single-task probe)`` on the first task's test rollouts (paired)."""

    difference: Interval
    p_value: float

    def to_dict(self) -> dict:
        return {"difference": self.difference.to_dict(), "p_value": self.p_value}


@dataclass
class PooledProbeResult:
    """Held-out AUC of one probe trained on several tasks, per task and pooled, per hook."""

    tasks: list[str]
    hooks: list[str]
    probe: ValueProbe
    auc: dict[str, dict[str, Interval | None]]  # task (or "pooled") -> hook -> AUC interval
    splits: dict[str, TaskSplit]
    verdicts: dict[str, dict[str, Verdict | None]]  # task -> hook -> verdict on "AUC > 0.5"
    floor: dict[str, LogisticFloor] = field(default_factory=dict)  # pooled split
    vs_single_task: dict[str, PooledDifference] = field(default_factory=dict)  # first task's test split
    undefined: dict[str, str] = field(default_factory=dict)  # task -> why its AUC is undefined

    def to_dict(self, key_of: Mapping[str, str] | None = None) -> dict:
        """JSON-ready; hooks keyed by ``key_of[hook]`` (e.g. the layer number) when given."""
        k = key_of or {h: h for h in self.hooks}
        return {
            "tasks": self.tasks,
            "auc": {t: {k[h]: (iv.to_dict() if iv else None) for h, iv in by.items()} for t, by in self.auc.items()},
            "verdicts": {t: {k[h]: v for h, v in by.items()} for t, by in self.verdicts.items()},
            "logistic_floor": {k[h]: f.to_dict() for h, f in self.floor.items()} or None,
            "vs_single_task": ({k[h]: d.to_dict() for h, d in self.vs_single_task.items()} or None),
            "vs_single_task_on": self.tasks[0] if self.vs_single_task else None,
            "splits": {t: s.counts() for t, s in self.splits.items()},
            "probe_training": {k[h]: {"weight_decay": self.probe.weight_decay_.get(h), "best_epoch": self.probe.best_epoch_.get(h),
                                      "validation_auc": self.probe.validation_auc_.get(h)} for h in self.hooks},
            "undefined": self.undefined or None,
        }

    def table(self, key_of: Mapping[str, str] | None = None) -> Table:
        """Per hook: AUC on each task's test split and on the pooled one, the floor, the paired difference."""
        k = key_of or {h: h for h in self.hooks}
        n = {t: (self.splits[t].test.size if t in self.splits else sum(s.test.size for s in self.splits.values()))
             for t in self.auc}
        cols = ["layer"] + [f"AUC on {t} test (n={n[t]})" for t in self.tasks] + [f"pooled test (n={n[POOLED]})"]
        cols += ["logistic floor, pooled"] if self.floor else []
        cols += [f"pooled − single-task probe on {self.tasks[0]}"] if self.vs_single_task else []
        rows = []
        for h in self.hooks:
            row = [k[h]] + [str(self.auc[t][h]) if self.auc[t].get(h) else "undefined" for t in self.tasks + [POOLED]]
            if self.floor:
                row.append(str(self.floor[h].auc))
            if self.vs_single_task:
                d = self.vs_single_task[h].difference
                row.append(f"{d.estimate:+.3f} [{d.low:+.3f}, {d.high:+.3f}] (p={self.vs_single_task[h].p_value:.3g})")
            rows.append(row)
        return Table(f"One probe pooled over {' + '.join(self.tasks)}: held-out AUC of V(s_0) per task (95% bootstrap CI)",
                     cols, rows)

    def notes(self) -> list[str]:
        s = {t: sp.counts() for t, sp in self.splits.items()}
        out = [f"Pooled probe: one probe per layer trained on the union of the tasks' training splits "
               f"({'; '.join(t + ': %(train)d train / %(val)d val / %(test)d test' % c for t, c in s.items())}), "
               "early-stopped on the union of their validation splits; every AUC is on held-out test rollouts of its task."]
        out.append("The pooled-test AUC also credits telling the tasks apart when their accuracies differ "
                   "(task identity predicts the base rate); the per-task AUCs do not.")
        for t, why in self.undefined.items():
            out.append(f"Per-task AUC on {t} undefined: {why}.")
        return out


def _auc_or_none(labels: np.ndarray, scores: np.ndarray, n_boot: int, seed: int, groups: list | None) -> Interval | None:
    return bootstrap_auc_ci(labels, scores, n_boot=n_boot, seed=seed, groups=groups) if np.unique(labels).size == 2 else None


@dataclass(kw_only=True)
class PooledProbeOptions:
    """Settings of :func:`pooled_value_probe`, passed as its keywords (or one ``options=``)."""

    n_boot: int = 2000
    seed: int = 0
    floor_Cs: Sequence[float] | None = None
    reference_scores: Mapping[str, np.ndarray] | None = None
    verbose: bool = False
    groups: Mapping[str, Sequence] | None = None


def pooled_value_probe(
    stores: Mapping[str, Store],
    splits: Mapping[str, TaskSplit],
    hooks: Sequence[str],
    cfg: ValueProbeConfig,
    **options,
) -> PooledProbeResult:
    """Train one probe per hook on all tasks' training splits; score it per task and pooled.

    Args:
        stores: task name → store (same model; only ``hooks`` shared by all are used).
        splits: task name → :class:`TaskSplit` (e.g. :func:`task_split`), indices into that store.
        cfg: the probe config (trained once, all hooks stacked; ``validation_fraction > 0`` early-stops
            on the union of the validation splits, else trains on the training splits only).
        floor_Cs: when given, the logistic floor on the pooled split with these ``C`` candidates.
        reference_scores: hook → the single-task probe's ``V(s_0)`` on the first task's test rollouts
            (``splits[first].test`` order), for the paired difference pooled − single-task.
        groups: task name → one key per rollout of that store (e.g. its prompt tokens): every interval
            and paired difference resamples a task's repeated prompts as one unit (``n`` counts prompts),
            and the pooled logistic floor keeps them in one cross-validation fold.

    ``options``: the fields of :class:`PooledProbeOptions` as keywords, or one ``options=``.
    """
    o = options_of(PooledProbeOptions, (), options, where="pooled_value_probe")
    n_boot, seed, floor_Cs, reference_scores, verbose, groups = (
        o.n_boot, o.seed, o.floor_Cs, o.reference_scores, o.verbose, o.groups)
    tasks = [str(t) for t in stores]
    if len(tasks) < 2:
        raise ValueError(f"a pooled probe needs at least two tasks' stores, got {tasks}.")
    if set(splits) != set(stores):
        raise ValueError(f"splits are given for {sorted(splits)} but the stores are {sorted(stores)}.")
    view = ConcatStore(dict(stores))
    hooks = shared_hooks(list(stores.values()), hooks)
    if not hooks:
        raise ValueError(f"the stores of {tasks} share none of the requested hooks (with one width).")

    def pooled(part: str) -> np.ndarray:
        return np.concatenate([view.global_indices(t, getattr(splits[t], part)) for t in tasks])

    fit, val, test = pooled("fit"), pooled("val"), pooled("test")
    probe = ValueProbe(cfg).fit(view, hooks, fit, validation_indices=val if cfg.validation_fraction and val.size else None,
                                verbose=verbose)
    rewards = view.rewards
    values = probe.initial_values(view, test, hooks)  # [hook, n_test], tasks in order
    task_of = np.concatenate([np.full(splits[t].test.size, t, dtype=object) for t in tasks])
    # (task, prompt) per test rollout: copies of one prompt are one unit of every bootstrap
    test_keys = [(t, groups[t][i]) for t in tasks for i in splits[t].test] if groups is not None else None

    def keys_of(sel: np.ndarray) -> list | None:
        return [k for k, s in zip(test_keys, sel) if s] if test_keys is not None else None

    auc: dict[str, dict[str, Interval | None]] = {}
    undefined: dict[str, str] = {}
    for t in tasks + [POOLED]:
        sel = np.ones(test.size, dtype=bool) if t == POOLED else task_of == t
        labels = rewards[test[sel]]
        if np.unique(labels).size < 2:
            undefined[t] = f"its {int(sel.sum())} test rollouts all have reward {labels[0] if labels.size else 'none'}"
        auc[t] = {h: _auc_or_none(labels, values[j][sel], n_boot, seed, keys_of(sel)) for j, h in enumerate(hooks)}
    verdicts = {t: {h: (verdict(iv, expected_sign=1, null=0.5) if iv else None) for h, iv in by.items()}
                for t, by in auc.items()}
    pooled_groups = [(t, k) for t in tasks for k in groups[t]] if groups is not None else None
    floor = (logistic_floors(view, hooks, np.concatenate([fit, val]), test, seed=seed, n_boot=n_boot, Cs=tuple(floor_Cs),
                             groups=pooled_groups)
             if floor_Cs is not None and np.unique(rewards[test]).size == 2 else {})
    vs_single: dict[str, PooledDifference] = {}
    first = tasks[0]
    if reference_scores is not None and first not in undefined:
        sel = task_of == first
        labels = rewards[test[sel]]
        for j, h in enumerate(hooks):
            ref = reference_scores.get(h)
            if ref is not None and len(ref) == sel.sum():
                diff, p = paired_bootstrap_auc_diff(labels, values[j][sel], np.asarray(ref), n_boot=n_boot, seed=seed,
                                                    groups=keys_of(sel))
                vs_single[h] = PooledDifference(diff, p if math.isfinite(p) else 1.0)
    return PooledProbeResult(tasks=tasks, hooks=hooks, probe=probe, auc=auc, splits=dict(splits), verdicts=verdicts,
                             floor=floor, vs_single_task=vs_single, undefined=undefined)
