"""How large the main job must be to decide its claims: the one place ``--profile paper`` is sized.

Two targets (issue 29), each turned into an ``n`` with the claims package's power helpers
(:func:`~reward_circuits.analysis.claims.minimum_detectable_effect`,
:func:`~reward_circuits.analysis.claims.n_for_effect`, α and power as the verdicts use them):

* **held-out rollouts** so V(s0)'s held-out AUC has a 95% interval of about ±0.03: the smallest
  ``n`` whose Hanley-McNeil half-width (:func:`~reward_circuits.analysis.stats.hanley_mcneil_se`)
  is at most the target, at a planning AUC and share of correct answers (the committed default job:
  0.647 at an accuracy of 0.36, ``docs/results/2026-12-06/main``);
* **examples per ablation pass** so a 0.10 accuracy difference between the value set and matched
  random sets is detected with 80% power after Holm over the claim's family. The test is
  :func:`~reward_circuits.analysis.resampling.hierarchical_vs_random` (t reference with ``k − 1``
  df for ``k`` random draws); its standard error is planned at the worst case, binary outcomes at
  p = 0.5 independent across conditions (no pairing gain), as the spread of
  :func:`~reward_circuits.analysis.resampling.hierarchical_null` (one draw minus the mean of the
  others resampled, examples resampled too): ``0.25 · (2 + 4 / (k − 1)) / n``, the examples' and the
  draws' variance each about ``0.25 / n`` (simulated: 3.06, 2.91, 2.34, 2.27, 2.24 × 0.25/n at
  k = 3, 5, 9, 15, 25, 40 replications each; the formula is at or above them), times
  ``SizingTargets.variance_factor`` (1: that worst case). The committed default job's spread was
  smaller: 1.38 and 1.42 × 0.25 per example (uniform and matched, 32 examples, 3 draws,
  ``docs/results/2026-12-06/main``) against the worst case's 4 × 0.25 at k = 3, i.e. a factor of
  about 0.35, but a variance from 3 draws rests on 2 df, so the profile plans at the worst case.
  The level is the family's Bonferroni
  level α/m, the first and strictest Holm step, as the verdicts' own MDE (conservative). ``k`` is
  the draw count in ``DRAW_CHOICES`` that needs the fewest rollouts (examples × every condition
  generated per example: the ablation's, the dopamine check's ``2 + 2k`` and the rest).

:func:`run_sizing` says what a configured job can detect (its MDEs at its own n) and what it
costs; the main job prints it before it starts and records it in the summary's header.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from ...analysis.claims import ALPHA, POWER, REGISTRY, minimum_detectable_effect, n_for_effect
from ...analysis.claims.verdicts import stage
from ...analysis.stats import hanley_mcneil_se

ABLATION_CLAIM = "srs.ablation_vs_random"
DRAW_CHOICES = tuple(range(5, 31))  # random draws per control considered (a t reference needs a few df)
Z95 = 1.959963984540054  # the two-sided 95% normal quantile of every interval here

# Measured seconds per rollout of SmolLM2-135M on one torch thread under load 4-8 (the committed default
# job, docs/results/2026-12-06/main: rollouts 537 s and stores 365 s for 800 rollouts of <= 48 tokens;
# interventions 366 s for ~31 conditions x 32 examples) and each model's CPU cost relative to it, measured
# on this machine rather than counted in FLOPs. Gemma 3 270M: 2.0 (first by parameter count; its paper
# run at 1500 primary rollouts / 16 examples, docs/results/2026-12-07/paper-gemma, was estimated at 5,400 s
# of CPU and used 5,148 s). Qwen2.5 0.5B: 3.4x SmolLM2's compute per token (issue 29), but on this CPU its
# main job used 0.85x Gemma's process CPU at the same sizes (1,651 vs 1,946 s, docs/results/2026-12-06/qwen
# and gemma: Gemma's 262k-token unembedding costs more than Qwen's extra blocks), so 1.7; at 3.4 its paper
# run (docs/results/2026-12-07/paper-qwen) was estimated at 10,984 s and used 3,333 s (at 1.7: 5,492 s, of
# which ~1,540 s are rollouts that run read back instead of generating).
SECONDS_PER_ROLLOUT = {"generate": 0.67, "store": 0.46, "intervene": 0.37}
MODEL_COST = {"smollm2": 1.0, "gemma": 2.0, "qwen": 1.7}
TWO_CORE_SPEEDUP = 1.6  # one-thread CPU seconds per wall second on 2 idle cores (the default job: 1259 s CPU ~ 13 min)
WALL_BUDGET_S = 4 * 3600  # beyond this on 2 cores: a GPU, the speed gains, or the largest n that fits (issue 29)


@dataclass(frozen=True)
class SizingTargets:
    """What the paper profile must resolve, and the planning values it is sized at."""

    auc_half_width: float = 0.03
    planning_auc: float = 0.65  # the default job's held-out AUC at the chosen layer: 0.647
    positive_share: float = 0.36  # the default model's accuracy on the primary task (calibration)
    accuracy_difference: float = 0.10  # value set vs matched random sets
    variance_factor: float = 1.0  # x the worst-case per-example variance (the committed job measured ~0.35)
    test_fraction: float = 0.4
    controlled_layers: int = 2  # layers with uniform + magnitude-matched controls: the best and one early
    ablation_layers: int = 4  # every ablated layer (3 best by validation + 1 early)
    other_conditions: int = 35  # per example, independent of k: dose (2 modes x 4 shares x 3 sets) + steering (11)
    power: float = POWER
    alpha: float = ALPHA

    def __post_init__(self):
        if not (0 < self.auc_half_width < 0.5 and 0.5 < self.planning_auc < 1 and 0 < self.positive_share < 1
                and 0 < self.accuracy_difference < 1 and 0 < self.test_fraction < 1 and 0 < self.variance_factor <= 1):
            raise ValueError(f"SizingTargets out of range: {self}; half-width in (0, 0.5), planning AUC in (0.5, 1), "
                             "shares and the accuracy difference in (0, 1).")


def ablation_family_size(controlled_layers: int, steering_factors: int = 2) -> int:
    """m of the ablation claim's Holm set: the testable claims of its family and premise stage, one
    test per scope as the main job writes them (``docs/results/2026-12-06/main``: ablation 2 scopes
    per controlled layer, uniform and matched; cross-task IoU 2; steering one per controlled factor;
    the dose-response is a rank among 1 draw per dose, which cannot reach α and leaves the set)."""
    claim = REGISTRY[ABLATION_CLAIM]
    same = [c for c in REGISTRY.values() if c.family == claim.family and stage(c.id) == stage(claim.id)]
    extra = {ABLATION_CLAIM: 2 * controlled_layers - 1, "srs.cross_task_iou": 1,
             "srs.steering_vs_random": steering_factors - 1, "srs.dose_response": -1}
    return len(same) + sum(extra.get(c.id, 0) for c in same)


def auc_half_width(n: int, auc: float, positive_share: float) -> float:
    """The planned 95% half-width of a held-out AUC on ``n`` rollouts (Hanley-McNeil)."""
    n_pos = max(positive_share * n, 1.0)
    return Z95 * hanley_mcneil_se(auc, n_pos, max(n - n_pos, 1.0))


def held_out_for_auc(t: SizingTargets) -> int:
    """The fewest held-out rollouts whose planned AUC half-width is at most ``t.auc_half_width``."""
    n = 20
    while auc_half_width(n, t.planning_auc, t.positive_share) > t.auc_half_width:
        n = max(n + 1, n_for_effect(n, auc_half_width(n, t.planning_auc, t.positive_share), t.auc_half_width) or n + 1)
    while n > 20 and auc_half_width(n - 1, t.planning_auc, t.positive_share) <= t.auc_half_width:
        n -= 1
    return n


def ablation_mde(n: int, draws: int, m: int, alpha: float = ALPHA, power: float = POWER,
                 variance_factor: float = 1.0) -> float:
    """The accuracy difference ``n`` examples and ``draws`` random draws detect at α/m (worst-case sd
    × √``variance_factor``)."""
    sd = 0.5 * math.sqrt((2 + 4 / (draws - 1)) * variance_factor)  # per example: see the module docstring
    return minimum_detectable_effect(sd / math.sqrt(n), alpha / m, power, df=draws - 1)


def examples_for_difference(effect: float, draws: int, m: int, t: "SizingTargets") -> int:
    """Examples per ablation pass whose MDE is at most ``effect`` (``se ∝ 1/√n``)."""
    return n_for_effect(1, ablation_mde(1, draws, m, t.alpha, t.power, t.variance_factor), effect)


def ablation_conditions(draws: int, ablation_layers: int, controlled_layers: int) -> int:
    """Generation conditions of the ablation study per example: the baseline, per layer the value set
    and ``draws`` uniform sets, per controlled layer ``draws`` matched sets, the final-reward set."""
    return 1 + ablation_layers * (1 + draws) + controlled_layers * draws + 1


@dataclass(frozen=True)
class PaperSizing:
    """The sizes ``--profile paper`` runs at, and what they detect."""

    held_out: int
    primary_limit: int
    auc_half_width: float
    family_size: int
    random_draws: int
    examples_per_pass: int
    ablation_mde: float
    targets: SizingTargets

    def to_dict(self) -> dict:
        return asdict(self)


def paper_sizing(t: SizingTargets = SizingTargets()) -> PaperSizing:
    """Held-out rollouts for the AUC target; draws and examples per pass for the accuracy difference."""
    held = held_out_for_auc(t)
    m = ablation_family_size(t.controlled_layers)
    cost = {k: examples_for_difference(t.accuracy_difference, k, m, t)
            * (ablation_conditions(k, t.ablation_layers, t.controlled_layers) + 2 + 2 * k + t.other_conditions)
            for k in DRAW_CHOICES}
    k = min(cost, key=lambda d: (cost[d], d))
    n = examples_for_difference(t.accuracy_difference, k, m, t)
    return PaperSizing(held, math.ceil(held / t.test_fraction), auc_half_width(held, t.planning_auc, t.positive_share),
                       m, k, n, ablation_mde(n, k, m, t.alpha, t.power, t.variance_factor), t)


def model_cost(model: str) -> float:
    """Compute per token relative to SmolLM2-135M (:data:`MODEL_COST`; 1.0 for a model not listed)."""
    name = model.lower()
    return next((v for k, v in MODEL_COST.items() if k in name), 1.0)


def _job_cost(cfg) -> tuple[int, int, int, int]:
    """(rollouts of the primary task, of the others, conditions per evaluation example, m)."""
    depths = len(getattr(cfg, "ablation_depths", ()))
    controlled = 1 + depths
    k = max(cfg.random_draws, 2)
    stages = getattr(cfg, "stages", ("interventions", "dopamine"))
    # interventions: ablation; dose: value, random and matched sets per (mode, share); steering: 5 factors + 3 x 2 controls
    per_example = (ablation_conditions(k, cfg.ablation_layers + depths, controlled)
                   + len(cfg.dose_modes) * len(cfg.dose_fractions) * 3 + 11) if "interventions" in stages else 0
    per_example += 2 + 2 * k if "dopamine" in stages else 0  # its causal check: baseline, dopamine set, k uniform + k matched
    primary = cfg.limit_of(cfg.tasks[0])
    return primary, sum(cfg.limit_of(spec) for spec in cfg.tasks[1:]), per_example, ablation_family_size(controlled)


def _cpu_seconds(primary: float, others: float, examples: float, per_example: int, factor: float) -> float:
    rate = SECONDS_PER_ROLLOUT["generate"] + SECONDS_PER_ROLLOUT["store"]
    return factor * ((primary + others) * rate + examples * per_example * SECONDS_PER_ROLLOUT["intervene"])


def fit_to_budget(cfg, factor: float, budget_s: float = WALL_BUDGET_S) -> dict | None:
    """The largest primary-task rollouts and examples per pass, scaled down together, whose estimated
    wall time on 2 cores fits ``budget_s``, and what they detect (None: the job already fits, or
    the other tasks alone do not)."""
    primary, others, per_example, m = _job_cost(cfg)
    cpu_budget = budget_s * TWO_CORE_SPEEDUP
    full = _cpu_seconds(primary, others, cfg.eval_examples, per_example, factor)
    fixed = _cpu_seconds(0, others, 0, per_example, factor)
    if full <= cpu_budget or fixed >= cpu_budget:
        return None
    f = (cpu_budget - fixed) / (full - fixed)
    p_fit, e_fit = int(primary * f), max(int(cfg.eval_examples * f), 2)
    held = round(p_fit * cfg.test_fraction)
    t = SizingTargets()
    return {"primary_limit": p_fit, "eval_examples": e_fit, "held_out": held,
            "auc_half_width": auc_half_width(max(held, 2), t.planning_auc, t.positive_share),
            "ablation_mde": ablation_mde(e_fit, max(cfg.random_draws, 2), m)}


def run_sizing(cfg, model: str | None = None) -> dict:
    """What a configured main job (a :class:`~.config.RunConfig`) detects and costs: the planned AUC
    half-width at its held-out n, the ablation MDE at its examples per pass, draws and family size,
    the estimated CPU seconds (one thread) from :data:`SECONDS_PER_ROLLOUT` × the model's cost, and
    the wall time on 2 cores; over :data:`WALL_BUDGET_S`, the largest n that fits (:func:`fit_to_budget`)."""
    t = SizingTargets()
    primary, others, per_example, m = _job_cost(cfg)
    held = round(primary * cfg.test_fraction)
    factor = model_cost(model or cfg.model)
    seconds = _cpu_seconds(primary, others, cfg.eval_examples, per_example, factor)
    return {"held_out": held, "auc_half_width": auc_half_width(held, t.planning_auc, t.positive_share),
            "examples_per_pass": cfg.eval_examples, "random_draws": cfg.random_draws, "family_size": m,
            "ablation_mde": ablation_mde(cfg.eval_examples, max(cfg.random_draws, 2), m), "rollouts": primary + others,
            "intervention_rollouts": cfg.eval_examples * per_example, "estimated_cpu_s": seconds,
            "estimated_wall_2_cores_s": seconds / TWO_CORE_SPEEDUP,
            "over_cpu_budget": seconds / TWO_CORE_SPEEDUP > WALL_BUDGET_S, "fits_budget": fit_to_budget(cfg, factor)}


def sizing_lines(sizing: dict) -> list[str]:
    """The sizing as the job prints it before it starts."""
    s = sizing
    lines = [f"[sizing] held-out rollouts {s['held_out']}: V(s0) AUC 95% interval about +-{s['auc_half_width']:.3f} "
             f"(Hanley-McNeil at AUC 0.65, accuracy 0.36)",
             f"[sizing] ablation: {s['examples_per_pass']} examples per pass, {s['random_draws']} random draws, Holm "
             f"family of {s['family_size']}: " + (f"detects an accuracy difference of {s['ablation_mde']:.3f} at 80% power"
                                                  if s["ablation_mde"] <= 1 else f"no accuracy difference is detectable "
                                                  f"at 80% power (MDE {s['ablation_mde']:.2f} > 1)"),
             f"[sizing] cost: {s['rollouts']} rollouts + {s['intervention_rollouts']} intervention rollouts, about "
             f"{s['estimated_cpu_s'] / 3600:.1f} h of CPU on one thread, {s['estimated_wall_2_cores_s'] / 3600:.1f} h on 2 "
             "cores (SmolLM2-135M rates x the model's cost, before the speed gains)"]
    fit = s.get("fits_budget")
    if s["over_cpu_budget"]:
        lines.append(f"[sizing] over {WALL_BUDGET_S // 3600} h on 2 cores: run it on a GPU (scripts/device_paper.sh)"
                     + ("" if not fit else
                        f", or at the largest n that fits: --primary-limit {fit['primary_limit']} --eval-examples "
                        f"{fit['eval_examples']} (AUC +-{fit['auc_half_width']:.3f}, ablation MDE {fit['ablation_mde']:.3f})"))
    return lines
