"""Bad arguments to the hooked API (both backends) and to the other public entry points give an error
that names the problem and the fix, never a raw Python/torch error (issue 15, part C).

Each row is (id, call, exception type, regex naming the problem, regex naming the fix). Seen failing
before the fixes (the raw errors they replaced): ``run_with_hooks(3.5)`` -> ``TypeError: 'float' object
is not iterable``; ``run_with_hooks({"a": 1})`` ran the dict's keys as text; a float tensor of "ids"
ran silently on TransformerLens and raised ``IndexError: index out of range in self`` on nnsight;
``names_filter=42`` -> ``'int' object is not iterable``; a bare ``(name, fn)`` pair or a dict as
``fwd_hooks`` -> ``too many values to unpack``; a non-callable hook fn -> ``'int' object is not
callable`` from inside the model (and none at all from ``hooks()`` until the first forward); a
one-argument hook fn -> ``got an unexpected keyword argument 'hook'``; a hook-name typo listed no
close name; ``generate(..., {"max_new_tokens": 2})`` -> ``'dict' object has no attribute
'batch_size'``; ``build_store(batch_size=0)`` -> ``range() arg 3 must not be zero``; token ids past
the vocabulary -> ``IndexError``; ``load_model(3)`` -> ``'int' object has no attribute 'lower'``;
``generate_rollouts(ad, "arithmetic")`` -> ``AttributeError``; ``ValueProbe.fit([1, 2])`` ->
``AttributeError``; ``get_task("arithmetic", difficulti=2)`` -> ``unexpected keyword argument``.
"""

from __future__ import annotations

import re

import pytest
import torch

from reward_circuits.data.capture import build_store
from reward_circuits.data.rollouts import Rollout, generate_rollouts
from reward_circuits.data.store import StoreError, write_store_from_arrays
from reward_circuits.errors import ProbeError
from reward_circuits.models import GenerationConfig, HookNameError, load_model
from reward_circuits.models.loading import ModelLoadError

pytestmark = pytest.mark.usefixtures("one_thread")

NAME = "blocks.0.hook_resid_post"
GEN = GenerationConfig(max_new_tokens=2, progress=False)


def ident(activation, hook):
    return activation


