"""``ValueScorer``: a fitted value probe (optionally restricted to its value neurons) as a
calibrated confidence score for any prompt, from one forward pass and no generation.

    scorer = ValueScorer(probe, "blocks.12.hook_resid_post", neurons=value_set, adapter=adapter)
    scorer.fit(prompts, correct)            # fits the calibrator (the probe is already fitted)
    scorer.predict_proba(new_prompts)[:, 1] # P(correct) before any answer token is generated
    scorer.score(test_prompts, test_correct) # AUC

A prompt is a rendered prompt string (``task.render(example, tokenizer)``) or a list of token ids.
The raw score is ``V(s_0)``, the probe's value at the prompt's last token; with ``neurons`` the
probe sees only those input dimensions (the rest mean-ablated, :meth:`ValueProbe.masked`), so the
score is what the value neurons alone carry.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from jaxtyping import Float

from ...neurons import NeuronSet
from ...analysis.probes import ValueProbe
from ...analysis.stats import Interval, binary_auc, bootstrap_auc_ci
from ...analysis.causal import td_trace_under
from ...interventions.scoring import initial_values
from ...models import ModelAdapter
from .calibration import CalibrationMethod, ScoreCalibrator, expected_calibration_error

Prompt = str | Sequence[int]


class ValueScorer:
    """sklearn-style confidence estimator over prompts (``fit`` / ``predict_proba`` / ``predict`` / ``score``).

    Args:
        probe: a fitted :class:`ValueProbe` with a probe for ``hook``.
        hook: the hook point whose probe scores (default: the probe's only hook).
        neurons: a :class:`NeuronSet` of ``hook``; the probe then reads only these dimensions.
        adapter: the model the probe was trained on (needed for prompts; not for precomputed values).
        calibration: ``"isotonic"``, ``"platt"`` or ``"none"``.
        batch_size: prompts per forward pass.

    Learned attributes (after :meth:`fit`): ``calibrator_``, ``n_fit_``, ``base_rate_``.
    """

    def __init__(self, probe: ValueProbe, hook: str | None = None, neurons: NeuronSet | None = None,
                 adapter: ModelAdapter | None = None, calibration: CalibrationMethod = "isotonic",
                 batch_size: int = 16):
        self.probe = probe
        self.hook = hook
        self.neurons = neurons
        self.adapter = adapter
        self.calibration = calibration
        self.batch_size = batch_size

    # ---- the scoring probe ---------------------------------------------------------------------
    @property
    def hook_name(self) -> str:
        if self.hook is not None:
            return self.hook
        if len(self.probe.hook_names) != 1:
            raise ValueError(f"the probe has hooks {self.probe.hook_names}: pass hook= one of them.")
        return self.probe.hook_names[0]

    @property
    def scoring_probe(self) -> ValueProbe:
        """The probe that scores: restricted to ``neurons`` when given (built once, cached)."""
        hook = self.hook_name
        cached = getattr(self, "_scoring_probe", None)
        if cached is not None and cached[0] is self.neurons:
            return cached[1]
        if self.neurons is None:
            probe = self.probe
        else:
            if self.neurons.hook_name != hook:
                raise ValueError(f"neurons are of hook {self.neurons.hook_name!r} but the scorer reads {hook!r}.")
            probe = self.probe.masked(hook, self.neurons.mask())
        self._scoring_probe = (self.neurons, probe)
        return probe

    def _require_adapter(self) -> ModelAdapter:
        if self.adapter is None:
            raise ValueError("this ValueScorer has no adapter: pass adapter= to score prompts, or use the *_from_values methods.")
        return self.adapter

    def _prompt_ids(self, prompts: Sequence[Prompt]) -> list[list[int]]:
        adapter = self._require_adapter()
        if isinstance(prompts, str):
            prompts = [prompts]
        seqs = [adapter.tokenizer(p, add_special_tokens=False)["input_ids"] if isinstance(p, str) else [int(t) for t in p]
                for p in prompts]
        if not seqs or any(len(s) == 0 for s in seqs):
            raise ValueError("no prompts, or an empty prompt: V(s_0) needs at least one prompt token.")
        return seqs

    # ---- raw values ------------------------------------------------------------------------------
    def raw_values(self, prompts: Sequence[Prompt]) -> Float[np.ndarray, " n"]:
        """``V(s_0)`` of each prompt (uncalibrated), one forward pass per ``batch_size`` prompts."""
        return initial_values(self._require_adapter(), self.scoring_probe, self.hook_name, self._prompt_ids(prompts),
                              batch_size=self.batch_size)

    def value_traces(self, rollouts: Sequence) -> list[Float[np.ndarray, " T_plus_1"]]:
        """``V(s_0) .. V(s_T)`` of each rollout (a ``Generation``, ``Rollout`` or ``(prompt_ids,
        response_ids)`` pair), teacher-forced. On a causal model this equals what
        :class:`~reward_circuits.studies.applications.ValueMonitor` records online during generation."""
        pairs = [(r.prompt_ids, r.response_ids) if hasattr(r, "response_ids") else r for r in rollouts]
        return td_trace_under(self._require_adapter(), self.scoring_probe, self.hook_name, pairs, what="value",
                              batch_size=self.batch_size)

    # ---- sklearn API -----------------------------------------------------------------------------
    def fit(self, prompts: Sequence[Prompt], correct: Sequence[float]) -> ValueScorer:
        """Fit the calibrator on the prompts' ``V(s_0)`` against their correctness (0/1)."""
        return self.fit_from_values(self.raw_values(prompts), correct)

    def fit_from_values(self, raw: Sequence[float], correct: Sequence[float]) -> ValueScorer:
        """Fit the calibrator on precomputed ``V(s_0)`` values."""
        raw = np.asarray(raw, dtype=np.float64).reshape(-1)
        self.calibrator_ = ScoreCalibrator(self.calibration).fit(raw, correct)
        self.n_fit_ = int(raw.size)
        self.base_rate_ = self.calibrator_.base_rate_
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "calibrator_"):
            raise RuntimeError("this ValueScorer is not fitted: call fit(prompts, correct) first "
                               "(or construct with calibration='none' and fit on any labelled prompts).")

    def proba_from_values(self, raw: Sequence[float]) -> Float[np.ndarray, "n 2"]:
        self._check_fitted()
        p = self.calibrator_.predict(raw)
        return np.c_[1.0 - p, p]

    def predict_proba(self, prompts: Sequence[Prompt]) -> Float[np.ndarray, "n 2"]:
        """``[[P(wrong), P(correct)], ...]`` per prompt (calibrated)."""
        return self.proba_from_values(self.raw_values(prompts))

    def predict(self, prompts: Sequence[Prompt], threshold: float = 0.5) -> np.ndarray:
        """1 where the calibrated P(correct) ≥ ``threshold``."""
        return (self.predict_proba(prompts)[:, 1] >= threshold).astype(int)

    def score(self, prompts: Sequence[Prompt], correct: Sequence[float]) -> float:
        """ROC AUC of the confidence against correctness (one float, as sklearn's ``score``)."""
        return binary_auc(np.asarray(correct), self.raw_values(prompts), what="V(s_0) of the scorer")

    def score_report(self, raw: Sequence[float], correct: Sequence[float], n_boot: int = 1000, seed: int = 0) -> dict:
        """AUC (stratified bootstrap interval) and ECE of raw and calibrated confidence on labelled values."""
        raw = np.asarray(raw, dtype=np.float64)
        auc: Interval = bootstrap_auc_ci(correct, raw, n_boot=n_boot, seed=seed)
        out = {"auc": auc.to_dict(), "ece_raw": expected_calibration_error(raw, correct)}
        if hasattr(self, "calibrator_"):
            out["ece_calibrated"] = expected_calibration_error(self.proba_from_values(raw)[:, 1], correct)
        return out
