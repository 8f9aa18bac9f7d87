"""Evidence for a claim, and the one function that turns a run's evidence into verdicts.

:func:`verdict` is the verdict semantics of the whole package:

* **signed**: each :class:`Evidence` carries the p-value of the claim's own direction (never of
  ``|r|`` where a sign is claimed) and that of the opposite direction;
* **multiplicity**: Holm's step-down adjustment within each claim family (one per paper) of one
  run, on both directions; raw and adjusted p are kept, the verdict reads the adjusted one;
  premises are judged first (serial gatekeeping: a claim's stage is its depth in the premise
  graph, Holm runs within family and stage, and a claim is tested only if its premises held);
* **verdicts**: "reproduces" (adjusted p ≤ α in the claim's direction), "does not reproduce"
  (adjusted p ≤ α in the opposite direction, or an interval that excludes the paper's own effect),
  "premise not met" (the evidence says so, or a premise claim of the same run failed: a
  "reproduces" premise that did not reproduce, a "not contradicted" one that did not hold), else
  "inconclusive";
* **power**: every result states the minimum effect this ``n`` detects with 80% power at its
  family's Bonferroni level (the first, strictest Holm step: a conservative MDE), and an
  inconclusive one the ``n`` that would detect the paper's effect (``se ∝ 1/√n``).

α is one-sided 0.025 per direction (the two-sided 95% convention of every interval here); a
two-sided claim's p is halved onto that scale.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Iterable, Literal, Sequence

import numpy as np
from scipy import stats

from ...io import nan_to_none
from ..resampling import SignedTest
from ..stats import Interval
from ..stats import verdict as interval_verdict
from .registry import REGISTRY, Claim

ALPHA = 0.025  # one-sided, per direction
POWER = 0.80
ClaimVerdict = Literal["reproduces", "does not reproduce", "inconclusive", "premise not met"]
VERDICTS: tuple[str, ...] = ("reproduces", "does not reproduce", "inconclusive", "premise not met")


@dataclass(frozen=True)
class Evidence:
    """What one run measured for one claim (at one ``scope``: a layer, a task, a model).

    ``p``: the p-value of the claim's direction (one-sided; two-sided for a two-sided claim);
    ``p_opposite``: of the opposite direction (None: judged from the interval); ``se``: the standard
    error power is computed from (None: from the interval); ``min_p``: the smallest p the method can
    give (a rank among k draws: 1/(k+1)); ``premise_met``: False when the study knows the premise
    failed (None: decided from the premise claims' own evidence in the same run)."""

    claim_id: str
    estimate: float
    interval: tuple[float, float]
    n: int
    unit: str
    p: float
    method: str
    notes: str = ""
    premise_met: bool | None = None
    p_opposite: float | None = None
    se: float | None = None
    df: float | None = None
    min_p: float = 0.0
    scope: str = ""

    def __post_init__(self):
        if self.claim_id not in REGISTRY:
            raise KeyError(f"unknown claim {self.claim_id!r}: declare it in reward_circuits/analysis/claims/registry.py "
                           f"(known: {sorted(REGISTRY)[:5]} …).")
        if not (math.isnan(self.p) or 0.0 <= self.p <= 1.0):
            raise ValueError(f"evidence for {self.claim_id}: p must lie in [0, 1], got {self.p}.")

    @classmethod
    def from_test(cls, claim_id: str, test: SignedTest, scope: str = "", premise_met: bool | None = None,
                  notes: str = "") -> "Evidence":
        """Evidence from a :class:`~reward_circuits.analysis.resampling.SignedTest` measured on the
        claim's estimand minus its ``null``: the claim's direction picks the p-values."""
        claim = REGISTRY[claim_id]
        opposite = {"greater": "less", "less": "greater"}.get(claim.direction)
        min_p = test.min_p
        return cls(claim_id, test.estimate, (test.low, test.high), test.n, test.unit, test.p(claim.direction),
                   test.method, " ".join(x for x in (test.notes, notes) if x), premise_met,
                   test.p(opposite) if opposite else None, test.se, test.df, min_p, scope)

    @classmethod
    def from_interval(cls, claim_id: str, estimate: float, interval: tuple[float, float], n: int, unit: str,
                      method: str, **extra) -> "Evidence":
        """Evidence from an estimate and a 95% interval when the study kept no replicates: the
        standard error is the interval's half-width over 1.96 (or the t quantile with ``df``), and
        the one-sided p-values are normal (t) tails against the claim's ``null`` -- or, with
        ``p_two_sided`` (a study's own two-sided p), half of it on the estimate's side. ``extra``:
        ``scope``, ``notes``, ``premise_met``, ``df``, ``p_two_sided``."""
        claim = REGISTRY[claim_id]
        df, p2 = extra.pop("df", None), extra.pop("p_two_sided", None)
        ref = stats.t(df) if df else stats.norm()
        lo, hi = interval
        se = (hi - lo) / (2 * ref.ppf(0.975)) if math.isfinite(hi - lo) else math.nan
        if p2 is not None and math.isfinite(p2):
            above = estimate > claim.null
            p_g, p_l = (p2 / 2, 1 - p2 / 2) if above else (1 - p2 / 2, p2 / 2)
        elif se > 0:
            z = (estimate - claim.null) / se
            p_g, p_l = float(ref.sf(z)), float(ref.cdf(z))
        else:
            p_g = p_l = math.nan
        test = SignedTest(float(estimate), float(lo), float(hi), int(n), unit, p_g, p_l, method,
                          se if math.isfinite(se) else None, df)
        return cls.from_test(claim_id, test, **extra)


@dataclass(frozen=True)
class ClaimResult:
    """The verdict on one piece of evidence, with its raw and Holm-adjusted p and its power."""

    id: str
    scope: str
    estimate: float
    interval: tuple[float, float]
    n: int
    unit: str
    p: float
    p_adjusted: float
    verdict: ClaimVerdict
    mde: float | None  # minimum detectable effect at 80% power (on the estimand's scale, from the null)
    n_for_paper_effect: int | None  # inconclusive only, where the paper gives an effect
    method: str
    notes: str = ""
    family: str = ""

    def to_dict(self) -> dict:
        d = asdict(self)
        d["interval"] = list(self.interval)
        d["minimum_detectable_effect"] = d.pop("mde")
        return nan_to_none(d)


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (NaN stays NaN and does not count towards m)."""
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = ok.size
    order = ok[np.argsort(p[ok], kind="stable")]
    out[order] = np.minimum(1.0, np.maximum.accumulate(p[order] * (m - np.arange(m))))
    return out


def standard_error(ev: Evidence, level: float = 0.95) -> float:
    """The evidence's ``se``, or its interval's half-width over the normal (or t) quantile."""
    if ev.se is not None and math.isfinite(ev.se):
        return float(ev.se)
    ref = stats.t(ev.df) if ev.df else stats.norm()
    lo, hi = ev.interval
    return float((hi - lo) / (2 * ref.ppf(0.5 + level / 2))) if math.isfinite(hi - lo) else math.nan


def minimum_detectable_effect(se: float, alpha: float = ALPHA, power: float = POWER, df: float | None = None) -> float:
    """The effect a one-sided test at ``alpha`` detects with probability ``power`` given its
    standard error: ``(q(1 − alpha) + q(power)) · se`` (normal, or t with ``df``)."""
    ref = stats.t(df) if df else stats.norm()
    return float((ref.ppf(1 - alpha) + ref.ppf(power)) * se)


def n_for_effect(n: int, mde: float, effect: float) -> int | None:
    """The ``n`` at which the MDE shrinks to ``|effect|`` (``se ∝ 1/√n``)."""
    if not (math.isfinite(mde) and effect and n):
        return None
    return int(math.ceil(n * (mde / abs(effect)) ** 2))


# ---------------------------------------------------------------------------------------------
# the verdict
# ---------------------------------------------------------------------------------------------
@dataclass
class _Judged:
    verdict: str
    p_adjusted: float
    note: str = ""


def _one_sided_scale(ev: Evidence, claim: Claim) -> float:
    return ev.p / 2 if claim.direction == "two-sided" else ev.p


def _opposite_by_interval(ev: Evidence, claim: Claim) -> bool:
    """The interval lies wholly on the other side of the null: the package's interval verdict
    (:func:`~reward_circuits.analysis.stats.verdict`) says "does not reproduce"."""
    if claim.direction == "two-sided" or not all(map(math.isfinite, ev.interval)):
        return False
    iv = Interval(ev.estimate, ev.interval[0], ev.interval[1], ev.n)
    return interval_verdict(iv, 1 if claim.direction == "greater" else -1, claim.null) == "does not reproduce"


def _excludes_paper_effect(ev: Evidence, claim: Claim) -> bool:
    """The interval excludes the paper's own effect (not for a rank test: its range is the draws' spread)."""
    if claim.paper_effect is None or claim.direction == "two-sided" or ev.method.startswith("rank among"):
        return False
    target, (lo, hi) = claim.null + claim.paper_effect, ev.interval
    return hi < target if claim.direction == "greater" else lo > target


def _testable(ev: Evidence, alpha: float) -> bool:
    """A test that can reach α at all (a rank among 5 draws cannot: p ≥ 1/6). The others leave the
    Holm set, as in Tarone's procedure for discrete tests: they can never be rejected, so counting
    them would only cost the family's other claims power."""
    return math.isfinite(ev.p) and ev.min_p <= alpha


