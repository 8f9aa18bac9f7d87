"""The intervention stage of the main job: ablation (§2.4 + Appendix A), dose-response, steering
(the paper's open question on amplifying value neurons) and confidence signals.

:func:`run_intervention_stage` takes the value stage's neuron sets and probe as
:class:`InterventionInputs`, its settings as :class:`InterventionStudyConfig`, and returns an
:class:`InterventionStageResult` with three report sections, keyed ``"ablation"`` (dose-response
and the final-reward-vs-TD comparison inside), ``"steering"`` and ``"confidence"``, with PNG
figures written into ``out_dir``.

Cost: every study runs its conditions (value set, random draws, doses, steering factors) as one
batched generation through :func:`~reward_circuits.interventions.sweep` (row-scoped hooks, shared
prompt rows for generated-positions-only conditions, finished rows leave the batch); the accuracies
are identical to one pass per condition under greedy decoding (tested).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Literal, Mapping

from torch import Tensor

from ...models import GenerationConfig, ModelAdapter
from ...neurons import NeuronSet
from ...report import Section
from .intervention_figures import plot_ablation, plot_confidence, plot_dose_response, plot_steering  # noqa: F401  (re-exported)
from .intervention_sections import ablation_section, confidence_section, steering_section
from .intervention_studies import build_conditions, prepare_run, run_studies


@dataclass
class InterventionStudyConfig:
    """Settings of the intervention studies (ablation, final-reward comparison, dose-response, steering, confidence)."""

    n_random_draws: int = 3
    steering_factors: tuple[float, ...] = (0.0, 0.5, 1.5, 2.0, 4.0)
    seed: int = 0
    max_examples: int | None = None
    ablation_mode: Literal["zero", "mean"] = "zero"
    dose_fractions: tuple[float, ...] = (0.005, 0.01, 0.02, 0.05)
    dose_modes: tuple[str, ...] = ("zero", "mean")
    dose_random_draws: int = 1
    # default: the first value layer (the main job's best by validation AUC), fixed before any
    # generation: choosing the layer whose ablation hurt most on these same examples would select on noise
    dose_layer: int | None = None
    steer_layer: int | None = None
    run_dose: bool = True
    run_steering: bool = True
    run_confidence: bool = True
    # value set vs uniform and magnitude-matched random sets, paired on the same examples, for the
    # first ``controlled_layers`` value layers (needs ``InterventionInputs.magnitudes``)
    controlled_layers: int = 1
    # the steering claim's control: this many magnitude-matched random sets, scaled by the
    # ``steering_control_factors`` largest factors in the same sweep (0: no control)
    steering_random_draws: int = 3
    steering_control_factors: int = 2

    def __post_init__(self):
        self.steering_factors = tuple(float(f) for f in self.steering_factors)
        self.dose_fractions = tuple(float(f) for f in self.dose_fractions)
        self.dose_modes = tuple(self.dose_modes)
        if self.ablation_mode not in ("zero", "mean"):
            raise ValueError(f"ablation_mode must be 'zero' or 'mean', got {self.ablation_mode!r}.")
        bad = [m for m in self.dose_modes if m not in ("zero", "mean")]
        if bad:
            raise ValueError(f"dose_modes {bad}: use 'zero' and/or 'mean'.")
        if any(not 0 < f < 1 for f in self.dose_fractions):
            raise ValueError(f"dose_fractions must lie in (0, 1), got {list(self.dose_fractions)}.")
        if min(self.n_random_draws, self.dose_random_draws, self.steering_random_draws, self.steering_control_factors) < 0:
            raise ValueError("n_random_draws, dose_random_draws, steering_random_draws and steering_control_factors "
                             "must be >= 0.")
        if self.max_examples is not None and self.max_examples < 1:
            raise ValueError(f"max_examples must be >= 1 or None, got {self.max_examples}.")


@dataclass
class InterventionInputs:
    """What the studies intervene on, from the value stage.

    ``value_sets``: ``{layer: NeuronSet}`` of value neurons (e.g. top 1% by probe weight norm).
    ``probe``, ``probe_hook``: a fitted value probe and the hook whose ``V(s_0)`` is read for the
    steering value shift and the confidence comparison (default: the steered hook if the probe has
    it, or its only hook). ``final_reward_sets``: ``{layer: NeuronSet}`` from a final-reward
    (Monte-Carlo) probe, ablated next to the TD probe's (Appendix A). ``dose_scores``: ``{layer:
    scores[d]}`` ranking for the dose-response (default: the probe's input-weight norms, else the
    value set's own order). ``confidence_inputs``: optional ``{examples, rewards, generations,
    value_scores, next_token_probs, verbalized}`` (e.g. from the main rollouts); missing pieces are
    computed from the baseline run. ``transfer_sets``: ``{name: NeuronSet}`` of value neurons found
    elsewhere (another task's probe, another model of the same family), ablated on these examples
    next to this task's own value set and random sets at the same hook (the paper's transfer).
    """

    value_sets: Mapping[int, NeuronSet]
    probe: Any = None
    probe_hook: str | None = None
    final_reward_sets: Mapping[int, NeuronSet] | None = None
    dose_scores: Mapping[int, Tensor] | None = None
    confidence_inputs: Mapping[str, Any] | None = None
    magnitudes: Mapping[str, Any] | None = None  # {hook: mean |activation| per dim}, for matched controls
    # {name: NeuronSet} found on another task (or model), ablated on these examples: transfer
    transfer_sets: Mapping[str, NeuronSet] | None = None

    def __post_init__(self):
        if not self.value_sets:
            raise ValueError("value_sets is empty: give {layer: NeuronSet} of value neurons.")


@dataclass
class InterventionStageResult:
    """The studies' report sections and the layer whose value-neuron ablation hurt most."""

    ablation: Section
    steering: Section
    confidence: Section
    worst_layer: int

    def __repr__(self) -> str:
        keys = [s.key for s in self.to_sections()]
        return f"InterventionStageResult(worst_layer={self.worst_layer}, sections={keys})"

    def to_sections(self) -> list[Section]:
        return [self.ablation, self.steering, self.confidence]


def run_intervention_stage(
    adapter: ModelAdapter,
    task,
    inputs: InterventionInputs,
    out_dir: str | os.PathLike,
    study: InterventionStudyConfig | None = None,
    generation: GenerationConfig | None = None,
    examples=None,
) -> InterventionStageResult:
    """Ablation, dose-response, steering and confidence on ``examples`` (default: the task's; first
    ``study.max_examples``). Summaries are JSON-ready (NaN → None, layer and factor keys as strings)."""
    study = study or InterventionStudyConfig()
    run = prepare_run(adapter, task, inputs, out_dir, study, generation, examples)
    found = run_studies(run, build_conditions(run))
    return InterventionStageResult(ablation_section(run, found), steering_section(run, found.steer),
                                   confidence_section(run, found.conf), found.worst_layer)
