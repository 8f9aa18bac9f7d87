"""KV-cached decoding attention for TransformerLens' ``HookedTransformer``: same hooks, less work.

TransformerLens 3.9 caches keys *before* the rotary embedding, so every decoding step re-rotates
the whole cache (``apply_rotary`` on ``[batch, past+1, kv_head, d_head]`` per layer), and with
grouped KV heads it copies the whole cache ``n_heads / n_kv_heads`` times (``repeat_interleave``)
for the scores and again for ``z``. Together that made TL generation ~25% slower than HF
``generate`` on SmolLM2 (bench/bench_capture.py).

:func:`cached_rotary_attention` swaps, for the duration of a ``with`` block, each attention
module's ``forward`` for :func:`_cached_rotary_forward`, which

* rotates only the new keys (at their own positions) and caches rotated keys, kept in a
  ``[batch, kv_head, pos, d_head]`` layout so the score matmul reads them without a copy;
* computes scores and ``z`` per KV-head group (a ``[batch, kv_head, group·query_pos, d_head]``
  view of the queries) instead of expanding keys and values to every query head.

Every hook point fires with the same values and shapes as in TL's own forward: ``hook_q``/``k``/``v``
on the new token's projections (an edit to ``hook_k``/``hook_v`` goes into the cache, as in TL),
``hook_rot_q`` on the rotated queries, ``hook_rot_k`` on the rotated keys of *all* cached positions
(an edit there acts on this step only, as in TL, where the cache is re-rotated every step),
``hook_attn_scores``, ``hook_pattern`` ``[batch, head, query_pos, key_pos]`` and ``hook_z``. The
rotation of a cached key does not change between steps (its position id depends only on the
attention mask up to it), so the values are those TL computes; scores differ only by float
summation order (tested against TL's forward, hook by hook, and on greedy generations).

Work that is the same in every layer of one forward is done once per forward and shared
(:class:`_StepShare`): the position ids and the gathered rotary ``cos``/``sin`` of the new tokens
(per group of layers with equal rotary tables) and the causal ⊗ padding mask. Each block computes
``ln1`` of its residual stream once instead of three times (TL normalises the same tensor for q, k
and v separately) unless a hook or module hook sits on ``ln1``, where TL's own block runs. The values
are bit-for-bit those TL computes (same ops on the same inputs).

Configurations the fast path does not cover fall back to TL's forward: non-rotary or dynamic-NTK
rotary, ``use_attn_result``, split QKV inputs, ungrouped GQA, QK clipping, OLMo QK-norm,
log-n scaling, attention sinks, 4-bit weights, non-causal attention, position bias.
"""

from __future__ import annotations

import functools
import types
from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor
from torch.nn.modules import module as _torch_module
from transformer_lens.utilities import apply_softcap
from transformer_lens.utilities.tensors import get_offset_position_ids

_OLMO = ("OlmoeForCausalLM", "Olmo2ForCausalLM", "Olmo3ForCausalLM")
_KEYS, _VALUES = "_rc_rotated_keys", "_rc_values"  # [batch, kv_head, pos, d_head] on the cache entry


def supports_cached_rotary(cfg) -> bool:
    """Whether :func:`cached_rotary_attention` covers a model with this config."""
    return (
        getattr(cfg, "positional_embedding_type", None) == "rotary"
        and not getattr(cfg, "use_dynamic_ntk_rope", False)
        and not getattr(cfg, "use_logn_attn", False)
        and not getattr(cfg, "use_attn_result", False)
        and not getattr(cfg, "use_split_qkv_input", False)
        and not getattr(cfg, "use_attn_in", False)
        and not getattr(cfg, "ungroup_grouped_query_attention", False)
        and getattr(cfg, "clip_qkv", None) is None
        and getattr(cfg, "original_architecture", None) not in _OLMO
        and not getattr(cfg, "use_attention_sinks", False)
        and not getattr(cfg, "load_in_4bit", False)
        and getattr(cfg, "attention_dir", "causal") == "causal"
    )


