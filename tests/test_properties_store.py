"""Property-based tests (hypothesis) of the activation store: random shapes, dtypes, shard sizes and
s_0 indices round-trip exactly (every value equals the input cast to the store's dtype), through
``get``, ``initial_states`` and streamed ``iter_batches``, and an interrupted write resumes to the
same bytes.

Bug this found (fixed in ``ActivationStoreWriter.write``): a finite float32 activation beyond the
float16 range (|x| > 65504) was stored as ``inf`` without a word; the NaN/inf check ran before
the cast. Seen failing here before the fix.
"""

from __future__ import annotations

import tempfile
from datetime import timedelta
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reward_circuits.data.store import (
    ActivationStore,
    StoreError,
    write_store_from_arrays,
)

pytestmark = pytest.mark.usefixtures("one_thread")

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
SETTINGS = settings(max_examples=25, deadline=timedelta(seconds=20), suppress_health_check=[HealthCheck.too_slow])


@st.composite
def stores(draw):
    n = draw(st.integers(1, 9))
    n_hooks = draw(st.integers(1, 3))
    widths = [draw(st.integers(1, 6)) for _ in range(n_hooks)]
    lens = [draw(st.integers(1, 8)) for _ in range(n)]
    s0 = [draw(st.integers(0, L - 1)) for L in lens]
    dtype = draw(st.sampled_from(sorted(DTYPES)))
    scale = draw(st.sampled_from([1e-6, 1.0, 300.0, 6e4]))  # 6e4: near the float16 limit
    seed = draw(st.integers(0, 2**16))
    g = torch.Generator().manual_seed(seed)
    hooks = [f"blocks.{i}.hook_resid_post" for i in range(n_hooks)]
    acts = {h: [(torch.rand(L, d, generator=g) * 2 - 1) * scale for L in lens] for h, d in zip(hooks, widths)}
    rewards = [float(draw(st.integers(0, 1))) for _ in range(n)]
    per_shard = draw(st.integers(1, n + 1))
    return acts, rewards, s0, dtype, per_shard


@SETTINGS
@given(stores())
def test_store_round_trips_exactly(case):
    acts, rewards, s0, dtype, per_shard = case
    tdt = DTYPES[dtype]
    with tempfile.TemporaryDirectory() as tmp:
        store = write_store_from_arrays(Path(tmp) / "s", acts, rewards, s0_index=s0, dtype=dtype, rollouts_per_shard=per_shard)
        store = ActivationStore(store.path)  # reopened from disk
        n = len(rewards)
        assert len(store) == n and store.rewards.tolist() == rewards
        assert len(store.manifest["shards"]) == -(-n // per_shard)
        for h, seqs in acts.items():
            want = [a.to(tdt).float() for a in seqs]
            assert store.d(h) == seqs[0].shape[1]
            for i in range(n):
                assert torch.equal(store.get(i, h, from_s0=False), want[i])
                assert torch.equal(store.get(i, h), want[i][s0[i]:])
            assert torch.equal(store.initial_states(h), torch.stack([w[s] for w, s in zip(want, s0)]))
            seen = torch.cat([b.acts[h] for b in store.iter_batches(h, batch_states=3, include_prompt=True)])
            assert torch.equal(seen, torch.cat(want))


@SETTINGS
@given(stores(), st.integers(1, 8))
def test_interrupted_write_resumes_to_the_same_store(case, stop_after):
    acts, rewards, s0, dtype, per_shard = case
    n = len(rewards)
    k = min(stop_after * per_shard, n)  # the first shards got written, then the process died
    with tempfile.TemporaryDirectory() as tmp:
        whole = write_store_from_arrays(Path(tmp) / "whole", acts, rewards, s0_index=s0, dtype=dtype, rollouts_per_shard=per_shard)
        from reward_circuits.data.store import ActivationStoreWriter

        w = ActivationStoreWriter(Path(tmp) / "part", list(acts), model="arrays", dtype=dtype)
        for a in range(0, k, per_shard):
            b = min(a + per_shard, k)
            w.write([f"r{i:06d}" for i in range(a, b)], rewards[a:b], {h: v[a:b] for h, v in acts.items()}, s0[a:b])
        resumed = write_store_from_arrays(Path(tmp) / "part", acts, rewards, s0_index=s0, dtype=dtype, rollouts_per_shard=per_shard)
        for key in ("hook_names", "d", "dtype", "shards", "rollouts", "complete"):
            assert resumed.manifest[key] == whole.manifest[key], key
        for s in whole.manifest["shards"]:
            assert (whole.path / s["file"]).read_bytes() == (resumed.path / s["file"]).read_bytes()


@SETTINGS
@given(st.sampled_from([7e4, -1e5, 3e38]), st.sampled_from(["float16", "bfloat16"]))
def test_values_beyond_the_dtype_range_are_refused_not_stored_as_inf(big, dtype):
    acts = {"h": [torch.tensor([[1.0, big]]), torch.ones(2, 2)]}
    with tempfile.TemporaryDirectory() as tmp:
        if torch.isfinite(torch.tensor(big).to(DTYPES[dtype])):
            store = write_store_from_arrays(Path(tmp) / "s", acts, [0.0, 1.0], dtype=dtype)
            assert torch.isfinite(store.get(0, "h")).all()
        else:
            with pytest.raises(StoreError, match=rf"beyond the range of {dtype}.*dtype='float32'"):
                write_store_from_arrays(Path(tmp) / "s", acts, [0.0, 1.0], dtype=dtype)
