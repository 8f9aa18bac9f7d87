"""Using the reward subsystem for preference optimisation (YFPO, arXiv 2605.11906).

* :mod:`.attnlrp`: AttnLRP relevance of MLP neurons on a Llama-family HF model (patched modules,
  restored on exit), with gradient × activation as the baseline;
* :mod:`.neuron_reward`: the neuron reward (mean signed, standardised activation of selected
  neurons over response tokens) and the auxiliary term added to DPO's loss;
* :mod:`.trainer`: TRL's ``DPOTrainer`` with the auxiliary term added in ``_compute_loss``;
* :mod:`.pairs`, :mod:`.selection`, :mod:`.experiment`: preference pairs from rollouts, neuron
  selection (value / AttnLRP / random) and the ``reward-circuits yfpo`` experiment.
"""

from .attnlrp import (
    LRPError,
    NeuronRelevance,
    attnlrp_rules,
    mlp_down_projections,
    neuron_relevance,
)
from .config import CONDITIONS, YFPOConfig
from .experiment import (
    ConditionSummary,
    TrainingRun,
    YFPOResult,
    greedy_correct,
    load_finetuned,
    run_yfpo,
)
from .neuron_reward import (
    NeuronReward,
    NeuronStats,
    ResponseActivations,
    auxiliary_loss,
    capture_mlp_neurons,
    neuron_stats,
    response_activations,
    yfpo_loss,
)
from .pairs import PreferencePair, pairs_dataset, preference_pairs, tokenize_pairs
from .selection import (
    RelevanceSelection,
    ValueSelection,
    gold_answer_batch,
    random_neurons_like,
    select_relevance_neurons,
    select_value_neurons,
)

# the shape every study shares: ``Config`` → ``run(config) -> Result`` → ``Result.to_section(out)``
Config, Result, run = YFPOConfig, YFPOResult, run_yfpo

__all__ = [
    "Config", "Result", "run",
    "CONDITIONS",
    "ConditionSummary",
    "LRPError",
    "NeuronRelevance",
    "NeuronReward",
    "NeuronStats",
    "PreferencePair",
    "RelevanceSelection",
    "ResponseActivations",
    "TrainingRun",
    "ValueSelection",
    "YFPOConfig",
    "YFPOResult",
    "attnlrp_rules",
    "auxiliary_loss",
    "capture_mlp_neurons",
    "gold_answer_batch",
    "greedy_correct",
    "load_finetuned",
    "mlp_down_projections",
    "neuron_relevance",
    "neuron_stats",
    "pairs_dataset",
    "preference_pairs",
    "random_neurons_like",
    "response_activations",
    "run_yfpo",
    "select_relevance_neurons",
    "select_value_neurons",
    "tokenize_pairs",
    "yfpo_loss",
]