def _judge_family(items: list[tuple[int, Evidence, Claim]], alpha: float) -> dict[int, _Judged]:
    """Holm within one family, on the claim's direction and on the opposite one."""
    out = {i: _Judged("inconclusive", math.nan, "left out of the Holm set: its smallest attainable p exceeds α.")
           for i, ev, _ in items if math.isfinite(ev.p) and not _testable(ev, alpha)}
    items = [x for x in items if x[0] not in out]
    adj = holm([_one_sided_scale(ev, c) for _, ev, c in items])
    adj_opp = holm([np.nan if ev.p_opposite is None else ev.p_opposite for _, ev, _ in items])
    for (i, ev, claim), pa, po in zip(items, adj, adj_opp):
        if pa <= alpha:
            out[i] = _Judged("reproduces", float(pa))
        elif po <= alpha or (ev.p_opposite is None and _opposite_by_interval(ev, claim)):
            out[i] = _Judged("does not reproduce", float(pa), "significantly opposite to the paper's direction.")
        elif _excludes_paper_effect(ev, claim):
            out[i] = _Judged("does not reproduce", float(pa),
                             f"the interval excludes the paper's effect ({claim.null + claim.paper_effect:+.3g}).")
        else:
            out[i] = _Judged("inconclusive", float(pa))
    return out


