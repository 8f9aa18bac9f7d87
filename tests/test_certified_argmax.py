"""Certified greedy argmax (:mod:`reward_circuits.models.certified_argmax`): a shared-trunk row's next
token taken from its group's reference logits plus a bound, never its full unembedding, only where
the bound proves it is the full unembedding's argmax.

Planted: rows near their reference are certified (signal recovered) and every certificate names the
true argmax, over random unembeddings, scales and perturbations (never a wrong token); near-ties and
far rows fall back. In sweeps on tiny models: the same tokens as with every row unembedded and as
today's unshared sweep, with certificates actually issued for weak conditions; none under sampling or
with a hook on the unembedding.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from reward_circuits.interventions import SweepConfig, scale, sweep
from reward_circuits.models import GenerationConfig
from reward_circuits.models.certified_argmax import UnembedBound, certified_logits, certify, widen
from reward_circuits.models.tl_trunk import TrunkCache

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPTS = ["hello world", "hi", "abc def ghi jkl", "x = 3 + 4 ?", "The quick brown fox", "no", "a b", "zz top"]


def _planted(seed: int, d: int = 32, vocab: int = 500, rows: int = 64, noise: float = 1e-3, bias: bool = True):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(d, vocab, generator=g)
    b = torch.randn(vocab, generator=g) if bias else None
    x_ref = torch.randn(rows, d, generator=g) * 3
    x = x_ref + noise * torch.randn(rows, d, generator=g)
    return W, b, x_ref, x


def _logits(W, b, x):
    return x @ W + (0 if b is None else b)


def test_rows_near_their_reference_are_certified_with_their_true_argmax():
    W, b, x_ref, x = _planted(0, noise=1e-3)
    bound = UnembedBound.of(W, b)
    ok, cand, exact = certify(bound, x, x_ref, _logits(W, b, x_ref), torch.arange(len(x)), k=16)
    assert ok.float().mean() > 0.9  # the planted signal: tiny perturbations are certified
    got = certified_logits(cand, exact, W.shape[1]).argmax(-1)
    assert torch.equal(got[ok], _logits(W, b, x).argmax(-1)[ok])


def test_far_rows_fall_back():
    W, b, x_ref, _ = _planted(1)
    x = torch.randn_like(x_ref) * 3  # unrelated rows: the bound cannot hold
    ok, _, _ = certify(UnembedBound.of(W, b), x, x_ref, _logits(W, b, x_ref), torch.arange(len(x)), k=16)
    assert not bool(ok.any())


def test_a_tie_between_candidates_is_never_certified():
    W, _, x_ref, _ = _planted(2, rows=4, bias=False)
    W[:, 1] = W[:, 0]  # tokens 0 and 1 always tie
    x_ref = x_ref + 0.0
    x_ref[:] = W[:, 0] * 10  # ... and lead by far
    ok, _, _ = certify(UnembedBound.of(W), x_ref.clone(), x_ref, _logits(W, None, x_ref), torch.arange(len(x_ref)), k=8)
    assert not bool(ok.any())


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), noise=st.sampled_from([0.0, 1e-6, 1e-3, 1e-2, 0.1, 1.0, 10.0]),
       k=st.sampled_from([2, 5, 64]), bias=st.booleans(), half=st.booleans())
def test_a_certificate_never_names_a_wrong_token(seed, noise, k, bias, half):
    W, b, x_ref, x = _planted(seed, noise=noise, bias=bias)
    if half:  # a coarser dtype: a larger rounding margin
        W, x_ref, x = W.bfloat16(), x_ref.bfloat16(), x.bfloat16()
        b = None if b is None else b.bfloat16()
    ref_of = torch.arange(len(x)) % 5  # several rows per reference, as in a sweep's group
    x = x_ref[ref_of] + (x - x_ref)
    ok, cand, exact = certify(UnembedBound.of(W, b), x, x_ref, _logits(W, b, x_ref), ref_of, k=k)
    got = certified_logits(cand, exact, W.shape[1]).argmax(-1)
    full = _logits(W, b, x)
    assert torch.equal(got[ok], full.argmax(-1)[ok])
    if noise == 0.0 and not half:
        assert ok.float().mean() > 0.5  # identical rows: certified unless their own top two tie
    bound, ref = UnembedBound.of(W, b), _logits(W, b, x_ref)
    for i in torch.nonzero(~ok).reshape(-1).tolist()[:8]:  # the wider certificate of the rows it missed
        wide = widen(bound, x[i], x_ref[ref_of[i]], ref[ref_of[i]])
        if wide is not None:
            assert int(wide[0][wide[1].argmax()]) == int(full[i].argmax())


def test_the_wider_certificate_recovers_rows_the_top_k_one_misses():
    W, b, x_ref, x = _planted(3, vocab=2000, noise=0.3)
    bound, ref = UnembedBound.of(W, b), _logits(W, b, x_ref)
    ok, _, _ = certify(bound, x, x_ref, ref, torch.arange(len(x)), k=2)
    missed = torch.nonzero(~ok).reshape(-1).tolist()
    assert len(missed) > 10
    wide = [widen(bound, x[i], x_ref[i], ref[i]) for i in missed]
    assert sum(w is not None for w in wide) > len(missed) // 2  # signal: most are recovered
    full = _logits(W, b, x)
    for i, w in zip(missed, wide):
        if w is not None:
            assert int(w[0][w[1].argmax()]) == int(full[i].argmax())
            assert w[0].numel() < W.shape[1]  # ... from a subset of the vocabulary
    assert widen(bound, torch.randn(32) * 30, x_ref[0], ref[0], max_tokens=50) is None  # far: too many tokens


# ---- in sweeps -------------------------------------------------------------------------------------


class _Certified:
    def __init__(self, monkeypatch):
        self.certified = self.unembedded = 0
        unembed = TrunkCache._unembed

        def counted(cache, resid, seg):
            c, u = cache.certified, cache.unembedded
            out = unembed(cache, resid, seg)
            self.certified += cache.certified - c
            self.unembedded += cache.unembedded - u
            return out

        monkeypatch.setattr(TrunkCache, "_unembed", counted)


def _weak_conditions(d_model: int, d_mlp: int) -> dict[str, list]:
    return {
        "baseline": [],
        "weak_last": [("blocks.3.hook_resid_post", scale([0], 0.999))],
        "weak_middle": [("blocks.2.mlp.hook_post", scale(list(range(0, d_mlp, 8)), 0.99))],
        "strong_middle": [("blocks.2.mlp.hook_post", scale(list(range(0, d_mlp, 2)), 4.0))],
        "first": [("blocks.0.hook_resid_post", scale([1, 2, 3], 0.5))],
    }


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize("refill", [True, False])
def test_a_sweep_with_certificates_gives_todays_tokens(request, monkeypatch, arch, refill):
    from tests.test_trunk import _adapter

    adapter = _adapter(arch)
    assert not adapter.certifies_argmax  # opt-in
    adapter.certifies_argmax = True
    conds = _weak_conditions(adapter.d_model, adapter.d_mlp)
    cfg = GenerationConfig(max_new_tokens=12, progress=False, stop_strings=("q",))
    count = _Certified(monkeypatch)
    certified = sweep(adapter, PROMPTS, conds, cfg, sweep_config=SweepConfig(refill=refill))
    assert count.certified > 0 and count.unembedded > 0, (count.certified, count.unembedded)
    adapter.certifies_argmax = False
    every_row = sweep(adapter, PROMPTS, conds, cfg, sweep_config=SweepConfig(refill=refill))
    today = sweep(adapter, PROMPTS, conds, cfg, sweep_config=SweepConfig(refill=refill, share_trunk=False))
    tokens = [{c.name: [g.response_ids for g in c.generations] for c in r} for r in (certified, every_row, today)]
    assert tokens[0] == tokens[1] == tokens[2]


def test_no_certificates_under_sampling_or_with_a_hook_on_the_unembedding(request, monkeypatch):
    from tests.test_trunk import _adapter

    adapter = _adapter("llama")
    adapter.certifies_argmax = True
    conds = _weak_conditions(adapter.d_model, adapter.d_mlp)
    count = _Certified(monkeypatch)
    sweep(adapter, PROMPTS, conds, GenerationConfig(max_new_tokens=6, do_sample=True, seed=3, progress=False))
    assert count.certified == 0 and count.unembedded == 0  # sampling: every logit is needed
    seen = []
    conds["logit_reader"] = [("blocks.3.hook_resid_post", scale([0], 0.999)),
                             ("unembed.hook_out", lambda a, hook: seen.append(a.shape[0]) or a)]
    greedy = GenerationConfig(max_new_tokens=6, progress=False)
    out = sweep(adapter, PROMPTS, conds, greedy)
    assert count.certified == 0 and seen  # the hook saw every step's logits
    adapter.certifies_argmax = False
    ref = sweep(adapter, PROMPTS, conds, greedy, sweep_config=SweepConfig(share_trunk=False))
    assert [[g.response_ids for g in c.generations] for c in out] == [[g.response_ids for g in c.generations] for c in ref]
