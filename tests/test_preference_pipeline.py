"""YFPO plumbing on tiny inputs: config validation, pairs from rollouts, neuron selection, the CLI."""

from __future__ import annotations

import math

import pytest
import torch

from reward_circuits.data.rollouts import Rollout
from reward_circuits.studies.yfpo.config import YFPOConfig
from reward_circuits.studies.yfpo.neuron_reward import NeuronReward, neuron_stats
from reward_circuits.studies.yfpo.pairs import preference_pairs, tokenize_pairs
from reward_circuits.studies.yfpo.selection import (
    gold_answer_batch,
    random_neurons_like,
    select_relevance_neurons,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("bad, match", [
    ({"samples_per_prompt": 1}, "correct and an incorrect"),
    ({"conditions": ("dpo", "ppo")}, "unknown"),
    ({"beta_aux": -1.0}, "beta_aux"),
    ({"relevance_prompts": 99}, "relevance_prompts"),
    ({"seeds": ()}, "at least one seed"),
    ({"steps": 0}, "--steps"),
])
def test_config_names_the_problem(bad, match):
    with pytest.raises(ValueError, match=match):
        YFPOConfig(**bad)


def test_probe_layers_are_fractions_of_the_layer_count_and_a_missing_layer_fails_before_any_rollout(tmp_path, monkeypatch):
    """One profile fits every architecture: the default probe layers are fractions of the layer count (SmolLM2's 30
    layers: 6, 12, 18, 24, as before; Gemma 3 270M's 18: 4, 7, 11, 14). A layer the model lacks is refused
    right after loading, naming the model's layers and the fix, before the rollouts (which took 20
    minutes on Gemma before a late hook check refused SmolLM2's layers)."""
    from reward_circuits.models.tiny import tiny_hf_model
    from reward_circuits.studies.yfpo import experiment
    from reward_circuits.tasks import Example, Task

    assert YFPOConfig().resolve_probe_layers(30) == (6, 12, 18, 24)
    assert YFPOConfig().resolve_probe_layers(18) == (4, 7, 11, 14)
    assert YFPOConfig().resolve_probe_layers(2) == (0, 1)
    assert YFPOConfig(probe_layers=(3, 5)).resolve_probe_layers(30) == (3, 5)

    def no_rollouts(*a, **k):
        raise AssertionError("rollouts started before the probe layers were checked")

    monkeypatch.setattr("reward_circuits.data.rollouts.generate_rollouts", no_rollouts)
    hf, tok = tiny_hf_model(seed=0)
    task = Task("planted", [Example(id=f"q{i}", question=f"{i}?", answer=str(i)) for i in range(8)],
                lambda response, ex: 0.0, max_new_tokens=4)
    cfg = YFPOConfig(out=str(tmp_path), train_prompts=4, eval_prompts=4, relevance_prompts=4, probe_layers=(1, 24))
    with pytest.raises(ValueError, match=r"probe_layers \[24\] do not exist.*layers 0\.\.1.*--probe-layers.*default \(layers \[0, 1\]\)"):
        experiment.run_yfpo(cfg, progress=False, hf_model=hf, tokenizer=tok, task=task)


def _rollout(ex, s, text, reward, prompt_ids=(5, 6, 7)):
    return Rollout(f"t/{ex}/s{s}", "t", ex, list(prompt_ids), [1, 2], text, reward, "4")


def test_pairs_join_a_right_and_a_wrong_answer_of_the_same_prompt(tiny_hf):
    _, tok = tiny_hf
    rs = [_rollout("a", 0, "#### 4", 1.0), _rollout("a", 1, "#### 5", 0.0), _rollout("a", 2, "#### 4", 1.0),
          _rollout("a", 3, "#### 6", 0.0), _rollout("b", 0, "#### 1", 1.0), _rollout("b", 1, "#### 1", 1.0),
          _rollout("c", 0, "#### 9", 0.0)]
    pairs = preference_pairs(rs, tok, pairs_per_prompt=3, seed=0)
    # prompt a: one distinct right answer ("#### 4" twice) → one pair; b all right, c all wrong → none
    assert len(pairs) == 1
    p = pairs[0]
    assert p.example_id == "a" and p.chosen == "#### 4" and p.rejected in ("#### 5", "#### 6")
    rows = tokenize_pairs(pairs, tok)
    assert tok.decode(rows[0]["chosen_ids"]) == "#### 4" + tok.eos_token


def test_neuron_stats_and_calibrated_signs(tiny_hf):
    """A neuron's sign is + when it is higher on the chosen responses of the pairs."""
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    hf, tok = tiny_hf
    from reward_circuits.studies.yfpo.pairs import PreferencePair

    pairs = [PreferencePair("a", "1+1=", "2", "3x"), PreferencePair("b", "4+4=", "8", "9")]
    batch = DataCollatorForPreference(pad_token_id=tok.pad_token_id)(tokenize_pairs(pairs, tok))
    neurons = [(0, i) for i in range(8)] + [(1, i) for i in range(8)]
    stats = neuron_stats(hf, neurons, [batch])
    nr = NeuronReward("value", neurons).calibrate(stats)
    diff = stats.chosen_mean - stats.rejected_mean
    assert all((s > 0) == (d >= 0) for s, d in zip(nr.signs, diff.tolist()))
    assert all(s > 0 for s in nr.std)
    # calibrated: the signed score's margin on these pairs is positive on average
    from reward_circuits.studies.yfpo.neuron_reward import capture_mlp_neurons

    with torch.no_grad(), capture_mlp_neurons(hf, nr.layers) as acts:
        hf(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    s = nr.score(acts, batch["completion_mask"])
    assert (s[:2] - s[2:]).mean() > 0


def test_relevance_selection_and_matched_random_control():
    from reward_circuits.models.tiny import tiny_hf_model
    from reward_circuits.tasks import get_task

    hf, tok = tiny_hf_model(seed=0)  # fresh: the session's tiny_hf may carry nnsight's instance forwards
    task = get_task("arithmetic:1", n=4, seed=0)
    ids, _mask, target = gold_answer_batch(task, tok, 3)
    assert target.sum(1).tolist() == [len(str(ex.answer)) for ex in list(task.examples)[:3]]  # char-level digits
    for row, ex in zip(range(3), task.examples):
        assert tok.decode(ids[row][target[row]]) == str(ex.answer)
    sel = select_relevance_neurons(hf, tok, task, 3, k=5, method="attnlrp", batch_size=2)
    assert len(sel.reward.neurons) == 5 and sel.reward.kind == "attnlrp"
    assert sel.relevance.conservation_error().abs().max() < 1e-3  # float32 model
    rnd = random_neurons_like(sel.reward, d_mlp=64, seed=0)
    per_layer = lambda r: sorted(layer for layer, _ in r.neurons)
    assert per_layer(rnd) == per_layer(sel.reward)
    assert not set(rnd.neurons) & set(sel.reward.neurons)


def test_cli_registers_yfpo_with_generated_options():
    from reward_circuits.cli import build_parser

    args = build_parser().parse_args(["yfpo", "--out", "x", "--seeds", "0,1,2", "--beta-aux", "0.5", "--conditions", "dpo,value"])
    assert args.seeds == (0, 1, 2) and args.beta_aux == 0.5 and args.conditions == ("dpo", "value")
    from reward_circuits.configs import config_from_args

    cfg = config_from_args(YFPOConfig, args)
    assert cfg.out == "x" and cfg.conditions == ("dpo", "value")


def test_result_section_summaries_and_report(tmp_path):
    """The section's numbers come from the runs: seed-averaged per-prompt accuracy, paired Δ, verdicts."""
    import json

    import numpy as np

    from reward_circuits.report import Report
    from reward_circuits.studies.yfpo.experiment import TrainingRun, YFPOResult

    cfg = YFPOConfig(out=str(tmp_path), conditions=("dpo", "value"), seeds=(0, 1, 2))
    rng = np.random.default_rng(0)
    base = (rng.random(40) < 0.4).astype(float).tolist()
    runs = []
    for seed in cfg.seeds:
        dpo = (rng.random(40) < 0.5).astype(float).tolist()
        runs.append(TrainingRun("dpo", seed, dpo, [{"neuron/dpo_loss": 0.69, "neuron/margin": 0.1, "rewards/margins": 0.0}] * 3, None, 1.0))
        runs.append(TrainingRun("value", seed, [1.0] * 40, [{"neuron/dpo_loss": 0.6, "neuron/margin": 0.5, "rewards/margins": 0.1}] * 3, None, 1.0))
    value = NeuronReward("value", [(1, 2), (1, 3)])
    res = YFPOResult(cfg, "tiny", 20, 0.5, 8, base, {"value": value}, {"value": 1.0}, None, None, {}, runs)
    rows = {s.condition: s for s in res.summaries()}
    assert rows["value"].accuracy.estimate == 1.0
    dpo_mean = np.mean([r.correct for r in runs if r.condition == "dpo"])
    assert rows["dpo"].accuracy.estimate == pytest.approx(dpo_mean)
    assert rows["value"].vs_dpo.estimate == pytest.approx(1.0 - dpo_mean)
    assert rows["value"].verdict_vs_dpo == "reproduces" and rows["dpo"].verdict_vs_dpo is None
    Report(tmp_path, {"model": "tiny"}).add(res.section(tmp_path))
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["yfpo"]["conditions"]["value"]["verdict_vs_dpo"] == "reproduces"
    assert summary["yfpo"]["base_correct"] == base and summary["yfpo"]["vs_random"] == {}  # no random condition here
    assert (tmp_path / "yfpo_curves.png").exists() and "yfpo_accuracy.png" in (tmp_path / "report.html").read_text()


def test_saved_adapter_reloads_as_the_fine_tuned_model(tiny_hf, tmp_path):
    import copy

    from peft import LoraConfig, get_peft_model

    from reward_circuits.studies.yfpo.experiment import _save_adapter, load_finetuned

    hf, tok = tiny_hf
    peft_model = get_peft_model(copy.deepcopy(hf), LoraConfig(r=2, target_modules=["q_proj", "down_proj"], init_lora_weights=False))
    path = _save_adapter(peft_model, tmp_path / "adapters" / "value_s0")
    assert (tmp_path / "adapters" / "value_s0" / "adapter_model.safetensors").exists()
    merged, _ = load_finetuned(path, (copy.deepcopy(hf), tok))
    ids = tok(["1+2=3"], return_tensors="pt").input_ids
    with torch.no_grad():
        a, b, base = peft_model(input_ids=ids).logits, merged(input_ids=ids).logits, hf(input_ids=ids).logits
    assert torch.allclose(a, b, atol=1e-5) and not torch.allclose(a, base, atol=1e-3)
    with pytest.raises(FileNotFoundError, match="adapter_model.safetensors"):
        load_finetuned(tmp_path, (hf, tok))


def test_run_yfpo_end_to_end_on_a_tiny_model(tmp_path):
    """The whole command path (rollouts → pairs → value/AttnLRP/random neurons → 4 conditions × 1 seed
    of TRL + LoRA → held-out accuracy → report) on the tiny Llama with a planted reward (a response is
    'correct' when it contains the digit 7), so every stage has both classes."""
    import json

    from reward_circuits.report import Report
    from reward_circuits.studies.yfpo.experiment import run_yfpo
    from reward_circuits.tasks import Example, Task

    from reward_circuits.models.tiny import tiny_hf_model

    hf, tok = tiny_hf_model(seed=0)  # fresh: the session's tiny_hf may carry nnsight's instance forwards
    examples = [Example(id=f"q{i}", question=f"{i}+{i}?", answer=str(2 * i)) for i in range(14)]
    task = Task("planted", examples, lambda response, ex: float("7" in response), max_new_tokens=6)
    cfg = YFPOConfig(out=str(tmp_path), train_prompts=8, eval_prompts=6, samples_per_prompt=6, max_new_tokens=6,
                     relevance_prompts=4, probe_layers=(0, 1), n_neurons=4, probe_epochs=2, seeds=(0,), steps=2,
                     batch_pairs=2, lora_r=2, lora_targets=("q_proj", "down_proj"), temperature=1.5)
    before = [p.detach().clone() for p in hf.parameters()]
    res = run_yfpo(cfg, progress=False, hf_model=hf, tokenizer=tok, task=task)
    assert all(torch.equal(a, b) for a, b in zip(before, hf.parameters()))  # the shared model is untouched
    assert res.n_pairs >= 2 and len(res.runs) == 4
    assert {r.condition for r in res.runs} == {"dpo", "value", "attnlrp", "random"}
    assert all(len(r.correct) == 6 and len(r.curve) == 2 and "neuron/margin" in r.curve[0] for r in res.runs)
    aux = {r.condition: r.curve[0]["neuron/aux_loss"] for r in res.runs if r.seed == 0}
    assert aux["dpo"] == 0.0 and aux["value"] > 0
    assert (tmp_path / res.runs[0].adapter_dir / "adapter_model.safetensors").exists()
    Report(tmp_path, {"model": "tiny"}).add(res.section(tmp_path))
    summary = json.loads((tmp_path / "summary.json").read_text())["yfpo"]
    assert set(summary["conditions"]) == {"dpo", "value", "attnlrp", "random"}
    assert set(summary["vs_random"]) == {"value", "attnlrp"}
    assert 0.0 <= summary["attnlrp_check"]["iou_with_gradient_x_activation"] <= 1.0


def test_reference_log_probs_are_computed_once_and_reused(tmp_path, monkeypatch):
    """The reference (base model, LoRA off) is the same in every run: TRL precomputes its log-probs in
    the first run; later runs get them as dataset columns and never run TRL's precomputation (or a
    reference forward) again; the reused values equal a fresh precomputation."""
    from reward_circuits.models.tiny import tiny_hf_model
    from reward_circuits.studies.yfpo.experiment import _train_one
    from reward_circuits.studies.yfpo.pairs import PreferencePair, pairs_dataset
    from reward_circuits.studies.yfpo.trainer import NeuronRewardDPOTrainer
    from trl import DPOTrainer

    hf, tok = tiny_hf_model(seed=0)
    pairs = [PreferencePair(f"q{i}", f"What is {i}+{i}?", f" {2 * i}", f" {2 * i + 1}") for i in range(4)]
    dataset = pairs_dataset(pairs)
    cfg = YFPOConfig(out=str(tmp_path), steps=1, batch_pairs=2, lora_r=2, lora_targets=("q_proj",))
    calls = []
    real = DPOTrainer._precompute_ref_logps
    monkeypatch.setattr(DPOTrainer, "_precompute_ref_logps",
                        lambda self, ds, name, bs: calls.append(len(ds)) or real(self, ds, name, bs))
    _, _, with_ref = _train_one(cfg, hf, tok, dataset, None, 0.0, 0, tmp_path / "a")
    assert calls == [4] and {"ref_chosen_logps", "ref_rejected_logps"} <= set(with_ref.column_names)
    _, curve, again = _train_one(cfg, hf, tok, with_ref, None, 0.0, 1, tmp_path / "b")
    assert calls == [4] and again is with_ref  # the second run computed nothing
    # the reused values are what TRL computes on a fresh dataset
    _, _, fresh = _train_one(cfg, hf, tok, dataset, None, 0.0, 1, tmp_path / "c")
    assert calls == [4, 4]
    for c in ("ref_chosen_logps", "ref_rejected_logps"):
        assert torch.allclose(torch.tensor(with_ref[c]), torch.tensor(fresh[c]), atol=1e-5)
    assert all(math.isfinite(v) for v in with_ref["ref_chosen_logps"]) and curve
    assert issubclass(NeuronRewardDPOTrainer, DPOTrainer)
