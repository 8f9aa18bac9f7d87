"""Studies that go through the adapter run on every architecture it loads: the tiny Llama (rotary,
gated MLP) and the tiny GPT-2 (absolute positions, Conv1D MLP), on both backends.

The preference study's generation (greedy held-out accuracy, sampled rollouts) and its neuron
activations (calibration at ``blocks.L.mlp.hook_post``) go through the adapter; the training-time
capture stays on HF modules (it needs their autograd graph) but finds them through the hook-name
mapping, so it too runs on both layouts.

Every other study runs here on both too, at the smallest size its own tests use: the main job (all
stages; then ``compare`` and ``applications`` from its run directory, and ``architectures`` on the
two models' runs), the dopamine causal check, ``sae-td`` (and its agent's batched, KV-cached play),
``irm`` (TransformerLens only: the study has no backend choice) and ``applications`` / ``compare``
(also of the tiny Llama against the tiny GPT-2). The tiny GPT-2 answers every prompt alike, so the
planted rewards here depend on the example too.
"""

from __future__ import annotations

import copy

import pytest
import torch

from reward_circuits.models import from_hf, hf_module
from reward_circuits.models.tiny import tiny_gpt2_model, tiny_hf_model
from reward_circuits.studies.yfpo.experiment import greedy_correct
from reward_circuits.studies.yfpo.neuron_reward import capture_mlp_neurons, response_activations
from reward_circuits.studies.yfpo.pairs import PreferencePair, tokenize_pairs
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
    from reward_circuits.studies.yfpo.selection import random_neurons_like, select_value_neurons

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
    from reward_circuits.studies.yfpo.attnlrp import LRPError
    from reward_circuits.studies.yfpo.selection import select_relevance_neurons
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
    from reward_circuits.studies.yfpo.config import YFPOConfig
    from reward_circuits.studies.yfpo.experiment import run_yfpo

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


# ---- every other study on both architectures ----------------------------------------------------
# The tiny random GPT-2 answers every prompt alike (greedy), so a reward planted on the response
# alone is constant there; these tasks also depend on the example, so both rewards occur on both.


def _job_task(spec: str, n: int, seed: int):
    """``test_refactor_equivalence.parity_task`` with the example's index in the parity."""
    examples = [Example(f"{spec}-{seed}-{i}", f"Say something {i}.", "0") for i in range(n)]
    return Task(spec.replace(":", "_"), examples,
                lambda resp, ex: float((len(resp) + int(ex.id.rsplit("-", 1)[1])) % 2 == 0), max_new_tokens=8)


@pytest.fixture(scope="module")
def main_runs(adapters, tmp_path_factory):
    """``main_runs(arch, backend)``: (run directory, summary) of ``reward-circuits run``, every stage
    (rollouts, store, value, ablation, steering, confidence, dopamine) at test_refactor_equivalence's
    size; each case runs once for the module."""
    import reward_circuits.studies.run.main_job as main_job
    from reward_circuits.studies.run import RunConfig, run_and_report as run

    runs = {}

    def get(arch, backend):
        if (arch, backend) not in runs:
            out = tmp_path_factory.mktemp(f"run-{arch}-{backend}")
            cfg = RunConfig(tasks=("a", "b"), limit=40, out=str(out), max_new_tokens=8, batch_size=16, eval_examples=6,
                            ablation_layers=1, random_draws=2, quick=True)
            original, main_job.get_task = main_job.get_task, _job_task
            try:
                runs[arch, backend] = out, run(cfg, adapter=adapters[arch, backend]).to_dict()
            finally:
                main_job.get_task = original
        return runs[arch, backend]

    return get


@pytest.mark.parametrize("arch, backend", CASES)
def test_main_job_on_every_architecture(adapters, main_runs, arch, backend, tmp_path):
    """The main job, then ``compare`` of its run directory against itself and ``applications`` from it."""
    import json

    from test_applications_model import planted_task

    from reward_circuits.studies.applications import ApplicationsConfig, write_applications_report
    from reward_circuits.cli import main

    out, summary = main_runs(arch, backend)
    assert summary["backend"] == backend and summary["n_layers"] == 2 and summary["d_model"] == 32
    assert {"rollouts", "value", "ablation", "steering", "confidence", "dopamine"} <= set(summary)
    assert 0 < summary["rollouts"]["accuracy"]["a"] < 1
    assert summary["value"]["best_layer"] in ("0", "1") and set(summary["value"]["auc_by_layer"]) == {"0", "1"}
    layer = next(iter(summary["ablation"]["layers"].values()))
    assert layer["hook_name"].startswith("blocks.") and len(layer["random_accs"]) == 2
    assert summary["steering"]["hook_name"] == summary["value"]["best_hook"]
    assert (out / "report.html").exists()
    assert main(["compare", str(out), str(out), "--n-boot", "200", "--out", str(tmp_path / "cmp")]) == 0
    assert json.loads((tmp_path / "cmp" / "summary.json").read_text())["compare"]["verdict"] == "same"
    cfg = ApplicationsConfig(n_prompts=12, n_samples=2, layers=(0, 1), max_new_tokens=6, batch_size=16, n_boot=200,
                             verbalized=False, from_run=str(out), out=str(tmp_path / "apps"))
    result = write_applications_report(cfg, adapters[arch, backend], planted_task(12))
    assert result.hooks_by_fold == [summary["value"]["best_hook"]]


