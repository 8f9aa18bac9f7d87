"""Shared trunk: a sweep's rows of one example share the blocks below their hooks while their tokens agree.

Checked on tiny random 4-block models (Llama: cached-rotary attention; GPT-2: TL's own attention):
tokens identical to today's sweep (``share_trunk=False``) and to one pass per condition, with hooks
at the first, a middle and the last block, conditions that part from the baseline at different
steps, rows that leave (stop strings) and rows that join a running batch (refill), greedy and paired
sampling; the trunk really is shared (fewer block-rows computed than rows × blocks); a fork copies
the cache (a later write to one row leaves the other alone); hooks attached outside a sweep turn
sharing off; the nnsight backend keeps today's path.
"""

from __future__ import annotations

import pytest
import torch

from reward_circuits.interventions import SweepConfig, add_direction, scale, sweep, zero_ablate
from reward_circuits.models import GenerationConfig, tl_trunk
from reward_circuits.models.tl_trunk import TrunkCache, TrunkRows

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPTS = ["hello world", "hi", "abc def ghi jkl", "x = 3 + 4 ?", "The quick brown fox", "no", "a b", "zz top"]


def _adapter(arch: str):
    from reward_circuits.models import from_hf
    from reward_circuits.models.tiny import tiny_gpt2_model, tiny_hf_model

    hf, tok = (tiny_hf_model if arch == "llama" else tiny_gpt2_model)(n_layers=4, seed=1)
    return from_hf(hf, tok, "transformer_lens", name=f"tiny-{arch}-4")


@pytest.fixture(scope="module")
def llama4():
    return _adapter("llama")


@pytest.fixture(scope="module")
def gpt2_4():
    return _adapter("gpt2")


def _conditions(d_model: int, d_mlp: int) -> dict[str, list]:
    """Hooks at the first (0), a middle (2) and the last (3) block; strong and weak edits, so rows
    part from the baseline at different steps (or never)."""
    direction = torch.randn(d_model, generator=torch.Generator().manual_seed(0))
    return {
        "baseline": [],
        "first": [("blocks.0.hook_resid_post", zero_ablate([1, 2, 3]))],
        "middle": [("blocks.2.mlp.hook_post", scale(list(range(0, d_mlp, 4)), 3.0))],
        "middle_generated": [("blocks.2.hook_resid_post", add_direction(direction, 1.5, positions="generated"))],
        "last": [("blocks.3.hook_resid_post", scale(list(range(0, d_model, 2)), 0.6))],
        "last_weak": [("blocks.3.hook_resid_post", scale([0], 0.95))],
    }


def _tokens(result) -> dict[str, list[list[int]]]:
    return {c.name: [g.response_ids for g in c.generations] for c in result}


def _first_difference(a: list[int], b: list[int]) -> int | None:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None if len(a) == len(b) else min(len(a), len(b)))


class _Count:
    """Counts, over every TrunkCache step, the block-rows a plain batch runs and those the trunk ran."""

    def __init__(self, monkeypatch):
        self.rows = self.computed = self.forks = 0
        step, fork = TrunkCache.step, TrunkCache.fork

        def counted_step(cache, tokens):
            r, c = cache.row_layers, cache.computed_layers
            out = step(cache, tokens)
            self.rows += cache.row_layers - r
            self.computed += cache.computed_layers - c
            return out

        def counted_fork(cache, tokens):
            split = fork(cache, tokens)
            self.forks += int(split)
            return split

        monkeypatch.setattr(TrunkCache, "step", counted_step)
        monkeypatch.setattr(TrunkCache, "fork", counted_fork)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize("max_rows", [None, 9])
@pytest.mark.parametrize("refill", [True, False])
def test_shared_trunk_gives_todays_tokens(request, monkeypatch, arch, max_rows, refill):
    adapter = request.getfixturevalue("llama4" if arch == "llama" else "gpt2_4")
    conds = _conditions(adapter.d_model, adapter.d_mlp)
    cfg = GenerationConfig(max_new_tokens=12, progress=False, stop_strings=("q",))  # some rows leave early
    count = _Count(monkeypatch)
    shared = sweep(adapter, PROMPTS, conds, cfg, sweep_config=SweepConfig(max_rows=max_rows, refill=refill))
    assert count.rows > 0 and count.computed < 0.9 * count.rows, (count.computed, count.rows)  # it did share
    assert count.forks > 0  # and rows did fork
    today = sweep(adapter, PROMPTS, conds, cfg, sweep_config=SweepConfig(max_rows=max_rows, refill=refill,
                                                                          share_trunk=False))
    per_condition = sweep(adapter, PROMPTS, conds, cfg, sweep_config=SweepConfig(strategy="per_condition"))
    assert _tokens(shared) == _tokens(today) == _tokens(per_condition)
    assert shared.refilled == refill
    toks = _tokens(shared)
    # the conditions part from the baseline at different steps (some never): forks at several steps
    parts = {_first_difference(r, b) for k in conds if k != "baseline" for r, b in zip(toks[k], toks["baseline"])}
    assert len(parts - {None}) >= 3 and max(p for p in parts if p is not None) >= 1, parts
    lengths = {len(r) for rows in toks.values() for r in rows}
    assert min(lengths) < 12  # rows left the batch early


