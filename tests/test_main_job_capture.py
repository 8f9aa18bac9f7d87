"""The main job captures its store while generating, and gives today's rollouts and store.

Checked on the tiny Llama and the tiny GPT-2, both backends: the job's rollouts + store stages run
in one pass (rollouts generated now, states from the generation's own forwards) equal the two-pass
job (``--stages rollouts``, then ``--stages store`` on the cached rollouts: one teacher-forced
forward) rollout by rollout (same tokens, rewards, ids and store order) and state by state within
1e-5 (float32 store); with more prompts than one batch, rows stopping at different steps, so the
running batch is refilled (TransformerLens; nnsight generates one batch at a time, as its plain
generation does); the stage timings are recorded either way. With the job's own float16 store the
two stores have the same manifest (shards, offsets, lengths, s_0 indices) and states within one
float16 rounding.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

import reward_circuits.studies.run.main_job as pipeline
from reward_circuits.data import ActivationStore, load_rollouts
from reward_circuits.models import from_hf
from reward_circuits.models.tiny import tiny_gpt2_model, tiny_hf_model
from reward_circuits.studies.run import RunConfig, run
from reward_circuits.tasks import Example, Task

pytestmark = pytest.mark.usefixtures("one_thread")

ARCHS = {"llama": tiny_hf_model, "gpt2": tiny_gpt2_model}


WORDS = ["apple", "x", "the quick brown fox", "7 + 5 =", "zebra", "Hello there!", "q?", "abc def ghi"]
STOPS = ("@", "j", "B", "H", "?", "W")  # strings the random models write at different steps


def parity_task(spec: str, n: int, seed: int) -> Task:
    """Prompts of different lengths; mixed rewards from a random model: 1 when the response has an
    even number of characters."""
    examples = [Example(f"{spec}-{seed}-{i}", f"{WORDS[i % 8]} {i} {WORDS[3 * i % 8]}", "0") for i in range(n)]
    return Task(spec.replace(":", "_"), examples, lambda resp, ex: float(len(resp) % 2 == 0), max_new_tokens=8)


@pytest.fixture(scope="module")
def adapters():
    out = {}
    for arch, make in ARCHS.items():
        for backend in ("transformer_lens", "nnsight"):
            hf, tok = make(seed=0)  # a fresh HF model per adapter (nnsight patches the instance it wraps)
            out[arch, backend] = from_hf(hf, tok, backend=backend, name=f"tiny-{arch}")
    return out


@pytest.fixture
def staggered(monkeypatch):
    """The parity task, and rows that stop at different steps (stop strings the random models
    write), so rows leave the running batch early and new prompts join it."""
    monkeypatch.setattr(pipeline, "get_task", parity_task)
    base = pipeline._generation_config
    monkeypatch.setattr(pipeline, "_generation_config",
                        lambda cfg, adapter: replace(base(cfg, adapter), stop_strings=STOPS))


def _float32_store(monkeypatch):
    base = pipeline._store_options
    monkeypatch.setattr(pipeline, "_store_options", lambda job, spec: {**base(job, spec), "dtype": "float32"})


def _jobs(adapter, tmp_path, **kw):
    """(one-pass run, two-pass run): each a RunResult and its directory."""
    cfg = RunConfig(tasks=("a", "b"), limit=20, primary_limit=30, max_new_tokens=8, batch_size=8, progress=False,
                    stages=("rollouts", "store"), **kw)
    one = run(replace(cfg, out=str(tmp_path / "one")), adapter=adapter)
    run(replace(cfg, out=str(tmp_path / "two"), stages=("rollouts",)), adapter=adapter)  # rollouts only: no store
    two = run(replace(cfg, out=str(tmp_path / "two"), stages=("store",)), adapter=adapter)  # second pass, cached
    return (one, tmp_path / "one"), (two, tmp_path / "two")


def _same_rollouts(a_dir, b_dir, slug):
    a, b = load_rollouts(a_dir / "rollouts" / slug), load_rollouts(b_dir / "rollouts" / slug)
    assert [(r.id, r.prompt_ids, r.response_ids, r.response_text, r.reward, r.finish_reason) for r in a] == \
        [(r.id, r.prompt_ids, r.response_ids, r.response_text, r.reward, r.finish_reason) for r in b]
    return a


@pytest.mark.parametrize("arch", list(ARCHS))
@pytest.mark.parametrize("backend", ["transformer_lens", "nnsight"])
def test_main_job_store_captured_while_generating_equals_generate_then_capture(
        adapters, tmp_path, monkeypatch, staggered, arch, backend):
    _float32_store(monkeypatch)
    adapter = adapters[arch, backend]
    (one, one_dir), (two, two_dir) = _jobs(adapter, tmp_path)
    for slug, n in (("a", 30), ("b", 20)):
        rollouts = _same_rollouts(one_dir, two_dir, slug)
        assert len(rollouts) == n > 8  # more prompts than one batch of 8 rows
        lengths = [len(r.response_ids) for r in rollouts]
        assert len(set(lengths)) >= 3 and min(lengths) < 8  # rows left early: the batch was refilled
        s1, s2 = ActivationStore(one_dir / "store" / slug), ActivationStore(two_dir / "store" / slug)
        assert s1.rollout_ids == s2.rollout_ids and s1.hook_names == s2.hook_names
        assert [r.length for r in s1.records] == [len(x.response_ids) + 1 for x in
                                                  (dict((r.id, r) for r in rollouts)[i] for i in s1.rollout_ids)]
        for h in s1.hook_names:
            for i in range(len(s1)):
                torch.testing.assert_close(s1.get(i, h, from_s0=False), s2.get(i, h, from_s0=False),
                                           atol=1e-5, rtol=1e-5)
    t1, t2 = one.header["timings"], two.header["timings"]
    for slug in ("a", "b"):
        assert t1[f"rollouts_{slug}_s"] > 0 and t1[f"store_{slug}_s"] == 0  # one pass: its time is the rollouts'
        assert t2[f"store_{slug}_s"] > 0  # the second forward, timed on its own
    assert one.header["peak_rss_mb"] and two.header["wall_time_s"] > 0


def test_float16_store_has_todays_layout(adapters, tmp_path, staggered):
    """The job's own (float16) store: the same manifest records, shards and states (within one float16
    rounding of the float32 states, which agree within 1e-5) whichever way the states were taken."""
    (_, one_dir), (_, two_dir) = _jobs(adapters["llama", "transformer_lens"], tmp_path)
    for slug in ("a", "b"):
        m1, m2 = (json.loads((d / "store" / slug / "manifest.json").read_text()) for d in (one_dir, two_dir))
        assert m1["rollouts"] == m2["rollouts"] and m1["shards"] == m2["shards"]
        assert {k: v for k, v in m1.items() if k not in ("rollouts", "shards")} == \
            {k: v for k, v in m2.items() if k not in ("rollouts", "shards")}
        assert m1["dtype"] == "float16" and len(m1["shards"]) >= 2  # 16 rollouts a shard, as build_store cuts them
        s1, s2 = ActivationStore(one_dir / "store" / slug), ActivationStore(two_dir / "store" / slug)
        for h in s1.hook_names:
            for i in range(len(s1)):
                a, b = s1.get(i, h, from_s0=False), s2.get(i, h, from_s0=False)
                torch.testing.assert_close(a, b, atol=2e-3 * float(b.abs().max()) + 1e-5, rtol=2e-3)


def test_cached_rollouts_reuse_their_store_and_a_second_run_captures_nothing(adapters, tmp_path, staggered):
    adapter = adapters["llama", "transformer_lens"]
    cfg = RunConfig(tasks=("a",), limit=12, max_new_tokens=6, batch_size=8, progress=False, primary_limit=None,
                    stages=("rollouts", "store"), out=str(tmp_path / "run"))
    first = run(cfg, adapter=adapter)
    shards = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "run" / "store" / "a").glob("shard_*")}
    assert shards and first.header["timings"]["store_a_s"] == 0  # captured while generating
    again = run(cfg, adapter=adapter)  # rollouts and store on disk: read back, nothing generated or captured
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "run" / "store" / "a").glob("shard_*")} == shards
    assert again.stages["rollouts"][0].summary["store_states"] == first.stages["rollouts"][0].summary["store_states"]
