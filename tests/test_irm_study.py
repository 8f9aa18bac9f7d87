"""The whole implicit-reward-model study end to end on the tiny random Llama (1 GRPO step)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from reward_circuits.studies.irm import IrmConfig, run_irm, write_irm_report

pytestmark = pytest.mark.usefixtures("one_thread")

SUMMARY_KEYS = ("reward_base", "reward_finetuned", "top_divergence_layers", "mmcs", "kendall_tau", "kendall_p",
                "kendall_tau_negative", "reward_after_ablation", "reward_after_random_ablation", "finetune_step_kl",
                "finetune_diagnostics", "irm_finetuned", "irm_base", "irm_finetuned_minus_base", "ceiling_kendall_tau",
                "mmcs_base_vs_base_floor", "ablation_rank_p", "activation_frequency")


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
    whole = json.loads((tmp_path / "summary.json").read_text())
    assert whole["config"]["learning_rate"] == result.config.learning_rate  # the run records its recipe
    assert whole["config"]["out"] == "."  # paths relative to the run directory
    summary = whole["irm"]
    for key in SUMMARY_KEYS:
        assert key in summary
    assert summary["top_divergence_layers"] == result.layers and len(result.layers) == 1
    assert result.divergence.distance[result.layers[0]] > 0  # the LoRA update was merged and saved
    assert (tmp_path / "finetuned_model" / "model.safetensors").exists()
    # LoRA on all linear layers: every layer could change, the adapter's modules are named, and every layer did
    ch = summary["changed_layers"]
    assert ch["could_change_source"] == "LoRA adapter" and ch["every_layer_could_change"]
    assert "self_attn.q_proj" in ch["could_change_modules"] and ch["layers_above_floor"] == [0, 1]
    assert set(summary["sae_change_vs_floor"]) == {f"blocks.{result.layers[0]}.hook_mlp_out"}
    assert (tmp_path / "report.html").read_text().count("<img") == 2
    assert -1 <= summary["kendall_tau"] <= 1 and 0 <= summary["kendall_p"] <= 1
    assert summary["reward_base"]["n"] == 8
    assert len(summary["finetune_step_kl"]) == len(summary["finetune_step_rewards"]) >= 1
    d = summary["finetune_diagnostics"]
    assert d["kl_to_base"] >= 0 and d["perplexity_base"] > 1 and len(d["samples"]) == 6 and not d["forced"]
    # the paper's IRM on both models over the same words, paired; values normalised to [-4, 4]
    assert summary["irm_finetuned"]["words"] == summary["irm_base"]["words"]
    assert max(abs(v) for v in summary["irm_finetuned"]["reconstructed"]) <= 4 + 1e-9
    assert summary["irm_finetuned_minus_base"]["tau_difference"]["n"] == 24
    assert summary["ablation_n_draws"] == 1 and 0 < summary["ablation_rank_p"] <= 1
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
    # no adapter record beside the model: the weights that differ name what changed (the planted layer only)
    ch = summary["changed_layers"]
    assert ch["could_change_source"] == "weights that differ" and ch["could_change_modules"] == ["mlp.up_proj"]
    assert ch["layers_above_floor"] == [0] and ch["could_change_layers"] == [0]


def collapsed_model(hf, tok):
    """A planted collapsed policy: attention and MLP outputs scaled to ~0, so the next token depends on
    the current one only, and the unembedding maps 'a' → ' ' and anything else → 'a': "a a a a ..."."""
    import copy

    import torch

    m = copy.deepcopy(hf)
    a, space = tok.convert_tokens_to_ids("a"), tok.convert_tokens_to_ids(" ")
    d = m.config.hidden_size
    e1, e2 = torch.zeros(d), torch.zeros(d)
    e1[0], e2[1] = 1.0, 1.0
    with torch.no_grad():
        for layer in m.model.layers:
            layer.self_attn.o_proj.weight.mul_(1e-3)
            layer.mlp.down_proj.weight.mul_(1e-3)
        emb = m.model.embed_tokens.weight
        emb.copy_(e2.expand_as(emb) + 0.01 * torch.randn_like(emb))
        emb[a] = e1 + 0.01 * torch.randn(d)
        m.model.norm.weight.fill_(1.0)
        m.lm_head.weight.zero_()
        m.lm_head.weight[space] = 50 * e1
        m.lm_head.weight[a] = 50 * e2
    return m


def test_the_guard_refuses_a_collapsed_model_unless_forced(tiny_hf, tmp_path):
    from reward_circuits.studies.irm import RewardHackError, distinct_n

    hf, tok = tiny_hf
    collapsed = collapsed_model(hf, tok)
    collapsed.save_pretrained(tmp_path / "collapsed", safe_serialization=True)
    tok.save_pretrained(tmp_path / "collapsed")
    with pytest.raises(RewardHackError, match="force-reward-hack") as err:
        run_irm(tiny_config(tmp_path / "out", finetuned=str(tmp_path / "collapsed")), base_hf=hf, tokenizer=tok)
    assert "distinct-2" in str(err.value)
    assert distinct_n(["a a a a a", "a a a"]) == pytest.approx(1 / 6)
    result = run_irm(tiny_config(tmp_path / "forced", finetuned=str(tmp_path / "collapsed"), force_reward_hack=True),
                     base_hf=hf, tokenizer=tok)
    write_irm_report(result)
    summary = json.loads((tmp_path / "forced" / "summary.json").read_text())["irm"]
    d = summary["finetune_diagnostics"]
    assert d["forced"] and d["distinct2_finetuned"] < 0.3 and any("distinct-2" in p for p in d["problems"])
    assert all(s["finetuned"].replace(" ", "") == "a" * len(s["finetuned"].replace(" ", "")) for s in d["samples"])
    assert "FORCED" in (tmp_path / "forced" / "report.html").read_text()
    # a healthy model passes the same guard: KL of a model to itself is 0
    assert result.rewards.diagnostics.kl_to_base > 0.1
