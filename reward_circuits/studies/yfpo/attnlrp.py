"""AttnLRP (Achtibat et al., ICML 2024) on a Hugging Face Llama-family model's own modules.

The PyPI ``lxt`` 2.1 does not import with transformers 5, so the *efficient* (gradient × input)
form of AttnLRP is implemented here by patching the forwards of the model's module instances for
the duration of a ``with`` block (restored on exit, also on an exception):

* **normalisation** (``*RMSNorm``): the ``1/rms(x)`` scale is detached, so the layer is linear
  in its input (identity rule);
* **gated MLP** (``gate_proj``/``up_proj``/``down_proj``/``act_fn``): the element-wise
  activation passes relevance unchanged (identity rule: its backward multiplies by ``f(x)/x``), the
  gate × up product splits it equally (uniform rule: backward divided by 2);
* **attention** (``q_proj``/``k_proj``/``v_proj``/``o_proj``): eager attention in which both
  matrix products follow the uniform rule (``q``, ``k``, the attention weights and ``v`` get half
  the gradient each) and the softmax follows AttnLRP's rule ``R_in = x ⊙ (R_out − s Σ R_out)``,
  which in gradient × input form *is* the softmax's gradient. That rule is not conservative: the
  softmax's bias term absorbs ``Σ R_out − Σ R_in``. The patched softmax records that amount per
  sequence, so ``Σ R(embeddings) + absorbed = explained logit`` holds to float precision and the
  loss of relevance is measured, not hidden.

Relevance of any tensor = tensor × its (modified) gradient. :func:`neuron_relevance` returns the
relevance of every MLP neuron (the input of ``down_proj``, i.e. ``blocks.L.mlp.hook_post``) for
the summed logits of target tokens, with ``method="gradient_x_activation"`` as the unpatched baseline.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from torch.autograd import Function

from ...analysis.stats import rank_by_score
from ...models.hook_names import HookNameError, hf_module

Method = Literal["attnlrp", "gradient_x_activation"]


class LRPError(RuntimeError):
    """The model has no modules AttnLRP knows how to patch."""


# ---------------------------------------------------------------------------------------------
# rules as autograd functions
# ---------------------------------------------------------------------------------------------
class IdentityRule(Function):
    """``y = fn(x)`` whose backward passes ``g · f(x)/x``: relevance ``x·grad`` in = ``y·g`` out."""

    @staticmethod
    def forward(ctx, x: Tensor, fn) -> Tensor:
        y = fn(x)
        ratio = torch.where(x.abs() > 1e-12, y / torch.where(x == 0, torch.ones_like(x), x), torch.zeros_like(x))
        ctx.save_for_backward(ratio)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor):
        (ratio,) = ctx.saved_tensors
        return grad * ratio, None


class UniformRule(Function):
    """Identity forward, gradient divided by ``factor`` backward (one operand of an n-ary product)."""

    @staticmethod
    def forward(ctx, x: Tensor, factor: float) -> Tensor:
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return grad / ctx.factor, None


class SoftmaxRule(Function):
    """Softmax whose backward is its gradient (AttnLRP's softmax rule in gradient × input form) and
    records the relevance its bias term absorbs, ``Σ s·g − Σ x·∂x``, per batch row, in ``sink``."""

    @staticmethod
    def forward(ctx, x: Tensor, keep: Tensor, sink: list) -> Tensor:
        s = torch.softmax(x, dim=-1)
        ctx.save_for_backward(x, s, keep)
        ctx.sink = sink
        return s

    @staticmethod
    def backward(ctx, g: Tensor):
        x, s, keep = ctx.saved_tensors
        grad_x = s * (g - (s * g).sum(-1, keepdim=True))
        if ctx.sink is not None:
            x_kept = torch.where(keep, x, torch.zeros_like(x))  # masked scores carry s = 0: no relevance
            absorbed = (s * g).flatten(1).sum(1) - (x_kept * grad_x).flatten(1).sum(1)
            ctx.sink.append(absorbed.detach())
        return grad_x, None, None


# ---------------------------------------------------------------------------------------------
# patched forwards (bound to module instances)
# ---------------------------------------------------------------------------------------------
def _rms_norm_forward(self, hidden_states: Tensor) -> Tensor:
    dtype = hidden_states.dtype
    h = hidden_states.to(torch.float32) if dtype in (torch.float16, torch.bfloat16) else hidden_states
    eps = getattr(self, "variance_epsilon", getattr(self, "eps", 1e-6))
    scale = torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps).detach()
    return self.weight * (h * scale).to(dtype)


def _gated_mlp_forward(self, x: Tensor) -> Tensor:
    gate = IdentityRule.apply(self.gate_proj(x), self.act_fn)
    weighted = UniformRule.apply(gate * self.up_proj(x), 2.0)
    return self.down_proj(weighted)


def _additive_mask(mask: Tensor | None, q_len: int, k_len: int, like: Tensor) -> tuple[Tensor, Tensor]:
    """(additive mask broadcastable to ``[b, h, q, k]``, bool keep mask) from HF's None/bool/float masks."""
    if mask is None:
        offset = k_len - q_len
        keep = torch.ones(q_len, k_len, dtype=torch.bool, device=like.device).tril(offset)[None, None]
    elif mask.dtype == torch.bool:
        keep = mask[..., :k_len]
    else:
        keep = mask[..., :k_len] > torch.finfo(mask.dtype).min / 2
    additive = torch.zeros(keep.shape, dtype=like.dtype, device=like.device).masked_fill(~keep, torch.finfo(like.dtype).min)
    return additive, keep


def _make_attention_forward(sink: list):
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb, repeat_kv

    def forward(self, hidden_states, position_embeddings=None, attention_mask=None, cache=None, **kwargs):
        shape = (*hidden_states.shape[:-1], -1, self.head_dim)
        q = self.q_proj(hidden_states).view(shape).transpose(1, 2)
        k = self.k_proj(hidden_states).view(shape).transpose(1, 2)
        v = self.v_proj(hidden_states).view(shape).transpose(1, 2)
        cos, sin = position_embeddings
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        cache = cache if cache is not None else kwargs.pop("past_key_values", None)
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx, kwargs=kwargs)
        k = repeat_kv(k, self.num_key_value_groups)
        v = repeat_kv(v, self.num_key_value_groups)
        q, k, v = UniformRule.apply(q, 2.0), UniformRule.apply(k, 2.0), UniformRule.apply(v, 2.0)
        scores = torch.matmul(q, k.transpose(2, 3)) * self.scaling
        additive, keep = _additive_mask(attention_mask, q.shape[2], k.shape[2], scores)
        keep = keep.expand_as(scores)
        attn = SoftmaxRule.apply(scores + additive, keep, sink)
        attn = UniformRule.apply(attn, 2.0)
        out = torch.matmul(attn, v).transpose(1, 2).reshape(*hidden_states.shape[:-1], -1)
        return self.o_proj(out), attn

    return forward


