"""Shared fixtures: one tiny random Llama (HF weights + tokenizer) wrapped by both backends.

Session-scoped so the HF → TransformerLens conversion and the nnsight wrapper are built once for
the whole run. Both adapters run the *same* HF weights (``from_hf(hf, tok, backend)``).
"""

from __future__ import annotations

import os

# never touch the network (set before transformers / datasets are imported by anything)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest
import torch

BACKENDS = ("transformer_lens", "nnsight")
TINY_NAME = "tiny-llama-seed0"  # what reward_circuits.models.tiny.tiny_adapter(seed=0) calls it


@pytest.fixture(scope="module")
def one_thread():
    """The tiny model is dominated by per-op overhead; with 2 threads on a shared 2-core machine
    torch's pool spins and runs far slower. Modules opt in with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``; restored after the module."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def tiny_hf():
    """(LlamaForCausalLM with random weights, tokenizer) — shared, never mutate its weights."""
    from reward_circuits.models.tiny import tiny_hf_model

    hf, tok = tiny_hf_model(seed=0)
    return hf, tok


@pytest.fixture(scope="session")
def tl_adapter(tiny_hf):
    from reward_circuits.models import from_hf

    hf, tok = tiny_hf
    return from_hf(hf, tok, "transformer_lens", name=TINY_NAME)


@pytest.fixture(scope="session")
def nn_adapter(tiny_hf):
    from reward_circuits.models import from_hf

    hf, tok = tiny_hf
    return from_hf(hf, tok, "nnsight", name=TINY_NAME)


@pytest.fixture(scope="session")
def tiny_adapters(tl_adapter, nn_adapter):
    """{backend: adapter} over the same tiny HF weights."""
    return {"transformer_lens": tl_adapter, "nnsight": nn_adapter}


def kill_once_ready(proc, ready, timeout: float = 120.0) -> None:
    """SIGKILL the writer subprocess ``proc`` as soon as it creates the file ``ready`` (its kill point);
    fail the test if it exits early or never gets there. The process is always reaped."""
    import os
    import signal
    import time

    try:
        deadline = time.monotonic() + timeout
        while not ready.exists():
            if proc.poll() is not None:
                pytest.fail(f"writer exited early ({proc.returncode}): {proc.stderr.read().decode()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail("writer never reached the kill point")
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
