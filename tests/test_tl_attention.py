"""The cached-rotary decoding attention fires every TL hook with TL's values, and cleans up."""

from __future__ import annotations

import pytest
import torch
from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache

from reward_circuits.models.tl_attention import cached_rotary_attention, supports_cached_rotary

pytestmark = pytest.mark.usefixtures("one_thread")

ATTN_HOOKS = ("hook_q", "hook_k", "hook_v", "hook_rot_q", "hook_rot_k", "hook_attn_scores", "hook_pattern", "hook_z")


def _decode(model, batch, steps: int, fast: bool, fwd_hooks=()):
    """Prefill + ``steps`` greedy KV-cached steps; returns (logits per forward, {hook: [act per forward]})."""
    names = [f"blocks.{l}.attn.{h}" for l in range(model.cfg.n_layers) for h in ATTN_HOOKS]
    names += [f"blocks.{l}.hook_resid_post" for l in range(model.cfg.n_layers)]
    seen: dict[str, list] = {n: [] for n in names}

    def save(act, hook):
        seen[hook.name].append(act.detach().clone())

    cache = TransformerLensKeyValueCache.init_cache(model.cfg, model.cfg.device, batch.input_ids.shape[0])
    logits = []
    ctx = cached_rotary_attention(model) if fast else torch.no_grad()
    with torch.no_grad(), model.hooks(fwd_hooks=list(fwd_hooks) + [(n, save) for n in names]), ctx:
        out = model(batch.input_ids, attention_mask=batch.attention_mask, past_kv_cache=cache)[:, -1]
        logits.append(out)
        for _ in range(steps):
            nxt = out.argmax(-1)
            out = model(nxt[:, None], attention_mask=torch.ones_like(nxt)[:, None], past_kv_cache=cache)[:, -1]
            logits.append(out)
    return logits, seen


@pytest.fixture()
def padded(tl_adapter):
    return tl_adapter.tokenize(["hi", "what is 2 + 3?", "a longer prompt here"], padding_side="left")


def test_tiny_model_is_covered(tl_adapter):
    cfg = tl_adapter.model.cfg
    assert cfg.n_key_value_heads and cfg.n_key_value_heads < cfg.n_heads  # GQA: the grouped path is tested
    assert supports_cached_rotary(cfg)


def test_every_hook_matches_tl_forward(tl_adapter, padded):
    model = tl_adapter.model
    ref_logits, ref = _decode(model, padded, steps=4, fast=False)
    logits, got = _decode(model, padded, steps=4, fast=True)
    for a, b in zip(logits, ref_logits):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    for name, acts in ref.items():
        assert len(got[name]) == len(acts) == 5, name
        for step, (a, b) in enumerate(zip(got[name], acts)):
            assert a.shape == b.shape, (name, step, a.shape, b.shape)
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5, msg=f"{name} step {step}")


@pytest.mark.parametrize("site", ["hook_k", "hook_rot_k", "hook_pattern", "hook_v", "hook_z"])
def test_edits_act_as_in_tl(tl_adapter, padded, site):
    """An edit at any attention hook changes the run exactly as it does in TL's own attention
    (an edit to hook_k is cached; one to hook_rot_k acts on its own step only, in both)."""
    model = tl_adapter.model

    def edit(act, hook):
        out = act.clone()
        out[:, 0] = out[:, 0] * -3.0 + 0.5  # first query/key position or first head, shape-dependent
        return out

    hooks = [(f"blocks.0.attn.{site}", edit)]
    ref_logits, _ = _decode(model, padded, steps=3, fast=False, fwd_hooks=hooks)
    logits, _ = _decode(model, padded, steps=3, fast=True, fwd_hooks=hooks)
    clean, _ = _decode(model, padded, steps=3, fast=False)
    assert not torch.allclose(ref_logits[-1], clean[-1], atol=1e-4)  # the edit does something
    for a, b in zip(logits, ref_logits):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("site", ["hook_rot_k", "hook_k", "hook_pattern"])
