"""How many optimizer steps a YFPO run takes, chosen on validation pairs (``--select-steps``).

The committed 8-step run ended with the auxiliary neuron loss at 0.58–0.65 against ln 2 = 0.69 (the
loss at zero margin): the margin had barely moved, so the comparison with plain DPO tested a reward
that was hardly applied. Here the steps are chosen before any compared run:

* a share of the training prompts (:data:`VALIDATION_SHARE`) gives **validation pairs**, never trained on;
* a **pilot run** (the value condition, the first seed, the study's β_aux) checks every
  ``step_check_every`` steps the auxiliary loss ``−log σ(margin)`` of the neuron reward on the
  validation pairs, with the policy being trained;
* the criterion, **clearly moved**: the mean validation loss is at least ``aux_moved`` (0.1 nats)
  below ln 2 *and* its 95% bootstrap interval over validation prompts (pairs of one prompt resampled
  together) lies below ln 2. The pilot stops at the first check that meets it, and every compared
  run (all conditions, all seeds) takes that many steps; when no check meets it by ``steps``, every
  run takes ``steps`` and the report says the loss did not clearly move.

The pilot is not one of the compared runs (its seed and condition are trained again), so choosing
the steps on it does not select on the held-out accuracy.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np
from transformers import TrainerCallback

from ...analysis.stats import MIN_GROUPS, bootstrap_ci
from .neuron_reward import NeuronReward, auxiliary_loss, response_activations
from .pairs import PreferencePair

LN2 = math.log(2)
VALIDATION_SHARE = 0.25  # of the training prompts that gave pairs


def split_validation_pairs(pairs: Sequence[PreferencePair], share: float = VALIDATION_SHARE,
                           seed: int = 0) -> tuple[list[PreferencePair], list[PreferencePair]]:
    """(training pairs, validation pairs), split by prompt (pairs of one prompt stay together)."""
    prompts = sorted({p.example_id for p in pairs})
    random.Random(seed).shuffle(prompts)
    n_val = int(round(share * len(prompts)))
    if n_val < MIN_GROUPS or len(prompts) - n_val < 1:
        raise ValueError(f"{len(prompts)} prompts gave pairs: too few to hold {share:.0%} out for validation (needs >= "
                         f"{MIN_GROUPS} validation prompts, for an interval, and one to train on). Raise --train-prompts "
                         "or drop --select-steps.")
    val = set(prompts[:n_val])
    return [p for p in pairs if p.example_id not in val], [p for p in pairs if p.example_id in val]


def clearly_moved(losses: np.ndarray, groups: Sequence[str], aux_moved: float, seed: int = 0) -> tuple[bool, list[float]]:
    """The criterion of the module docstring on per-pair validation losses; returns it and
    ``[mean, low, high]`` (95% bootstrap over prompts)."""
    iv = bootstrap_ci(np.asarray(losses, dtype=np.float64), seed=seed, groups=list(groups))
    return bool(iv.estimate <= LN2 - aux_moved and iv.high < LN2), [iv.estimate, iv.low, iv.high]


def validation_losses(model, reward: NeuronReward, batches) -> np.ndarray:
    """``−log σ(margin)`` of every validation pair under ``reward`` with ``model`` as it is now."""
    was = model.training
    model.eval()
    try:
        margins = response_activations(model, reward.neurons, batches).margins(reward)
    finally:
        model.train(was)
    return auxiliary_loss(margins, 1.0).double().numpy()


@dataclass
class StepSelection:
    """The pilot's checks (step, mean, low, high) and the steps every compared run takes."""

    cap: int
    every: int
    aux_moved: float
    checks: list[list[float]] = field(default_factory=list)
    chosen: int | None = None  # the first check that met the criterion (None: none by the cap)
    n_validation_pairs: int = 0
    seconds: float = 0.0  # the pilot's own time (kept when a resumed study reads the selection back)
    resumed: bool = False  # read back from an earlier invocation's step_selection.json

    @property
    def steps(self) -> int:
        return self.chosen if self.chosen is not None else self.cap

    def to_dict(self) -> dict:
        return {**asdict(self), "steps": self.steps, "moved": self.chosen is not None, "line": self.line(),
                "criterion": f"mean validation −log σ(margin) ≤ ln 2 − {self.aux_moved} and its 95% interval below ln 2"}

    def line(self) -> str:
        last = self.checks[-1] if self.checks else None
        where = "" if last is None else f" (at step {int(last[0])}: {last[1]:.3f} [{last[2]:.3f}, {last[3]:.3f}])"
        if self.chosen is not None:
            return (f"Steps chosen on {self.n_validation_pairs} validation pairs: {self.chosen}, the first check where the "
                    f"auxiliary loss had clearly moved{where}; ln 2 = {LN2:.3f}.")
        return (f"The auxiliary loss on {self.n_validation_pairs} validation pairs did not clearly move within {self.cap} "
                f"steps{where}: every run took {self.cap} steps, and the comparison tests a reward barely applied.")


class AuxLossMonitor(TrainerCallback):
    """Checks the validation loss every ``selection.every`` steps; stops training when it has clearly moved."""

    def __init__(self, selection: StepSelection, reward: NeuronReward, batches, groups: Sequence[str]):
        self.selection, self.reward, self.batches, self.groups = selection, reward, batches, list(groups)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        sel = self.selection
        if model is None or state.global_step % sel.every:
            return control
        moved, (mean, low, high) = clearly_moved(validation_losses(model, self.reward, self.batches), self.groups,
                                                 sel.aux_moved, seed=state.global_step)
        sel.checks.append([float(state.global_step), mean, low, high])
        if moved and sel.chosen is None:
            sel.chosen = int(state.global_step)
            control.should_training_stop = True
        return control
