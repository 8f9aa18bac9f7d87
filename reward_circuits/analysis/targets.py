"""TD(0), TD(λ) and Monte-Carlo value targets compared per layer, on the same split, with intervals.

The paper trains its value probes by TD learning; its appendix compares them with a probe whose
every state is regressed on the final reward (Monte-Carlo), and at small scale the Monte-Carlo
target has been reported to beat TD. :func:`compare_targets` trains one stacked
:class:`~reward_circuits.analysis.probes.ValueProbe` per target variant (same config otherwise,
same training rollouts), scores ``V(s_0)`` on the same held-out rollouts, and reports per hook the
AUC of each variant with a stratified bootstrap interval and the paired AUC difference of every
variant against the reference (TD(0) by default) with its interval, p-value and verdict on
"the reference target beats this one".

On a one-step episode (``s_0`` is the last state) all targets coincide: ``G_0 = r``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from ..options import options_of
from ..report import Section, Table
from .probes import ValueProbe, ValueProbeConfig, resolve_indices
from .stats import (
    Interval,
    Verdict,
    bootstrap_auc_ci,
    paired_bootstrap_auc_diff,
    verdict,
)

TARGET_VARIANTS: dict[str, dict] = {
    "td0": {"mode": "td", "td_lambda": 0.0},
    "td_lambda": {"mode": "td", "td_lambda": 0.9},
    "monte_carlo": {"mode": "final_reward"},
}


@dataclass
class TargetDifference:
    """``AUC(reference) − AUC(variant)`` on the same test rollouts (paired bootstrap)."""

    difference: Interval
    p_value: float
    verdict: Verdict  # on "the reference target gives a higher AUC than this variant"

    def to_dict(self) -> dict:
        return {"difference": self.difference.to_dict(), "p_value": self.p_value, "verdict": self.verdict}


@dataclass
class TargetComparison:
    """Held-out AUC of ``V(s_0)`` per target variant and hook, and paired differences to the reference."""

    hooks: list[str]
    variants: dict[str, dict]
    reference: str
    auc: dict[str, dict[str, Interval]]  # variant -> hook -> AUC interval
    vs_reference: dict[str, dict[str, TargetDifference]]  # other variant -> hook -> difference
    n_test: int
    probes: dict[str, ValueProbe] = field(default_factory=dict, repr=False)  # variant -> fitted probe (not saved)

    def to_dict(self) -> dict:
        return {"hooks": self.hooks, "variants": self.variants, "reference": self.reference, "n_test": self.n_test,
                "auc": {v: {h: i.to_dict() for h, i in per.items()} for v, per in self.auc.items()},
                "vs_reference": {v: {h: d.to_dict() for h, d in per.items()} for v, per in self.vs_reference.items()}}

    def table_columns(self) -> list[str]:
        others = [v for v in self.variants if v != self.reference]
        return (["hook"] + [f"AUC {v}" for v in self.variants] + [f"{self.reference} − {v}" for v in others]
                + [f"verdict: {self.reference} > {v}" for v in others])

    def section(self, key: str = "target_variants") -> Section:
        """This comparison as a report :class:`~reward_circuits.report.Section`."""
        table = Table(f"Value targets on the same split (n={self.n_test} test rollouts, 95% bootstrap CIs, paired "
                      "differences)", self.table_columns(), self.table_rows())
        return Section(key, "TD(0) vs TD(λ) vs Monte-Carlo value targets", self.to_dict(), [table], [],
                       [f"variants: {self.variants}; same probe config otherwise, same training rollouts."])

    def table_rows(self) -> list[list]:
        """One row per hook: each variant's AUC interval, the paired differences and verdicts."""
        others = [v for v in self.variants if v != self.reference]
        rows = []
        for h in self.hooks:
            row = [h] + [str(self.auc[v][h]) for v in self.variants]
            row += [f"{d.difference.estimate:+.3f} [{d.difference.low:+.3f}, {d.difference.high:+.3f}] p={d.p_value:.3f}"
                    for d in (self.vs_reference[v][h] for v in others)]
            row += [self.vs_reference[v][h].verdict for v in others]
            rows.append(row)
        return rows


@dataclass(kw_only=True)
class TargetComparisonOptions:
    """Settings of :func:`compare_targets` after ``reference``, passed as its keywords (or one ``options=``)."""

    n_boot: int = 2000
    seed: int = 0
    validation_indices: Sequence[int] | None = None
    fitted: Mapping[str, ValueProbe] | None = None
    verbose: bool = False
    groups: Sequence | None = None


def compare_targets(
    store,
    hooks: Sequence[str] | str,
    train_indices: Sequence[int],
    test_indices: Sequence[int],
    cfg: ValueProbeConfig | None = None,
    variants: Mapping[str, dict] | None = None,
    reference: str = "td0",
    **options,
) -> TargetComparison:
    """Train one probe per target variant (``cfg`` with the variant's fields replaced) on the same
    rollouts and compare their held-out AUCs per hook, each against ``reference``.

    ``validation_indices`` go to every probe's early stopping (:meth:`ValueProbe.fit`); ``fitted``
    reuses already trained probes (``{variant: probe}``, they must hold every hook). ``groups``: one
    key per rollout of the store (e.g. its prompt); intervals then resample whole groups.

    ``options``: the fields of :class:`TargetComparisonOptions` as keywords, or one ``options=``.
    """
    o = options_of(TargetComparisonOptions, (), options, where="compare_targets")
    n_boot, seed, validation_indices, fitted, verbose, groups = (
        o.n_boot, o.seed, o.validation_indices, o.fitted, o.verbose, o.groups)
    hooks = [hooks] if isinstance(hooks, str) else list(hooks)
    variants = {k: dict(v) for k, v in (variants or TARGET_VARIANTS).items()}
    if reference not in variants:
        raise ValueError(f"reference {reference!r} is not among the variants {sorted(variants)}.")
    cfg = cfg or ValueProbeConfig()
    test = resolve_indices(store, test_indices)
    labels = np.asarray(store.rewards)[test]
    keys = None if groups is None else list(groups)
    test_groups = None if keys is None else [keys[i] for i in test]
    values, probes = {}, {}
    for name, fields in variants.items():
        probe = (fitted or {}).get(name)
        if probe is None or not set(hooks) <= set(probe.hook_names):
            probe = ValueProbe(cfg.replace(**fields)).fit(store, hooks, train_indices, verbose=verbose,
                                                          validation_indices=validation_indices)
        probes[name] = probe
        values[name] = probe.initial_values(store, test, hooks)
    auc = {name: {h: bootstrap_auc_ci(labels, values[name][j], n_boot=n_boot, seed=seed, groups=test_groups) for j, h in enumerate(hooks)}
           for name in variants}
    vs_ref = {}
    for name in variants:
        if name == reference:
            continue
        vs_ref[name] = {}
        for j, h in enumerate(hooks):
            diff, p = paired_bootstrap_auc_diff(labels, values[reference][j], values[name][j], n_boot=n_boot, seed=seed,
                                                groups=test_groups)
            vs_ref[name][h] = TargetDifference(diff, p, verdict(diff, expected_sign=1))
    return TargetComparison(hooks, variants, reference, auc, vs_ref, int(test.size), probes)