def _is_norm(m) -> bool:
    return type(m).__name__.endswith("RMSNorm") and hasattr(m, "weight")


def _is_gated_mlp(m) -> bool:
    return all(hasattr(m, a) for a in ("gate_proj", "up_proj", "down_proj", "act_fn"))


def _is_attention(m) -> bool:
    return all(hasattr(m, a) for a in ("q_proj", "k_proj", "v_proj", "o_proj", "head_dim", "scaling", "num_key_value_groups"))


@dataclass
class PatchedModel:
    """What :func:`attnlrp_rules` patched, and the relevance absorbed by softmaxes (one tensor per
    softmax call, each ``[batch]``)."""

    n_norms: int
    n_mlps: int
    n_attentions: int
    absorbed: list

    def absorbed_per_row(self, batch: int) -> Float[Tensor, " batch"]:
        if not self.absorbed:
            return torch.zeros(batch)
        return torch.stack([a.double() for a in self.absorbed]).sum(0)


@contextlib.contextmanager
def attnlrp_rules(model: torch.nn.Module) -> Iterator[PatchedModel]:
    """Patch ``model``'s norms, gated MLPs and attentions with AttnLRP's rules inside the block.

    The instance forwards are restored on exit, also when the block raises. Raises
    :class:`LRPError` when the model has no gated MLP or attention of the Llama family.
    """
    sink: list = []
    patched: list[torch.nn.Module] = []
    counts = {"norm": 0, "mlp": 0, "attn": 0}
    attn_forward = _make_attention_forward(sink)
    try:
        for m in model.modules():
            if "forward" in vars(m):
                raise LRPError(f"{type(m).__name__} already has a patched forward (nested attnlrp_rules?).")
            if _is_norm(m):
                m.forward, key = types.MethodType(_rms_norm_forward, m), "norm"
            elif _is_gated_mlp(m):
                m.forward, key = types.MethodType(_gated_mlp_forward, m), "mlp"
            elif _is_attention(m):
                m.forward, key = types.MethodType(attn_forward, m), "attn"
            else:
                continue
            patched.append(m)
            counts[key] += 1
        if counts["mlp"] == 0 or counts["attn"] == 0:
            raise LRPError(
                f"found {counts['mlp']} gated MLPs and {counts['attn']} attentions: AttnLRP here supports "
                "Llama-family HF models (gate/up/down_proj MLPs, q/k/v/o_proj attention).")
        yield PatchedModel(counts["norm"], counts["mlp"], counts["attn"], sink)
    finally:
        for m in patched:
            vars(m).pop("forward", None)