def _api_rows(ad):
    """The hooked API: run on both backends."""
    return [
        ("float_input", lambda: ad.run_with_hooks(3.5), TypeError, r"got a float \(3\.5\)", r"a string, a list of strings, token ids"),
        ("none_input", lambda: ad.run_with_hooks(None), TypeError, r"got a NoneType", r"a string, a list of strings"),
        ("dict_input", lambda: ad.run_with_hooks({"a": 1}), TypeError, r"got a dict", r"a string, a list of strings"),
        ("float_ids", lambda: ad.run_with_hooks(torch.randn(2, 3)), TypeError, r"integer tensor, got torch\.float32", r"adapter\.tokenize"),
        ("ids_past_vocab", lambda: ad.run_with_hooks([[10**6]]), ValueError, r"token id 1000000 is out of range.*0\.\.\d+", r"this model's tokenizer"),
        ("negative_id", lambda: ad.run_with_hooks([[5, -1]]), ValueError, r"token id -1 is out of range", r"this model's tokenizer"),
        ("empty_string", lambda: ad.run_with_hooks(""), ValueError, r"no tokens", r"at least one token"),
        ("names_filter_int", lambda: ad.run_with_cache("hi", names_filter=42), TypeError, r"names_filter must be.*got an int \(42\)",
         r"names_filter=\['blocks"),
        ("names_filter_non_str", lambda: ad.run_with_cache("hi", names_filter=[42]), HookNameError, r"unknown hook point.*\[42\]",
         r"Hook names are strings.*hook_names\(\)"),
        ("names_filter_raises", lambda: ad.run_with_cache("hi", names_filter=lambda n: n.foo), TypeError,
         r"names_filter raised AttributeError when called with .hook_embed.", r"called with each hook name.*return True"),
        ("names_filter_typo", lambda: ad.run_with_cache("hi", names_filter="blocks.0.hook_resid_pst"), HookNameError,
         r"unknown hook point.*hook_resid_pst", r"Did you mean 'blocks\.0\.hook_resid_post'"),
        ("one_pair", lambda: ad.run_with_hooks("hi", fwd_hooks=(NAME, ident)), TypeError, r"one \(hook_name, fn\) pair, not a list",
         r"wrap it in a list, fwd_hooks=\[\('blocks\.0\.hook_resid_post', fn\)\]"),
        ("dict_hooks", lambda: ad.run_with_hooks("hi", fwd_hooks={NAME: ident}), TypeError, r"fwd_hooks is a dict", r"list\(d\.items\(\)\)"),
        ("triple", lambda: ad.run_with_hooks("hi", fwd_hooks=[(NAME, ident, 1)]), TypeError, r"fwd_hooks\[0\] is a tuple.*not a \(hook_name, fn\) pair",
         r"e\.g\. fwd_hooks=\["),
        ("string_hooks", lambda: ad.run_with_hooks("hi", fwd_hooks=NAME), TypeError, r"got a str", r"list of \(hook_name, fn\) pairs"),
        ("swapped_pair", lambda: ad.run_with_hooks("hi", fwd_hooks=[(ident, NAME)]), TypeError, r"\(fn, 'blocks", r"name first; swap them"),
        ("hook_typo", lambda: ad.run_with_hooks("hi", fwd_hooks=[("blocks.0.hook_resid_pst", ident)]), HookNameError,
         r"unknown hook point.*hook_resid_pst", r"Did you mean 'blocks\.0\.hook_resid_post'.*hook_names\(\)"),
        ("not_callable", lambda: ad.run_with_hooks("hi", fwd_hooks=[(NAME, 3)]), TypeError, r"hook fn for 'blocks\.0\.hook_resid_post'.*an int \(3\), not callable",
         r"fn\(activation, hook\)"),
        ("not_callable_forward", lambda: ad.forward(ad.tokenize(["hi"]), [(NAME, None)]), TypeError, r"NoneType \(None\), not callable", r"fn\(activation, hook\)"),
        ("not_callable_capture", lambda: ad.capture(ad.tokenize(["hi"]), ["hook_embed"], fwd_hooks=[(NAME, 3)]), TypeError, r"not callable", r"fn\(activation, hook\)"),
        ("not_callable_context", lambda: ad.hooks([(NAME, "x")]).__enter__(), TypeError, r"a str \('x'\), not callable", r"fn\(activation, hook\)"),
        ("not_callable_generate", lambda: ad.generate(["hi"], GEN, fwd_hooks=[(NAME, 3)]), TypeError, r"not callable", r"fn\(activation, hook\)"),
        ("one_arg_hook", lambda: ad.run_with_hooks("hi", fwd_hooks=[(NAME, lambda a: a)]), TypeError, r"has signature <lambda>\(a\)",
         r"def fn\(activation, hook\)"),
        ("capture_int_names", lambda: ad.capture(ad.tokenize(["hi"]), [0]), HookNameError, r"unknown hook point.*\[0\]", r"Hook names are strings"),
        ("tokenize_int", lambda: ad.tokenize(5), TypeError, r"got int '5'", r"token ids straight to forward"),
        ("config_dict", lambda: ad.generate(["hi"], {"max_new_tokens": 2}), TypeError, r"config must be a GenerationConfig, got dict",
         r"GenerationConfig\(\*\*config\)"),
        ("option_typo", lambda: ad.generate(["hi"], GEN, max_tokens=2), TypeError, r"unknown generation option.*'max_tokens'",
         r"did you mean 'max_new_tokens'"),
    ]


API_ROWS = [r[0] for r in _api_rows(None)]


@pytest.mark.parametrize("backend", ["transformer_lens", "nnsight"])
@pytest.mark.parametrize("row", API_ROWS)
def test_hooked_api_bad_arguments_name_the_problem_and_the_fix(tiny_adapters, backend, row):
    ad = tiny_adapters[backend]
    _check(next(r for r in _api_rows(ad) if r[0] == row))


