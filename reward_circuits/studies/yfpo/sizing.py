"""How large the YFPO study must be to detect a 0.05 accuracy difference between DPO + neuron reward
and plain DPO: the one place ``reward-circuits yfpo --profile sized`` is sized.

The comparison is paired by training seed and held-out prompt, and seeds and prompts are resampled
together (:func:`~reward_circuits.analysis.resampling.seeds_by_units_test`, t reference with
``S − 1`` df). Its planned standard error over ``S`` seeds and ``P`` prompts is

    se² = seed_variance / S + cell_variance / (S · P)

(``seed_variance``: the variance of one seed's mean difference that more prompts do not remove;
``cell_variance``: of one (seed, prompt) difference). The minimum detectable effect at 80% power and
the YFPO family's Bonferroni level (α/m, the verdicts' own MDE) comes from the claims package
(:func:`~reward_circuits.analysis.claims.minimum_detectable_effect`). The sized profile takes the
fewest seeds (at least 5) for which some ``P`` reaches the target, and the fewest prompts for it.

Planning values, measured. The first plan took the committed 8-step run (``docs/results/2026-12-01/yfpo``,
value − DPO, 3 seeds × 48 prompts: cell variance 0.021, seed-mean variance 1.4e-4) and doubled both
(0.05, 3e-4). The sized run it planned (``docs/results/2026-12-07/yfpo-sized``: 5 seeds × 228 prompts,
20 steps) reached MDEs of 0.07-0.12, not 0.05: at 20 steps the conditions' answers part far more. Its
cell variances were 0.176 (value − DPO), 0.099 (AttnLRP − DPO) and 0.152 (value − random), its seed
components at most 6e-4. The plan now takes the largest of them (0.18, 6e-4).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from ...analysis.claims import ALPHA, POWER, REGISTRY, minimum_detectable_effect

MAX_SEEDS = 30


@dataclass(frozen=True)
class YFPOTargets:
    accuracy_difference: float = 0.05
    min_seeds: int = 5
    cell_variance: float = 0.18
    seed_variance: float = 6e-4
    max_prompts: int = 2000  # held-out prompts the task can give besides the training ones (arithmetic:1: 2,480)
    power: float = POWER
    alpha: float = ALPHA

    def __post_init__(self):
        if not (0 < self.accuracy_difference < 1 and self.min_seeds >= 2 and self.cell_variance > 0
                and self.seed_variance >= 0 and self.max_prompts >= 2):
            raise ValueError(f"YFPOTargets out of range: {self}; a difference in (0, 1), >= 2 seeds, positive variances.")


def family_size(conditions: tuple[str, ...] = ("dpo", "value", "attnlrp", "random")) -> int:
    """m of the YFPO family in one run: "beats DPO" per neuron condition trained beside DPO, and
    "value neurons beat random" when both run (as :func:`~reward_circuits.analysis.claims.study_evidence.yfpo_evidence` writes them)."""
    assert {c.id for c in REGISTRY.values() if c.family == "yfpo"} == {"yfpo.beats_dpo", "yfpo.value_neurons_beat_random"}
    beats = sum(c in conditions for c in ("value", "attnlrp")) if "dpo" in conditions else 0
    return max(1, beats + int("value" in conditions and "random" in conditions))


def planned_se(seeds: int, prompts: int, t: YFPOTargets) -> float:
    return math.sqrt(t.seed_variance / seeds + t.cell_variance / (seeds * prompts))


def yfpo_mde(seeds: int, prompts: int, m: int, t: YFPOTargets = YFPOTargets()) -> float:
    """The accuracy difference ``seeds`` × ``prompts`` detect at 80% power and α/m (t with seeds − 1 df)."""
    if seeds < 2:
        return math.inf  # one seed: the seed variance cannot be estimated (the test says so)
    return minimum_detectable_effect(planned_se(seeds, prompts, t), t.alpha / m, t.power, df=seeds - 1)


def prompts_for(seeds: int, m: int, t: YFPOTargets) -> int | None:
    """The fewest prompts whose MDE at ``seeds`` seeds is at most the target (None: none can)."""
    per_se = minimum_detectable_effect(1.0, t.alpha / m, t.power, df=seeds - 1)
    budget = (t.accuracy_difference / per_se) ** 2 - t.seed_variance / seeds
    if budget <= 0:
        return None
    p = math.ceil(t.cell_variance / (seeds * budget))
    return p if p <= t.max_prompts else None


@dataclass(frozen=True)
class YFPOSizing:
    seeds: int
    eval_prompts: int
    family_size: int
    mde: float
    targets: YFPOTargets

    def to_dict(self) -> dict:
        return asdict(self)


def yfpo_sizing(t: YFPOTargets = YFPOTargets(), conditions: tuple[str, ...] = ("dpo", "value", "attnlrp", "random")) -> YFPOSizing:
    """The fewest seeds (>= ``t.min_seeds``) with a feasible number of held-out prompts, and that number."""
    m = family_size(conditions)
    for s in range(t.min_seeds, MAX_SEEDS + 1):
        p = prompts_for(s, m, t)
        if p is not None:
            return YFPOSizing(s, p, m, yfpo_mde(s, p, m, t), t)
    raise ValueError(f"no design up to {MAX_SEEDS} seeds and {t.max_prompts} prompts detects {t.accuracy_difference}: "
                     "relax the target or lower the planning variances.")


def sizing_lines(seeds: int, prompts: int, conditions: tuple[str, ...], t: YFPOTargets = YFPOTargets()) -> list[str]:
    """What a configured YFPO run detects, as it prints it before it starts."""
    m = family_size(conditions)
    mde = yfpo_mde(seeds, prompts, m, t)
    said = (f"detects an accuracy difference of {mde:.3f}" if mde <= 1 else
            f"detects no accuracy difference (MDE {'∞' if math.isinf(mde) else f'{mde:.2f}'} > 1)")
    verdict = "enough" if mde <= t.accuracy_difference else "too small"
    return [f"[yfpo sizing] {seeds} seeds × {prompts} held-out prompts (Holm family of {m}; seed variance in the interval): "
            f"{said} at 80% power; {verdict} for the {t.accuracy_difference} difference vs plain DPO "
            f"(planned cell variance {t.cell_variance}, seed variance {t.seed_variance})"]
