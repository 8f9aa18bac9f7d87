"""Applications on the tiny model: ValueScorer from one forward pass, the online ValueMonitor
against teacher forcing, the `applications` command end to end and `compare` of a run against itself."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from reward_circuits.analysis.probes import ValueProbe, ValueProbeConfig
from reward_circuits.studies.applications import (
    ApplicationsConfig,
    ValueMonitor,
    ValueScorer,
    load_curation,
    write_applications_report,
)
from reward_circuits.models import GenerationConfig
from reward_circuits.tasks import Example, Task

pytestmark = pytest.mark.usefixtures("one_thread")
HOOK = "blocks.1.hook_resid_post"


def planted_task(n: int = 16) -> Task:
    """A task the random tiny model 'solves' about half the time: the reward depends on the
    parity of the response length and the example, so both rewards occur."""
    examples = [Example(f"q{i}", f"{i} + {i % 3}", str(i + i % 3)) for i in range(n)]
    return Task("planted", examples, reward_fn=lambda resp, ex: float((len(resp) + int(ex.id[1:])) % 2))


@pytest.fixture(scope="module")
def fitted(tl_adapter):
    """A value probe fitted on tiny-model states of 24 prompts (rewards planted on the prompt)."""
    task = planted_task(24)
    prompts = [task.render(ex, tl_adapter.tokenizer) for ex in task.examples]
    batch = tl_adapter.tokenize(prompts)
    acts = tl_adapter.capture(batch, [HOOK])[HOOK]
    states = [acts[i, -3:].float() for i in range(len(prompts))]  # 3 states per "rollout"
    rewards = [float(i % 2) for i in range(len(prompts))]
    probe = ValueProbe(ValueProbeConfig(epochs=3, seed=0)).fit_arrays({HOOK: states}, rewards, verbose=False)
    return probe, prompts, rewards


def test_value_scorer_is_one_forward_pass_and_sklearn_shaped(tl_adapter, fitted):
    probe, prompts, rewards = fitted
    scorer = ValueScorer(probe, HOOK, adapter=tl_adapter, calibration="platt")
    with pytest.raises(RuntimeError, match="not fitted"):
        scorer.predict_proba(prompts[:2])
    assert scorer.fit(prompts, rewards) is scorer and scorer.n_fit_ == 24
    proba = scorer.predict_proba(prompts)
    assert proba.shape == (24, 2) and np.allclose(proba.sum(1), 1.0)
    raw = scorer.raw_values(prompts)
    # the raw value is the probe on the last prompt token's state, read by one capture
    acts = tl_adapter.capture(tl_adapter.tokenize(prompts[:3]), [HOOK])[HOOK]
    expected = probe.predict_value(acts[:, -1].float(), hook=HOOK).numpy()
    assert raw[:3] == pytest.approx(expected, abs=1e-5)
    assert 0.0 <= scorer.score(prompts, rewards) <= 1.0
    assert set(scorer.predict(prompts)) <= {0, 1}
    # restricted to a neuron set, the scorer reads only those dimensions
    from reward_circuits.analysis.pruning import value_neurons

    neurons = value_neurons(probe, HOOK, 0.9)
    masked = ValueScorer(probe, HOOK, neurons=neurons, adapter=tl_adapter, calibration="none")
    assert masked.raw_values(prompts[:3]) == pytest.approx(
        probe.masked(HOOK, neurons.mask()).predict_value(acts[:, -1].float(), hook=HOOK).numpy(), abs=1e-5)


@pytest.mark.parametrize("backend", ["transformer_lens", "nnsight"])
def test_online_monitor_matches_teacher_forced_trace(tiny_adapters, fitted, backend):
    adapter = tiny_adapters[backend]
    probe, prompts, _ = fitted
    monitor = ValueMonitor(probe, HOOK)
    gens = adapter.generate(prompts[:5], GenerationConfig(max_new_tokens=6, batch_size=3, progress=False),
                            fwd_hooks=monitor.fwd_hooks)
    online = monitor.traces(gens)
    offline = ValueScorer(probe, HOOK, adapter=adapter).value_traces(gens)
    for on, off, g in zip(online, offline, gens):
        assert len(on) == len(g.response_ids) and len(off) == len(g.response_ids) + 1
        np.testing.assert_allclose(on, off[: len(on)], atol=2e-4)
    # the monitor only observes: generation is unchanged
    plain = adapter.generate(prompts[:5], GenerationConfig(max_new_tokens=6, batch_size=3, progress=False))
    assert [g.response_ids for g in plain] == [g.response_ids for g in gens]


@pytest.fixture(scope="module")
def app_run(tl_adapter, tmp_path_factory):
    out = tmp_path_factory.mktemp("apps")
    cfg = ApplicationsConfig(n_prompts=16, n_samples=4, layers=(0, 1), max_new_tokens=6, batch_size=16, probe_epochs=3,
                             n_boot=200, prune_ratio=0.5, verbalized=False, out=str(out))
    torch.manual_seed(0)
    extra = planted_task(24)
    extra.examples = [e for e in extra.examples if int(e.id[1:]) >= 16]  # 8 prompts that only train the probe
    result = write_applications_report(cfg, tl_adapter, planted_task(16), train_task=extra)
    return out, result


def test_applications_command_writes_its_section(app_run):
    out, result = app_run
    summary = json.loads((out / "summary.json").read_text())["applications"]
    assert set(summary) >= {"scorer", "best_of_n", "routing", "error_detection", "curation", "value_signal"}
    bon = summary["best_of_n"]
    assert bon["n_prompts"] == 16 and bon["n_samples"] == 4
    assert summary["value_signal"]["train_only_rollouts"] == 8
    assert {"value", "majority", "random", "oracle", "value_abort"} <= set(bon["accuracy_at_n"])
    for point in bon["curves"]:
        acc = point["accuracy"]
        assert acc["low"] <= acc["estimate"] <= acc["high"] and acc["n"] == 16
    assert summary["scorer"]["signals"][0]["signal"].startswith("value")
    for fig in result.section().figures:
        assert (out / fig).exists()
    html = (out / "report.html").read_text()
    assert "Best-of-k" in html and "data:image/png" in html
    ds = load_curation(out / "curated")
    assert len(ds) == summary["curation"]["n_confident_wrong"] + summary["curation"]["n_unconfident_right"]


def test_compare_a_run_against_itself_exits_zero_with_iou_one(app_run, tmp_path, capsys):
    from reward_circuits.cli import main

    out, _ = app_run
    code = main(["compare", str(out), str(out), "--n-boot", "200", "--out", str(tmp_path / "cmp")])
    assert code == 0
    summary = json.loads((tmp_path / "cmp" / "summary.json").read_text())["compare"]
    assert summary["verdict"] == "same"
    assert set(summary["iou_by_layer"].values()) == {1.0}
    assert capsys.readouterr().out.startswith("same:")


def test_model_snapshot_of_one_model_twice_is_same(tl_adapter, tmp_path):
    """'A model against itself' through the whole fitting path (rollouts, store, cross-fitted probes)."""
    from reward_circuits.studies.applications import compare_snapshots, model_snapshot
    from reward_circuits.studies.applications.monitoring import CompareConfig

    snaps = []
    for side in ("a", "b"):
        cfg = ApplicationsConfig(n_prompts=16, layers=(0, 1), max_new_tokens=6, batch_size=16, probe_epochs=3,
                                 prune_ratio=0.5, out=str(tmp_path / side))
        snaps.append(model_snapshot("tiny", cfg, tl_adapter, planted_task(16)))
    res = compare_snapshots(*snaps, CompareConfig(n_boot=200))
    assert res.iou_by_layer == {"0": 1.0, "1": 1.0}
    assert res.verdict == "same" and res.exit_code() == 0 and res.paired and res.n_shared == 16


@pytest.fixture(scope="module")
def main_run(tl_adapter, tmp_path_factory):
    """A `reward-circuits run` directory (rollouts, store, value stage) on the tiny model."""
    import reward_circuits.studies.run.main_job as pipeline
    from reward_circuits.studies.run import RunConfig, run_and_report as run

    out = tmp_path_factory.mktemp("main") / "run"
    original = pipeline.get_task
    pipeline.get_task = lambda spec, n, seed: Task(spec, [Example(f"{spec}-{i}", f"Say something {i}.", "0") for i in range(n)],
                                                   lambda resp, ex: float(len(resp) % 2 == 0), max_new_tokens=8)
    try:
        run(RunConfig(tasks=("a",), limit=40, out=str(out), max_new_tokens=8, batch_size=16, quick=True,
                      stages=("rollouts", "store", "value")), adapter=tl_adapter)
    finally:
        pipeline.get_task = original
    return out


def test_compare_reads_a_main_job_run_directory(main_run, tmp_path):
    from reward_circuits.cli import main

    assert main(["compare", str(main_run), str(main_run), "--n-boot", "200", "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())["compare"]
    assert summary["verdict"] == "same" and summary["auc_a"]["n"] == 12  # the run's held-out split (30% of 40)
    # exactly the value stage's own test rollouts, as saved in value/splits.json (not a re-split)
    from reward_circuits.studies.applications.monitoring import ValueSnapshot

    saved = json.loads((main_run / "value" / "splits.json").read_text())["stores"]["primary"]
    assert ValueSnapshot.from_dir(main_run).ids == saved["test"]["rollout_ids"]


def test_applications_from_a_run_directory(main_run, tl_adapter, tmp_path):
    cfg = ApplicationsConfig(n_prompts=12, n_samples=2, layers=(0, 1), max_new_tokens=6, batch_size=16, n_boot=200,
                             verbalized=False, from_run=str(main_run), out=str(tmp_path))
    result = write_applications_report(cfg, tl_adapter, planted_task(12))
    summary = json.loads((tmp_path / "summary.json").read_text())["applications"]
    assert summary["value_signal"]["source"].startswith("run directory")
    assert result.hooks_by_fold == [json.loads((main_run / "summary.json").read_text())["value"]["best_hook"]]


def test_default_layers_are_fractions_of_the_layer_count_and_a_missing_layer_fails_before_any_rollout(tl_adapter, tmp_path, monkeypatch):
    """The default probed layers are fractions of the layer count (SmolLM2 6, 12, 18 as before; Gemma 3 270M's 18
    layers 4, 7, 11, where the old fixed 18 did not exist); a layer the model lacks is refused before
    any rollout, naming the model's range and the option."""
    from reward_circuits.models.hook_names import layers_at_fractions
    from reward_circuits.studies.applications import study

    assert ApplicationsConfig().resolve_layers(30) == (6, 12, 18) == layers_at_fractions(30, (0.2, 0.4, 0.6))
    assert ApplicationsConfig().resolve_layers(18) == (4, 7, 11)
    assert ApplicationsConfig().resolve_layers(2) == (0, 1)  # distinct layers, clipped to the model

    def no_rollouts(*a, **k):
        raise AssertionError("rollouts started before the layers were checked")

    monkeypatch.setattr(study, "generate_rollouts", no_rollouts)
    cfg = ApplicationsConfig(n_prompts=16, layers=(1, 18), out=str(tmp_path))
    with pytest.raises(ValueError, match=r"layers \[18\] do not exist.*layers 0\.\.1.*--layers.*default \(layers \[0, 1\]\)"):
        write_applications_report(cfg, tl_adapter, planted_task(16))
