"""The intervention engine: TransformerLens hook functions ``(activation, hook) -> activation`` and
the passes that run them. It depends only on :mod:`reward_circuits.models` and the
:class:`~reward_circuits.neurons.NeuronSet` value type; the studies built on it (ablation,
dose-response, steering, confidence) are analyses: :mod:`reward_circuits.analysis.causal` and
:mod:`reward_circuits.analysis.confidence`.

- :mod:`.hooks`: the primitives (zero/mean/resample ablation, scaling, direction addition,
  patching) and their position scopes; they compose with a user's own hooks in ``run_with_hooks``
  and run unchanged on the nnsight backend.
- :mod:`.scoring`: generation and teacher-forced passes under hooks (generate-and-score,
  activation means, V(s_0), states of teacher-forced rollouts).
- :mod:`.sweep`: every condition of a study in one batched generation (row-scoped hooks, shared
  prompts, finished rows leave).
"""

from .hooks import (Intervention, InterventionHook, PositionScope, ablation_interventions, add_direction, as_fwd_hooks,
                    intervene, mean_ablate, patch_from, patch_interventions, resample_ablate, scale,
                    teacher_forced_prompt, zero_ablate)
from .scoring import ScoredRun, activation_means, generate_and_score, initial_values, rollout_states
from .sweep import (Condition, ConditionResult, RowScopedHooks, SweepConfig, SweepResult, conditions_of,
                    per_condition_passes, rows_only, sweep, touches_prompt)

__all__ = [
    "Condition", "ConditionResult", "RowScopedHooks", "SweepConfig", "SweepResult", "conditions_of",
    "per_condition_passes", "rows_only", "sweep", "touches_prompt",
    "Intervention", "InterventionHook", "PositionScope", "ScoredRun", "ablation_interventions",
    "activation_means", "add_direction", "as_fwd_hooks", "generate_and_score", "initial_values", "intervene",
    "mean_ablate", "patch_from", "patch_interventions", "resample_ablate", "rollout_states", "scale",
    "teacher_forced_prompt", "zero_ablate",
]