def test_architectures_command_sets_the_tiny_llama_beside_the_tiny_gpt2(main_runs, tmp_path):
    """``reward-circuits architectures`` on the two tiny models' main-job runs."""
    import json

    from reward_circuits.cli import main

    llama, gpt2 = main_runs("llama", "transformer_lens")[0], main_runs("gpt2", "transformer_lens")[0]
    assert main(["architectures", str(llama), str(gpt2), "--out", str(tmp_path)]) == 0
    runs = json.loads((tmp_path / "summary.json").read_text())["architectures"]["runs"]
    assert [r["model"] for r in runs] == ["tiny-llama", "tiny-gpt2"]
    assert all(set(r["by_layer"]) == {"0", "1"} for r in runs)


@pytest.mark.parametrize("arch, backend", CASES)
def test_sae_td_on_every_architecture(adapters, arch, backend, tmp_path):
    """``reward-circuits sae-td`` at test_icrl_sae_td's size (the agent's KV-cached play on
    TransformerLens, full re-runs on nnsight; SAEs on ``blocks.L.hook_resid_post``)."""
    import json

    from reward_circuits.studies.sae_td import SAETDConfig, run_sae_td
    from reward_circuits.report import Report

    cfg = SAETDConfig(tasks=("two_step",), n_experiments=4, n_episodes=2, random_episodes=1, layers=(0, 1),
                      sae_epochs=2, n_boot=100, progress=False, top_k_latents=3)
    result = run_sae_td(adapters[arch, backend], cfg, out_dir=tmp_path)
    Report(tmp_path, {"model": adapters[arch, backend].name}).add(result.section(tmp_path))
    task = result.tasks[0]
    assert task.n_events == 4 * 2 * 2 and [lr.layer for lr in task.layers] == [0, 1]
    assert task.intervention is not None and len(task.intervention.top_latents) == 3
    assert task.intervention.n_decisions >= 4
    summary = json.loads((tmp_path / "summary.json").read_text())["sae_td"]["tasks"]["two_step"]
    assert {"model_reward", "random_reward", "layers", "intervention", "verdicts"} <= set(summary)


def _tuned_copy(arch, path):
    """A 'fine-tuned' copy of the tiny model saved at ``path``: layer 0's MLP output weights moved
    (found through the hook-name mapping, so on either layout)."""
    hf, tok = _fresh(arch)
    module, _ = hf_module(hf, "blocks.0.mlp.hook_post")
    with torch.no_grad():
        module.weight.add_(0.01)
    hf.save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("site", ["hook_mlp_out", "mlp.hook_post"])
def test_irm_on_every_architecture(arch, site, tmp_path):
    """``reward-circuits irm`` on a given model pair (fine-tuning skipped, as test_irm_study does):
    divergence finds the moved layer in both layouts' parameter names, SAEs on either site. The study
    runs TransformerLens only (it has no backend choice)."""
    import json

    from test_irm_study import tiny_config

    from reward_circuits.studies.irm import run_irm, write_irm_report

    _tuned_copy(arch, tmp_path / "tuned")
    hf, tok = _fresh(arch)
    result = run_irm(tiny_config(tmp_path / "out", finetuned=str(tmp_path / "tuned"), sae_site=site), base_hf=hf,
                     tokenizer=tok)
    write_irm_report(result)  # the command layer assembles the report
    assert result.layers == [0] and result.divergence.layers == [0, 1] and result.divergence.distance[1] == 0
    width = {"hook_mlp_out": 32, "mlp.hook_post": 64 if arch == "llama" else 128}[site]
    assert all(p.hook_name == f"blocks.0.{site}" and p.small.cfg.d_in == width for p in result.dictionaries.pairs)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())["irm"]
    assert summary["finetune_steps"] is None and -1 <= summary["kendall_tau"] <= 1


