"""The CLI is generated from RunConfig (one source of truth) and the README's notebook flow runs on both backends."""

import dataclasses

import pytest

from reward_circuits.cli import build_parser, main
from reward_circuits.studies.run.config import RunConfig

pytestmark = pytest.mark.usefixtures("one_thread")


def test_every_runconfig_field_is_an_option_with_the_config_default():
    parser = build_parser()
    args = parser.parse_args(["run"])
    for f in dataclasses.fields(RunConfig):
        if f.metadata.get("cli") is False:  # set by the CLI itself (which options were given), not an option
            assert not hasattr(args, f.name), f.name
            continue
        assert hasattr(args, f.name), f.name
        assert getattr(args, f.name) == getattr(RunConfig(), f.name), f.name
    args = parser.parse_args(["run", "--tasks", "arithmetic:2,word_problems:1", "--layers", "0,3", "--quick", "--limit", "40"])
    assert args.tasks == ("arithmetic:2", "word_problems:1") and args.layers == (0, 3) and args.quick and args.limit == 40


def test_an_option_given_at_its_default_value_wins_over_the_profile():
    """--profile paper --limit 200 --primary-limit 600 keeps 200 and 600 (the class defaults): an option typed
    on the command line is never overridden by a profile or --quick, whatever its value."""
    from reward_circuits.configs import config_from_args

    parser = build_parser()
    cfg = config_from_args(RunConfig, parser.parse_args(
        ["run", "--profile", "paper", "--limit", "200", "--primary-limit", "600", "--eval-examples", "48"]))
    paper = RunConfig(profile="paper")
    assert (cfg.limit, cfg.primary_limit, cfg.eval_examples) == (200, 600, 48)
    assert paper.limit == 1000 and paper.primary_limit > 600 and cfg.random_draws == paper.random_draws
    assert set(cfg.explicit) == {"profile", "limit", "primary_limit", "eval_examples"}
    quick = config_from_args(RunConfig, parser.parse_args(["run", "--quick", "--eval-examples", "32", "--no-progress"]))
    assert quick.eval_examples == 32 and quick.limit == 40 and not quick.progress
    # in Python, the same through explicit=
    assert RunConfig(profile="paper", limit=200, explicit=("limit",)).limit == 200
    assert RunConfig(profile="paper", limit=200).limit == 1000  # unnamed: indistinguishable from the default


def test_an_explicit_option_wins_in_every_study_with_a_profile_or_quick():
    from reward_circuits.configs import config_from_args
    from reward_circuits.studies.yfpo.config import PROFILES, YFPOConfig

    parser = build_parser()
    default, sized = YFPOConfig().eval_prompts, PROFILES["sized"]["eval_prompts"]
    assert sized != default
    cfg = config_from_args(YFPOConfig, parser.parse_args(["yfpo", "--profile", "sized", "--eval-prompts", str(default)]))
    assert cfg.eval_prompts == default and YFPOConfig(profile="sized").eval_prompts == sized
    assert cfg.seeds == PROFILES["sized"]["seeds"]  # what was not given still follows the profile


def test_bad_options_name_the_problem(capsys):
    assert main(["run", "--limit", "2"]) == 2
    assert "--limit 2 is too small" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--layers", "x"])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--backend", "jax"])
    with pytest.raises(ValueError, match="layer numbers must be >= 0"):
        RunConfig(layers=(-1,))


def test_layers_beyond_the_model_are_an_error_not_silently_dropped(tl_adapter, tmp_path):
    from reward_circuits.studies.run import run

    with pytest.raises(ValueError, match=r"has layers 0\.\.1\. Pass --layers .* \(every 3rd layer and the last: \[0, 1\]\)"):
        run(RunConfig(layers=(99,), out=str(tmp_path)), adapter=tl_adapter)


@pytest.mark.parametrize("backend", ["transformer_lens", "nnsight"])
def test_readme_notebook_flow_runs_on_either_backend(tiny_adapters, tmp_path, backend):
    from reward_circuits import Example, Task, ValueProbe, build_store, generate_rollouts, value_neurons, zero_ablate
    from reward_circuits.models import GenerationConfig

    adapter = tiny_adapters[backend]
    task = Task("parity", [Example(f"e{i}", f"Say {i}.", "0") for i in range(40)],
                lambda r, e: float(len(r) % 2 == 0), max_new_tokens=6)
    rollouts = generate_rollouts(adapter, task, GenerationConfig(max_new_tokens=6, progress=False))
    hooks = [f"blocks.{l}.hook_resid_post" for l in range(adapter.n_layers)]
    store = build_store(adapter, rollouts, hooks, tmp_path / "store")
    train, test = store.split(0.3, seed=0)
    assert set(train).isdisjoint(test)
    probe = ValueProbe().fit(store, hooks, train)
    aucs = probe.score(store, test)
    assert set(aucs) == set(hooks) and all(0 <= a <= 1 for a in aucs.values())
    neurons = value_neurons(probe, hooks[-1], prune_ratio=0.9)
    prompt = adapter.chat_prompt([{"role": "user", "content": "What is 7 + 5?"}])
    ablated = adapter.run_with_hooks(prompt, fwd_hooks=[(neurons.hook_name, zero_ablate(neurons))])
    logits, cache = adapter.run_with_cache(prompt, names_filter=[neurons.hook_name])
    assert ablated.shape == logits.shape and list(cache) == [neurons.hook_name]
    assert not ablated.allclose(logits)


def test_one_default_backend_everywhere():
    import inspect

    from reward_circuits.models import DEFAULT_BACKEND, from_hf, load_model

    assert RunConfig().backend == DEFAULT_BACKEND
    assert inspect.signature(load_model).parameters["backend"].default == DEFAULT_BACKEND
    assert inspect.signature(from_hf).parameters["backend"].default == DEFAULT_BACKEND
