"""The TransformerLens habits on both backends: run_with_hooks, hooks(), run_with_cache, any input form."""

import pytest
import torch

from reward_circuits.interventions import scale, zero_ablate

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPTS = ["Say 12 + 3.", "Hi there"]
H0, H1 = "blocks.0.hook_resid_post", "blocks.1.hook_resid_pre"


@pytest.mark.parametrize("backend", ["transformer_lens", "nnsight"])
def test_every_input_form_gives_the_same_logits(tiny_adapters, backend):
    ad = tiny_adapters[backend]
    batch = ad.tokenize(PROMPTS)
    ref = ad.forward(batch)
    assert torch.allclose(ad.run_with_hooks(PROMPTS), ref, atol=1e-5)
    assert torch.allclose(ad.run_with_hooks(batch), ref, atol=1e-5)
    one = ad.run_with_hooks(PROMPTS[0])
    ids = ad.tokenizer(PROMPTS[0], add_special_tokens=False)["input_ids"]
    assert torch.allclose(ad.run_with_hooks(torch.tensor(ids)), one, atol=1e-5)
    assert torch.allclose(ad.run_with_hooks([ids]), one, atol=1e-5)
    with pytest.raises(TypeError, match="list of strings"):
        ad.run_with_hooks([1.5, "a"])
    with pytest.raises(ValueError, match="empty"):
        ad.run_with_hooks([])


@pytest.mark.parametrize("backend", ["transformer_lens", "nnsight"])
def test_run_with_hooks_applies_hooks_for_one_call_only(tiny_adapters, backend):
    ad = tiny_adapters[backend]
    clean = ad.run_with_hooks(PROMPTS)
    hooked = ad.run_with_hooks(PROMPTS, fwd_hooks=[(H0, zero_ablate([0, 1, 2]))])
    assert not torch.allclose(clean, hooked)
    assert torch.allclose(ad.run_with_hooks(PROMPTS), clean)


@pytest.mark.parametrize("backend", ["transformer_lens", "nnsight"])
def test_run_with_cache_filters_and_matches_capture(tiny_adapters, backend):
    ad = tiny_adapters[backend]
    logits, cache = ad.run_with_cache(PROMPTS, names_filter=[H0, H1])
    assert set(cache) == {H0, H1}
    ref = ad.capture(ad.tokenize(PROMPTS), [H0, H1])
    for name in (H0, H1):
        assert torch.allclose(cache[name], ref[name], atol=1e-5)
    assert torch.allclose(logits, ad.forward(ad.tokenize(PROMPTS)), atol=1e-5)
    _, one = ad.run_with_cache(PROMPTS, names_filter=H0)
    assert list(one) == [H0]
    _, by_fn = ad.run_with_cache(PROMPTS, names_filter=lambda n: n.endswith("hook_resid_post"))
    assert set(by_fn) == {f"blocks.{l}.hook_resid_post" for l in range(ad.n_layers)}
    # the cache sees the activation after a user's hook at the same site
    _, edited = ad.run_with_cache(PROMPTS, names_filter=[H0], fwd_hooks=[(H0, zero_ablate([3]))])
    assert torch.all(edited[H0][..., 3] == 0)
    with pytest.raises(TypeError, match="list"):
        ad.run_with_cache(PROMPTS, names_filter=(H0,))
    with pytest.raises(KeyError):
        ad.run_with_cache(PROMPTS, names_filter=["blocks.99.hook_resid_post"])


@pytest.mark.parametrize("backend", ["transformer_lens", "nnsight"])
def test_hooks_context_attaches_for_everything_inside_and_detaches_after(tiny_adapters, backend):
    ad = tiny_adapters[backend]
    batch = ad.tokenize(PROMPTS)
    clean = ad.forward(batch)
    hooks = [(H0, scale([0, 1, 2, 3], 3.0))]
    per_call = ad.forward(batch, hooks)
    with ad.hooks(hooks):
        inside = ad.forward(batch)
        captured = ad.capture(batch, [H0])[H0]
    assert torch.allclose(inside, per_call, atol=1e-5)
    assert torch.allclose(captured, ad.capture(batch, [H0], hooks)[H0], atol=1e-5)
    assert torch.allclose(ad.forward(batch), clean)
    with pytest.raises(RuntimeError, match="boom"):
        with ad.hooks(hooks):
            raise RuntimeError("boom")
    assert torch.allclose(ad.forward(batch), clean)


def test_both_backends_agree_under_the_same_hooks(tiny_adapters):
    hooks = [(H0, zero_ablate([1, 5])), (H1, scale([2], 0.5))]
    tl = tiny_adapters["transformer_lens"].run_with_hooks(PROMPTS, hooks)
    nn = tiny_adapters["nnsight"].run_with_hooks(PROMPTS, hooks)
    mask = tiny_adapters["transformer_lens"].tokenize(PROMPTS).attention_mask.bool()
    assert torch.allclose(tl[mask], nn[mask], atol=1e-4)


@pytest.mark.parametrize("backend", ["transformer_lens", "nnsight"])
def test_hooks_context_applies_during_generation(tiny_adapters, backend):
    from reward_circuits.models import GenerationConfig

    ad = tiny_adapters[backend]
    cfg = GenerationConfig(max_new_tokens=5, progress=False)
    hooks = [(H0, zero_ablate(list(range(8))))]
    per_call = [g.response_ids for g in ad.generate(PROMPTS, cfg, fwd_hooks=hooks)]
    with ad.hooks(hooks):
        inside = [g.response_ids for g in ad.generate(PROMPTS, cfg)]
    clean = [g.response_ids for g in ad.generate(PROMPTS, cfg)]
    assert inside == per_call
    assert clean != per_call  # the ablation changes what the tiny model says (else the test proves nothing)
