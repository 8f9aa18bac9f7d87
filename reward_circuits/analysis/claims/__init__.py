"""The claim registry: every claim of the four papers and ours declared once, the evidence a run
measures for them, and the one verdict function.

- :mod:`.registry`: :class:`Claim` and :data:`REGISTRY` (id → claim).
- :mod:`.verdicts`: :class:`Evidence`, :class:`ClaimResult`, :func:`verdict` (signed, Holm within
  each family, premises first, power), :func:`holm`, :func:`minimum_detectable_effect`.
- :mod:`.render`: :func:`claims_summary` (``summary.json``'s ``claims``) and :func:`claims_section`.
- :mod:`.from_summary`: :func:`evidence_from_summary`, the Sparse Reward evidence in a main-job
  ``summary.json`` (what the main job's report opens with; committed summaries re-judged alike).

The estimators that produce the evidence live in :mod:`reward_circuits.analysis.resampling`.

>>> from reward_circuits.analysis.resampling import rank_vs_draws
>>> ev = Evidence.from_test("srs.ablation_vs_random", rank_vs_draws(0.42, [0.47, 0.5, 0.45, 0.49, 0.51]), scope="layer 29")
>>> [r.verdict for r in verdict([ev])]   # p = 1/6 at best with 5 draws
['inconclusive']
"""

from .from_summary import evidence_from_summary
from .registry import FAMILIES, NOT_QUOTED, REGISTRY, Claim
from .render import CLAIMS_KEY, claim_row, claims_section, claims_summary, open_with_claims
from .verdicts import (ALPHA, POWER, VERDICTS, ClaimResult, Evidence, holm, minimum_detectable_effect, n_for_effect,
                       standard_error, verdict)

__all__ = ["Claim", "REGISTRY", "FAMILIES", "NOT_QUOTED", "Evidence", "ClaimResult", "verdict", "holm",
           "minimum_detectable_effect", "n_for_effect", "standard_error", "claims_section", "claims_summary",
           "claim_row", "open_with_claims", "CLAIMS_KEY", "ALPHA", "POWER", "VERDICTS", "evidence_from_summary"]
