"""Public entry points reject bad input with a message that names the problem and the fix, and
nothing anywhere loads a pickle (issue 15, part C).

The bad-input table lists (call, exception, words naming the problem, words naming the fix). Each
row of the store's part was seen failing before its fix: ``store.get(5)`` on a 1-rollout store raised
a bare ``IndexError: list index out of range``; ``iter_batches(batch_states=0)`` silently yielded
one rollout per batch; plain lists as activations raised ``AttributeError: 'list' object has no
attribute 'shape'``; ``adapter.generate("one prompt")`` generated for each *character* of the
string (5 generations for "hello").
"""

from __future__ import annotations

import ast
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from reward_circuits.data.capture import build_store
from reward_circuits.data.store import (
    ActivationStore,
    StoreError,
    write_store_from_arrays,
)
from reward_circuits.models import GenerationConfig, HookNameError

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def one_store(tmp_path):
    return write_store_from_arrays(tmp_path / "one", {"h": [torch.zeros(2, 3)]}, [1.0])


def _rows(tmp_path, store, ad):
    """(id, call, exception type, regex naming the problem, regex naming the fix)."""
    return [
        ("store_index", lambda: store.get(5, "h"), IndexError, r"index 5 is out of range.*holds 1 rollouts", r"index_of"),
        ("store_negative_index", lambda: store.initial_states("h", [-1]), IndexError, r"out of range", r"0\.\.0"),
        ("iter_indices", lambda: next(store.iter_batches("h", indices=[0, 7])), IndexError, r"index 7", r"index_of"),
        ("batch_states", lambda: next(store.iter_batches("h", batch_states=0)), StoreError, r"batch_states must be > 0", r"states per batch"),
        ("unknown_hook", lambda: store.get(0, "blocks.0.hook_resid_post"), KeyError, r"not in the store", r"Rebuild"),
        ("no_store", lambda: ActivationStore(tmp_path / "nothing"), FileNotFoundError, r"No activation store", r"build_store"),
        ("empty_acts", lambda: write_store_from_arrays(tmp_path / "a", {}, []), StoreError, r"acts is empty", r"give \{hook_name"),
        ("per_shard", lambda: write_store_from_arrays(tmp_path / "b", {"h": [torch.zeros(1, 2)]}, [0.0], rollouts_per_shard=0),
         StoreError, r"rollouts_per_shard", r"positive int"),
        ("dtype", lambda: write_store_from_arrays(tmp_path / "c", {"h": [torch.zeros(1, 2)]}, [0.0], dtype="int8"),
         StoreError, r"'int8' not supported", r"use one of"),
        ("1d_acts", lambda: write_store_from_arrays(tmp_path / "d", {"h": [torch.zeros(3)]}, [0.0]), StoreError,
         r"got shape \(3,\)", r"\[T, d\]"),
        ("ragged_list", lambda: write_store_from_arrays(tmp_path / "e", {"h": [[[0.0, 1.0], [2.0]]]}, [0.0]), StoreError,
         r"activations must be", r"\[T, d\] tensor or array"),
        ("s0_count", lambda: write_store_from_arrays(tmp_path / "f", {"h": [torch.zeros(1, 2)]}, [0.0], s0_index=[0, 0]),
         StoreError, r"2 s0 indices for 1 rewards", r"one s0_index per rollout"),
        ("reward", lambda: write_store_from_arrays(tmp_path / "g", {"h": [torch.zeros(1, 2)]}, [0.7]), StoreError,
         r"0\.7", r"binarise"),
        ("no_rollouts", lambda: build_store(ad, [], ["hook_embed"], tmp_path / "h"), StoreError,
         r"no rollouts", r"generate some first"),
        ("hook_typo", lambda: ad.capture(ad.tokenize(["hi"]), "blocks.0.resid_post"), HookNameError,
         r"unknown hook point.*blocks\.0\.resid_post", r"hook_names\(\)"),
        ("gen_config", lambda: GenerationConfig(max_new_tokens=0), ValueError, r"max_new_tokens must be >= 1", r"got 0"),
        ("gen_empty", lambda: ad.generate([], GenerationConfig(progress=False)), ValueError, r"no prompts", r"generate"),
    ]


ROW_IDS = [r[0] for r in _rows(Path("."), None, None)]


@pytest.mark.parametrize("row", ROW_IDS)
def test_bad_input_names_the_problem_and_the_fix(tmp_path, one_store, tl_adapter, row):
    _, call, exc, problem, fix = next(r for r in _rows(tmp_path, one_store, tl_adapter) if r[0] == row)
    with pytest.raises(exc) as ei:
        call()
    msg = str(ei.value)
    assert re.search(problem, msg), f"problem not named: {msg!r}"
    assert re.search(fix, msg), f"fix not named: {msg!r}"


