"""Studies that go through the adapter run on every architecture it loads: the tiny Llama (rotary,
gated MLP) and the tiny GPT-2 (absolute positions, Conv1D MLP), on both backends.

The preference study's generation (greedy held-out accuracy, sampled rollouts) and its neuron
activations (calibration at ``blocks.L.mlp.hook_post``) go through the adapter; the training-time
capture stays on HF modules (it needs their autograd graph) but finds them through the hook-name
mapping, so it too runs on both layouts.
"""

from __future__ import annotations

import copy

import pytest
import torch

from reward_circuits.models import from_hf, hf_module
from reward_circuits.models.tiny import tiny_gpt2_model, tiny_hf_model
from reward_circuits.preference.experiment import greedy_correct
from reward_circuits.preference.neuron_reward import capture_mlp_neurons, response_activations
from reward_circuits.preference.pairs import PreferencePair, tokenize_pairs
from reward_circuits.tasks import Example, Task

pytestmark = pytest.mark.usefixtures("one_thread")

ARCHS = {"llama": tiny_hf_model, "gpt2": tiny_gpt2_model}
BACKENDS = ("transformer_lens", "nnsight")
CASES = [(a, b) for a in ARCHS for b in BACKENDS]
MLP_SITE = {"llama": "mlp.down_proj", "gpt2": "mlp.c_proj"}


def _fresh(arch):
    """A fresh HF model (nnsight's wrapper patches the instance it wraps)."""
    return ARCHS[arch](seed=0)


@pytest.fixture(scope="module")
def adapters():
    out = {}
    for arch, backend in CASES:
        hf, tok = _fresh(arch)
        out[arch, backend] = from_hf(hf, tok, backend=backend, name=f"tiny-{arch}")
    return out


def _task(n=6):
    examples = [Example(id=f"q{i}", question=f"{i}+{i}?", answer=str(2 * i)) for i in range(n)]
    return Task("planted", examples, lambda response, ex: float("7" in response), max_new_tokens=6)


def _pair_batch(tok):
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    pairs = [PreferencePair("a", "<|user|>1+1=<|end|><|assistant|>", "2", "3x yz"),
             PreferencePair("b", "<|user|>14+4=<|end|><|assistant|>", "18", "9"),
             PreferencePair("c", "<|user|>2=<|end|><|assistant|>", "two", "2 2 2 2")]
    return DataCollatorForPreference(pad_token_id=tok.pad_token_id)(tokenize_pairs(pairs, tok))


@pytest.mark.parametrize("arch, backend", CASES)
def test_greedy_accuracy_through_the_adapter_matches_hf_generate(adapters, arch, backend):
    """What ``greedy_correct`` scored before (HF ``generate`` on a left-padded batch) is what it
    scores now through ``adapter.generate``: same response texts, same rewards."""
    ad = adapters[arch, backend]
    hf, tok = _fresh(arch)
    task = _task()
    prompts = [task.render(ex, tok) for ex in task.examples]
    tok.padding_side = "left"
    enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        gen = hf.generate(input_ids=enc.input_ids, attention_mask=enc.attention_mask, max_new_tokens=6, do_sample=False,
                          pad_token_id=tok.pad_token_id)
    want = tok.batch_decode(gen[:, enc.input_ids.shape[1]:], skip_special_tokens=True)
    got = [g.text for g in ad.generate(prompts, max_new_tokens=6, batch_size=4, progress=False)]
    assert got == want
    assert greedy_correct(ad, task, 6, batch_size=4) == [task.reward(t, ex) for t, ex in zip(want, task.examples)]


@pytest.mark.parametrize("arch, backend", CASES)
def test_neuron_activations_through_the_adapter_match_the_training_capture(adapters, arch, backend):
    """The calibration pass (adapter, ``blocks.L.mlp.hook_post``) sees the activations the training
    loss sees (HF module through the hook-name mapping), on TRL's right-padded preference batch."""
    ad = adapters[arch, backend]
    hf, tok = _fresh(arch)
    batch = _pair_batch(tok)
    neurons = [(0, i) for i in range(0, 24, 3)] + [(1, i) for i in range(5)]
    via_adapter = response_activations(ad, neurons, [batch])
    via_hf = response_activations(hf, neurons, [batch])
    keep = batch["attention_mask"].bool()
    assert torch.allclose(via_adapter.acts[0][keep], via_hf.acts[0][keep], atol=1e-4)
    a, b = via_adapter.stats(), via_hf.stats()
    assert torch.allclose(a.mean, b.mean, atol=1e-4) and torch.allclose(a.std, b.std, atol=1e-4)
    assert torch.equal(torch.sign(a.chosen_mean - a.rejected_mean), torch.sign(b.chosen_mean - b.rejected_mean))


