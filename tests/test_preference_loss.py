"""YFPO loss: the auxiliary term's sign, the neuron reward, the trainer against TRL's own DPO loss, the trainer hook."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from reward_circuits.studies.yfpo.neuron_reward import (
    NeuronReward,
    auxiliary_loss,
    capture_mlp_neurons,
    yfpo_loss,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_auxiliary_term_rewards_a_positive_margin():
    margins = torch.tensor([-2.0, 0.0, 2.0])
    aux = auxiliary_loss(margins, beta_aux=1.5)
    assert aux[1].item() == pytest.approx(1.5 * math.log(2.0))
    assert aux[0] > aux[1] > aux[2] > 0  # larger chosen-over-rejected activation → smaller loss
    # the gradient pushes the margin up (descent on the loss increases the margin)
    m = torch.zeros(1, requires_grad=True)
    yfpo_loss(torch.zeros(1), m, beta_aux=2.0).backward()
    assert m.grad.item() == pytest.approx(-1.0)  # d/dm −2·log σ(m) at 0 = −2·0.5
    assert yfpo_loss(torch.tensor([0.3]), torch.tensor([0.0]), 0.0).item() == pytest.approx(0.3)


def test_neuron_reward_score_is_the_masked_signed_standardised_mean():
    nr = NeuronReward("value", [(0, 1), (1, 0)], signs=[1.0, -1.0], mean=[1.0, 0.0], std=[2.0, 1.0])
    acts = {0: torch.tensor([[[0.0, 3.0], [0.0, 5.0], [0.0, 100.0]]]),
            1: torch.tensor([[[1.0, 0.0], [3.0, 0.0], [100.0, 0.0]]])}
    mask = torch.tensor([[1, 1, 0]])
    # token 0: (3−1)/2 = 1 and −1 → 0; token 1: (5−1)/2 = 2 and −3 → −0.5; mean = −0.25 (token 2 masked)
    assert nr.score(acts, mask).item() == pytest.approx(-0.25)
    with pytest.raises(ValueError, match="std must be positive"):
        NeuronReward("x", [(0, 1)], std=[0.0])


def _trainer(tiny_hf, tmp_path, cls, **kw):
    from datasets import Dataset
    from trl import DPOConfig

    hf, tok = tiny_hf
    ds = Dataset.from_list([
        {"prompt": "1+1=", "chosen": "2", "rejected": "3"},
        {"prompt": "2+5=", "chosen": "7", "rejected": "9x"},
    ])
    args = DPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=2, max_steps=1, report_to=[],
                     beta=0.1, use_cpu=True, save_strategy="no", logging_steps=1, disable_tqdm=True)
    model = copy.deepcopy(hf)
    with torch.no_grad():  # a policy that differs from the reference, so the DPO loss is not log 2
        for p in model.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    trainer = cls(model=model, ref_model=copy.deepcopy(hf), args=args, train_dataset=ds, processing_class=tok, **kw)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    return trainer, batch


def test_trainer_equals_trl_when_beta_aux_is_zero_and_adds_the_auxiliary_term(tiny_hf, tmp_path):
    from trl import DPOTrainer

    from reward_circuits.studies.yfpo.trainer import NeuronRewardDPOTrainer

    nr = NeuronReward("value", [(0, 3), (1, 5), (1, 7)], signs=[1.0, -1.0, 1.0])
    trl_trainer, batch = _trainer(tiny_hf, tmp_path / "a", DPOTrainer)
    ours0, batch0 = _trainer(tiny_hf, tmp_path / "b", NeuronRewardDPOTrainer, neuron_reward=nr, beta_aux=0.0)
    ours1, _ = _trainer(tiny_hf, tmp_path / "c", NeuronRewardDPOTrainer, neuron_reward=nr, beta_aux=0.7)
    for t in (trl_trainer, ours0, ours1):
        t.model.eval()
    with torch.no_grad():
        ref = trl_trainer.compute_loss(trl_trainer.model, batch)
        l0 = ours0.compute_loss(ours0.model, batch0)
        l1 = ours1.compute_loss(ours1.model, batch0)
        assert abs(ref.item() - math.log(2)) > 1e-4  # the policy really differs from the reference
        assert l0.item() == pytest.approx(ref.item(), abs=1e-7)
        # the auxiliary term, computed independently from a plain forward of the policy
        with capture_mlp_neurons(ours1.model, nr.layers) as acts:
            ours1.model(input_ids=batch0["input_ids"], attention_mask=batch0["attention_mask"], use_cache=False)
        s = nr.score(acts, batch0["completion_mask"])
        margin = s[:2] - s[2:]
        expected = ref.item() + (-0.7 * torch.nn.functional.logsigmoid(margin)).mean().item()
        assert l1.item() == pytest.approx(expected, abs=1e-6)
    assert ours1._metrics["eval"]["neuron/margin"][-1] == pytest.approx(margin.mean().item(), abs=1e-6)


def test_trainer_rejects_beta_aux_without_neurons(tiny_hf, tmp_path):
    from reward_circuits.studies.yfpo.trainer import NeuronRewardDPOTrainer

    with pytest.raises(ValueError, match="needs a neuron_reward"):
        _trainer(tiny_hf, tmp_path, NeuronRewardDPOTrainer, beta_aux=1.0)


def test_capture_hooks_removed_after_an_exception(tiny_hf):
    hf, _ = tiny_hf
    downs = [m for n, m in hf.named_modules() if n.endswith("mlp.down_proj")]
    with pytest.raises(RuntimeError, match="boom"), capture_mlp_neurons(hf, [0, 1]):
        assert all(len(d._forward_pre_hooks) == 1 for d in downs)
        raise RuntimeError("boom")
    assert all(len(d._forward_pre_hooks) == 0 for d in downs)


def test_trainer_margin_equals_the_calibration_margin_under_lora(tiny_hf, tmp_path):
    """The margin the trainer logs at step 0 (LoRA B = 0, so policy = base) equals the one computed
    from a plain forward of the base model on TRL's own batch (same tokens, same completion mask)."""
    from datasets import Dataset
    from peft import LoraConfig
    from trl import DPOConfig
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    from reward_circuits.studies.yfpo.neuron_reward import response_activations
    from reward_circuits.studies.yfpo.pairs import PreferencePair, tokenize_pairs
    from reward_circuits.studies.yfpo.trainer import NeuronRewardDPOTrainer

    hf, tok = tiny_hf
    pairs = [PreferencePair("a", "<|user|>1+1=<|end|><|assistant|>", "2", "3x"),
             PreferencePair("b", "<|user|>4+4=<|end|><|assistant|>", "8", "9")]
    batch = DataCollatorForPreference(pad_token_id=tok.pad_token_id)(tokenize_pairs(pairs, tok))
    neurons = [(0, i) for i in range(8)] + [(1, i) for i in range(8)]
    pooled = response_activations(hf, neurons, [batch])
    reward = NeuronReward("value", neurons).calibrate(pooled.stats())
    args = DPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=2, max_steps=1, report_to=[], use_cpu=True,
                     save_strategy="no", bf16=False, gradient_checkpointing=False)
    trainer = NeuronRewardDPOTrainer(model=copy.deepcopy(hf), args=args, processing_class=tok, neuron_reward=reward, beta_aux=1.0,
                                     train_dataset=Dataset.from_list([p.__dict__ for p in pairs]),
                                     peft_config=LoraConfig(r=2, target_modules=["q_proj", "up_proj", "down_proj"]))
    trl_batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    assert trl_batch["input_ids"].tolist() == batch["input_ids"].tolist()
    trainer.model.train()
    trainer.compute_loss(trainer.model, trl_batch)
    assert trainer._metrics["train"]["neuron/margin"][-1] == pytest.approx(pooled.margins(reward).mean().item(), abs=1e-5)