# ---------------------------------------------------------------------------------------------
# neuron relevance
# ---------------------------------------------------------------------------------------------
def mlp_down_projections(model: torch.nn.Module) -> dict[int, torch.nn.Module]:
    """``{layer: module}`` whose input is ``blocks.L.mlp.hook_post`` (Llama's ``mlp.down_proj``,
    GPT-2's ``mlp.c_proj``; a LoRA wrapper under PEFT), found through the hook-name mapping
    (:func:`~reward_circuits.models.hf_module`), not by module names."""
    config = getattr(model, "config", None)
    n_layers = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", None) or 0
    found = {}
    for layer in range(int(n_layers)):
        try:
            found[layer] = hf_module(model, f"blocks.{layer}.mlp.hook_post")[0]
        except HookNameError:
            break
    if not found:
        raise LRPError("no MLP output projection (the module whose input is blocks.L.mlp.hook_post) found: "
                       "not an HF causal LM of a known layout (Llama-family, GPT-2).")
    return found


@dataclass
class NeuronRelevance:
    """Relevance of every MLP neuron for the target logits.

    Attributes:
        method: ``"attnlrp"`` or ``"gradient_x_activation"``.
        per_prompt: ``[prompt, layer, d_mlp]`` relevance summed over positions.
        embedding_relevance: ``[prompt]`` relevance summed over the input embeddings.
        target: ``[prompt]`` the explained quantity (summed target-token logits).
        absorbed: ``[prompt]`` relevance absorbed by softmaxes (0 for the baseline).
        layers: the layer of each row of ``per_prompt``'s second axis.
    """

    method: str
    per_prompt: Float[Tensor, "prompt layer d_mlp"]
    embedding_relevance: Float[Tensor, " prompt"]
    target: Float[Tensor, " prompt"]
    absorbed: Float[Tensor, " prompt"]
    layers: list[int]

    @property
    def scores(self) -> Float[Tensor, "layer d_mlp"]:
        """Mean relevance over prompts (positive: the neuron supports the target)."""
        return self.per_prompt.mean(0)

    def conservation_error(self) -> Float[Tensor, " prompt"]:
        """``Σ R(embeddings) + absorbed − target``, relative to ``|target|``."""
        return (self.embedding_relevance + self.absorbed - self.target) / self.target.abs().clamp_min(1e-12)

    def top(self, k: int) -> list[tuple[int, int]]:
        """The ``k`` (layer, neuron) pairs of highest mean relevance, best first."""
        flat = self.scores.flatten()
        order = rank_by_score(flat)[:k].tolist()
        d = self.scores.shape[1]
        return [(self.layers[i // d], i % d) for i in order]


def neuron_relevance(
    model: torch.nn.Module,
    input_ids: Int[Tensor, "batch pos"],
    attention_mask: Int[Tensor, "batch pos"],
    target_mask: Bool[Tensor, "batch pos"],
    method: Method = "attnlrp",
) -> NeuronRelevance:
    """Relevance of every MLP neuron for ``Σ_t logit[t−1, input_ids[t]]`` over ``target_mask``'s
    positions (teacher-forced target tokens, e.g. the gold answer), per sequence of the batch."""
    if method not in ("attnlrp", "gradient_x_activation"):
        raise ValueError(f"method must be 'attnlrp' or 'gradient_x_activation', got {method!r}.")
    if target_mask[:, 0].any():
        raise ValueError("target_mask marks position 0, which has no preceding logit: mark answer tokens only.")
    downs = mlp_down_projections(model)
    embed = model.get_input_embeddings()
    saved: dict[str, Tensor] = {}

    def keep_input(layer):
        def hook(module, args):
            args[0].retain_grad()
            saved[f"mlp{layer}"] = args[0]
        return hook

    def keep_embedding(module, args, output):
        leaf = output.detach().requires_grad_(True)  # parameters are frozen: the embeddings are the leaf
        saved["embed"] = leaf
        return leaf

    handles = [d.register_forward_pre_hook(keep_input(layer)) for layer, d in downs.items()]
    handles.append(embed.register_forward_hook(keep_embedding))
    rules = attnlrp_rules(model) if method == "attnlrp" else contextlib.nullcontext()
    was_training = model.training
    try:
        model.eval()
        params = [p.requires_grad for p in model.parameters()]
        for p in model.parameters():
            p.requires_grad_(False)
        try:
            with torch.enable_grad(), rules as patched:
                logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
                tok_logits = logits[:, :-1].gather(-1, input_ids[:, 1:, None])[..., 0]
                target = (tok_logits * target_mask[:, 1:].to(tok_logits.dtype)).sum(1)
                target.sum().backward()
        finally:
            for p, r in zip(model.parameters(), params):
                p.requires_grad_(r)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    pad = attention_mask.bool()[..., None]
    rel = []
    for layer in downs:
        a = saved[f"mlp{layer}"]
        rel.append(((a * a.grad) * pad).sum(1).detach())
    e = saved["embed"]
    emb_rel = ((e * e.grad) * pad).sum((1, 2)).detach()
    absorbed = patched.absorbed_per_row(input_ids.shape[0]) if method == "attnlrp" else torch.zeros(input_ids.shape[0])
    return NeuronRelevance(method, torch.stack(rel, 1).double(), emb_rel.double(), target.detach().double(),
                           absorbed.to(torch.float64), list(downs))