def test_irm_fine_tuning_on_gpt2(tmp_path):
    """The GRPO + LoRA ("all-linear": GPT-2's Conv1D layers) fine-tune, merged and reloaded, on the tiny
    GPT-2 (the Llama run is test_irm_study's)."""
    import numpy as np
    from test_irm_study import tiny_config

    from reward_circuits.studies.irm import run_irm

    hf, tok = _fresh("gpt2")
    result = run_irm(tiny_config(tmp_path), base_hf=hf, tokenizer=tok,
                     reward=lambda texts: np.array([sum(c.islower() for c in t) / max(len(t), 1) for t in texts]))
    assert result.rewards.finetune.steps_done == 1 and (tmp_path / "finetuned_model" / "model.safetensors").exists()
    assert all(d > 0 for d in result.divergence.distance)  # the LoRA touched every layer and was merged
    assert result.divergence.layers == [0, 1] and len(result.layers) == 1


@pytest.mark.parametrize("arch, backend", CASES)
def test_applications_and_compare_on_every_architecture(adapters, arch, backend, tmp_path):
    """``reward-circuits applications`` at test_applications_model's size (with the verbalized
    confidence: one more generation on the model's own answer), then ``compare`` of its run against itself."""
    import json

    from test_applications_model import planted_task

    from reward_circuits.studies.applications import ApplicationsConfig, write_applications_report
    from reward_circuits.cli import main

    out = tmp_path / "apps"
    cfg = ApplicationsConfig(n_prompts=16, n_samples=4, layers=(0, 1), max_new_tokens=6, batch_size=16, probe_epochs=3,
                             n_boot=200, prune_ratio=0.5, verbalized=True, out=str(out))
    torch.manual_seed(0)
    extra = planted_task(24)
    extra.examples = [e for e in extra.examples if int(e.id[1:]) >= 16]
    write_applications_report(cfg, adapters[arch, backend], planted_task(16), train_task=extra)
    summary = json.loads((out / "summary.json").read_text())["applications"]
    assert {"scorer", "best_of_n", "routing", "error_detection", "curation", "value_signal"} <= set(summary)
    assert summary["best_of_n"]["n_prompts"] == 16 and summary["value_signal"]["train_only_rollouts"] == 8
    assert "verbalized confidence" in {x["signal"] for x in summary["scorer"]["signals"]}
    assert main(["compare", str(out), str(out), "--n-boot", "200", "--out", str(tmp_path / "cmp")]) == 0
    cmp = json.loads((tmp_path / "cmp" / "summary.json").read_text())["compare"]
    assert cmp["verdict"] == "same" and set(cmp["iou_by_layer"].values()) == {1.0}


@pytest.mark.parametrize("arch", ARCHS)
def test_icrl_play_batched_and_cached_equals_single_runs_and_the_other_backend(adapters, arch):
    """sae-td's agent: rows of different lengths in one left-padded batch (KV-cached on TransformerLens,
    where GPT-2's absolute positions must follow the padding) equal their solo runs and nnsight's; a
    history longer than the model's context (tiny GPT-2: 256 positions) is a clear error."""
    import numpy as np

    from reward_circuits.studies.sae_td import play, play_many

    hook = "blocks.1.hook_resid_post"
    # a 2x2 grid, one episode: rows of different lengths within tiny GPT-2's 256 positions
    kw = {"n_episodes": 1, "random_episodes": 0, "capture": [hook], "env_kwargs": {"size": 2, "max_steps": 3}}
    tl, nn = adapters[arch, "transformer_lens"], adapters[arch, "nnsight"]
    many = play_many(tl, "grid", [0, 1, 2], use_cache=True, **kw)
    other = play_many(nn, "grid", [0, 1, 2], **kw)
    assert len({len(e.token_ids) for e in many}) > 1  # the rows really had different lengths
    for seed, exp, alt in zip([0, 1, 2], many, other):
        solo = play(tl, "grid", seed=seed, use_cache=False, **kw)
        for ref in (solo, alt):
            assert exp.token_ids == ref.token_ids and [s.action for s in exp.steps] == [s.action for s in ref.steps]
            for a, b in zip(exp.steps, ref.steps):
                if a.logprobs is not None:
                    np.testing.assert_allclose(a.logprobs, b.logprobs, atol=1e-4)
            torch.testing.assert_close(exp.activations[hook], ref.activations[hook], atol=1e-4, rtol=1e-4)
    if arch == "gpt2":  # a history past GPT-2's absolute positions is refused by name, on both backends
        for ad in (tl, nn):
            with pytest.raises(ValueError, match="history of row 0 is .* tokens long; tiny-gpt2 takes at most 256"):
                play_many(ad, "grid", [0], n_episodes=2, random_episodes=0)


