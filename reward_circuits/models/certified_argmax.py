"""Certified greedy argmax: a row's next token without its full unembedding, when it provably equals it.

In a shared-trunk sweep (:mod:`.tl_trunk`) the rows of one example under different conditions feed
the same tokens until they part; an ablation of 1% of a layer moves the final residual stream only a
little, so each row's greedy token is almost always the reference row's (e.g. the baseline's). The
unembedding (``d_vocab × d_model``: 49152 × 576 on SmolLM2, as much as 8 of its 30 blocks) is the
largest cost a row cannot share. For greedy decoding only the argmax is needed, and it can be
*certified* from the reference row's logits:

* ``x`` is a row's input to the unembedding (after the final norm), ``x_ref`` the reference's, whose
  full logits ``l_ref = W_Uᵀ x_ref + b_U`` are computed; ``d = x - x_ref``.
* The row's exact logits are computed on ``k`` candidates only (the reference's top ``k``).
* For every other token ``v``: ``l[v] = l_ref[v] + W_U[:, v]·d ≤ l_ref[v] + ‖W_U[:, v]‖ ‖d‖``
  (Cauchy-Schwarz), an ``O(d_vocab)`` bound.
* The best candidate ``t`` is the row's argmax when it beats the second candidate and every
  non-candidate's bound by more than ``eps``, a worst-case bound on float rounding of the two ways
  of computing a logit (``4 γ_n max(‖x‖, ‖x_ref‖) max_v ‖W_U[:, v]‖`` plus the bias' rounding, with
  ``γ_n = n u / (1 - n u)``, ``n = d_model``, ``u`` the unit roundoff of the logits' dtype): whatever
  order a matmul sums in, the full unembedding's argmax is ``t`` too. Ties within ``eps`` fall back
  to the full unembedding of that row.

Only the argmax of a certified row is meaningful: its logits are exact on the candidates and
``-inf`` elsewhere (see :func:`certified_logits`). Sampling needs every logit, so only greedy
decoding uses this (the decoding engine asks for it with ``argmax_only``). Planted checks:
``tests/test_certified_argmax.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor


@dataclass
class UnembedBound:
    """What the certificate needs of an unembedding ``logits = x @ W_U + b_U``, computed once."""

    W_U: Float[Tensor, "d_model d_vocab"]
    b_U: Float[Tensor, " d_vocab"] | None
    norms: Float[Tensor, " d_vocab"]  # ‖W_U[:, v]‖
    gamma: float  # γ_n of a length-d_model dot product in the weights' dtype
    bias_err: float  # worst rounding the bias adds to one logit

    @classmethod
    def of(cls, W_U: Tensor, b_U: Tensor | None = None) -> "UnembedBound":
        u = torch.finfo(W_U.dtype).eps / 2
        n = W_U.shape[0] + 1  # + 1: the bias' addition
        W = W_U.detach()
        norms = W.float().norm(dim=0).to(W.dtype)
        b = None if b_U is None else b_U.detach()
        bias = 0.0 if b is None else float(b.abs().max()) * u * 2
        return cls(W, b, norms * (1 + 4 * u), n * u / (1 - n * u), bias)

    def eps(self, x: Float[Tensor, "rows d"], x_ref: Float[Tensor, "rows d"]) -> Float[Tensor, " rows"]:
        """Per row: a bound on (rounding of one logit computed two ways) × 4 (two logits compared, each
        computed here and in the full unembedding)."""
        scale = torch.maximum(x.norm(dim=-1), x_ref.norm(dim=-1)) * float(self.norms.max())
        return 4 * (self.gamma * scale + self.bias_err) + 1e-6

    def candidate_logits(self, x: Float[Tensor, "rows d"], cand: Int[Tensor, "rows k"]) -> Float[Tensor, "rows k"]:
        """``x``'s exact logits on its own candidates."""
        w = self.W_U.T.index_select(0, cand.reshape(-1)).reshape(*cand.shape, -1)  # [rows, k, d]
        out = torch.einsum("rkd,rd->rk", w, x)
        if self.b_U is not None:
            out = out + self.b_U.index_select(0, cand.reshape(-1)).reshape(cand.shape)
        return out


def certify(bound: UnembedBound, x: Float[Tensor, "rows d"], x_ref: Float[Tensor, "rows d"],
            ref_logits: Float[Tensor, "rows d_vocab"], k: int = 256
            ) -> tuple[Bool[Tensor, " rows"], Int[Tensor, "rows k"], Float[Tensor, "rows k"]]:
    """Which rows' argmax is certified (see the module docstring), their candidates and the candidates'
    exact logits. ``ref_logits[i]`` are the full logits of the reference whose unembedding input is
    ``x_ref[i]``."""
    k = min(k, ref_logits.shape[-1])
    cand = ref_logits.topk(k, dim=-1).indices
    exact = bound.candidate_logits(x, cand)
    if k < 2:
        raise ValueError("certify needs k >= 2 candidates.")
    top2 = exact.topk(2, dim=-1).values
    rest = torch.addcmul(ref_logits, bound.norms.unsqueeze(0), (x - x_ref).norm(dim=-1, keepdim=True))
    rest = rest.scatter(-1, cand, float("-inf")).amax(-1)
    eps = bound.eps(x, x_ref)
    ok = (top2[:, 0] - top2[:, 1] > eps) & (top2[:, 0] - rest > eps) & torch.isfinite(top2[:, 0])
    return ok, cand, exact


def certified_logits(cand: Int[Tensor, "rows k"], exact: Float[Tensor, "rows k"], d_vocab: int
                     ) -> Float[Tensor, "rows d_vocab"]:
    """Logits whose argmax is the certified token: exact on the candidates, ``-inf`` elsewhere."""
    out = exact.new_full((cand.shape[0], d_vocab), float("-inf"))
    return out.scatter(-1, cand, exact)
