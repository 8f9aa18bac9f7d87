"""AttnLRP on a tiny Llama: conservation, its softmax bookkeeping, and restored modules."""

from __future__ import annotations

import copy

import pytest
import torch

from reward_circuits.studies.yfpo.attnlrp import LRPError, attnlrp_rules, neuron_relevance

pytestmark = pytest.mark.usefixtures("one_thread")

# float64 throughout: the only approximation left is the identity rule's f(x)/x guard (|x| ≤ 1e-12)
TOL = 1e-8


@pytest.fixture(scope="module")
def tiny64():
    # a fresh model, not a copy of the session's tiny_hf: once the nnsight adapter has wrapped that
    # one, its modules carry instance-level forwards that a deepcopy would carry along
    from reward_circuits.models.tiny import tiny_hf_model

    hf, tok = tiny_hf_model(seed=0)
    return hf.double(), tok


@pytest.fixture(scope="module")
def batch(tiny64):
    _, tok = tiny64
    enc = tok(["1+2=3", "12+30=42", "7-5=2"], return_tensors="pt", padding=True)
    target = torch.zeros_like(enc.input_ids, dtype=torch.bool)
    target[:, -1] = True  # explain the logit of the answer's last digit
    return enc.input_ids, enc.attention_mask, target


def _attention_free(model):
    m = copy.deepcopy(model)
    with torch.no_grad():
        for layer in m.model.layers:
            layer.self_attn.o_proj.weight.zero_()
    return m


def test_conservation_without_attention_attnlrp_yes_gradient_no(tiny64, batch):
    """With attention outputs switched off, every AttnLRP rule left is conservative: Σ R(embeddings)
    equals the explained logit to |rel. error| < 1e-8; plain gradient × input misses by > 10%."""
    model = _attention_free(tiny64[0])
    lrp = neuron_relevance(model, *batch, method="attnlrp")
    grad = neuron_relevance(model, *batch, method="gradient_x_activation")
    assert torch.allclose(lrp.target, grad.target)
    rel_err = (lrp.embedding_relevance - lrp.target).abs() / lrp.target.abs()
    assert rel_err.max() < TOL
    assert lrp.absorbed.abs().max() < TOL
    grad_err = (grad.embedding_relevance - grad.target).abs() / grad.target.abs()
    assert grad_err.min() > 0.1


def test_conservation_with_attention_up_to_the_softmax_absorption(tiny64, batch):
    """With attention, AttnLRP's softmax rule (x ⊙ (R − sΣR)) absorbs relevance; Σ R(embeddings) plus
    the absorbed amount equals the logit to 1e-8, the absorbed amount is not negligible on this random
    model, and for gradient × input no such identity holds."""
    model = tiny64[0]
    lrp = neuron_relevance(model, *batch, method="attnlrp")
    assert lrp.conservation_error().abs().max() < TOL
    assert lrp.absorbed.abs().max() > 1e-3
    grad = neuron_relevance(model, *batch, method="gradient_x_activation")
    assert (grad.conservation_error().abs() > 1e-3).all()


def test_mlp_neuron_relevance_sums_to_the_mlp_share(tiny64, batch):
    """In the attention-free model, relevance leaves the residual stream only through the MLPs and the
    embeddings: per prompt, Σ over the last layer's neurons + what the last layer's input carries = logit.
    Checked more simply: the neuron relevance is finite, per-prompt and ranked by ``top``."""
    lrp = neuron_relevance(_attention_free(tiny64[0]), *batch, method="attnlrp")
    assert lrp.per_prompt.shape == (3, 2, 64)
    assert torch.isfinite(lrp.per_prompt).all()
    top = lrp.top(5)
    flat = lrp.scores
    assert flat[top[0][0], top[0][1]] == flat.max()


def test_patched_modules_restored_after_an_exception(tiny64, batch):
    model = tiny64[0]
    ids, am, _ = batch
    with torch.no_grad():
        before = model(input_ids=ids, attention_mask=am).logits
    with pytest.raises(RuntimeError, match="boom"), attnlrp_rules(model) as patched:
        assert patched.n_mlps == 2 and patched.n_attentions == 2 and patched.n_norms == 5
        assert sum("forward" in vars(m) for m in model.modules()) == 9
        raise RuntimeError("boom")
    assert sum("forward" in vars(m) for m in model.modules()) == 0
    with torch.no_grad():
        after = model(input_ids=ids, attention_mask=am).logits
    assert torch.equal(before, after)


def test_patched_forward_is_the_same_function(tiny64, batch):
    """The rules change only the backward: the patched model's logits equal the original's (up to
    HF's RMSNorm computing in float32 even for a float64 model, which the patched norm does not)."""
    model = tiny64[0]
    ids, am, _ = batch
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=am).logits
        with attnlrp_rules(model):
            patched = model(input_ids=ids, attention_mask=am).logits
    keep = am.bool()
    assert torch.allclose(ref[keep], patched[keep], atol=1e-5)


def test_non_llama_model_is_refused():
    with pytest.raises(LRPError, match="Llama-family"), attnlrp_rules(torch.nn.Sequential(torch.nn.Linear(2, 2))):
        pass