@contextmanager
def cached_rotary_attention(model) -> Iterator[bool]:
    """Use the cached-rotary decoding attention in every layer of ``model`` inside the block.

    Yields whether the fast path is active (``False``: the model's config is not covered and
    TL's own attention runs). Only forwards that pass a ``past_kv_cache`` take the fast path; the
    original ``forward`` is restored on exit, also when an exception escapes. A cache filled
    inside the block holds rotated keys: keep using it inside the block only.
    """
    from transformer_lens import HookedTransformer  # noqa: PLC0415

    if not isinstance(model, HookedTransformer) or not supports_cached_rotary(model.cfg):
        yield False  # e.g. a TransformerBridge: HF's own attention runs there
        return
    attns = [block.attn for block in model.blocks]
    share = _StepShare(_rotary_groups(model))
    blocks = [block for block in model.blocks if _lean_block_applies(block.cfg)]
    for attn in attns:
        attn.forward = types.MethodType(functools.partial(_cached_rotary_forward, share=share), attn)
    for block in blocks:
        block.forward = types.MethodType(_cached_block_forward, block)
    try:
        yield True
    finally:
        for module in attns + blocks:
            module.__dict__.pop("forward", None)


class _StepShare:
    """What every layer of one forward computes alike, computed by the first layer that needs it: the
    rotary ``cos``/``sin`` of the new positions (per rotary group) and the attention mask. Valid while
    the same ``attention_mask`` tensor (unmodified: same ``_version``) comes with the same offset."""

    def __init__(self, groups: dict[int, int]):
        self.groups = groups  # id(attn) -> its rotary group
        self.key: tuple | None = None
        self.mask_ref: Tensor | None = None  # held so its id cannot be reused while the key lives
        self.rotary: dict[int, tuple[Tensor, Tensor]] = {}
        self.masks: dict[tuple, Tensor] = {}

    def begin(self, attention_mask: Tensor, offset: int, q_pos: int) -> None:
        key = (id(attention_mask), attention_mask._version, offset, q_pos)
        if key != self.key or self.mask_ref is not attention_mask:
            self.key, self.mask_ref, self.rotary, self.masks = key, attention_mask, {}, {}

    def cos_sin(self, attn, offset: int, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        group = self.groups.get(id(attn), -1 - len(self.groups) - id(attn))  # unknown module: its own group
        if group not in self.rotary:
            pos = get_offset_position_ids(offset, attention_mask).to(attn.rotary_cos.device)
            self.rotary[group] = (attn.rotary_cos[pos, None, :], attn.rotary_sin[pos, None, :])
        return self.rotary[group]


def _rotary_groups(model) -> dict[int, int]:
    """``id(attn) -> group``: layers whose rotary tables are equal share one group (memoised on the
    model while the tables stay the same tensors)."""
    attns = [block.attn for block in model.blocks]
    ptrs = tuple((a.rotary_cos.data_ptr(), a.rotary_sin.data_ptr(), tuple(a.rotary_cos.shape)) for a in attns)
    memo = getattr(model, "_rc_rotary_groups", None)
    if memo is not None and memo[0] == ptrs:
        return memo[1]
    reps: list = []
    groups = {}
    for a in attns:
        g = next((j for j, r in enumerate(reps) if r.rotary_cos.shape == a.rotary_cos.shape
                  and torch.equal(r.rotary_cos, a.rotary_cos) and torch.equal(r.rotary_sin, a.rotary_sin)), None)
        if g is None:
            reps.append(a)
            g = len(reps) - 1
        groups[id(a)] = g
    model._rc_rotary_groups = (ptrs, groups)
    return groups


def _rotate(attn, x: Float[Tensor, "batch pos head d_head"], share: _StepShare, offset: int,
            attention_mask: Tensor | None) -> Float[Tensor, "batch pos head d_head"]:
    """TL's ``apply_rotary`` with the position ids and gathered ``cos``/``sin`` shared across layers."""
    if (attention_mask is None or offset + x.size(1) > attn.rotary_cos.shape[0]
            or x.device != attn.rotary_sin.device):
        return attn.apply_rotary(x, offset, attention_mask)
    cos, sin = share.cos_sin(attn, offset, attention_mask)
    rotary_dim = attn.cfg.rotary_dim
    x_rot, x_pass = x[..., :rotary_dim], x[..., rotary_dim:]
    x_rotated = x_rot * cos + attn.rotate_every_two(x_rot) * sin
    return torch.cat([x_rotated, x_pass], dim=-1) if x_pass.shape[-1] else x_rotated


def _causal_mask(attn, scores: Float[Tensor, "batch head q_pos k_pos"], share: _StepShare, offset: int,
                 attention_mask: Tensor | None) -> Float[Tensor, "batch head q_pos k_pos"]:
    """TL's ``apply_causal_mask`` with the boolean mask shared across layers of the same attention type."""
    q_len, k_len = scores.size(-2), scores.size(-1)
    if attention_mask is None or q_len + offset != k_len:
        return attn.apply_causal_mask(scores, offset, attention_mask)  # (raises on the length mismatch)
    key = (attn.attn_type, attn.cfg.window_size if attn.attn_type == "local" else None, k_len)
    if key not in share.masks:
        causal = attn._make_causal_mask(query_ctx_length=q_len, key_ctx_length=k_len, past_kv_pos_offset=offset,
                                        device=attention_mask.device)
        share.masks[key] = causal & attention_mask[:, None, None, :].bool()
    final = share.masks[key]
    return torch.where(final, scores.to(final.device), attn.IGNORE.to(final.device))


def _cached_rotary_forward(
    self,
    query_input: Float[Tensor, "batch pos d_model"],
    key_input: Float[Tensor, "batch pos d_model"],
    value_input: Float[Tensor, "batch pos d_model"],
    past_kv_cache_entry=None,
    additive_attention_mask: Float[Tensor, "batch 1 1 kv_pos"] | None = None,
    attention_mask: Int[Tensor, "batch offset_pos"] | None = None,
    position_bias=None,
    *,
    share: _StepShare,
) -> Float[Tensor, "batch pos d_model"]:
    if past_kv_cache_entry is None or position_bias is not None or self._attention_dir_override not in (None, "causal"):
        return type(self).forward(self, query_input, key_input, value_input, past_kv_cache_entry,
                                  additive_attention_mask, attention_mask, position_bias)
    cfg = self.cfg
    q, k, v = self.calculate_qkv_matrices(query_input, key_input, value_input)  # hook_q/k/v: new tokens
    batch, q_pos, n_heads, d_head = q.shape
    n_kv = k.shape[2]
    group = n_heads // n_kv
    entry = past_kv_cache_entry
    offset = entry.past_keys.size(1)

    if attention_mask is not None:
        share.begin(attention_mask, offset, q_pos)
    q = self.hook_rot_q(_rotate(self, q, share, offset, attention_mask))
    k_new = _rotate(self, k, share, offset, attention_mask).transpose(1, 2)  # [batch, kv, new, d_head]
    v_new = v.transpose(1, 2)
    if offset:
        if not hasattr(entry, _KEYS):
            raise RuntimeError("this KV cache was filled outside cached_rotary_attention (its keys are not rotated); "
                               "start a fresh cache inside the `with cached_rotary_attention(model):` block.")
        k_all = torch.cat([getattr(entry, _KEYS), k_new], dim=2)
        v_all = torch.cat([getattr(entry, _VALUES), v_new], dim=2)
    else:
        k_all, v_all = k_new.contiguous(), v_new.contiguous()
    if not entry.frozen:
        setattr(entry, _KEYS, k_all)
        setattr(entry, _VALUES, v_all)
        entry.past_keys = k_all.transpose(1, 2)  # views: TL reads only their length (pos offset)
        entry.past_values = v_all.transpose(1, 2)
    k_seen = k_all.transpose(1, 2)  # [batch, key_pos, kv, d_head], as in TL
    if _has_hooks(self.hook_rot_k):  # a hook may edit in place: give it a copy, so the edit lasts one step as in TL
        k_seen = k_seen.clone()
    k_all = self.hook_rot_k(k_seen).transpose(1, 2)

    # scores per KV group: query head h reads KV head h // group (TL's repeat_interleave order)
    q_grouped = q.reshape(batch, q_pos, n_kv, group, d_head).permute(0, 2, 3, 1, 4).reshape(batch, n_kv, group * q_pos, d_head)
    key_pos = k_all.shape[2]
    scores = (q_grouped @ k_all.transpose(-1, -2)).reshape(batch, n_heads, q_pos, key_pos) / self.attn_scale
    scores = apply_softcap(scores, cfg.attn_scores_soft_cap)
    scores = _causal_mask(self, scores, share, offset, attention_mask)
    if additive_attention_mask is not None:
        scores = scores + additive_attention_mask
    scores = self.hook_attn_scores(scores)
    pattern = F.softmax(scores, dim=-1)
    pattern = torch.where(torch.isnan(pattern), torch.zeros_like(pattern), pattern)
    pattern = self.hook_pattern(pattern).to(v_all.dtype)
    z = pattern.reshape(batch, n_kv, group * q_pos, key_pos) @ v_all  # [batch, kv, group·q_pos, d_head]
    z = self.hook_z(z.reshape(batch, n_kv, group, q_pos, d_head).permute(0, 3, 1, 2, 4).reshape(batch, q_pos, n_heads, d_head))
    w = self.W_O.reshape(n_heads * d_head, -1).T  # [d_model, head·d_head]
    return F.linear(z.reshape(batch, q_pos, n_heads * d_head), w, self.b_O)


def _lean_block_applies(cfg) -> bool:
    """Whether :func:`_cached_block_forward` reproduces TL's block for this config (pre-norm, sequential)."""
    from transformer_lens.components.transformer_block import POST_NORM_ARCHITECTURES  # noqa: PLC0415

    return not (cfg.use_attn_in or cfg.use_split_qkv_input or cfg.attn_only or cfg.parallel_attn_mlp
                or cfg.original_architecture in POST_NORM_ARCHITECTURES)


def _cached_block_forward(
    self,
    resid_pre: Float[Tensor, "batch pos d_model"],
    shortformer_pos_embed=None,
    past_kv_cache_entry=None,
    attention_mask: Int[Tensor, "batch offset_pos"] | None = None,
) -> Float[Tensor, "batch pos d_model"]:
    """TL's ``TransformerBlock.forward`` for a pre-norm block, with ``ln1`` computed once (TL runs it on
    the same tensor for q, k and v). TL's own forward runs when a hook could tell the difference."""
    ln1 = self.ln1
    if (past_kv_cache_entry is None or shortformer_pos_embed is not None
            or _has_hooks(ln1) or _has_hooks(ln1.hook_scale) or _has_hooks(ln1.hook_normalized)):
        return type(self).forward(self, resid_pre, shortformer_pos_embed, past_kv_cache_entry, attention_mask)
    cfg = self.cfg
    resid_pre = self.hook_resid_pre(resid_pre)
    normalized = ln1(resid_pre)
    attn_out = self.attn(query_input=normalized, key_input=normalized, value_input=normalized,
                         past_kv_cache_entry=past_kv_cache_entry, attention_mask=attention_mask)
    if cfg.use_normalization_before_and_after:
        attn_out = self.ln1_post(attn_out)
    attn_out = self.hook_attn_out(attn_out)
    if resid_pre.device != attn_out.device:
        resid_pre = resid_pre.to(attn_out.device)
    resid_mid = self.hook_resid_mid(resid_pre + attn_out)
    mlp_in = resid_mid if not cfg.use_hook_mlp_in else self.hook_mlp_in(resid_mid.clone())
    mlp_out = self.apply_mlp(self.ln2(mlp_in))
    return self.hook_resid_post(resid_mid + mlp_out)


def _has_hooks(hook_point) -> bool:
    """Whether anything would run at ``hook_point`` (TL hooks are torch forward hooks)."""
    return bool(hook_point._forward_hooks or hook_point._forward_pre_hooks or _torch_module._global_forward_hooks
                or _torch_module._global_forward_pre_hooks)


def select_cache_rows(cache, index: Int[Tensor, " rows"]) -> None:
    """Keep (reorder, repeat) rows ``index`` of a TransformerLens KV cache, in place: the per-layer
    keys and values (the rotated ones of :func:`cached_rotary_attention` when it filled the cache)
    and the attention mask. Used to drop finished rows and to copy a shared prompt's cache."""
    for entry in cache.entries:
        set_entry_tensors(entry, {k: t.index_select(0, index.to(t.device)) for k, t in entry_tensors(entry).items()})
    mask = cache.previous_attention_mask
    cache.previous_attention_mask = mask.index_select(0, index.to(mask.device))


def entry_tensors(entry) -> dict[str, Tensor]:
    """A cache entry's tensors by attribute name: the rotated keys / values when
    :func:`cached_rotary_attention` filled it, else TL's ``past_keys`` / ``past_values``."""
    if hasattr(entry, _KEYS):
        return {_KEYS: getattr(entry, _KEYS), _VALUES: getattr(entry, _VALUES)}
    return {"past_keys": entry.past_keys, "past_values": entry.past_values}


def set_entry_tensors(entry, tensors: dict[str, Tensor]) -> None:
    """Replace a cache entry's tensors (as :func:`entry_tensors` names them), keeping TL's views in step."""
    for name, t in tensors.items():
        setattr(entry, name, t)
    if _KEYS in tensors:
        entry.past_keys = tensors[_KEYS].transpose(1, 2)
        entry.past_values = tensors[_VALUES].transpose(1, 2)


def copy_cache_layers(source, target, index: Int[Tensor, " rows"], upto: int) -> None:
    """Fill layers ``0..upto-1`` of the fresh cache ``target`` with rows ``index`` of ``source``
    (same prompts: a forward that starts at layer ``upto`` then fills the rest)."""
    for layer in range(upto):
        tensors = entry_tensors(source.entries[layer])
        set_entry_tensors(target.entries[layer],
                           {k: t.index_select(0, index.to(t.device)) for k, t in tensors.items()})


def merge_caches(caches: list, order: Int[Tensor, " rows"]):
    """One cache holding the rows of ``caches`` (concatenated), reordered by ``order``; the parts
    must share the padded prompt width. Returns the first cache, updated in place."""
    first = caches[0]
    for layer, entry in enumerate(first.entries):
        parts = [entry_tensors(c.entries[layer]) for c in caches]
        set_entry_tensors(entry, {k: torch.cat([p[k] for p in parts]).index_select(0, order.to(parts[0][k].device))
                                   for k in parts[0]})
    masks = torch.cat([c.previous_attention_mask.to(first.previous_attention_mask.device) for c in caches])
    first.previous_attention_mask = masks.index_select(0, order.to(masks.device))
    return first


def pos_dim(name: str) -> int:
    """The position dimension of an entry tensor named ``name``."""
    return 2 if name in (_KEYS, _VALUES) else 1  # rotated [batch, kv, pos, d] / TL's [batch, pos, kv, d]


def left_pad(t: Tensor, dim: int, width: int) -> Tensor:
    """``t`` with zeros prepended along ``dim`` up to ``width``."""
    missing = width - t.shape[dim]
    if missing <= 0:
        return t
    shape = list(t.shape)
    shape[dim] = missing
    return torch.cat([t.new_zeros(shape), t], dim=dim)


def append_entry_rows(entry, new, width: int) -> None:
    """Append one block's cached rows of ``new`` after ``entry``'s, both left-padded to ``width`` positions."""
    mine, theirs = entry_tensors(entry), entry_tensors(new)
    if mine.keys() != theirs.keys():
        raise RuntimeError("cannot join KV caches filled by different attention implementations.")
    set_entry_tensors(entry, {k: torch.cat([left_pad(mine[k], pos_dim(k), width),
                                             left_pad(theirs[k].to(mine[k].device), pos_dim(k), width)])
                               for k in mine})


def append_cache_rows(cache, other) -> None:
    """Append the rows of ``other`` after those of ``cache``, in place. The shorter of the two is
    left-padded with masked positions (zero keys and values, attention mask 0): a row's positions
    come from its mask, so what it computes does not change."""
    width = max(cache.previous_attention_mask.shape[1], other.previous_attention_mask.shape[1])
    for entry, new in zip(cache.entries, other.entries):
        append_entry_rows(entry, new, width)
    masks = [cache.previous_attention_mask, other.previous_attention_mask.to(cache.previous_attention_mask.device)]
    cache.previous_attention_mask = torch.cat([left_pad(m, 1, width) for m in masks])


def trim_cache(cache) -> None:
    """Drop the leading positions that no row attends to (mask 0 in every row), in place."""
    mask = cache.previous_attention_mask
    if mask.shape[1] == 0 or mask.shape[0] == 0:
        return
    seen = mask.bool().any(0)
    first = int(torch.nonzero(seen).reshape(-1)[0]) if bool(seen.any()) else mask.shape[1]
    if first == 0:
        return
    for entry in cache.entries:
        set_entry_tensors(entry, {k: t.narrow(pos_dim(k), first, t.shape[pos_dim(k)] - first).contiguous()
                                   for k, t in entry_tensors(entry).items()})
    cache.previous_attention_mask = mask[:, first:].contiguous()
