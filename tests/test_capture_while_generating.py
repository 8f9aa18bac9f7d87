"""States captured while generating equal a second teacher-forced forward's (both backends).

Checked: the states the generation's own forwards record (prefill + every step, last token fed once
more) equal ``adapter.capture`` over prompt + response within 1e-5 (float32) on left- and
right-padded batches, for rows that stop early (EOS / stop string / length); the store written by
``generate_rollouts_and_store`` equals ``generate_rollouts`` + ``build_store`` state by state, with
the same rollouts (sampled: the same draws); feeding the last token changes no token.
"""

from __future__ import annotations

import pytest
import torch

from reward_circuits.data import build_store, generate_rollouts, generate_rollouts_and_store
from reward_circuits.models import GenerationConfig, GenerationPlan
from reward_circuits.models.decoding import generate_capturing
from reward_circuits.tasks import Example, Task

pytestmark = pytest.mark.usefixtures("one_thread")

BACKENDS = ["transformer_lens", "nnsight"]
HOOKS = ["blocks.0.hook_resid_post", "blocks.1.mlp.hook_post", "blocks.1.hook_resid_post"]
PROMPTS = ["hello world", "hi", "abc def ghi jkl", "x = 3 + 4 ?", "The quick brown fox", "no"]


def _reference(adapter, seqs: list[list[int]], side: str) -> list[dict[str, torch.Tensor]]:
    """Today's capture: one teacher-forced forward over the padded prompt + response rows."""
    batch = adapter.pad(seqs, side)
    acts = adapter.capture(batch, HOOKS)
    width = batch.input_ids.shape[1]
    out = []
    for i, s in enumerate(seqs):
        lo = width - len(s) if side == "left" else 0
        out.append({h: acts[h][i, lo:lo + len(s)].float() for h in HOOKS})
    return out


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("side", ["left", "right"])
def test_states_while_generating_equal_a_second_forward(tiny_adapters, backend, side):
    adapter = tiny_adapters[backend]
    cfg = GenerationConfig(max_new_tokens=9, batch_size=4, progress=False, stop_strings=("e",))
    gens, states = generate_capturing(adapter, PROMPTS, cfg, HOOKS)
    assert [g.response_ids for g in gens] == [g.response_ids for g in adapter.generate(PROMPTS, cfg.__class__(
        **{**cfg.__dict__, "refill": False}))]  # feeding the last token changes no token
    assert len({len(g.response_ids) for g in gens}) >= 2  # rows stopped at different steps
    seqs = [g.prompt_ids + g.response_ids for g in gens]
    want = _reference(adapter, seqs, side)
    for s, got, ref in zip(seqs, states, want):
        for h in HOOKS:
            assert got[h].shape[0] >= len(s)  # a response cut at a stop string keeps its first states
            torch.testing.assert_close(got[h][:len(s)], ref[h], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("sample", [False, True])
def test_store_while_generating_equals_generate_then_capture(tiny_adapters, tmp_path, backend, sample):
    adapter = tiny_adapters[backend]
    task = Task(name="toy", examples=[Example(id=f"q{i}", question=q, answer="4") for i, q in enumerate(PROMPTS)],
                reward_fn=lambda r, e: float(len(r) % 2 == 0), max_new_tokens=7)
    cfg = GenerationConfig(max_new_tokens=7, progress=False, do_sample=sample, seed=2, batch_size=4, refill=False)
    n = 2 if sample else 1
    rolls, store = generate_rollouts_and_store(adapter, task, HOOKS, tmp_path / "a", cfg, samples_per_prompt=n,
                                               dtype="float32", progress=False)
    old = generate_rollouts(adapter, task, cfg, samples_per_prompt=n)
    assert [(r.id, r.response_ids, r.reward) for r in rolls] == [(r.id, r.response_ids, r.reward) for r in old]
    ref = build_store(adapter, old, HOOKS, tmp_path / "b", dtype="float32", progress=False)
    _, same = generate_rollouts_and_store(adapter, task, HOOKS, tmp_path / "c", cfg, samples_per_prompt=n,
                                          while_generating=False, dtype="float32", progress=False)
    for other in (ref, same):
        assert store.rollout_ids == other.rollout_ids
        for h in HOOKS:
            for i in range(len(store.rollout_ids)):
                torch.testing.assert_close(store.get(i, h, from_s0=False), other.get(i, h, from_s0=False),
                                           atol=1e-5, rtol=1e-5)


def test_feed_last_feeds_every_token_once_more(tl_adapter):
    batch = tl_adapter.pad([tl_adapter.tokenizer(p, add_special_tokens=False)["input_ids"] for p in PROMPTS[:3]])
    cfg = GenerationConfig(max_new_tokens=5, progress=False)
    steps = []
    hook = ("blocks.0.hook_resid_post", lambda act, hook: steps.append(act.shape[1]) and None)
    plain = tl_adapter.decode(GenerationPlan(batch), cfg, [hook], 0)
    n_plain = len(steps)
    steps.clear()
    fed = tl_adapter.decode(GenerationPlan(batch, feed_last=True), cfg, [hook], 0)
    assert fed == plain
    assert len(steps) == n_plain + 1 and steps[-1] == 1  # one more one-token step at the end


@pytest.mark.parametrize("backend", BACKENDS)
def test_last_prompt_state_in_store_dtype_is_the_full_capture_cut(tiny_adapters, backend):
    """``prompt_states="last"`` keeps s_0 and the fed tokens' states only, cast as a float16 store casts them."""
    adapter = tiny_adapters[backend]
    cfg = GenerationConfig(max_new_tokens=9, batch_size=4, progress=False, stop_strings=("e",))
    gens, full = generate_capturing(adapter, PROMPTS, cfg, HOOKS)
    again, last = generate_capturing(adapter, PROMPTS, cfg, HOOKS, prompt_states="last", dtype=torch.float16)
    assert [g.response_ids for g in again] == [g.response_ids for g in gens]
    for g, f, l in zip(gens, full, last):
        n = len(g.prompt_ids)
        for h in HOOKS:
            assert l[h].dtype == torch.float16 and l[h].shape[0] == f[h].shape[0] - n + 1 >= len(g.response_ids) + 1
            assert torch.equal(l[h], f[h][n - 1:].to(torch.float16))


def test_refilled_stream_feeds_each_last_token_once_more(tl_adapter):
    """``decode_stream`` with ``feed_last`` plans: the same tokens, and every row fed each of its tokens
    (without: all but the last), with rows joining as others leave (more prompts than rows)."""
    from reward_circuits.models.decoding import decode_stream, stream_plans

    seqs = [tl_adapter.tokenizer(p, add_special_tokens=False)["input_ids"] for p in PROMPTS]
    cfg = GenerationConfig(max_new_tokens=6, batch_size=2, progress=False, stop_strings=("e",))
    fed = {}
    out = {}
    for capture in (False, True):
        plans, prefix = stream_plans(tl_adapter, seqs, cfg, capture=capture)
        fed[capture] = 0

        def count(act, hook, capture=capture):
            if act.shape[1] == 1:
                fed[capture] += act.shape[0]

        out[capture] = decode_stream(tl_adapter, plans, cfg, [("blocks.0.hook_resid_post", count)], max_rows=2, prefix=prefix)
    assert out[True] == out[False]
    rows = [r for plan_rows in out[True] for r in plan_rows]
    assert len(rows) == len(PROMPTS) > 2 and len({len(r) for r in rows}) >= 2
    assert fed[True] == sum(map(len, rows)) and fed[False] == sum(len(r) - 1 for r in rows)
    plans, prefix = stream_plans(tl_adapter, seqs, cfg, capture=True)
    plans[0].feed_last = False
    with pytest.raises(ValueError, match="feed_last must be the same"):
        decode_stream(tl_adapter, plans, cfg, [], max_rows=2, prefix=prefix)


def test_a_state_beyond_the_store_dtype_is_refused_by_name():
    from reward_circuits.models import RowLabels
    from reward_circuits.models.decoding import StateRecorder

    recorder = StateRecorder(["blocks.0.hook_resid_post"], RowLabels([0]), [2], 4, dtype=torch.float16)
    record = recorder.fwd_hooks()[0][1]
    record(torch.ones(1, 2, 4), hook=None)
    with pytest.raises(ValueError, match=r"blocks\.0\.hook_resid_post up to 1e\+06.*float32"):
        record(torch.full((1, 1, 4), 1e6), hook=None)
    assert recorder.pop(0)["blocks.0.hook_resid_post"].shape == (2, 4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_long_rows_kept_in_few_pieces_equal_a_second_forward(tiny_adapters, backend):
    """Rows of 40 tokens: the recorder joins each row's per-step states as they grow; still a second forward's."""
    adapter = tiny_adapters[backend]
    cfg = GenerationConfig(max_new_tokens=40, batch_size=4, progress=False)
    gens, states = generate_capturing(adapter, PROMPTS, cfg, HOOKS)
    assert max(len(g.response_ids) for g in gens) > 32
    seqs = [g.prompt_ids + g.response_ids for g in gens]
    for s, got, ref in zip(seqs, states, _reference(adapter, seqs, "left")):
        for h in HOOKS:
            torch.testing.assert_close(got[h][:len(s)], ref[h], atol=1e-5, rtol=1e-5)
