"""TRL's ``DPOTrainer`` with the neuron reward added in ``_compute_loss``.

TRL 1.x computes DPO's loss in ``DPOTrainer._compute_loss(model, inputs, return_outputs)`` on a
batch whose first half is the chosen and second half the rejected sequences (same prompts, same
order). :class:`NeuronRewardDPOTrainer` runs TRL's own computation unchanged while hooks on the
selected layers' ``blocks.L.mlp.hook_post`` sites (HF modules found through the hook-name mapping:
``mlp.down_proj`` inputs on Llama) record the policy's activations (the first forward of
the call; the reference forward that follows is not recorded), then adds
``−β_aux · mean log σ(margin)`` (:func:`~reward_circuits.studies.yfpo.neuron_reward.auxiliary_loss`)
and logs ``neuron/dpo_loss`` (TRL's loss alone), ``neuron/margin``, ``neuron/aux_loss`` and ``neuron/accuracy`` next to TRL's metrics.
With ``neuron_reward=None`` or ``beta_aux=0`` the loss is TRL's.
"""

from __future__ import annotations

from trl import DPOTrainer

from .neuron_reward import NeuronReward, auxiliary_loss, capture_mlp_neurons


class NeuronRewardDPOTrainer(DPOTrainer):
    """``DPOTrainer(..., neuron_reward=NeuronReward(...), beta_aux=1.0)``; every other argument is TRL's."""

    def __init__(self, *args, neuron_reward: NeuronReward | None = None, beta_aux: float = 0.0, **kwargs):
        if beta_aux < 0:
            raise ValueError(f"beta_aux must be >= 0, got {beta_aux}.")
        if beta_aux > 0 and neuron_reward is None:
            raise ValueError("beta_aux > 0 needs a neuron_reward (the neurons whose activation is rewarded).")
        super().__init__(*args, **kwargs)
        self.neuron_reward = neuron_reward
        self.beta_aux = float(beta_aux)

    def _precompute_ref_logps(self, dataset, name, batch_size):
        """TRL's precomputation, skipped when the dataset already carries the reference log-probs (a
        previous run with the same reference model computed them)."""
        if {"ref_chosen_logps", "ref_rejected_logps"} <= set(dataset.column_names):
            return dataset
        return super()._precompute_ref_logps(dataset, name, batch_size)

    def _compute_loss(self, model, inputs, return_outputs):
        if self.neuron_reward is None:
            return super()._compute_loss(model, inputs, return_outputs)
        mode = "train" if self.model.training else "eval"
        with capture_mlp_neurons(model, self.neuron_reward.layers) as acts:
            result = super()._compute_loss(model, inputs, return_outputs)
        loss, outputs = result if return_outputs else (result, None)
        score = self.neuron_reward.score(acts, inputs["completion_mask"])
        chosen, rejected = score.chunk(2, dim=0)  # batch is [chosen, rejected]
        margin = chosen - rejected
        aux = auxiliary_loss(margin, self.beta_aux).mean()
        gather = self.accelerator.gather_for_metrics
        self._metrics[mode]["neuron/dpo_loss"].append(gather(loss.detach()).mean().item())
        if self.beta_aux > 0:
            loss = loss + aux
        self._metrics[mode]["neuron/margin"].append(gather(margin.detach()).mean().item())
        self._metrics[mode]["neuron/aux_loss"].append(gather(aux.detach()).mean().item())
        self._metrics[mode]["neuron/accuracy"].append(gather((margin.detach() > 0).float()).mean().item())
        return (loss, outputs) if return_outputs else loss