def stage(claim_id: str) -> int:
    """A claim's depth in the premise graph: 0 without a premise, else one more than its deepest premise."""
    premises = REGISTRY[claim_id].premise
    return 1 + max(stage(p) for p in premises) if premises else 0


def _judge(evidence: list[Evidence], alpha: float) -> tuple[dict[int, _Judged], dict[int, int]]:
    """Serial gatekeeping: stage by stage (:func:`stage`), evidence whose premise failed in an
    earlier stage is "premise not met"; the rest is judged by Holm within its (family, stage).
    Returns the judgements and, per evidence, the size of the Holm set it was judged in."""
    judged: dict[int, _Judged] = {}
    sizes: dict[int, int] = {}
    stages = {i: stage(ev.claim_id) for i, ev in enumerate(evidence)}
    for s in sorted(set(stages.values())):
        families: dict[str, list] = {}
        for i, ev in enumerate(evidence):
            if stages[i] != s:
                continue
            if ev.premise_met is False or (ev.premise_met is None and not _premises_met(ev, evidence, judged)):
                judged[i] = _Judged("premise not met", math.nan)
                continue
            claim = REGISTRY[ev.claim_id]
            families.setdefault(claim.family, []).append((i, ev, claim))
        for items in families.values():
            judged.update(_judge_family(items, alpha))
            for i, ev, _ in items:
                if ev.premise_met is None and (missing := _unmeasured_premises(ev, evidence)):
                    judged[i].note = (judged[i].note + f" premise not measured here: {', '.join(missing)}.").strip()
            sizes.update({i: sum(_testable(e, alpha) for _, e, _ in items) for i, _, _ in items})
    return judged, sizes


