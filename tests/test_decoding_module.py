"""The decoding engine lives in ``models.decoding``; ``ModelAdapter``'s decoding methods are thin
delegations with the engine's signatures (notebooks and the sweep call the methods)."""

import inspect

import pytest

from reward_circuits.models import ModelAdapter
from reward_circuits.models import decoding


@pytest.mark.parametrize("name", ["generate", "generate_plan", "decode", "decode_stream"])
def test_adapter_methods_delegate_with_the_engines_signature(name):
    method = inspect.signature(getattr(ModelAdapter, name))
    engine = inspect.signature(getattr(decoding, name))
    assert list(method.parameters)[0] == "self" and list(engine.parameters)[0] == "adapter"
    assert [(p.name, p.kind, p.default) for p in list(method.parameters.values())[1:]] == \
        [(p.name, p.kind, p.default) for p in list(engine.parameters.values())[1:]]
    assert len(inspect.getsource(getattr(ModelAdapter, name)).splitlines()) < 30  # a delegation, not a loop


def test_paired_sampling_draws_one_number_per_key_whatever_the_batch():
    import torch

    a, b = decoding.KeyUniforms(3), decoding.KeyUniforms(3)
    first = a(torch.tensor([5, 5, 9]))
    assert first[0] == first[1] and first[0] != first[2]
    assert b(torch.tensor([9]))[0] == first[2]  # key 9's draw does not depend on key 5 being there