@pytest.mark.parametrize("backends", [("transformer_lens", "nnsight"), ("nnsight", "transformer_lens")])
def test_compare_the_tiny_llama_against_the_tiny_gpt2(adapters, backends, tmp_path):
    """``compare`` of two models given by name (no run directories): a value snapshot of each on the
    same prompts (paired), value-neuron IoU per layer across the two architectures (both 32 wide)."""
    from test_applications_model import planted_task

    from reward_circuits.studies.applications import compare_snapshots, model_snapshot
    from reward_circuits.studies.applications.config import ApplicationsConfig
    from reward_circuits.studies.applications.monitoring import CompareConfig

    snaps = []
    for arch, backend in zip(ARCHS, backends):
        cfg = ApplicationsConfig(n_prompts=16, layers=(0, 1), max_new_tokens=6, batch_size=16, probe_epochs=3,
                                 prune_ratio=0.5, out=str(tmp_path / arch))
        snaps.append(model_snapshot(f"tiny-{arch}", cfg, adapters[arch, backend], planted_task(16)))
    res = compare_snapshots(*snaps, CompareConfig(n_boot=200))
    assert res.paired and res.n_shared == 16 and set(res.iou_by_layer) == {"0", "1"}
    assert all(0 <= v <= 1 for v in res.iou_by_layer.values()) and res.exit_code() in (0, 1)


@pytest.mark.parametrize("arch, backend", CASES)
def test_dopamine_causal_check_on_every_architecture(adapters, arch, backend, tmp_path):
    """The main job's dopamine causal check (at the main job's test size its surprise sets are too
    small to reach it), as test_dopamine_causal runs it: ablating the probe's heaviest dims moves
    its TD traces; and the check's zeroed-states shortcut equals teacher forcing under the ablation."""
    import numpy as np

    from reward_circuits.analysis.causal import td_trace_under, traces_of_states
    from reward_circuits.analysis.probes import ValueProbe, ValueProbeConfig
    from reward_circuits.data.capture import build_store
    from reward_circuits.data.rollouts import generate_rollouts
    from reward_circuits.interventions import zero_ablate
    from reward_circuits.interventions.scoring import rollout_states
    from reward_circuits.models import GenerationConfig
    from reward_circuits.neurons import NeuronSet
    from reward_circuits.studies.run.dopamine import run_dopamine_causal_check

    hook = "blocks.1.hook_resid_post"
    ad = adapters[arch, backend]
    task = _task(8)
    task.reward_fn = lambda resp, ex: float((len(resp) + int(ex.id[1:])) % 2)
    cfg = GenerationConfig(max_new_tokens=6, progress=False)
    rollouts = generate_rollouts(ad, task, cfg)
    store = build_store(ad, rollouts, [hook], tmp_path / "store", progress=False)
    probe = ValueProbe(ValueProbeConfig(epochs=2, hidden=8, batch_states=64)).fit(store, hook, verbose=False)
    top = probe.input_weight_norms(hook).argsort(descending=True)[:4].tolist()
    pairs = [(r.prompt_ids, r.response_ids) for r in rollouts]
    summary, _ = run_dopamine_causal_check(ad, probe, NeuronSet(hook, top, ad.d_model, kind="dopamine", layer=1), pairs,
                                           task, task.examples, config=cfg, n_random_draws=2, seed=0)
    assert summary["dopamine"]["td_mean_abs_change"] > 0 and len(summary["random"]) == 2
    states = rollout_states(ad, hook, pairs)
    shortcut = traces_of_states(probe, hook, [s.index_fill(1, torch.tensor(top), 0.0) for s in states], 0.99)
    forced = td_trace_under(ad, probe, hook, pairs, [(hook, zero_ablate(top))], 0.99)
    for a, b in zip(shortcut, forced):
        np.testing.assert_allclose(a, b, atol=1e-5, equal_nan=True)


@pytest.mark.parametrize("arch, backend", CASES)
def test_calibrate_on_every_architecture(adapters, arch, backend):
    """The calibrate study through the adapter: one row per level, each with its interval, on both families."""
    from reward_circuits.studies.calibrate import CalibrateConfig, run_calibration

    cfg = CalibrateConfig(levels=("arithmetic:1", "word_problems:0"), n=4, max_new_tokens=4, progress=False)
    result = run_calibration(cfg, adapter=adapters[arch, backend])
    assert [r.level for r in result.rows] == ["arithmetic:1", "word_problems:0"]
    for row in result.rows:
        assert row.accuracy.n == 4 and row.accuracy.low <= row.accuracy.estimate <= row.accuracy.high
    assert len(result.to_dict()["levels"]) == 2 and len(result.to_section().tables[0].rows) == 2