@pytest.mark.parametrize("arch", ARCHS)
def test_training_capture_finds_the_mlp_site_of_each_layout_also_under_lora(arch):
    from peft import LoraConfig, get_peft_model

    hf, tok = _fresh(arch)
    site = MLP_SITE[arch]
    module, side = hf_module(hf, "blocks.1.mlp.hook_post")
    assert side == "input" and module is dict(hf.named_modules())[
        f"{'model.layers' if arch == 'llama' else 'transformer.h'}.1.{site}"]
    batch = _pair_batch(tok)
    with torch.no_grad(), capture_mlp_neurons(hf, [0, 1]) as acts:
        hf(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    d_mlp = 64 if arch == "llama" else 128
    assert set(acts) == {0, 1} and acts[1].shape[-1] == d_mlp
    peft = get_peft_model(copy.deepcopy(hf), LoraConfig(r=2, target_modules=[site.split(".")[-1]]))
    wrapped, _ = hf_module(peft, "blocks.1.mlp.hook_post")
    assert hasattr(wrapped, "base_layer")  # the LoRA wrapper, whose input is the site's input
    with torch.no_grad(), capture_mlp_neurons(peft, [1]) as lora_acts:
        peft(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    assert torch.allclose(lora_acts[1], acts[1], atol=1e-6)  # LoRA B = 0: the base model's values


@pytest.mark.parametrize("arch, backend", CASES)
def test_rollouts_and_value_neurons_on_every_architecture(adapters, arch, backend, tmp_path):
    from reward_circuits.data.rollouts import generate_rollouts
    from reward_circuits.models import GenerationConfig
    from reward_circuits.preference.selection import random_neurons_like, select_value_neurons

    ad = adapters[arch, backend]
    task = _task(12)
    cfg = GenerationConfig(max_new_tokens=6, do_sample=True, temperature=1.5, seed=0, progress=False)
    rollouts = generate_rollouts(ad, task, cfg, samples_per_prompt=4)
    assert len(rollouts) == 48 and 0 < sum(r.reward for r in rollouts) < 48
    vs = select_value_neurons(ad, rollouts, (0, 1), 4, tmp_path / "store", seed=0, progress=False, epochs=2)
    assert len(vs.reward.neurons) == 4 and vs.hook in ("blocks.0.mlp.hook_post", "blocks.1.mlp.hook_post")
    rnd = random_neurons_like(vs.reward, ad.d_mlp, seed=0)
    assert all(0 <= i < ad.d_mlp for _, i in rnd.neurons)


def test_gradient_relevance_runs_on_gpt2_and_attnlrp_names_its_limit():
    from reward_circuits.preference.attnlrp import LRPError
    from reward_circuits.preference.selection import select_relevance_neurons
    from reward_circuits.tasks import get_task

    hf, tok = _fresh("gpt2")
    task = get_task("arithmetic:1", n=4, seed=0)
    sel = select_relevance_neurons(hf, tok, task, 3, k=5, method="gradient_x_activation", batch_size=2)
    assert len(sel.reward.neurons) == 5 and sel.relevance.per_prompt.shape == (3, 2, 128)
    with pytest.raises(LRPError, match="Llama-family"):
        select_relevance_neurons(hf, tok, task, 3, k=5, method="attnlrp")


@pytest.mark.parametrize("backend", BACKENDS)
def test_run_yfpo_on_gpt2(tmp_path, backend):
    """The YFPO command path on the tiny GPT-2 (AttnLRP is Llama-only: its conditions are left out)."""
    from reward_circuits.preference.config import YFPOConfig
    from reward_circuits.preference.experiment import run_yfpo

    hf, tok = _fresh("gpt2")
    examples = [Example(id=f"q{i}", question=f"{i}+{i}?", answer=str(2 * i)) for i in range(14)]
    task = Task("planted", examples, lambda response, ex: float("7" in response), max_new_tokens=6)
    cfg = YFPOConfig(out=str(tmp_path), train_prompts=8, eval_prompts=6, samples_per_prompt=6, max_new_tokens=6,
                     relevance_prompts=4, probe_layers=(0, 1), n_neurons=4, probe_epochs=2, seeds=(0,), steps=2, batch_pairs=2,
                     lora_r=2,
                     lora_targets=("c_attn", "c_fc"), temperature=1.5, conditions=("dpo", "value", "random"),
                     backend=backend, save_adapters=False)
    res = run_yfpo(cfg, progress=False, hf_model=hf, tokenizer=tok, task=task)
    assert res.n_pairs >= 2 and {r.condition for r in res.runs} == {"dpo", "value", "random"}
    assert all(len(r.correct) == 6 and "neuron/margin" in r.curve[0] for r in res.runs)
    assert len(res.base_correct) == 6
