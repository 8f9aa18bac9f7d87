"""ModelAdapter on the tiny random Llama: both backends run the same HF weights.

Ground truth is the raw HF model (``LlamaForCausalLM``) and, for captures, unpadded single-sequence
runs: padding must never change a result, and TransformerLens and nnsight must agree.
"""

from __future__ import annotations

import re

import pytest
import torch

from reward_circuits.models.loading import hooked_transformer_from_hf
from reward_circuits.models import GenerationConfig, HookNameError, TokenBatch, from_hf
from reward_circuits.models.tiny import tiny_hf_model

pytestmark = pytest.mark.usefixtures("one_thread")

BACKENDS = ["transformer_lens", "nnsight"]
SIDES = ["left", "right"]
HOOKS = [
    "hook_embed",
    "blocks.0.hook_resid_pre",
    "blocks.1.hook_resid_pre",
    "blocks.0.hook_resid_mid",
    "blocks.1.hook_resid_mid",
    "blocks.0.hook_resid_post",
    "blocks.1.hook_resid_post",
    "blocks.0.hook_attn_out",
    "blocks.1.hook_attn_out",
    "blocks.0.hook_mlp_out",
    "blocks.1.hook_mlp_out",
    "blocks.0.mlp.hook_post",
    "blocks.1.mlp.hook_post",
]
# very different lengths so every batch has real padding
TEXTS = ["What is 7+5?", "Hi", "abc def ghi", "<|user|>x<|end|><|assistant|>", "Tell me a long story, please!!"]
ATOL = 1e-4


def _greedy(n: int, **kw) -> GenerationConfig:
    return GenerationConfig(max_new_tokens=n, progress=False, **kw)


def _chat_prompts(tok) -> list[str]:
    qs = ["What is 2+2?", "Hi", "Name three colours of the rainbow, please.", "x"]
    return [tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
            for q in qs]