def test_numpy_and_list_activations_are_accepted(tmp_path):
    a = np.arange(6, dtype=np.float64).reshape(3, 2)
    store = write_store_from_arrays(tmp_path / "s", {"h": [a, a[:1].tolist()]}, [0.0, 1.0], dtype="float32")
    assert torch.equal(store.get(0, "h"), torch.as_tensor(a, dtype=torch.float32))
    assert torch.equal(store.get(1, "h"), torch.tensor([[0.0, 1.0]]))


@pytest.mark.parametrize("backend", ["transformer_lens", "nnsight"])
def test_generate_with_one_string_is_one_prompt(tiny_adapters, backend):
    ad = tiny_adapters[backend]
    cfg = GenerationConfig(max_new_tokens=2, progress=False)
    one = ad.generate("hello", cfg)
    assert len(one) == 1
    assert one[0].response_ids == ad.generate(["hello"], cfg)[0].response_ids


# ---- no pickle anywhere -------------------------------------------------------------------------

_PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}


def _python_files():
    for top in ("reward_circuits", "bench", "scripts"):
        yield from sorted((REPO / top).rglob("*.py"))


def _pickle_uses(source: str) -> list[str]:
    """Imports of pickling modules and loads that can unpickle, found in the syntax tree."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names if a.name.split(".")[0] in _PICKLE_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in _PICKLE_MODULES:
            found.append(f"from {node.module} import ...")
        elif isinstance(node, ast.Call):
            name = ast.unparse(node.func)
            kw = {k.arg: ast.unparse(k.value) for k in node.keywords}
            if name.endswith("torch.load"):
                if kw.get("weights_only") != "True":
                    found.append(f"{name}(...) without weights_only=True")
            elif re.search(r"(^|\.)(read_pickle|from_pickle)$", name):
                found.append(name)
            elif re.search(r"(^|\.)np\.load$|(^|\.)numpy\.load$", name) and kw.get("allow_pickle") == "True":
                found.append(f"{name}(allow_pickle=True)")
    return found


def test_the_pickle_scan_finds_what_it_should():
    """The scanner itself can fail: these snippets must each be flagged."""
    for bad in ("import pickle", "from joblib import load", "import dill as d", "x = torch.load(p)",
                "x = torch.load(p, weights_only=False)", "df = pd.read_pickle(p)", "a = np.load(p, allow_pickle=True)"):
        assert _pickle_uses(bad), bad
    for ok in ("x = torch.load(p, weights_only=True)", "a = np.load(p)", "from safetensors.torch import load_file"):
        assert not _pickle_uses(ok), ok


def test_no_pickle_is_loaded_anywhere_in_the_code():
    offenders = {str(p.relative_to(REPO)): u for p in _python_files() if (u := _pickle_uses(p.read_text(encoding="utf-8")))}
    assert not offenders, offenders


def test_store_and_probe_round_trip_without_unpickling(tmp_path, monkeypatch):
    """At run time too: writing, reopening and training on a store, and saving/loading a probe and
    rollouts, never reaches an unpickler."""
    from reward_circuits.analysis.probes import ValueProbe, ValueProbeConfig
    from reward_circuits.data.rollouts import Rollout, load_rollouts, save_rollouts

    def refuse(*a, **k):
        raise AssertionError("a pickle was loaded")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    real_torch_load = torch.load

    def torch_load(*a, **k):
        assert k.get("weights_only") is True, "torch.load without weights_only=True"
        return real_torch_load(*a, **k)

    monkeypatch.setattr(torch, "load", torch_load)
    g = torch.Generator().manual_seed(0)
    acts = {"h": [torch.randn(4, 3, generator=g) for _ in range(12)]}
    store = write_store_from_arrays(tmp_path / "s", acts, [float(i % 2) for i in range(12)])
    store = ActivationStore(tmp_path / "s")
    probe = ValueProbe(ValueProbeConfig(epochs=1)).fit(store, ["h"])
    probe.save(tmp_path / "p")
    again = ValueProbe.load(tmp_path / "p")
    torch.testing.assert_close(again.initial_values(store, None, ["h"]), probe.initial_values(store, None, ["h"]))
    rolls = [Rollout(id=f"r{i}", task="t", example_id=f"e{i}", prompt_ids=[1, 2], response_ids=[3], response_text="x",
                     reward=1.0, gold="1") for i in range(3)]
    save_rollouts(rolls, tmp_path / "r")
    assert [r.id for r in load_rollouts(tmp_path / "r")] == ["r0", "r1", "r2"]
