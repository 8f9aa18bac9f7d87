"""Applications of the reward subsystem: what a practitioner does with value neurons.

- :mod:`.scorer`: :class:`ValueScorer`, a fitted probe + value neurons as a calibrated confidence
  for any prompt from one forward pass (sklearn ``fit`` / ``predict_proba`` / ``score``).
- :mod:`.calibration`: isotonic / Platt calibration, ECE, reliability diagrams.
- :mod:`.decoding`: value-guided best-of-N and early abort vs greedy, majority vote, random choice.
- :mod:`.routing`: answer now / sample N / escalate by confidence vs uniform and random allocation.
- :mod:`.detection`: :class:`ValueMonitor` (online, a hook) and flag rules on the value or TD error.
- :mod:`.curation`: confident-but-wrong and unconfident-but-right rollouts as a ``datasets`` table.
- :mod:`.monitoring`: regression monitoring of two model versions (IoU, AUC shift, verdict).
- :mod:`.fitting`, :mod:`.study`, :mod:`.config`: :func:`run_applications` → :class:`ApplicationsResult`.
- :mod:`.commands`: the ``applications`` and ``compare`` commands; :func:`write_applications_report`
  runs the study and writes its report.
"""

from .calibration import (
                          ReliabilityCurve,
                          ScoreCalibrator,
                          cross_calibrate,
                          ece_interval,
                          expected_calibration_error,
                          plot_reliability,
                          reliability_curve,
)
from .config import ApplicationsConfig
from .curation import (
                          CurationColumns,
                          CurationResult,
                          curate,
                          curation_rows,
                          load_curation,
                          save_curation,
)
from .decoding import (
                          AbortRule,
                          BestOfNResult,
                          CandidateSet,
                          ComputePoint,
                          answer_key,
                          best_of_n,
                          majority_choice,
                          select,
                          surviving_candidates,
)
from .detection import DetectionResult, FlagRule, ValueMonitor, detect_errors
from .fitting import CrossFitSettings, ValueSignal, cross_fitted_signal, run_dir_signal
from .monitoring import (
                          CompareConfig,
                          ComparisonResult,
                          ValueSnapshot,
                          compare_snapshots,
                          decide,
)
from .routing import EscalationResult, RoutingOutcomes, RoutingPoint, RoutingResult, routing_study
from .scorer import ValueScorer
from .study import (
                          ApplicationsResult,
                          ConfidenceComparison,
                          model_snapshot,
                          run_applications,
)
from .commands import write_applications_report

# the shape every study shares: ``Config`` → ``run(config) -> Result`` → ``Result.to_section(out)``
Config, Result, run = ApplicationsConfig, ApplicationsResult, run_applications

__all__ = [
    "Config", "Result", "run",
    "AbortRule", "ApplicationsConfig", "ApplicationsResult", "BestOfNResult", "CandidateSet", "CompareConfig",
    "ComparisonResult", "ComputePoint", "ConfidenceComparison", "CrossFitSettings", "CurationColumns", "CurationResult", "DetectionResult", "EscalationResult",
    "FlagRule", "ReliabilityCurve", "RoutingOutcomes", "RoutingPoint", "RoutingResult", "ScoreCalibrator", "ValueMonitor", "ValueScorer",
    "ValueSignal", "ValueSnapshot", "answer_key", "best_of_n", "compare_snapshots", "cross_calibrate", "cross_fitted_signal",
    "curate", "curation_rows", "decide", "detect_errors", "ece_interval", "expected_calibration_error", "load_curation", "majority_choice",
    "model_snapshot", "plot_reliability", "reliability_curve", "routing_study", "run_applications", "run_dir_signal",
    "save_curation", "select", "surviving_candidates", "write_applications_report",
]
