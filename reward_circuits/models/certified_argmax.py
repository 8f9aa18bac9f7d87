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
  (Cauchy-Schwarz). With the tokens cut into norm buckets once, the largest of these over the
  non-candidates is bounded by ``max_b (max_{v in b, not a candidate} l_ref[v] + max_{v in b} ‖W_U[:, v]‖ ‖d‖)``:
  ``O(d_vocab)`` once per reference, ``O(buckets)`` per row.
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


N_BUCKETS = 16  # tokens grouped by ‖W_U[:, v]‖ for the O(1)-per-row bound on the non-candidates


@dataclass
class UnembedBound:
    """What the certificate needs of an unembedding ``logits = x @ W_U + b_U``, computed once."""

    rows: Float[Tensor, "d_vocab d_model"]  # W_Uᵀ, contiguous (one row per token: gathered fast)
    b_U: Float[Tensor, " d_vocab"] | None
    norms: Float[Tensor, " d_vocab"]  # ‖W_U[:, v]‖ (rounded up)
    order: Int[Tensor, " d_vocab"]  # tokens by increasing norm, cut into N_BUCKETS buckets
    bucket_norms: Float[Tensor, " buckets"]  # the largest norm of each bucket
    gamma: float  # γ_n of a length-d_model dot product in the weights' dtype
    bias_err: float  # worst rounding the bias adds to one logit

    @classmethod
    def of(cls, W_U: Tensor, b_U: Tensor | None = None) -> "UnembedBound":
        u = torch.finfo(W_U.dtype).eps / 2
        n = W_U.shape[0] + 1  # + 1: the bias' addition
        W = W_U.detach()
        norms = W.float().norm(dim=0) * (1 + 4 * u)
        order = torch.argsort(norms)
        buckets = torch.stack([part.max() for part in norms[order].tensor_split(N_BUCKETS)])
        b = None if b_U is None else b_U.detach()
        bias = 0.0 if b is None else float(b.abs().max()) * u * 2
        return cls(W.T.contiguous(), b, norms, order, buckets, n * u / (1 - n * u), bias)

    def eps(self, x: Float[Tensor, "rows d"], x_ref: Float[Tensor, "rows d"]) -> Float[Tensor, " rows"]:
        """Per row: a bound on (rounding of one logit computed two ways) × 4 (two logits compared, each
        computed here and in the full unembedding)."""
        scale = torch.maximum(x.norm(dim=-1), x_ref.norm(dim=-1)).float() * float(self.bucket_norms[-1])
        return 4 * (self.gamma * scale + self.bias_err) + 1e-6

    def rest_max(self, ref_logits: Float[Tensor, "refs d_vocab"], cand: Int[Tensor, "refs k"]
                 ) -> Float[Tensor, "refs buckets"]:
        """Per reference and norm bucket: the largest reference logit outside its candidates."""
        masked = ref_logits.float().scatter(-1, cand, float("-inf")).index_select(-1, self.order)
        return torch.stack([part.amax(-1) for part in masked.tensor_split(N_BUCKETS, dim=-1)], -1)


def certify(bound: UnembedBound, x: Float[Tensor, "rows d"], x_ref: Float[Tensor, "refs d"],
            ref_logits: Float[Tensor, "refs d_vocab"], ref_of: Int[Tensor, " rows"], k: int = 256
            ) -> tuple[Bool[Tensor, " rows"], Int[Tensor, "rows k"], Float[Tensor, "rows k"]]:
    """Which rows' argmax is certified (see the module docstring), their candidates and the candidates'
    exact logits. Row ``i``'s reference is ``ref_of[i]``: its unembedding input ``x_ref[ref_of[i]]``, its
    full logits ``ref_logits[ref_of[i]]``. The work per reference is ``O(d_vocab)`` (its top ``k``, its
    best non-candidate per norm bucket); per row, ``k`` exact logits and ``O(N_BUCKETS)``."""
    k = min(k, ref_logits.shape[-1])
    if k < 2:
        raise ValueError("certify needs k >= 2 candidates.")
    ref_of = ref_of.reshape(-1).long()
    cand = ref_logits.topk(k, dim=-1).indices  # [refs, k]
    rest_b = bound.rest_max(ref_logits, cand)  # [refs, buckets]
    exact = x.new_empty((x.shape[0], k))
    for j in torch.unique(ref_of).tolist():
        rows = torch.nonzero(ref_of == j).reshape(-1)
        cols = cand[j]
        part = x.index_select(0, rows) @ bound.rows.index_select(0, cols).T
        if bound.b_U is not None:
            part = part + bound.b_U.index_select(0, cols)
        exact[rows] = part
    xr = x_ref.index_select(0, ref_of)
    delta = (x - xr).float().norm(dim=-1, keepdim=True)
    rest = (rest_b.index_select(0, ref_of) + bound.bucket_norms * delta).amax(-1)
    top2 = exact.float().topk(2, dim=-1).values
    eps = bound.eps(x, xr)
    ok = (top2[:, 0] - top2[:, 1] > eps) & (top2[:, 0] - rest > eps) & torch.isfinite(top2[:, 0])
    return ok, cand.index_select(0, ref_of), exact


def certified_logits(cand: Int[Tensor, "rows k"], exact: Float[Tensor, "rows k"], d_vocab: int
                     ) -> Float[Tensor, "rows d_vocab"]:
    """Logits whose argmax is the certified token: exact on the candidates, ``-inf`` elsewhere."""
    out = exact.new_full((cand.shape[0], d_vocab), float("-inf"))
    return out.scatter(-1, cand, exact)


def widen(bound: UnembedBound, x: Float[Tensor, " d"], x_ref: Float[Tensor, " d"], ref_logits: Float[Tensor, " d_vocab"],
          max_tokens: int = 8192) -> tuple[Int[Tensor, " m"], Float[Tensor, " m"]] | None:
    """One row whose top-``k`` certificate failed: exact logits on every token whose bound
    ``l_ref[v] + ‖W_U[:, v]‖ ‖d‖`` reaches the best exact logit of the reference's top tokens, minus the
    rounding margin; every other token provably stays below. ``(tokens, exact logits)`` when their best
    leads the second by more than the margin and there are at most ``max_tokens`` of them; else
    ``None`` (unembed the row in full)."""
    delta = (x - x_ref).float().norm()
    eps = float(bound.eps(x[None], x_ref[None])[0])
    top = ref_logits.topk(min(8, ref_logits.numel())).indices
    best = float(_exact(bound, x, top).max())
    upper = torch.addcmul(ref_logits.float(), bound.norms, delta)
    tokens = torch.nonzero(upper > best - eps).reshape(-1)
    tokens = torch.unique(torch.cat([tokens, top]))
    if tokens.numel() > max_tokens or tokens.numel() < 2:
        return None
    exact = _exact(bound, x, tokens)
    top2 = exact.float().topk(2).values
    if not bool(top2[0] - top2[1] > eps) or float(top2[0]) < best:
        return None
    return tokens, exact


def _exact(bound: UnembedBound, x: Float[Tensor, " d"], tokens: Int[Tensor, " m"]) -> Float[Tensor, " m"]:
    out = bound.rows.index_select(0, tokens) @ x
    return out if bound.b_U is None else out + bound.b_U.index_select(0, tokens)