def _max_masked_diff(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float((a - b)[mask.bool()].abs().max())


# ---- capture ----------------------------------------------------------------------------------


@pytest.mark.parametrize("side", SIDES)
def test_capture_agrees_across_backends(tiny_adapters, side):
    tl, nn = tiny_adapters["transformer_lens"], tiny_adapters["nnsight"]
    batch = tl.tokenize(TEXTS, padding_side=side)
    assert (batch.attention_mask == 0).any(), "the batch must contain padding"
    a = tl.capture(batch, HOOKS)
    b = nn.capture(batch, HOOKS)
    assert list(a) == HOOKS and list(b) == HOOKS
    for h in HOOKS:
        width = tl.d_mlp if h.endswith("mlp.hook_post") else tl.d_model
        assert a[h].shape == (len(TEXTS), batch.input_ids.shape[1], width), h
        assert a[h].abs().max() > 0.1, f"{h} is trivially small"
        assert _max_masked_diff(a[h], b[h], batch.attention_mask) < ATOL, h
    # the hook kinds are really different activations (not the same tensor captured twice)
    assert not torch.allclose(a["blocks.0.hook_resid_pre"], a["blocks.0.hook_resid_post"])
    assert not torch.allclose(a["blocks.1.hook_attn_out"], a["blocks.1.hook_mlp_out"])


def test_capture_hook_kinds_are_consistent(tl_adapter):
    """resid_mid = resid_pre + attn_out; resid_post = resid_mid + mlp_out; resid_pre(l+1) = resid_post(l)."""
    batch = tl_adapter.tokenize(TEXTS)
    a = tl_adapter.capture(batch, HOOKS)
    for l in (0, 1):
        torch.testing.assert_close(a[f"blocks.{l}.hook_resid_mid"],
                                   a[f"blocks.{l}.hook_resid_pre"] + a[f"blocks.{l}.hook_attn_out"], atol=1e-5, rtol=0)
        torch.testing.assert_close(a[f"blocks.{l}.hook_resid_post"],
                                   a[f"blocks.{l}.hook_resid_mid"] + a[f"blocks.{l}.hook_mlp_out"], atol=1e-5, rtol=0)
    torch.testing.assert_close(a["blocks.1.hook_resid_pre"], a["blocks.0.hook_resid_post"], atol=0, rtol=0)
    torch.testing.assert_close(a["blocks.0.hook_resid_pre"], a["hook_embed"], atol=0, rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("side", SIDES)
def test_padding_never_changes_capture(tiny_adapters, backend, side):
    ad = tiny_adapters[backend]
    batch = ad.tokenize(TEXTS, padding_side=side)
    got = ad.capture(batch, HOOKS)
    for i, text in enumerate(TEXTS):
        single = ad.tokenize([text])
        assert single.attention_mask.all()
        ref = ad.capture(single, HOOKS)
        keep = batch.attention_mask[i].bool()
        assert int(keep.sum()) == single.input_ids.shape[1]
        assert torch.equal(batch.input_ids[i][keep], single.input_ids[0])
        for h in HOOKS:
            diff = float((got[h][i][keep] - ref[h][0]).abs().max())
            assert diff < ATOL, (text, h, diff)


@pytest.mark.parametrize("backend", BACKENDS)
def test_pad_helper_left_and_right(tiny_adapters, backend):
    ad = tiny_adapters[backend]
    seqs = [[5, 6, 7, 8], [9], [10, 11]]
    left, right = ad.pad(seqs, "left"), ad.pad(seqs, "right")
    assert left.input_ids.tolist()[1] == [ad.tokenizer.pad_token_id] * 3 + [9]
    assert right.attention_mask.tolist() == [[1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 0, 0]]
    a, b = ad.capture(left, ["blocks.1.hook_resid_post"]), ad.capture(right, ["blocks.1.hook_resid_post"])
    for i, s in enumerate(seqs):
        x = a["blocks.1.hook_resid_post"][i][left.attention_mask[i].bool()]
        y = b["blocks.1.hook_resid_post"][i][right.attention_mask[i].bool()]
        assert x.shape[0] == len(s)
        assert float((x - y).abs().max()) < ATOL
    with pytest.raises(ValueError):
        ad.pad([[1, 2], []])


# ---- forward ----------------------------------------------------------------------------------


@pytest.mark.parametrize("side", SIDES)
def test_forward_logits_agree_with_each_other_and_raw_hf(tiny_hf, tiny_adapters, side):
    hf, _ = tiny_hf
    tl, nn = tiny_adapters["transformer_lens"], tiny_adapters["nnsight"]
    batch = tl.tokenize(TEXTS, padding_side=side)
    with torch.no_grad():
        ref = hf(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    a, b = tl.forward(batch), nn.forward(batch)
    assert a.shape == b.shape == ref.shape == (len(TEXTS), batch.input_ids.shape[1], len(tiny_hf[1]))
    m = batch.attention_mask
    assert _max_masked_diff(a, ref, m) < ATOL
    assert _max_masked_diff(b, ref, m) < ATOL
    assert _max_masked_diff(a, b, m) < ATOL
    keep = m.bool()
    assert torch.equal(a.argmax(-1)[keep], ref.argmax(-1)[keep])
    assert torch.equal(b.argmax(-1)[keep], ref.argmax(-1)[keep])


# ---- generation --------------------------------------------------------------------------------


def _hf_greedy(hf, tok, ad, prompts, n):
    batch = ad.tokenize(prompts, padding_side="left")
    with torch.no_grad():
        out = hf.generate(input_ids=batch.input_ids, attention_mask=batch.attention_mask, max_new_tokens=n,
                          do_sample=False, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                          temperature=None, top_p=None, top_k=None)
    rows = []
    for row in out[:, batch.input_ids.shape[1]:].tolist():
        cut = row.index(tok.eos_token_id) + 1 if tok.eos_token_id in row else len(row)
        rows.append(row[:cut])
    return rows


@pytest.mark.parametrize("backend", BACKENDS)
def test_greedy_generation_equals_hf_generate(tiny_hf, tiny_adapters, backend):
    hf, tok = tiny_hf
    ad = tiny_adapters[backend]
    prompts = TEXTS + _chat_prompts(tok)
    n = 16
    want = _hf_greedy(hf, tok, ad, prompts, n)
    assert any(len(w) == n for w in want) and any(w and w[-1] == tok.eos_token_id for w in want), \
        "the reference should contain both a full-length row and an EOS-terminated row"
    # batch_size 3: prompts are split into chunks with their own (different) padding
    gens = ad.generate(prompts, _greedy(n, batch_size=3))
    assert len(gens) == len(prompts)
    for p, g, w in zip(prompts, gens, want):
        assert g.prompt_ids == tok(p, add_special_tokens=False)["input_ids"]
        assert g.response_ids == w, p
        assert g.finish_reason == ("eos" if w[-1] == tok.eos_token_id else "length")
        assert g.text == tok.decode(w, skip_special_tokens=True)


@pytest.mark.parametrize("backend", BACKENDS)
def test_generate_from_token_batch_equals_from_strings(tiny_adapters, backend):
    ad = tiny_adapters[backend]
    a = ad.generate(TEXTS, _greedy(6))
    b = ad.generate(ad.tokenize(TEXTS, padding_side="right"), _greedy(6))
    assert [g.response_ids for g in a] == [g.response_ids for g in b]
    assert [g.prompt_ids for g in a] == [g.prompt_ids for g in b]


@pytest.mark.parametrize("backend", BACKENDS)
def test_seeded_sampling_is_reproducible_and_seed_dependent(tiny_adapters, backend):
    ad = tiny_adapters[backend]
    cfg = dict(max_new_tokens=10, do_sample=True, temperature=1.0, progress=False)
    run = lambda seed: [g.response_ids for g in ad.generate(TEXTS, GenerationConfig(seed=seed, **cfg))]
    s0, s0_again, s1 = run(0), run(0), run(1)
    assert s0 == s0_again
    assert s0 != s1
    # and sampling is not greedy decoding in disguise
    assert s0 != [g.response_ids for g in ad.generate(TEXTS, _greedy(10))]


@pytest.mark.parametrize("backend", BACKENDS)
def test_stop_strings_cut_the_text(tiny_adapters, backend):
    ad = tiny_adapters[backend]
    full = ad.generate(TEXTS, _greedy(20))
    # pick a stop string from the middle of one greedy response: its first occurrence is the cut
    row = max(range(len(TEXTS)), key=lambda i: len(full[i].text))
    text = full[row].text
    assert len(text) >= 8
    stop = text[4:6]
    cut = text.find(stop)
    assert 0 < cut <= 4
    gens = ad.generate(TEXTS, _greedy(20, stop_strings=(stop,)))
    g = gens[row]
    assert g.finish_reason == "stop_string"
    assert g.text == text[:cut]
    assert stop not in g.text
    # the fewest tokens whose decoding reaches the stop string, and a prefix of the full response
    assert g.response_ids == full[row].response_ids[: len(g.response_ids)]
    assert stop in ad.tokenizer.decode(g.response_ids, skip_special_tokens=True)
    assert stop not in ad.tokenizer.decode(g.response_ids[:-1], skip_special_tokens=True)
    for i, (a, b) in enumerate(zip(full, gens)):
        if stop not in a.text:
            assert (b.response_ids, b.text, b.finish_reason) == (a.response_ids, a.text, a.finish_reason), i


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n", [1, 5])
def test_max_new_tokens_respected(tiny_adapters, backend, n):
    ad = tiny_adapters[backend]
    long = ad.generate(TEXTS, _greedy(20))
    gens = ad.generate(TEXTS, _greedy(n))
    for g, ref in zip(gens, long):
        assert 1 <= len(g.response_ids) <= n
        assert g.response_ids == ref.response_ids[:n]
        if g.finish_reason == "length":
            assert len(g.response_ids) == n
    with pytest.raises(ValueError):
        GenerationConfig(max_new_tokens=0)


# ---- hooks ------------------------------------------------------------------------------------


def _hf_reference_with_torch_hooks(hf, batch):
    """Raw HF run with plain torch hooks: layer-0 output ×2, +1 on layer-0 down_proj input;
    returns (layer-0 output, mlp post of layer 0, layer-1 output)."""
    rec = {}

    def double_out(mod, args, out):
        h = out[0] if isinstance(out, tuple) else out
        h = h * 2
        rec["resid0"] = h
        return (h,) + tuple(out[1:]) if isinstance(out, tuple) else h

    def plus_one_in(mod, args):
        x = args[0] + 1
        rec["post0"] = x
        return (x,) + tuple(args[1:])

    def rec_out(mod, args, out):
        rec["resid1"] = out[0] if isinstance(out, tuple) else out

    layers = hf.model.layers
    handles = [layers[0].register_forward_hook(double_out),
               layers[0].mlp.down_proj.register_forward_pre_hook(plus_one_in),
               layers[1].register_forward_hook(rec_out)]
    try:
        with torch.no_grad():
            hf(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
    finally:
        for h in handles:
            h.remove()
    return rec


@pytest.mark.parametrize("backend", BACKENDS)
def test_user_fwd_hooks_apply_before_capture(tiny_hf, tiny_adapters, backend):
    hf, _ = tiny_hf
    ad = tiny_adapters[backend]
    batch = ad.tokenize(TEXTS)
    names = ["blocks.0.mlp.hook_post", "blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
    base = ad.capture(batch, names)
    seen = []

    def double(act, hook):  # returns a new tensor
        seen.append(hook.name)
        return act * 2

    def plus_one(act, hook):  # edits in place
        seen.append(hook.name)
        act += 1

    got = ad.capture(batch, names, fwd_hooks=[("blocks.0.hook_resid_post", double), ("blocks.0.mlp.hook_post", plus_one)])
    assert sorted(seen) == ["blocks.0.hook_resid_post", "blocks.0.mlp.hook_post"]
    ref = _hf_reference_with_torch_hooks(hf, batch)
    m = batch.attention_mask
    assert _max_masked_diff(got["blocks.0.mlp.hook_post"], base["blocks.0.mlp.hook_post"] + 1, m) < ATOL
    assert _max_masked_diff(got["blocks.0.mlp.hook_post"], ref["post0"], m) < ATOL
    assert _max_masked_diff(got["blocks.0.hook_resid_post"], ref["resid0"], m) < ATOL
    assert _max_masked_diff(got["blocks.1.hook_resid_post"], ref["resid1"], m) < ATOL
    # the edit really propagated (not just a relabelled copy of the clean run)
    assert _max_masked_diff(got["blocks.1.hook_resid_post"], base["blocks.1.hook_resid_post"], m) > 0.1
    # and nothing stays attached: a plain capture is the clean one again
    again = ad.capture(batch, names)
    for h in names:
        assert torch.equal(again[h], base[h]), h


def _listed_names(msg: str) -> list[str]:
    return re.findall(r"'([^']+)'", msg)


@pytest.mark.parametrize("backend", BACKENDS)
def test_unknown_hook_name_raises_with_valid_names(tiny_adapters, backend):
    ad = tiny_adapters[backend]
    batch = ad.tokenize(TEXTS[:2])
    ident = lambda a, hook: a
    calls = [
        lambda: ad.capture(batch, ["blocks.0.hook_resid_post", "blocks.9.hook_resid_post"]),
        lambda: ad.capture(batch, ["blocks.0.resid_post"]),
        lambda: ad.forward(batch, [("blocks.9.hook_resid_post", ident)]),
        lambda: ad.generate(TEXTS[:1], _greedy(2), fwd_hooks=[("blocks.9.hook_resid_post", ident)]),
        lambda: ad.validate_hooks(["nope"]),
    ]
    valid = set(ad.hook_names())
    for call in calls:
        with pytest.raises(HookNameError) as ei:
            call()
        msg = str(ei.value)
        assert "unknown hook point" in msg and "hook_names()" in msg and "0..1" in msg
        listed = _listed_names(msg)
        bad = [n for n in listed if n not in valid]
        assert len(bad) == 1 and bad[0] in ("blocks.9.hook_resid_post", "blocks.0.resid_post", "nope"), listed
        good = [n for n in listed if n in valid]
        assert "hook_embed" in good and len(good) >= 5
    with pytest.raises(HookNameError, match="no hook names"):
        ad.capture(batch, [])


@pytest.mark.parametrize("backend", BACKENDS)
def test_unknown_hook_name_suggests_residual_stream_hooks(tiny_adapters, backend):
    """The suggestions in the error should be the canonical hook points (resid/attn/mlp) users mean."""
    ad = tiny_adapters[backend]
    with pytest.raises(HookNameError) as ei:
        ad.capture(ad.tokenize(TEXTS[:1]), ["blocks.9.hook_resid_post"])
    assert "'blocks.0.hook_resid_post'" in str(ei.value)


@pytest.mark.parametrize("backend", BACKENDS)
def test_unknown_name_in_user_fwd_hooks_of_capture_is_a_hook_name_error(tiny_adapters, backend):
    ad = tiny_adapters[backend]
    with pytest.raises(HookNameError, match="blocks.7.hook_resid_post"):
        ad.capture(ad.tokenize(TEXTS[:2]), ["hook_embed"], fwd_hooks=[("blocks.7.hook_resid_post", lambda a, hook: a)])


@pytest.mark.parametrize("backend", BACKENDS)
def test_adapter_has_a_name_for_messages_and_manifests(tiny_hf, backend):
    hf, tok = tiny_hf
    ad = from_hf(hf, tok, backend)  # no name given
    assert isinstance(ad.name, str) and ad.name.strip(), repr(ad.name)


class Boom(RuntimeError):
    pass


def _boom(act, hook):
    raise Boom(f"inside {hook.name}")


@pytest.mark.parametrize("backend", BACKENDS)
def test_hooks_removed_after_an_exception_inside_a_hook(tiny_adapters, backend):
    ad = tiny_adapters[backend]
    batch = ad.tokenize(TEXTS)
    names = ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
    base_logits = ad.forward(batch)
    base_acts = ad.capture(batch, names)
    base_gen = [g.response_ids for g in ad.generate(TEXTS, _greedy(4))]
    double = lambda a, hook: a * 2
    hooks = [("blocks.0.hook_resid_post", double), ("blocks.1.hook_attn_out", _boom)]

    with pytest.raises(Boom):
        ad.capture(batch, names, fwd_hooks=hooks)
    with pytest.raises(Boom):
        ad.forward(batch, hooks)
    with pytest.raises(Exception):  # nnsight may wrap the error during generation
        ad.generate(TEXTS[:2], _greedy(3), fwd_hooks=hooks)

    if backend == "transformer_lens":
        hd = ad.model.hook_dict
        assert hd["blocks.0.hook_resid_post"].fwd_hooks == []
        assert hd["blocks.1.hook_attn_out"].fwd_hooks == []
        assert all(len(hp.fwd_hooks) == 0 and len(hp.bwd_hooks) == 0 for hp in hd.values())
    assert torch.equal(ad.forward(batch), base_logits)
    after = ad.capture(batch, names)
    for h in names:
        assert torch.equal(after[h], base_acts[h]), h
    assert [g.response_ids for g in ad.generate(TEXTS, _greedy(4))] == base_gen


# ---- HF → TransformerLens conversion ------------------------------------------------------------


@pytest.mark.parametrize("n_layers,n_heads,n_kv_heads", [(2, 4, 2), (3, 4, 4)])
def test_hooked_transformer_from_hf_matches_hf_logits(n_layers, n_heads, n_kv_heads):
    hf, tok = tiny_hf_model(n_layers=n_layers, n_heads=n_heads, n_kv_heads=n_kv_heads, seed=3)
    ht = hooked_transformer_from_hf(hf, tok)
    assert ht.cfg.n_layers == n_layers and ht.cfg.d_model == hf.config.hidden_size
    for side in SIDES:
        old = tok.padding_side
        tok.padding_side = side
        enc = tok(TEXTS, return_tensors="pt", padding=True, add_special_tokens=False)
        tok.padding_side = old
        with torch.no_grad():
            ref = hf(**enc).logits
            got = ht(enc["input_ids"], attention_mask=enc["attention_mask"])
        assert got.shape == ref.shape
        assert _max_masked_diff(got, ref, enc["attention_mask"]) < ATOL, side
    # unpadded single sequence without a mask
    ids = tok("abc def ghi", return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(ht(ids), hf(input_ids=ids).logits, atol=ATOL, rtol=0)


# ---- non-unit norm weights (the tiny model's RMSNorm weights are all ones, which hides norm bugs) --


@pytest.fixture(scope="module")
def tiny_hf_with_norm_weights():
    hf, tok = tiny_hf_model(seed=5)
    with torch.no_grad():
        for p in hf.parameters():
            if p.ndim == 1:  # RMSNorm weights
                p.uniform_(0.5, 1.5)
    return hf, tok


def test_conversion_with_non_unit_norm_weights(tiny_hf_with_norm_weights):
    hf, tok = tiny_hf_with_norm_weights
    ht = hooked_transformer_from_hf(hf, tok)
    enc = tok(TEXTS, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        ref = hf(**enc).logits
        got = ht(enc["input_ids"], attention_mask=enc["attention_mask"])
    assert _max_masked_diff(got, ref, enc["attention_mask"]) < ATOL


@pytest.mark.parametrize("side", SIDES)
def test_every_shared_hook_agrees_across_backends_with_non_unit_norm_weights(tiny_hf_with_norm_weights, side):
    hf, tok = tiny_hf_with_norm_weights
    tl, nn = from_hf(hf, tok, "transformer_lens", name="t"), from_hf(hf, tok, "nnsight", name="t")
    names = [n for n in nn.hook_names() if n in set(tl.hook_names())]
    assert len(names) == len(nn.hook_names()), "every nnsight hook name must be a TransformerLens name"
    batch = tl.tokenize(TEXTS, padding_side=side)
    a, b = tl.capture(batch, names), nn.capture(batch, names)
    bad = {n: round(_max_masked_diff(a[n], b[n], batch.attention_mask), 4) for n in names
           if _max_masked_diff(a[n], b[n], batch.attention_mask) >= ATOL}
    assert not bad, f"backends disagree at {bad}"


@pytest.mark.parametrize("backend", BACKENDS)
def test_capture_with_hooks_stops_early_but_every_hook_fires(tiny_adapters, backend, monkeypatch):
    """A capture with fwd_hooks stops after the last block a hook or a captured point sits at (no work
    above it), gives what the full forward gives, and still runs every given hook, also one above the
    captured points or without a block (``ln_final``)."""
    ad = tiny_adapters[backend]
    batch = ad.tokenize(TEXTS)
    m = batch.attention_mask
    seen = []

    def plus_one(act, hook):
        seen.append(hook.name)
        return act + 1

    def spy(act, hook):
        seen.append(hook.name)

    name = "blocks.0.hook_resid_post"
    low = ad.capture(batch, [name], fwd_hooks=[("blocks.0.mlp.hook_post", plus_one)])
    assert seen == ["blocks.0.mlp.hook_post"]
    seen.clear()
    above = ["blocks.1.hook_resid_post"] + (["ln_final.hook_normalized"] if backend == "transformer_lens" else [])
    full = ad.capture(batch, [name], fwd_hooks=[("blocks.0.mlp.hook_post", plus_one)] + [(h, spy) for h in above])
    assert seen == ["blocks.0.mlp.hook_post"] + above
    assert _max_masked_diff(low[name], full[name], m) < ATOL
    if backend == "transformer_lens":  # the forward really stopped after block 0
        stops = []
        real = type(ad.model).forward

        def forward(self, *a, **k):
            stops.append(k.get("stop_at_layer"))
            return real(self, *a, **k)

        monkeypatch.setattr(type(ad.model), "forward", forward)
        ad.capture(batch, [name], fwd_hooks=[("blocks.0.mlp.hook_post", plus_one)])
        ad.capture(batch, [name], fwd_hooks=[("blocks.1.hook_resid_post", spy)])
        assert stops == [1, None]