def test_in_place_edits_act_as_in_tl(tl_adapter, padded, site):
    """A hook that edits in place and returns nothing (a common TL pattern): at hook_rot_k it sees
    the cached keys, and the edit must last one step, not compound in the cache."""
    model = tl_adapter.model

    def halve_first_kv_head(act, hook):
        act[:, :, 0] *= 0.5

    hooks = [(f"blocks.0.attn.{site}", halve_first_kv_head)]
    ref_logits, _ = _decode(model, padded, steps=5, fast=False, fwd_hooks=hooks)
    logits, _ = _decode(model, padded, steps=5, fast=True, fwd_hooks=hooks)
    for a, b in zip(logits, ref_logits):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_restored_after_exception(tl_adapter, padded):
    model = tl_adapter.model

    def boom(act, hook):
        raise RuntimeError("user hook failed")

    cache = TransformerLensKeyValueCache.init_cache(model.cfg, model.cfg.device, padded.input_ids.shape[0])
    with pytest.raises(RuntimeError, match="user hook failed"):
        with model.hooks(fwd_hooks=[("blocks.1.attn.hook_pattern", boom)]), cached_rotary_attention(model) as active:
            assert active
            assert "forward" in model.blocks[0].attn.__dict__
            model(padded.input_ids, attention_mask=padded.attention_mask, past_kv_cache=cache)
    assert all("forward" not in b.attn.__dict__ and "forward" not in b.__dict__ for b in model.blocks)
    assert all(len(b.attn.hook_pattern.fwd_hooks) == 0 for b in model.blocks)


def test_foreign_cache_is_refused(tl_adapter, padded):
    model = tl_adapter.model
    cache = TransformerLensKeyValueCache.init_cache(model.cfg, model.cfg.device, padded.input_ids.shape[0])
    with torch.no_grad():
        model(padded.input_ids, attention_mask=padded.attention_mask, past_kv_cache=cache)  # TL's own: unrotated keys
        with cached_rotary_attention(model), pytest.raises(RuntimeError, match="fresh cache"):
            one = torch.ones(padded.input_ids.shape[0], 1, dtype=torch.long)
            model(one, attention_mask=one, past_kv_cache=cache)


def test_plain_forward_untouched_and_unsupported_config_falls_back(tl_adapter, padded):
    model = tl_adapter.model
    with torch.no_grad():
        ref = model(padded.input_ids, attention_mask=padded.attention_mask)
        with cached_rotary_attention(model):  # no cache: TL's forward runs
            got = model(padded.input_ids, attention_mask=padded.attention_mask)
    assert torch.equal(ref, got)
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    gpt_like = HookedTransformer(HookedTransformerConfig(n_layers=1, d_model=16, d_head=4, n_ctx=32, d_vocab=50,
                                                         act_fn="gelu", positional_embedding_type="standard"))
    assert not supports_cached_rotary(gpt_like.cfg)
    with cached_rotary_attention(gpt_like) as active:
        assert not active
        assert "forward" not in gpt_like.blocks[0].attn.__dict__


def test_ln1_once_is_bitwise_ln1_thrice_and_hooks_on_ln1_fire_as_in_tl(tl_adapter, padded):
    """The lean block computes ln1 once; with a hook on ln1 TL's own block runs (ln1 three times per
    forward, as TL fires it). Both give bit-identical logits, and an ln1 hook fires as often as in TL."""
    model = tl_adapter.model
    calls = {"fast": 0, "tl": 0}

    def counter(which):
        def fn(act, hook):
            calls[which] += 1
        return fn

    lean, _ = _decode(model, padded, steps=3, fast=True)
    hooked, _ = _decode(model, padded, steps=3, fast=True, fwd_hooks=[("blocks.0.ln1.hook_normalized", counter("fast"))])
    _decode(model, padded, steps=3, fast=False, fwd_hooks=[("blocks.0.ln1.hook_normalized", counter("tl"))])
    for a, b in zip(lean, hooked):
        assert torch.equal(a, b)
    assert calls["fast"] == calls["tl"] == 3 * 4  # q, k, v inputs on each of 4 forwards


def test_layers_with_different_rotary_tables_do_not_share(tl_adapter, padded):
    """Position ids and cos/sin are shared only between layers whose rotary tables are equal (e.g.
    Gemma's local and global layers differ): give layer 1 another base and compare with TL."""
    model = tl_adapter.model
    attn = model.blocks[1].attn
    old = attn.rotary_sin, attn.rotary_cos
    sin, cos = attn.calculate_sin_cos_rotary(model.cfg.rotary_dim, old[0].shape[0], base=37)
    try:
        attn.rotary_sin, attn.rotary_cos = sin.to(old[0]), cos.to(old[1])
        ref, _ = _decode(model, padded, steps=3, fast=False)
        got, _ = _decode(model, padded, steps=3, fast=True)
    finally:
        attn.rotary_sin, attn.rotary_cos = old
    clean, _ = _decode(model, padded, steps=3, fast=False)
    assert not torch.allclose(ref[-1], clean[-1], atol=1e-4)  # the other table matters
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
