"""Hooks and patched modules are gone after *any* exception, on both backends (issue 15, part C).

tests/test_model.py and tests/test_interventions.py check an exception raised by a hook on the first
forward. Here the failure comes later and from elsewhere: in a hook at the third decoding step, in
generation itself (the sampler, the token streamer), in a user's own hook composed with our
interventions, and as a ``KeyboardInterrupt`` (a notebook user pressing stop, a ``BaseException``).
After each, no hook is left registered on any module or hook point, the decoding-attention patch is
undone, and a clean forward, capture and generation equal the ones before, bit for bit.

Broken versions seen failing: the TL adapter registering its hooks with ``model.add_hook`` and
removing them only after a successful forward (no ``finally``); ``cached_rotary_attention`` restoring
the attention ``forward`` only on success.
"""

from __future__ import annotations

import pytest
import torch

import reward_circuits.models.decoding as decoding_mod
from reward_circuits.interventions import zero_ablate
from reward_circuits.interventions.hooks import teacher_forced_prompt
from reward_circuits.models import GenerationConfig

pytestmark = pytest.mark.usefixtures("one_thread")

BACKENDS = ["transformer_lens", "nnsight"]
TEXTS = ["What is 7+5?", "Hi", "abc def ghi"]
NAMES = ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post", "blocks.0.mlp.hook_post"]
MLP = "blocks.0.mlp.hook_post"
RESID1 = "blocks.1.hook_resid_post"


class Boom(RuntimeError):
    pass


def _greedy(n: int) -> GenerationConfig:
    return GenerationConfig(max_new_tokens=n, progress=False)


def _raise_on_call(k: int, exc: BaseException):
    """A hook that passes its activation through k-1 times, then raises ``exc``."""
    calls = [0]

    def hook(act, hook):
        calls[0] += 1
        if calls[0] >= k:
            raise exc
        return act

    hook.calls = calls
    return hook


def _registered_hooks(ad) -> dict:
    """Every torch hook on every module the adapter runs, plus TL hook-point hooks and patches."""
    model = ad.model if ad.backend == "transformer_lens" else ad.hf
    counts = {}
    for name, m in model.named_modules():
        counts[name] = (len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks),
                        "forward" in m.__dict__)
    if ad.backend == "transformer_lens":
        for name, hp in ad.model.hook_dict.items():
            counts["hp:" + name] = (len(hp.fwd_hooks), len(hp.bwd_hooks))
    return counts


@pytest.fixture(scope="module")
def baseline(tiny_adapters):
    out = {}
    for backend, ad in tiny_adapters.items():
        batch = ad.tokenize(TEXTS)
        out[backend] = dict(
            hooks=_registered_hooks(ad),
            logits=ad.forward(batch),
            acts=ad.capture(batch, NAMES),
            gen=[g.response_ids for g in ad.generate(TEXTS, _greedy(5))],
            batch=batch,
        )
    return out


def _assert_clean(ad, base) -> None:
    assert _registered_hooks(ad) == base["hooks"]
    if ad.backend == "transformer_lens":
        assert all("forward" not in b.attn.__dict__ for b in ad.model.blocks), "decoding attention patch left on"
    assert torch.equal(ad.forward(base["batch"]), base["logits"])
    acts = ad.capture(base["batch"], NAMES)
    for h in NAMES:
        assert torch.equal(acts[h], base["acts"][h]), h
    assert [g.response_ids for g in ad.generate(TEXTS, _greedy(5))] == base["gen"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("exc", [Boom("late"), KeyboardInterrupt()], ids=["error", "keyboard_interrupt"])
def test_hook_failing_at_a_later_decoding_step(tiny_adapters, baseline, backend, exc):
    """The hook runs fine on the prefill and the first decoding steps, then raises."""
    ad = tiny_adapters[backend]
    bad = _raise_on_call(3, exc)
    with pytest.raises(type(exc)):
        ad.generate(TEXTS, _greedy(6), fwd_hooks=[(MLP, zero_ablate([0, 2])), (RESID1, bad)])
    assert bad.calls[0] == 3  # it did fail after 2 good forwards
    _assert_clean(ad, baseline[backend])


@pytest.mark.parametrize("backend", BACKENDS)
def test_keyboard_interrupt_in_capture_and_forward(tiny_adapters, baseline, backend):
    ad = tiny_adapters[backend]
    batch = baseline[backend]["batch"]
    with pytest.raises(KeyboardInterrupt):
        ad.capture(batch, NAMES, fwd_hooks=[(MLP, zero_ablate(None)), (RESID1, _raise_on_call(1, KeyboardInterrupt()))])
    with pytest.raises(KeyboardInterrupt):
        ad.forward(batch, [("blocks.0.hook_resid_post", _raise_on_call(1, KeyboardInterrupt()))])
    _assert_clean(ad, baseline[backend])


@pytest.mark.parametrize("backend", BACKENDS)
def test_generation_failing_outside_any_hook(tiny_adapters, baseline, monkeypatch, backend):
    """The sampler of the shared decoding loop raises at step 3 while our hooks (and, on
    TransformerLens, the decoding-attention patch) are active."""
    ad = tiny_adapters[backend]
    real, calls = decoding_mod.next_tokens, [0]

    def next_tokens(*a, **k):
        calls[0] += 1
        if calls[0] == 3:
            raise Boom("sampler")
        return real(*a, **k)

    monkeypatch.setattr(decoding_mod, "next_tokens", next_tokens)
    with pytest.raises(Exception) as ei:  # nnsight may wrap it
        ad.generate(TEXTS, _greedy(6), fwd_hooks=[(MLP, zero_ablate([1]))])
    assert "sampler" in str(ei.value) or isinstance(ei.value, Boom)
    calls[0] = 0
    with pytest.raises(Exception):  # and with no hooks at all
        ad.generate(TEXTS, _greedy(6))
    monkeypatch.undo()
    _assert_clean(ad, baseline[backend])


@pytest.mark.parametrize("backend", BACKENDS)
def test_user_hook_composed_with_ours_and_user_code_in_our_context(tiny_adapters, baseline, backend):
    """A user's own callback (their hook, reading our edited activation) raises; and user code
    raises inside our ``teacher_forced_prompt`` scope."""
    ad = tiny_adapters[backend]
    seen = []

    def users_probe(act, hook):
        seen.append(act[:, :, :2].clone())
        if len(seen) == 2:
            raise ValueError("user's analysis code failed")

    with pytest.raises(Exception, match="user's analysis code failed"):
        ad.generate(TEXTS, _greedy(4), fwd_hooks=[(MLP, zero_ablate([0, 1])), (MLP, users_probe)])
    assert len(seen) == 2 and all(bool((s == 0).all()) for s in seen)  # ours ran first, the user's saw it

    batch = baseline[backend]["batch"]
    with pytest.raises(Boom), teacher_forced_prompt([1, 1, 1]):
        scoped = ad.forward(batch, [(MLP, zero_ablate([0], positions="prompt"))])
        raise Boom("user code")
    # the scope is gone: "prompt" on a full-sequence forward is every position again
    everywhere = ad.forward(batch, [(MLP, zero_ablate([0], positions="all"))])
    assert torch.equal(ad.forward(batch, [(MLP, zero_ablate([0], positions="prompt"))]), everywhere)
    assert not torch.equal(scoped, everywhere)
    _assert_clean(ad, baseline[backend])
