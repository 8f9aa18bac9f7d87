"""Analyses on a :class:`~reward_circuits.data.Store`, and the studies that run interventions on a model.

- :mod:`.td`: TD(0)/TD(λ)/Monte-Carlo targets and TD errors (the only place TD math lives).
- :mod:`.stats`: AUC, column correlations, top-k ranking, bootstrap intervals, paired tests.
- :mod:`.targets`: TD(0) / TD(λ) / Monte-Carlo targets compared per layer with paired intervals.
- :mod:`.controls`: massive-activation outliers and magnitude-matched random controls with paired tests.
- :mod:`.splits`: train/test splits that keep repeated prompts on one side (no leaked AUC).
- :mod:`.linear_probe`: the logistic-regression floor every MLP probe must reach.
- :mod:`.probes`: :class:`ValueProbe`, all layers in one stacked module (sklearn-style fit/predict/score).
- :mod:`.pruning`: L1 pruning curves, :func:`value_neurons`, IoU, architecture and rotation checks.
- :mod:`.baselines`: surface baselines (embedding probe, bag-of-tokens).
- :mod:`.dopamine`, :mod:`.dopamine_metrics`: TD-error (dopamine) neurons and their held-out tests.
- :mod:`.dopamine_controls`: magnitude-matched random dims in the dopamine null and paired causal comparisons.
- :mod:`.pooled`: one value probe pooled over tasks, held-out AUC per task.
- :mod:`.causal`: the causal studies, run on the intervention engine: ablation (value vs random sets),
  dose-response, steering, and the probe's TD trace under an intervention.
- :mod:`.confidence`: value neurons as a confidence score vs next-token probability and verbalized confidence.
- :mod:`.resampling`: signed tests for claims (hierarchical bootstrap vs random draws, rank among
  draws, exact sign flips below 20 units, the length control).
- :mod:`.claims`: the claim registry of the four papers and ours, :class:`Evidence`, and
  :func:`reward_circuits.analysis.claims.verdict` (signed, Holm within each family, premises, power).

:class:`NeuronSet`, :func:`iou` and :func:`expected_random_iou` live in :mod:`reward_circuits.neurons`
(below the intervention engine) and are re-exported here.
"""

from .causal import (AblationOptions, DoseOptions, SteeringOptions, ablation_conditions, ablation_study, dose_conditions,
                     dose_response, steering_conditions, steering_study, td_trace_under, traces_of_states)
from .confidence import PrecomputedConfidence, confidence_study, next_token_confidence, parse_confidence, score_vs_reward, verbalized_confidence
from .baselines import BagOfTokensOptions, bag_of_tokens_baseline
from .dopamine import SurpriseSets, dopamine_neurons, event_positions, dopamine_score_details, dopamine_scores, surprise_sets
from .dopamine_metrics import DopamineMetrics, DopamineMetricsOptions, dopamine_metrics, permutation_test_mean_abs_corr, td_trace_change
from .controls import (ControlledAblation, ControlOptions, ControlResult, ScoreControlsOptions, MassiveActivations, activation_magnitudes, compare_to_controls,
                       control_sets, score_controls, magnitude_strata, massive_activations, matched_random_iou, matched_random_sets,
                       uniform_random_sets)
from .dopamine_controls import MatchedNull, MatchedNullOptions, PairedControl, matched_correlation_null, matched_draws, paired_control_comparison
from .pooled import PooledProbeOptions, PooledProbeResult, pooled_value_probe
from .linear_probe import LogisticFloor, LogisticFloorOptions, logistic_floor, logistic_floors
from ..neurons import NeuronSet, expected_random_iou, iou
from .cross_fitting import cross_fitted_value_traces
from .probes import ValueProbe, ValueProbeConfig
from .pruning import (PruneRetrainOptions, RotationCheckOptions, architecture_robustness, architecture_variants, iou_from_scores, n_kept, iou_by_ratio, iou_curve, prune_curve, rotation_check, top_dims,
                      value_neurons)
from .splits import TaskSplit, grouped_stratified_folds, grouped_stratified_split, task_split
from .stats import (Interval, auc_rows, binary_auc, binomial_interval, bootstrap_auc_ci, bootstrap_ci, mcnemar_test, paired_bootstrap_auc_diff,
                    paired_bootstrap_diff, partial_pearson_columns, pearson_columns, rank_by_score, spearman_columns, verdict)
from .claims import REGISTRY, Claim, ClaimResult, Evidence, claims_section
from .targets import TARGET_VARIANTS, TargetComparison, TargetComparisonOptions, TargetDifference, compare_targets
from .td import Transitions, check_batch_structure, monte_carlo_targets, q_learning_td_errors, td_error_traces, td_errors, td_targets

# What a user calls. The helpers these are built from (TD batch checks, column correlations, rank
# and top-k utilities, magnitude strata and draws, nested result types, ...) stay importable from
# here (``from reward_circuits.analysis import pearson_columns`` works) but are not listed: their
# modules document them.
__all__ = [
    # value probes, value neurons and their robustness
    "ValueProbe", "ValueProbeConfig", "NeuronSet", "value_neurons", "prune_curve", "iou", "expected_random_iou",
    "iou_by_ratio", "iou_curve", "architecture_robustness", "rotation_check",
    # TD targets and errors
    "td_targets", "td_errors", "td_error_traces", "monte_carlo_targets", "q_learning_td_errors", "Transitions", "compare_targets",
    "TargetComparison", "TARGET_VARIANTS", "cross_fitted_value_traces",
    # baselines, splits, pooled probes
    "bag_of_tokens_baseline", "logistic_floor", "logistic_floors", "LogisticFloor", "grouped_stratified_split", "grouped_stratified_folds",
    "pooled_value_probe", "PooledProbeResult", "task_split", "TaskSplit",
    # controls
    "massive_activations", "MassiveActivations", "activation_magnitudes", "matched_random_sets", "matched_random_iou",
    "compare_to_controls", "control_sets", "score_controls", "ControlledAblation",
    # dopamine (TD-error) neurons
    "dopamine_scores", "dopamine_score_details", "dopamine_neurons", "dopamine_metrics", "DopamineMetrics",
    "DopamineMetricsOptions", "surprise_sets", "SurpriseSets", "td_trace_change", "matched_correlation_null", "MatchedNull",
    "paired_control_comparison", "PairedControl",
    # statistics
    "Interval", "binary_auc", "binomial_interval", "bootstrap_ci", "bootstrap_auc_ci", "paired_bootstrap_diff", "paired_bootstrap_auc_diff",
    "mcnemar_test", "verdict",
    # the claim registry (its verdict function: reward_circuits.analysis.claims.verdict)
    "Claim", "REGISTRY", "Evidence", "ClaimResult", "claims_section",
    # causal studies on the intervention engine, and confidence
    "ablation_study", "dose_response", "steering_study", "ablation_conditions", "dose_conditions",
    "steering_conditions", "td_trace_under", "traces_of_states", "AblationOptions", "DoseOptions", "SteeringOptions",
    "confidence_study", "next_token_confidence", "parse_confidence", "score_vs_reward", "verbalized_confidence",
]
