"""How large the YFPO study must be to detect a 0.05 accuracy difference between DPO + neuron reward
and plain DPO: the one place ``reward-circuits yfpo --profile sized`` is sized.

The comparison is paired by training seed and held-out prompt, and seeds and prompts are resampled
together (:func:`~reward_circuits.analysis.resampling.seeds_by_units_test`, t reference with
``S − 1`` df). A (seed, prompt) difference is a seed effect, a prompt effect and a residual (a
crossed design: the same prompt is held out for every seed). The variance of the crossed bootstrap's
mean over ``S`` seeds and ``P`` prompts, which the verdicts use, is planned as

    se² ≈ seed_variance / S + prompt_variance / P + 3 · residual_variance / (S · P)

(Owen 2007, "The pigeonhole bootstrap": the crossed bootstrap counts the residual about three times,
so it is conservative by about ``2 · residual_variance / (S · P)``. With S seeds drawn with
replacement the exact factors are (1 − 1/S) on the seed term and about 3 − 2/S on the residual's, so
the plan overstates se² by up to ~10% at 8 seeds: it errs on the safe side. The plan sizes the interval the verdicts compute,
``tests/test_yfpo_sizing.py`` checks it against the bootstrap on planted components). ``prompt_variance``
is what more seeds cannot remove: a prompt on which the neuron margin hurts hurts in every seed. The
minimum detectable effect at 80% power and the YFPO family's Bonferroni level (α/m, the verdicts' own
MDE) comes from the claims package (:func:`~reward_circuits.analysis.claims.minimum_detectable_effect`).
The sized profile takes the
cheapest design (at least 5 seeds; for each seed count the fewest prompts that reach the target),
costed with one fine-tune's measured training time and seconds per held-out answer.

Planning values, measured (two-way ANOVA of each difference's (seed, prompt) grid; the largest of the
three differences value − DPO, AttnLRP − DPO, value − random):

| run | seeds × prompts | seed | prompt | residual | realised MDEs |
|---|---|---|---|---|---|
| ``docs/results/2026-12-07/yfpo-sized`` | 5 × 228 | 7.3e-4 | 0.027 | 0.149 | 0.07-0.12 |
| ``docs/results/2026-12-07/yfpo-sized-9`` (the same study, 4 more seeds) | 9 × 228 | 3.1e-4 | 0.027 | 0.134 | 0.05-0.07 |

The first plan (from the 8-step run, 3 seeds × 48 prompts) had no prompt term and planned a cell
variance of 0.05; the second (after the 5-seed run) 0.18 and 6e-4, still without the prompt term, and
planned 0.049 for 9 × 228, where the run realised 0.051-0.072. The plan now takes seed 8e-4, prompt
0.03, residual 0.15: 0.05 then needs, at least cost, 10 seeds × 819 held-out prompts (8 × 1,585 also
reaches it, ~10% dearer on SmolLM2), about 5.7 hours of one thread on SmolLM2 and several times that
on Gemma 3 270M, whose answers cost 1.34 s each (its base model's 228 took 306 s).
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
    residual_variance: float = 0.15  # residual of one (seed, prompt) difference
    seed_variance: float = 8e-4
    prompt_variance: float = 0.03
    # one fine-tune's cost on SmolLM2, one thread (docs/results/2026-12-07/yfpo-sized-9: ~370 s per run at 228
    # prompts, of which the base model's 228 answers took 59 s): training with its reference pass, and per answer
    train_seconds: float = 300.0
    eval_seconds_per_prompt: float = 0.26
    max_prompts: int = 2000  # held-out prompts the task can give besides the training ones (arithmetic:1: 2,480)
    power: float = POWER
    alpha: float = ALPHA

    def __post_init__(self):
        if not (0 < self.accuracy_difference < 1 and self.min_seeds >= 2 and self.residual_variance > 0
                and self.seed_variance >= 0 and self.prompt_variance >= 0 and self.max_prompts >= 2
                and self.train_seconds >= 0 and self.eval_seconds_per_prompt >= 0):
            raise ValueError(f"YFPOTargets out of range: {self}; a difference in (0, 1), >= 2 seeds, positive variances, costs >= 0.")


def family_size(conditions: tuple[str, ...] = ("dpo", "value", "attnlrp", "random")) -> int:
    """m of the YFPO family in one run: "beats DPO" per neuron condition trained beside DPO, and
    "value neurons beat random" when both run (as :func:`~reward_circuits.analysis.claims.study_evidence.yfpo_evidence` writes them)."""
    assert {c.id for c in REGISTRY.values() if c.family == "yfpo"} == {"yfpo.beats_dpo", "yfpo.value_neurons_beat_random"}
    beats = sum(c in conditions for c in ("value", "attnlrp")) if "dpo" in conditions else 0
    return max(1, beats + int("value" in conditions and "random" in conditions))


CROSSED_BOOTSTRAP_RESIDUAL = 3  # the crossed bootstrap's variance counts the residual three times (module docstring)


def planned_se(seeds: int, prompts: int, t: YFPOTargets) -> float:
    """The crossed bootstrap's standard error of the mean difference (module docstring)."""
    return math.sqrt(t.seed_variance / seeds + t.prompt_variance / prompts
                     + CROSSED_BOOTSTRAP_RESIDUAL * t.residual_variance / (seeds * prompts))


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
    p = math.ceil((t.prompt_variance + CROSSED_BOOTSTRAP_RESIDUAL * t.residual_variance / seeds) / budget)
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


def run_seconds(seeds: int, prompts: int, t: YFPOTargets) -> float:
    """Planned one-thread seconds of one condition's fine-tunes: each trains, then answers ``prompts``."""
    return seeds * (t.train_seconds + t.eval_seconds_per_prompt * prompts)


def yfpo_sizing(t: YFPOTargets = YFPOTargets(), conditions: tuple[str, ...] = ("dpo", "value", "attnlrp", "random")) -> YFPOSizing:
    """The cheapest design (:func:`run_seconds`) of at least ``t.min_seeds`` seeds that reaches the target:
    for each seed count, the fewest held-out prompts that do (:func:`prompts_for`)."""
    m = family_size(conditions)
    designs = [(s, p) for s in range(t.min_seeds, MAX_SEEDS + 1) if (p := prompts_for(s, m, t)) is not None]
    if designs:
        s, p = min(designs, key=lambda d: (run_seconds(*d, t), d[0]))
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
            f"(planned variances: seed {t.seed_variance}, prompt {t.prompt_variance}, residual {t.residual_variance})"]