def _premise_evidence(ev: Evidence, premise: str, evidence: list[Evidence]) -> list[int]:
    """Indices of the premise's evidence at ``ev``'s scope (``"layer 29"`` covers
    ``"layer 29, uniform"``), else run-wide (no scope); none when it was measured only elsewhere."""
    found = [i for i, e in enumerate(evidence) if e.claim_id == premise]
    same = [i for i in found if evidence[i].scope and (ev.scope == evidence[i].scope
                                                       or ev.scope.startswith(evidence[i].scope + ","))]
    return same or [i for i in found if not evidence[i].scope]


def _unmeasured_premises(ev: Evidence, evidence: list[Evidence]) -> list[str]:
    return [p for p in REGISTRY[ev.claim_id].premise if not _premise_evidence(ev, p, evidence)]


def _premises_met(ev: Evidence, evidence: list[Evidence], judged: dict[int, _Judged]) -> bool:
    """Every premise that has evidence at this scope held (an unmeasured premise does not block)."""
    for premise in REGISTRY[ev.claim_id].premise:
        need = REGISTRY[premise].as_premise
        for i in _premise_evidence(ev, premise, evidence):
            v = judged[i].verdict
            if (need == "reproduces" and v != "reproduces") or v in ("does not reproduce", "premise not met"):
                return False
    return True


def _power(ev: Evidence, m: int, alpha: float, power: float) -> tuple[float | None, str]:
    """The MDE at the family's Bonferroni level (``alpha / m``), and a note when the method cannot reach it."""
    level = alpha / max(m, 1)
    if ev.min_p > level:
        need = math.ceil(1 / level - 1)
        return math.inf, f"this method's smallest p ({ev.min_p:.3g}) exceeds α/m = {level:.3g}: it needs ≥ {need} draws."
    se = standard_error(ev)
    return (minimum_detectable_effect(se, level, power, ev.df) if math.isfinite(se) else None), ""


def verdict(evidence_list: Iterable[Evidence], alpha: float = ALPHA, power: float = POWER) -> list[ClaimResult]:
    """One :class:`ClaimResult` per :class:`Evidence` of one run, in the same order (see the module
    docstring for the semantics). Premises are judged first (serial gatekeeping, :func:`_judge`):
    evidence whose premise failed is "premise not met" and leaves its family's Holm set."""
    evidence = list(evidence_list)
    judged, sizes = _judge(evidence, alpha)
    results = []
    for i, ev in enumerate(evidence):
        claim, j = REGISTRY[ev.claim_id], judged[i]
        mde, power_note = _power(ev, sizes.get(i, 1), alpha, power)
        n_needed = (n_for_effect(ev.n, mde, claim.paper_effect) if j.verdict == "inconclusive"
                    and claim.paper_effect is not None and mde is not None else None)
        notes = " ".join(x for x in (ev.notes, j.note, power_note if j.verdict == "inconclusive" else "") if x)
        results.append(ClaimResult(ev.claim_id, ev.scope, ev.estimate, ev.interval, ev.n, ev.unit, ev.p, j.p_adjusted,
                                   j.verdict, mde, n_needed, ev.method, notes, claim.family))
    return results
