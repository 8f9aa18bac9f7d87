"""Interventions as TransformerLens hook functions ``(activation, hook) -> activation``.

- :mod:`.hooks`: the primitives (zero/mean/resample ablation, scaling, direction addition,
  patching) and their position scopes; they compose with a user's own hooks in ``run_with_hooks``
  and run unchanged on the nnsight backend.
- :mod:`.scoring`: generation and teacher-forced passes under hooks (generate-and-score,
  activation means, V(s_0), TD traces).
- :mod:`.studies`: ablation, dose-response and steering studies.
- :mod:`.sweep`: every condition of a study in one batched generation (row-scoped hooks, shared
  prompts, finished rows leave).
- :mod:`.confidence`: value neurons as a confidence score vs next-token probability and verbalized confidence.
"""

from .confidence import confidence_study, next_token_confidence, parse_confidence, score_vs_reward, verbalized_confidence
from .hooks import (Intervention, InterventionHook, PositionScope, ablation_interventions, add_direction, as_fwd_hooks,
                    intervene, mean_ablate, patch_from, patch_interventions, resample_ablate, scale,
                    teacher_forced_prompt, zero_ablate)
from .scoring import ScoredRun, activation_means, generate_and_score, initial_values, td_trace_under
from .studies import (ablation_conditions, ablation_study, dose_conditions, dose_response, steering_conditions,
                      steering_study)
from .sweep import (Condition, ConditionResult, RowScopedHooks, SweepConfig, SweepResult, conditions_of,
                    per_condition_passes, rows_only, sweep, touches_prompt)

__all__ = [
    "Condition", "ConditionResult", "RowScopedHooks", "SweepConfig", "SweepResult", "conditions_of",
    "per_condition_passes", "rows_only", "sweep", "touches_prompt",
    "Intervention", "InterventionHook", "PositionScope", "ScoredRun", "ablation_conditions", "ablation_interventions",
    "ablation_study", "dose_conditions", "steering_conditions",
    "activation_means", "add_direction", "as_fwd_hooks", "confidence_study", "dose_response", "generate_and_score",
    "initial_values", "intervene", "mean_ablate", "next_token_confidence", "parse_confidence", "patch_from",
    "patch_interventions", "resample_ablate", "scale", "score_vs_reward", "steering_study", "td_trace_under",
    "teacher_forced_prompt", "verbalized_confidence", "zero_ablate",
]
