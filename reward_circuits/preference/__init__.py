"""Using the reward subsystem for preference optimisation (YFPO, arXiv 2605.11906).

* :mod:`.attnlrp`: AttnLRP relevance of MLP neurons on a Llama-family HF model (patched modules,
  restored on exit), with gradient × activation as the baseline;
* :mod:`.neuron_reward`: the neuron reward (mean signed, standardised activation of selected
  neurons over response tokens), DPO's loss and the auxiliary term;
* :mod:`.trainer`: TRL's ``DPOTrainer`` with the auxiliary term added in ``_compute_loss``;
* :mod:`.pairs`, :mod:`.selection`, :mod:`.experiment`: preference pairs from rollouts, neuron
  selection (value / AttnLRP / random) and the ``reward-circuits yfpo`` experiment.
"""

from .attnlrp import LRPError, NeuronRelevance, attnlrp_rules, mlp_down_projections, neuron_relevance
from .neuron_reward import (
    NeuronReward,
    NeuronStats,
    auxiliary_loss,
    capture_mlp_neurons,
    dpo_sigmoid_loss,
    neuron_stats,
    yfpo_loss,
)

__all__ = [
    "LRPError",
    "NeuronRelevance",
    "NeuronReward",
    "NeuronStats",
    "attnlrp_rules",
    "auxiliary_loss",
    "capture_mlp_neurons",
    "dpo_sigmoid_loss",
    "mlp_down_projections",
    "neuron_relevance",
    "neuron_stats",
    "yfpo_loss",
]
