"""Claim results as ``summary.json``'s ``claims`` list and as the section a report opens with."""

from __future__ import annotations

import math
from collections import Counter
from typing import Sequence

from ...report import Section, Table
from .registry import REGISTRY
from .verdicts import ClaimResult

CLAIMS_KEY = "claims"
TABLE_COLUMNS = ["paper", "claim", "scope", "paper figure", "estimate [95% CI]", "n", "p", "Holm p", "verdict",
                 "min. detectable effect", "n for paper's effect"]


def claims_summary(results: Sequence[ClaimResult]) -> list[dict]:
    """``summary.json``'s ``claims`` list: one dict per result (id, scope, estimate, interval, n, p,
    adjusted p, verdict, minimum detectable effect, …), JSON-safe (NaN/inf → None)."""
    return [r.to_dict() for r in results]


def _fmt(x: float | None, spec: str = ".3g") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, float) and math.isinf(x):
        return "∞"
    return format(x, spec)


def claim_row(r: ClaimResult) -> list:
    """One table row of a result: paper · claim · scope · paper figure · estimate [CI] · n · p · Holm p · verdict · MDE · n."""
    c = REGISTRY[r.id]
    lo, hi = r.interval
    return [c.paper.split(" (")[0], c.statement, r.scope, c.paper_figure,
            f"{_fmt(r.estimate)} [{_fmt(lo)}, {_fmt(hi)}]", f"{r.n} {r.unit}", _fmt(r.p), _fmt(r.p_adjusted),
            r.verdict, _fmt(r.mde), _fmt(r.n_for_paper_effect, "d") if r.n_for_paper_effect else "–"]


def claims_section(results: Sequence[ClaimResult], key: str = CLAIMS_KEY) -> Section:
    """The section a report opens with (``report.add(section, first=True)``): every claim the run
    measured, its verdict and power; its summary is ``summary.json``'s ``claims`` list."""
    counts = Counter(r.verdict for r in results)
    line = ", ".join(f"{counts[v]} {v}" for v in ("reproduces", "does not reproduce", "inconclusive", "premise not met")
                     if counts[v])
    notes = [f"{len(results)} claim tests: {line or 'none'}. p is one-sided in the paper's direction; Holm within each "
             "paper's family of this run; the verdict reads the adjusted p (α = 0.025 per direction). The minimum "
             "detectable effect is at 80% power and the family's Bonferroni level."]
    # each claim's method and caveats sit in its own row (a reader meets the table first, not 20 notes)
    rows = [claim_row(r) + [f"{r.method}. {r.notes}".strip()] for r in results]
    table = Table("Claims and verdicts", list(TABLE_COLUMNS) + ["method and notes"], rows)
    return Section(key, "Claims", claims_summary(results), [table], [], notes)


def open_with_claims(report) -> Section:
    """Judge every claim ``report``'s summary holds evidence for and put the claims section first
    (``report``: a :class:`~reward_circuits.report.Report`; its summary is what the run wrote so far)."""
    from .from_summary import evidence_from_summary  # below render in the package, imported on use
    from .verdicts import verdict

    section = claims_section(verdict(evidence_from_summary(report.summary)))
    report.add(section, first=True)
    return section
