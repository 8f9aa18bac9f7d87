"""Reliability of the activation store as a new user meets it (issue 15, part C).

Each test here was seen failing on a deliberately broken store (see the bug named in its docstring):
a store killed mid-write is never read silently, killed writes leave no files behind after a resume,
``write_store_from_arrays`` resumes a partly written directory (or refuses, naming the fix), a cut or
newer manifest says which file and what to do, and a writer SIGKILLed in the middle of writing a
shard file never serves that half file and resumes to the very store an uninterrupted run writes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path


import numpy as np
import pytest

from conftest import kill_once_ready
import torch
from safetensors import safe_open

import reward_circuits.data.store as store_mod
from reward_circuits.data.store import (
    FORMAT_VERSION,
    MANIFEST,
    ActivationStore,
    ActivationStoreWriter,
    IncompleteStoreError,
    StoreError,
    write_store_from_arrays,
)

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = Path(__file__).resolve().parents[1]


def _arrays(n: int = 10, d: int = 3, seed: int = 0, hooks=("a", "b")):
    rng = np.random.default_rng(seed)
    lens = rng.integers(1, 7, size=n)
    g = torch.Generator().manual_seed(seed)
    acts = {h: [torch.randn(int(L), d, generator=g) for L in lens] for h in hooks}
    rewards = [float(i % 2) for i in range(n)]
    s0 = [int(rng.integers(0, L)) for L in lens]
    return acts, rewards, s0


def _same_store(a: ActivationStore, b: ActivationStore) -> None:
    """Same manifest (up to the directory) and bit-identical shard tensors."""
    for key in ("format_version", "model", "hook_names", "d", "dtype", "positions", "meta", "shards", "rollouts", "complete"):
        assert a.manifest[key] == b.manifest[key], key
    for s in a.manifest["shards"]:
        with safe_open(str(a.path / s["file"]), framework="pt") as fa, safe_open(str(b.path / s["file"]), framework="pt") as fb:
            assert sorted(fa.keys()) == sorted(fb.keys())
            for k in fa.keys():
                assert torch.equal(fa.get_tensor(k), fb.get_tensor(k)), (s["file"], k)


def _only_store_files(path: Path, store: ActivationStore) -> None:
    assert sorted(p.name for p in path.iterdir()) == sorted([MANIFEST] + [s["file"] for s in store.manifest["shards"]])


class DiskFull(OSError):
    pass


def _write_with_failing_shard(monkeypatch, path, acts, rewards, s0, fail_at: int, rollouts_per_shard=3):
    """Run write_store_from_arrays whose ``fail_at``-th shard write dies half-way (like a kill or a full disk)."""
    real = store_mod.save_file
    calls = [0]

    def save(tensors, filename, *a, **k):
        calls[0] += 1
        if calls[0] == fail_at:
            Path(filename).write_bytes(b"\x00" * 40)
            raise DiskFull("No space left on device")
        return real(tensors, filename, *a, **k)

    monkeypatch.setattr(store_mod, "save_file", save)
    with pytest.raises(DiskFull):
        write_store_from_arrays(path, acts, rewards, s0_index=s0, rollouts_per_shard=rollouts_per_shard)
    monkeypatch.undo()


# ---- a store killed mid-write is never read silently ------------------------------------------------


def test_incomplete_store_refuses_to_open_and_names_the_fix(tmp_path):
    """Broken version seen failing: ``ActivationStore.__init__`` ignoring ``manifest["complete"]``."""
    acts, rewards, s0 = _arrays(6)
    w = ActivationStoreWriter(tmp_path / "s", ["a", "b"], model="m")
    w.write([f"r{i}" for i in range(3)], rewards[:3], {h: acts[h][:3] for h in acts}, s0[:3])
    # killed here: the manifest names 3 rollouts and says complete=false
    with pytest.raises(IncompleteStoreError) as ei:
        ActivationStore(tmp_path / "s")
    msg = str(ei.value)
    for needle in (str(tmp_path / "s"), "incomplete", "3 rollouts", "re-run", "allow_incomplete=True"):
        assert needle in msg, (needle, msg)
    assert isinstance(ei.value, StoreError)
    partial = ActivationStore(tmp_path / "s", allow_incomplete=True)  # the explicit escape hatch
    assert len(partial) == 3 and partial.complete is False
    assert w.close().complete is True
    assert ActivationStore(tmp_path / "s").complete is True


def test_probe_training_on_an_incomplete_store_is_refused_by_the_cli(tmp_path, capsys):
    """The path a user takes: ``reward-circuits probe --store DIR`` on a killed run's store."""
    from reward_circuits.cli import main

    acts, rewards, s0 = _arrays(8, d=4)
    w = ActivationStoreWriter(tmp_path / "s", ["blocks.0.hook_resid_post"], model="m")
    w.write([f"r{i}" for i in range(8)], rewards, {"blocks.0.hook_resid_post": acts["a"]}, s0)
    assert main(["probe", "--store", str(tmp_path / "s"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "incomplete" in err and "allow_incomplete=True" in err and "re-run" in err, err
    assert not (tmp_path / "out" / "summary.json").exists()


# ---- killed writes leave nothing behind after a resume -----------------------------------------------


def test_resume_removes_temporary_and_unnamed_shard_files(tmp_path):
    """Broken version seen failing: the writer not calling ``remove_stale_files``."""
    acts, rewards, s0 = _arrays(6)
    w = ActivationStoreWriter(tmp_path / "s", ["a", "b"], model="m")
    w.write(["r0", "r1"], rewards[:2], {h: acts[h][:2] for h in acts}, s0[:2])
    d = tmp_path / "s"
    # what killed writers leave: atomic_path temp files of a shard and of the manifest, and a shard
    # that was renamed into place but never named by the manifest
    (d / ".shard_00001.safetensors.k2j3_x.tmp").write_bytes(b"\x00" * 100)
    (d / ".manifest.json.abcd.tmp").write_text('{"format_ver')
    (d / "shard_00001.safetensors").write_bytes(b"\x00" * 64)
    (d / "shard_00007.safetensors").write_bytes(b"\x00" * 64)
    (d / "my_notes.txt").write_text("the user's own file")  # never touched
    (d / "shard_1.safetensors").write_text("not our naming pattern")  # never touched
    w2 = ActivationStoreWriter(d, ["a", "b"], model="m")
    assert sorted(w2.removed_stale_files) == sorted([".shard_00001.safetensors.k2j3_x.tmp", ".manifest.json.abcd.tmp",
                                                     "shard_00001.safetensors", "shard_00007.safetensors"])
    assert sorted(p.name for p in d.iterdir()) == sorted([MANIFEST, "shard_00000.safetensors", "my_notes.txt",
                                                          "shard_1.safetensors"])
    w2.write(["r2"], rewards[2:3], {h: acts[h][2:3] for h in acts}, s0[2:3])
    s = w2.close()
    assert s.rollout_ids == ["r0", "r1", "r2"]
    torch.testing.assert_close(s.get(2, "a", from_s0=False), acts["a"][2].half().float())


def test_writer_killed_before_its_first_manifest_leaves_a_directory_that_resumes(tmp_path):
    d = tmp_path / "s"
    d.mkdir()
    (d / "shard_00000.safetensors").write_bytes(b"\x00" * 64)  # renamed, then killed before the manifest
    (d / ".shard_00001.safetensors.zz.tmp").write_bytes(b"\x00")
    with pytest.raises(FileNotFoundError, match="No activation store"):
        ActivationStore(d)
    acts, rewards, s0 = _arrays(4)
    s = write_store_from_arrays(d, acts, rewards, s0_index=s0, rollouts_per_shard=2)
    _only_store_files(d, s)
    assert len(s) == 4


# ---- write_store_from_arrays into a partly written directory ---------------------------------------


@pytest.mark.parametrize("fail_at", [1, 2, 4])
def test_write_store_from_arrays_resumes_to_the_uninterrupted_store(tmp_path, monkeypatch, fail_at):
    """Broken version seen failing: resuming raised 'rollout ids already in the store'."""
    acts, rewards, s0 = _arrays(11)
    whole = write_store_from_arrays(tmp_path / "whole", acts, rewards, s0_index=s0, rollouts_per_shard=3)
    part = tmp_path / "part"
    _write_with_failing_shard(monkeypatch, part, acts, rewards, s0, fail_at)
    if fail_at > 1:
        with pytest.raises(IncompleteStoreError):
            ActivationStore(part)
        assert len(ActivationStore(part, allow_incomplete=True)) == 3 * (fail_at - 1)
    resumed = write_store_from_arrays(part, acts, rewards, s0_index=s0, rollouts_per_shard=3)
    _same_store(resumed, whole)
    _only_store_files(part, resumed)
    # a second call on the complete store is a verified no-op
    again = write_store_from_arrays(part, acts, rewards, s0_index=s0, rollouts_per_shard=3)
    _same_store(again, whole)


@pytest.mark.parametrize("change", ["reward", "activation", "s0", "foreign_ids", "length"])
def test_write_store_from_arrays_refuses_a_directory_holding_other_data(tmp_path, monkeypatch, change):
    acts, rewards, s0 = _arrays(9)
    _write_with_failing_shard(monkeypatch, tmp_path / "s", acts, rewards, s0, fail_at=3)
    before = (tmp_path / "s" / MANIFEST).read_bytes()
    acts2 = {h: list(v) for h, v in acts.items()}
    rewards2, s02, ids = list(rewards), list(s0), None
    if change == "reward":
        rewards2[4] = 1.0 - rewards2[4]
    elif change == "activation":
        acts2["b"][1] = acts2["b"][1] + 0.5
    elif change == "s0":
        s02[0] = (s02[0] + 1) % acts["a"][0].shape[0] if acts["a"][0].shape[0] > 1 else s02[0]
        if s02[0] == s0[0]:
            rewards2[0] = 1.0 - rewards2[0]
    elif change == "length":
        for h in acts2:
            acts2[h][2] = torch.cat([acts2[h][2], acts2[h][2][:1]])
    else:
        ids = [f"other{i}" for i in range(9)]
    with pytest.raises(StoreError) as ei:
        write_store_from_arrays(tmp_path / "s", acts2, rewards2, ids=ids, s0_index=s02, rollouts_per_shard=3)
    msg = str(ei.value)
    assert str(tmp_path / "s") in msg and "another directory" in msg and "delete" in msg, msg
    assert (tmp_path / "s" / MANIFEST).read_bytes() == before  # nothing written


# ---- a cut, foreign or newer manifest ----------------------------------------------------------------


@pytest.mark.parametrize("cut", [0, 1, 37, -2])
def test_truncated_manifest_names_the_file_and_the_fix(tmp_path, cut):
    """Broken version seen failing: ``json.loads(manifest)`` raising a bare JSONDecodeError."""
    acts, rewards, s0 = _arrays(4)
    write_store_from_arrays(tmp_path / "s", acts, rewards, s0_index=s0)
    m = tmp_path / "s" / MANIFEST
    text = m.read_text()
    m.write_text(text[:cut] if cut >= 0 else text[:cut] + "\x00")
    for open_it in (lambda: ActivationStore(tmp_path / "s"),
                    lambda: ActivationStoreWriter(tmp_path / "s", ["a", "b"], model="arrays"),
                    lambda: write_store_from_arrays(tmp_path / "s", acts, rewards, s0_index=s0)):
        with pytest.raises(StoreError) as ei:
            open_it()
        assert type(ei.value) is StoreError and not isinstance(ei.value, json.JSONDecodeError)
        msg = str(ei.value)
        assert str(m) in msg and "truncated" in msg and "rebuild" in msg, msg


def test_a_json_file_that_is_not_a_manifest(tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / MANIFEST).write_text('["a list"]')
    with pytest.raises(StoreError, match="not an activation-store manifest"):
        ActivationStore(tmp_path / "s")


def test_store_from_a_newer_format_version_fails_clearly(tmp_path):
    """Broken version seen failing: the format version never compared on read."""
    acts, rewards, s0 = _arrays(4)
    write_store_from_arrays(tmp_path / "s", acts, rewards, s0_index=s0)
    m = tmp_path / "s" / MANIFEST
    manifest = json.loads(m.read_text())
    manifest["format_version"] = FORMAT_VERSION + 1
    m.write_text(json.dumps(manifest))
    for open_it in (lambda: ActivationStore(tmp_path / "s"), lambda: ActivationStoreWriter(tmp_path / "s", ["a", "b"], model="arrays")):
        with pytest.raises(StoreError) as ei:
            open_it()
        msg = str(ei.value)
        assert f"version {FORMAT_VERSION + 1}" in msg and "newer" in msg and "Upgrade reward_circuits" in msg, msg


def test_probe_from_a_newer_format_version_fails_clearly(tmp_path):
    from reward_circuits.analysis.probes import (
        PROBE_FORMAT_VERSION,
        ValueProbe,
        ValueProbeConfig,
    )
    from reward_circuits.errors import ProbeError

    acts, rewards, s0 = _arrays(12, d=4)
    store = write_store_from_arrays(tmp_path / "s", {"h": acts["a"]}, rewards, s0_index=s0)
    probe = ValueProbe(ValueProbeConfig(epochs=1)).fit(store, ["h"])
    probe.save(tmp_path / "p")
    cfg = next(p for p in (tmp_path / "p").iterdir() if p.suffix == ".json")
    meta = json.loads(cfg.read_text())
    meta["format_version"] = PROBE_FORMAT_VERSION + 1
    cfg.write_text(json.dumps(meta))
    with pytest.raises(ProbeError, match=rf"format version {PROBE_FORMAT_VERSION + 1}, newer.*Upgrade reward_circuits"):
        ValueProbe.load(tmp_path / "p")


def test_missing_shard_file_is_named(tmp_path):
    acts, rewards, s0 = _arrays(6)
    write_store_from_arrays(tmp_path / "s", acts, rewards, s0_index=s0, rollouts_per_shard=2)
    (tmp_path / "s" / "shard_00001.safetensors").unlink()
    with pytest.raises(StoreError, match="shard_00001.safetensors"):
        ActivationStore(tmp_path / "s")


# ---- SIGKILL while a shard file is half written -----------------------------------------------------

_KILLED_MID_FILE = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    import torch
    torch.set_num_threads(1)
    import reward_circuits.data.store as S
    sys.path.insert(0, sys.argv[3])
    from test_reliability_store import _arrays

    out, ready = sys.argv[1], sys.argv[2]
    acts, rewards, s0 = _arrays(11)
    real = S.save_file
    calls = [0]

    def save(tensors, filename, *a, **k):
        calls[0] += 1
        if calls[0] == 3:  # third shard: half of the file is on disk when the kill comes
            real(tensors, filename, *a, **k)
            data = Path(filename).read_bytes()
            Path(filename).write_bytes(data[: len(data) // 2])
            open(ready, "w").write(str(os.getpid()))
            time.sleep(600)
            sys.exit(3)
        return real(tensors, filename, *a, **k)

    S.save_file = save
    S.write_store_from_arrays(out, acts, rewards, s0_index=s0, rollouts_per_shard=3)
    sys.exit(4)
    """
)


def test_sigkill_mid_shard_file_serves_no_half_shard_and_resumes_identically(tmp_path):
    """Broken versions seen failing: ``save_file`` straight onto the shard name (no temp file) serves
    the half shard; no cleanup leaves the temp file behind after the resume."""
    out, ready, script = tmp_path / "killed", tmp_path / "READY", tmp_path / "writer.py"
    script.write_text(_KILLED_MID_FILE)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, str(script), str(out), str(ready), str(Path(__file__).parent)],
                            cwd=str(REPO), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    kill_once_ready(proc, ready)

    names = sorted(p.name for p in out.iterdir())
    assert "shard_00002.safetensors" not in names  # the half file never took a shard's name
    assert any(n.startswith(".shard_00002.safetensors.") and n.endswith(".tmp") for n in names), names
    with pytest.raises(IncompleteStoreError):
        ActivationStore(out)
    partial = ActivationStore(out, allow_incomplete=True)
    assert len(partial) == 6 and [s["file"] for s in partial.manifest["shards"]] == ["shard_00000.safetensors",
                                                                                     "shard_00001.safetensors"]
    for b in partial.iter_batches(["a", "b"], batch_states=4):  # every served state is whole and finite
        assert torch.isfinite(b.acts["a"]).all() and torch.isfinite(b.acts["b"]).all()

    acts, rewards, s0 = _arrays(11)
    resumed = write_store_from_arrays(out, acts, rewards, s0_index=s0, rollouts_per_shard=3)
    whole = write_store_from_arrays(tmp_path / "whole", acts, rewards, s0_index=s0, rollouts_per_shard=3)
    _same_store(resumed, whole)
    _only_store_files(out, resumed)
