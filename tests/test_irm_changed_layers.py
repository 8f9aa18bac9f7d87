"""Issue 28: the divergence study names which layers the fine-tune could change and which changed
above the base-vs-base floor, on planted weights, a planted LoRA and planted dictionaries; and the
matched-ablation rank test can reach α with the default draws."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from reward_circuits.analysis.claims import verdict
from reward_circuits.analysis.claims.study_evidence import irm_evidence
from reward_circuits.analysis.resampling import MIN_RANK_DRAWS
from reward_circuits.studies.irm import IrmConfig, layer_divergence
from reward_circuits.studies.irm.dictionaries import sae_change_vs_floor
from reward_circuits.studies.irm.divergence import changed_layers, module_kinds
from reward_circuits.studies.irm.finetune import LORA_TARGETS_FILE, lora_targets, read_lora_targets

pytestmark = pytest.mark.usefixtures("one_thread")


def _planted(hf, layer: int, scale: float = 1e-3):
    tuned = copy.deepcopy(hf)
    with torch.no_grad():
        w = tuned.model.layers[layer].mlp.down_proj.weight
        w.add_(scale * torch.randn(w.shape, generator=torch.Generator().manual_seed(0)))
    return tuned


def test_a_planted_layer_change_is_named_and_unchanged_layers_are_not(tiny_hf):
    hf, _ = tiny_hf
    tuned = _planted(hf, 1)
    div = layer_divergence(hf, tuned)
    assert div.changed_tensors == ["model.layers.1.mlp.down_proj.weight"]
    res = changed_layers(div, layer_divergence(hf, hf))
    assert res.changed == [1]
    assert res.relative_change[0] == 0.0 and res.relative_change[1] > res.floor[1]
    assert res.could_change == {1: ["mlp.down_proj"]} and res.source == "weights that differ"
    assert res.summary()["every_layer_could_change"] is False
    # a change below float32 rounding is not a fine-tuning update
    tiny = _planted(hf, 0, scale=1e-12)
    assert changed_layers(layer_divergence(hf, tiny)).changed == []


def test_a_change_no_larger_than_the_floor_is_not_named(tiny_hf):
    hf, _ = tiny_hf
    tuned, other = _planted(hf, 1, 1e-3), _planted(hf, 1, 2e-3)  # the floor moves layer 1 twice as much
    res = changed_layers(layer_divergence(hf, tuned), layer_divergence(hf, other))
    assert res.changed == []
    with pytest.raises(ValueError, match="floor covers layers"):
        d = layer_divergence(hf, tuned)
        f = layer_divergence(hf, other)
        f.layers = [0]
        changed_layers(d, f)


def test_the_lora_adapter_names_the_layers_and_modules_it_could_change(tiny_hf, tmp_path):
    from peft import LoraConfig, get_peft_model

    hf, _ = tiny_hf
    peft_model = get_peft_model(copy.deepcopy(hf), LoraConfig(r=2, target_modules=["q_proj", "v_proj"],
                                                              layers_to_transform=[1], lora_dropout=0.0))
    targets = lora_targets(peft_model)
    assert targets == ["model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.v_proj"]
    assert module_kinds(targets) == {1: ["self_attn.q_proj", "self_attn.v_proj"]}
    with torch.no_grad():  # LoRA B starts at zero: give it a value so the merge changes the weights
        for n, p in peft_model.named_parameters():
            if "lora_B" in n:
                p.fill_(0.1)
    merged = peft_model.merge_and_unload()
    res = changed_layers(layer_divergence(hf, merged), None, targets)
    assert res.changed == [1] and res.could_change == {1: ["self_attn.q_proj", "self_attn.v_proj"]}
    assert res.source == "LoRA adapter" and "layers [1]" in res.sentence()
    with pytest.raises(ValueError, match="no LoRA layers"):
        lora_targets(hf)
    assert read_lora_targets(tmp_path) is None
    (tmp_path / LORA_TARGETS_FILE).write_text('{"modules": ["model.layers.0.mlp.up_proj"]}')
    assert read_lora_targets(tmp_path) == ["model.layers.0.mlp.up_proj"]


def _unit_rows(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=1, keepdim=True)


def test_dictionary_change_is_named_only_above_the_second_seed_floor():
    g = torch.Generator().manual_seed(0)
    base = _unit_rows(torch.randn(64, 16, generator=g))
    other_seed = _unit_rows(base + 0.3 * torch.randn(64, 16, generator=g))  # the floor: a noisy copy
    changed = _unit_rows(torch.randn(64, 16, generator=g))  # the fine-tune rewrote the dictionary
    same = _unit_rows(base + 0.3 * torch.randn(64, 16, generator=g))  # no more change than a seed
    hit = sae_change_vs_floor(base, changed, other_seed, n_boot=500)
    null = sae_change_vs_floor(base, same, other_seed, n_boot=500)
    assert hit["above_floor"] and hit["divergence"] > hit["floor"]
    assert not null["above_floor"]
    assert null["difference"]["low"] < 0 < null["difference"]["high"]


def _irm_summary(draws: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    diff = {"estimate": 1.5, "low": 1.2, "high": 1.8, "n": 48, "level": 0.95}
    return {"irm": {"reward_difference": diff, "reward_difference_p": 1e-4, "ablation_observed_drop": 5.0,
                    "ablation_draw_drops": list(rng.normal(0, 0.1, draws))}}


def test_default_matched_draws_let_the_rank_test_reach_alpha():
    assert IrmConfig().n_random_draws >= MIN_RANK_DRAWS == 39
    ok = [r for r in verdict(irm_evidence(_irm_summary(IrmConfig().n_random_draws)))
          if r.id == "irm.ablation_vs_matched"][0]
    assert ok.verdict == "reproduces"  # a planted drop far beyond every draw: p = 1/41 <= 0.025
    short = [r for r in verdict(irm_evidence(_irm_summary(20)))
             if r.id == "irm.ablation_vs_matched"][0]
    assert short.verdict == "inconclusive" and "Holm" in short.notes  # p >= 1/21 can never reach 0.025


def test_prompts_and_contrastive_reads_carry_the_bos_a_gemma_style_tokenizer_needs(tl_adapter):
    """A tokenizer that puts BOS first gets it in the text (generation and TRL tokenise without special
    tokens); the reader's word window shifts by the BOS token; SAE data drops the BOS position."""
    from types import SimpleNamespace

    from reward_circuits.sae import SAETrainConfig, train_sae
    from reward_circuits.studies.irm.contrastive import SAEFeatureReader
    from reward_circuits.studies.irm.dictionaries import text_activations
    from reward_circuits.studies.irm.study import model_prompt_splits, prompt_splits

    cfg = IrmConfig(n_train_prompts=4, n_select_prompts=4, n_eval_prompts=4)
    bos_tok = SimpleNamespace(bos_token="<s>", bos_token_id=1, add_bos_token=True)  # not callable: reads the flag
    assert all(p == "<s>" + q for a, b in zip(model_prompt_splits(cfg, bos_tok), prompt_splits(cfg)) for p, q in zip(a, b))
    assert model_prompt_splits(cfg, tl_adapter.tokenizer) == prompt_splits(cfg)  # no BOS to add: unchanged
    hook = "blocks.1.hook_mlp_out"
    acts = text_activations(tl_adapter, ["the film was good", "a bad one"], [hook])[hook]
    sae = train_sae(acts, SAETrainConfig(d_sae=8, epochs=1, k=2, architecture="topk", seed=0), hook_name=hook).sae
    bos = tl_adapter.tokenizer.bos_token
    reader = SAEFeatureReader(tl_adapter, {hook: sae}, prefix=bos)
    assert reader.n_prefix == 1
    by_text = reader(["the film was good", "a bad one"], ["the film was ", "a "], ["the film was good", "a bad"])
    by_index = reader(["the film was good", "a bad one"], ["the film was ", "a "], [len(tl_adapter.tokenizer(
        t, add_special_tokens=False)["input_ids"]) for t in ("the film was good", "a bad")])  # ints shift by the BOS
    np.testing.assert_allclose(by_text, by_index, atol=1e-6)
    spelled = SAEFeatureReader(tl_adapter, {hook: sae})([bos + "the film was good", bos + "a bad one"],
                                                        [bos + "the film was ", bos + "a "], [bos + "the film was good", bos + "a bad"])
    np.testing.assert_allclose(by_text, spelled, atol=1e-6)
    with_bos = text_activations(tl_adapter, [bos + "the film was good"], [hook])[hook]
    assert with_bos.shape[0] == text_activations(tl_adapter, ["the film was good"], [hook])[hook].shape[0]