def test_paired_sampling_with_a_shared_trunk(llama4, monkeypatch):
    conds = _conditions(llama4.d_model, llama4.d_mlp)
    cfg = GenerationConfig(max_new_tokens=10, do_sample=True, temperature=1.3, seed=5, progress=False)
    count = _Count(monkeypatch)
    shared = sweep(llama4, PROMPTS, conds, cfg)
    assert count.computed < count.rows and count.forks > 0
    today = sweep(llama4, PROMPTS, conds, cfg, sweep_config=SweepConfig(share_trunk=False))
    chunked = sweep(llama4, PROMPTS, conds, cfg, sweep_config=SweepConfig(max_rows=7))
    assert _tokens(shared) == _tokens(today) == _tokens(chunked)
    toks = _tokens(shared)
    assert sum(toks[k] != toks["baseline"] for k in conds) >= 3  # sampled rows did part
    assert toks["last_weak"] == toks["baseline"] or sum(
        a == b for a, b in zip(toks["last_weak"], toks["baseline"])) >= len(PROMPTS) // 2  # paired draws


def _session_with_two_rows(adapter):
    """A decoding session over one prompt copied to two rows that share blocks 0-2 (trunk layer 3)."""
    ids = adapter.tokenizer("hello world", add_special_tokens=False)["input_ids"]
    return ids, adapter.pad([ids])


def test_a_fork_copies_the_cache(llama4):
    ids, batch = _session_with_two_rows(llama4)
    with llama4.decoding_session([]) as session:
        session.prefill(batch)
        session.select_rows(torch.tensor([0, 0]))
        session.share_trunk(TrunkRows([0, 0], [3, 3], [0, 1]))
        trunk = session.trunk
        assert [t.shape[0] for t in tl_trunk.entry_tensors(trunk.entries[0]).values()] == [1, 1]  # one shared row
        assert [t.shape[0] for t in tl_trunk.entry_tensors(trunk.entries[3]).values()] == [2, 2]  # own rows
        same = session.step(torch.tensor([5, 5]))  # tokens agree: still shared
        torch.testing.assert_close(same[0], same[1])
        assert int(trunk.segs[0].reps.numel()) == 1
        session.step(torch.tensor([5, 7]))  # tokens differ: the rows fork
        assert int(trunk.segs[0].reps.numel()) == 2
        k0 = next(iter(tl_trunk.entry_tensors(trunk.entries[0]).values()))
        assert k0.shape[0] == 2
        before = k0[1].clone()
        k0[0].add_(1.0)  # a later write to one row ...
        torch.testing.assert_close(k0[1], before)  # ... leaves the other alone
        assert not torch.equal(k0[0], k0[1])
        # and the forked rows keep generating what unshared rows generate
        rows = session.step(torch.tensor([9, 9]))
    with llama4.decoding_session([]) as plain:
        plain.prefill(llama4.pad([ids + [5, 5], ids + [5, 7]]))
        want = plain.step(torch.tensor([9, 9]))
    torch.testing.assert_close(rows[1], want[1], atol=1e-5, rtol=1e-5)


def test_trunk_rows_and_layout_check_their_input():
    with pytest.raises(ValueError, match="one group, one trunk layer and one label"):
        TrunkRows([0, 1], [1], [0, 1])
    with pytest.raises(ValueError, match=">= 0"):
        TrunkRows([0], [-1], [0])
    rows = TrunkRows([7, 7, 7, 9], [4, 2, 0, 4], [0, 1, 2, 0])
    segs = tl_trunk._layout(rows, 4)
    assert [(s.start, s.end) for s in segs] == [(0, 2), (2, 4)]
    assert [int(s.reps.numel()) for s in segs] == [3, 4]  # blocks 0-1: {row0,row1}, row2, row3
    assert segs[0].labels.tolist().count(-1) == 1  # the shared class carries no label


def test_hooks_attached_outside_turn_sharing_off(llama4, monkeypatch):
    conds = {"baseline": [], "last": [("blocks.3.hook_resid_post", scale([1, 2], 0.5))]}
    cfg = GenerationConfig(max_new_tokens=6, progress=False)
    count = _Count(monkeypatch)
    with llama4.hooks([("blocks.1.hook_resid_post", scale([3], 2.0))]):
        hooked = sweep(llama4, PROMPTS[:3], conds, cfg)
    assert count.rows == 0  # every row ran every block
    with llama4.hooks([("blocks.1.hook_resid_post", scale([3], 2.0))]):
        ref = sweep(llama4, PROMPTS[:3], conds, cfg, sweep_config=SweepConfig(strategy="per_condition"))
    assert _tokens(hooked) == _tokens(ref)


def test_nnsight_keeps_todays_path(nn_adapter, monkeypatch):
    assert not nn_adapter.shares_trunk
    count = _Count(monkeypatch)
    conds = {"baseline": [], "l1": [("blocks.1.hook_resid_post", scale([1, 2], 0.5))]}
    out = sweep(nn_adapter, PROMPTS[:3], conds, GenerationConfig(max_new_tokens=4, progress=False))
    assert count.rows == 0 and len(out["l1"].generations) == 3


def test_rows_that_stay_after_finishing_keep_todays_tokens(llama4, monkeypatch):
    """drop_finished=False: finished rows stay in the batch fed with padding; groups fork on it."""
    conds = _conditions(llama4.d_model, llama4.d_mlp)
    cfg = GenerationConfig(max_new_tokens=10, progress=False, stop_strings=("q",), drop_finished=False)
    count = _Count(monkeypatch)
    shared = sweep(llama4, PROMPTS, conds, cfg, sweep_config=SweepConfig(refill=False))
    assert count.computed < count.rows
    today = sweep(llama4, PROMPTS, conds, cfg, sweep_config=SweepConfig(refill=False, share_trunk=False))
    assert _tokens(shared) == _tokens(today)
    assert min(len(r) for rows in _tokens(shared).values() for r in rows) < 10
