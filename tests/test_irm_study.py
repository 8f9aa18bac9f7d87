"""The whole implicit-reward-model study end to end on the tiny random Llama (1 GRPO step)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from reward_circuits.studies.irm import IrmConfig, run_irm, write_irm_report

pytestmark = pytest.mark.usefixtures("one_thread")

SUMMARY_KEYS = ("reward_base", "reward_finetuned", "top_divergence_layers", "mmcs", "kendall_tau", "kendall_p",
                "kendall_tau_negative", "reward_after_ablation", "reward_after_random_ablation")


def tiny_config(out, **kw) -> IrmConfig:
    base = {"out": str(out), "n_train_prompts": 8, "n_select_prompts": 8, "n_eval_prompts": 8, "max_new_tokens": 6, "steps": 1,
                "completions_per_step": 4, "num_generations": 2, "n_layers": 1, "sae_epochs": 2, "sae_k": 4, "n_positive_words": 12,
                "n_negative_words": 12, "templates_per_word": 2, "n_ablate": 3, "n_random_draws": 1, "n_boot": 100}
    base.update(kw)
    return IrmConfig(**base)


def test_run_irm_end_to_end_on_the_tiny_model(tiny_hf, tmp_path):
    hf, tok = tiny_hf
    before = {k: v.clone() for k, v in hf.state_dict().items()}
    # random char-level text rarely contains a lexicon word: reward lower-case letters so GRPO has a signal
    result = run_irm(tiny_config(tmp_path), base_hf=hf, tokenizer=tok,
                     reward=lambda texts: np.array([sum(c.islower() for c in t) / max(len(t), 1) for t in texts]))
    assert not (tmp_path / "summary.json").exists()  # the study writes its artefacts; the report is the command's
    write_irm_report(result)
    summary = json.loads((tmp_path / "summary.json").read_text())["irm"]
    for key in SUMMARY_KEYS:
        assert key in summary
    assert summary["top_divergence_layers"] == result.layers and len(result.layers) == 1
    assert result.divergence.distance[result.layers[0]] > 0  # the LoRA update was merged and saved
    assert (tmp_path / "finetuned_model" / "model.safetensors").exists()
    assert (tmp_path / "report.html").read_text().count("<img") == 2
    assert -1 <= summary["kendall_tau"] <= 1 and 0 <= summary["kendall_p"] <= 1
    assert summary["reward_base"]["n"] == 8
    assert all(torch_equal(before[k], v) for k, v in hf.state_dict().items())  # the base model is untouched


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


def test_run_irm_on_a_given_model_pair_skips_fine_tuning(tiny_hf, tmp_path):
    import copy

    import torch

    hf, tok = tiny_hf
    tuned = copy.deepcopy(hf)
    with torch.no_grad():
        tuned.model.layers[0].mlp.up_proj.weight.add_(0.01)
    tuned.save_pretrained(tmp_path / "tuned", safe_serialization=True)
    tok.save_pretrained(tmp_path / "tuned")
    result = run_irm(tiny_config(tmp_path / "out", finetuned=str(tmp_path / "tuned")), base_hf=hf, tokenizer=tok)
    write_irm_report(result)
    assert result.rewards.finetune is None and result.layers == [0]
    assert not (tmp_path / "out" / "finetuned_model").exists()
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())["irm"]
    assert summary["finetune_steps"] is None and summary["top_divergence_layers"] == [0]