def _entry_rows(ad, tmp_path):
    from reward_circuits.analysis.probes import ValueProbe, ValueProbeConfig
    from reward_circuits.interventions.sweep import sweep
    from reward_circuits.tasks import get_task

    rollouts = [Rollout(id=f"r{i}", task="t", example_id=f"e{i}", prompt_ids=[5, 6], response_ids=[7], response_text="x",
                        reward=float(i % 2), gold="1") for i in range(4)]
    foreign = [Rollout(id="x", task="t", example_id="e", prompt_ids=[10**6], response_ids=[1], response_text="", reward=1.0, gold="")]
    store = write_store_from_arrays(tmp_path / "s", {"h": [torch.randn(3, 4) for _ in range(8)]}, [float(i % 2) for i in range(8)])
    task = get_task("arithmetic", n=2)
    return [
        ("load_model_backend", lambda: load_model("default", backend="pytorch"), ValueError, r"unknown backend 'pytorch'",
         r"use 'transformer_lens' or 'nnsight'"),
        ("load_model_not_a_name", lambda: load_model(3), TypeError, r"model name must be a string.*got int", r"from_hf\(model, tokenizer\)"),
        ("load_model_no_dir", lambda: load_model("./no/such/model_dir"), ModelLoadError, r"'\./no/such/model_dir' does not exist",
         r"HF model directory.*'default'.*hub id"),
        ("build_store_batch_size", lambda: build_store(ad, rollouts, ["hook_embed"], tmp_path / "b1", batch_size=0, progress=False),
         StoreError, r"batch_size must be a positive int", r"got 0"),
        ("build_store_not_rollouts", lambda: build_store(ad, ["hello"], ["hook_embed"], tmp_path / "b2", progress=False),
         StoreError, r"list of Rollout objects, got \['str'\]", r"generate_rollouts\(adapter, task\)"),
        ("build_store_foreign_ids", lambda: build_store(ad, foreign, ["hook_embed"], tmp_path / "b3", progress=False),
         ValueError, r"token id 1000000 is out of range", r"rollouts\) from another model"),
        ("build_store_hook_typo", lambda: build_store(ad, rollouts, ["blocks.0.hook_resid_pst"], tmp_path / "b4", progress=False),
         HookNameError, r"hook_resid_pst", r"Did you mean"),
        ("rollouts_task_string", lambda: generate_rollouts(ad, "arithmetic"), TypeError, r"task must be a Task, got str", r"get_task\('arithmetic'\)"),
        ("rollouts_config_dict", lambda: generate_rollouts(ad, task, {"max_new_tokens": 2}), TypeError, r"got dict",
         r"GenerationConfig\(\*\*config\)"),
        ("probe_fit_not_a_store", lambda: ValueProbe(ValueProbeConfig(epochs=1)).fit([1, 2], ["h"], verbose=False), ProbeError,
         r"store must be a Store.*got list", r"fit_arrays\(acts, rewards\)"),
        ("probe_fit_mismatched", lambda: ValueProbe(ValueProbeConfig(epochs=1)).fit_arrays({"h": [torch.randn(3, 4)] * 5}, [0.0, 1.0, 0.0],
                                                                                          verbose=False),
         ProbeError, r"5 activation sequences for 3 rewards", r"hook 'h'"),
        ("probe_fit_widths", lambda: ValueProbe(ValueProbeConfig(epochs=1)).fit(store, ["h"], keep_masks={"h": torch.ones(7, dtype=torch.bool)},
                                                                                verbose=False),
         ProbeError, r"keep mask has 7 entries", r"d=4"),
        ("sweep_empty", lambda: sweep(ad, ["hi"], []), ValueError, r"no conditions to sweep", r"give at least one"),
        ("sweep_not_callable", lambda: sweep(ad, ["hi"], {"a": [(NAME, 3)]}, GEN), TypeError, r"int \(3\), not callable",
         r"fn\(activation, hook\)"),
        ("task_typo", lambda: get_task("arithmatic"), ValueError, r"Unknown task spec 'arithmatic'", r"Did you mean 'arithmetic'"),
        ("task_not_a_string", lambda: get_task(3), TypeError, r"task spec must be a string, got int", r"Valid specs"),
        ("task_option_typo", lambda: get_task("arithmetic", n=2, difficulti=2), TypeError, r"no option\(s\) \['difficulti'\]",
         r"Did you mean 'difficulty'"),
    ]


ENTRY_ROWS = [
    "load_model_backend", "load_model_not_a_name", "load_model_no_dir", "build_store_batch_size", "build_store_not_rollouts",
    "build_store_foreign_ids", "build_store_hook_typo", "rollouts_task_string", "rollouts_config_dict", "probe_fit_not_a_store",
    "probe_fit_mismatched", "probe_fit_widths", "sweep_empty", "sweep_not_callable", "task_typo", "task_not_a_string",
    "task_option_typo"]


@pytest.mark.parametrize("row", ENTRY_ROWS)
def test_entry_point_bad_input_names_the_problem_and_the_fix(tl_adapter, tmp_path, row):
    rows = _entry_rows(tl_adapter, tmp_path)
    assert sorted(r[0] for r in rows) == sorted(ENTRY_ROWS)
    _check(next(r for r in rows if r[0] == row))


def _check(row):
    _, call, exc, problem, fix = row
    with pytest.raises(exc) as ei:
        call()
    msg = str(ei.value)
    assert re.search(problem, msg, re.DOTALL), f"problem not named: {type(ei.value).__name__}: {msg!r}"
    assert re.search(fix, msg, re.DOTALL), f"fix not named: {type(ei.value).__name__}: {msg!r}"


@pytest.mark.parametrize("backend", ["transformer_lens", "nnsight"])
def test_valid_hook_forms_still_run(tiny_adapters, backend):
    """The checks reject only what cannot work: tuples of pairs, list pairs, partials and callable
    objects with ``(activation, hook)`` still run, and give the same logits as the plain forward."""
    import functools

    ad = tiny_adapters[backend]
    plain = ad.run_with_hooks("hi")

    class Scale:
        def __call__(self, activation, hook):
            return activation * 1.0

    def scaled(activation, hook, factor):
        return activation * factor

    for hooks in (((NAME, ident), ("hook_embed", ident)), [[NAME, Scale()]], [(NAME, functools.partial(scaled, factor=1.0))],
                  [(NAME, lambda activation, hook=None: None)], None, ()):
        torch.testing.assert_close(ad.run_with_hooks("hi", fwd_hooks=hooks), plain)
