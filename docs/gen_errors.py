"""Write docs/errors.md: every bad input the public API rejects, with the message it gives.

Each case below is real code, run against a tiny random model, a tiny store and a tiny probe; the
page shows the call and the exception it actually raised. tests/test_docs.py checks the committed
page equals a fresh run, so the page cannot drift from the code:

    PYTHONPATH=. python docs/gen_errors.py            # rewrite docs/errors.md
    PYTHONPATH=. python docs/gen_errors.py --check    # exit 1 if docs/errors.md is stale

A call that is *accepted* is listed in its own section ("accepted without an error") instead of
being dropped, so gaps stay visible until the API rejects them.
"""

from __future__ import annotations

import contextlib
import html
import io
import json
import os
import re
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

PAGE = Path(__file__).resolve().parent / "errors.md"

# (section, what is wrong, code). The code runs in the namespace built by `setup()`.
CASES: list[tuple[str, str, str]] = [
    # ---- models
    ("Models", "unknown backend", 'load_model("default", backend="jax")'),
    ("Models", "a device that is not a torch device", 'load_model("default", device="gpu")'),
    ("Models", "remote=True on the TransformerLens backend", 'load_model("default", backend="transformer_lens", remote=True)'),
    ("Models", "a model directory that does not exist", 'load_model("./no/such/model")'),
    ("Models", "a directory without config.json", "load_model(tmp + \"/empty_dir\")"),
    ("Models", "unknown backend when wrapping an HF model", 'from_hf(hf, tok, backend="jax")'),
    ("Models", "a hook point that does not exist", 'adapter.capture(batch, ["blocks.99.hook_resid_post"])'),
    ("Models", "a hook name that is not a TransformerLens name", 'adapter.capture(batch, ["model.layers.0"])'),
    ("Models", "no hook names", "adapter.capture(batch, [])"),
    ("Models", "an unknown hook point in fwd_hooks", 'adapter.generate(["1+1="], fwd_hooks=[("blocks.7.hook_resid_post", zero_ablate())], max_new_tokens=2)'),
    ("Models", "an input that is not text or token ids", "adapter.run_with_hooks(3.5)"),
    ("Models", "a names_filter that matches no hook point", 'adapter.run_with_cache("1+1=", names_filter="blocks.9.hook_resid_post")'),
    ("Models", "a names_filter of the wrong type", 'adapter.run_with_cache("1+1=", names_filter=42)'),
    ("Models", "nothing to tokenize", "adapter.tokenize([])"),
    ("Models", "nothing to pad", "adapter.pad([[1, 2], []])"),
    ("Models", "no prompts to generate from", "adapter.generate([])"),
    ("Models", "max_new_tokens < 1", "GenerationConfig(max_new_tokens=0)"),
    ("Models", "sampling at temperature 0", "GenerationConfig(do_sample=True, temperature=0)"),
    ("Models", "top_p outside (0, 1]", "GenerationConfig(top_p=1.5)"),
    ("Models", "batch_size < 1", "GenerationConfig(batch_size=0)"),
    ("Models", "a model name that is not a string", "load_model(3)"),
    ("Models", "one (name, fn) pair instead of a list of pairs", 'adapter.run_with_hooks("1+1=", fwd_hooks=("blocks.0.hook_resid_post", zero_ablate([0])))'),
    ("Models", "fwd_hooks as a dict", 'adapter.run_with_hooks("1+1=", fwd_hooks={"blocks.0.hook_resid_post": zero_ablate([0])})'),
    ("Models", "(fn, name) instead of (name, fn)", 'adapter.run_with_hooks("1+1=", fwd_hooks=[(zero_ablate([0]), "blocks.0.hook_resid_post")])'),
    ("Models", "a hook fn that is not callable", 'adapter.run_with_hooks("1+1=", fwd_hooks=[("blocks.0.hook_resid_post", 3)])'),
    ("Models", "a hook fn without the hook argument", 'adapter.run_with_hooks("1+1=", fwd_hooks=[("blocks.0.hook_resid_post", lambda act: act)])'),
    ("Models", "a misspelt hook name", 'adapter.run_with_hooks("1+1=", fwd_hooks=[("blocks.0.hook_resid_pst", zero_ablate([0]))])'),
    ("Models", "float 'token ids'", "adapter.run_with_hooks(torch.randn(1, 4))"),
    ("Models", "token ids outside the vocabulary", "adapter.run_with_hooks([[50000]])"),
    ("Models", "a dict as input", 'adapter.run_with_hooks({"text": "1+1="})'),
    ("Models", "a names_filter that raises", 'adapter.run_with_cache("1+1=", names_filter=lambda name: name.layer)'),
    ("Models", "a dict instead of a GenerationConfig", 'adapter.generate(["1+1="], {"max_new_tokens": 2})'),
    ("Models", "a misspelt generation option", 'adapter.generate(["1+1="], max_tokens=2)'),
    ("Models", "a sequence longer than the model's context", "adapter.forward(adapter.pad([[7] * 513], 'left'))"),
    # ---- tasks
    ("Tasks", "unknown task spec", 'get_task("algebra")'),
    ("Tasks", "a difficulty that is not an integer", 'get_task("arithmetic:hard")'),
    ("Tasks", "a difficulty level that does not exist", 'get_task("arithmetic:9")'),
    ("Tasks", "n < 1", 'get_task("arithmetic:1", n=0)'),
    ("Tasks", "a task without examples", 'Task("empty", [], numeric_reward)'),
    ("Tasks", "duplicate example ids", 'Task("dups", [Example("a", "1+1?", "2"), Example("a", "2+2?", "4")], numeric_reward)'),
    ("Tasks", "examples that are not Example objects", 'Task("bad", [("1+1?", "2")], numeric_reward)'),
    ("Tasks", "a reward function that is not callable", 'Task("bad", [Example("a", "1+1?", "2")], 0.5)'),
    ("Tasks", "a non-binary reward", 'Task("soft", [Example("a", "1+1?", "2")], lambda r, ex: 0.5).reward("2", Example("a", "1+1?", "2"))'),
    ("Tasks", "head(0)", "task.head(0)"),
    ("Tasks", "subset larger than the task", "task.subset(1000)"),
    ("Tasks", "a local task file that does not exist", 'get_task("data/none.jsonl")'),
    ("Tasks", "a task spec that is not a string", "get_task(3)"),
    ("Tasks", "a misspelt task option", 'get_task("arithmetic:1", n=4, sytem_prompt="Be brief.")'),
    # ---- data
    ("Data", "samples_per_prompt < 1", "generate_rollouts(adapter, task, samples_per_prompt=0)"),
    ("Data", "several greedy samples per prompt", "generate_rollouts(adapter, task, samples_per_prompt=2)"),
    ("Data", "no rollouts to store", 'build_store(adapter, [], ["blocks.0.hook_resid_post"], tmp + "/s1")'),
    ("Data", "load rollouts from a missing path", 'load_rollouts(tmp + "/none")'),
    ("Data", "open a store that does not exist", 'ActivationStore(tmp + "/none")'),
    ("Data", "a store without hook points", 'ActivationStoreWriter(tmp + "/s2", [])'),
    ("Data", "an unsupported dtype", 'ActivationStoreWriter(tmp + "/s3", ["h"], dtype="int8")'),
    ("Data", "non-binary rewards", 'write_store_from_arrays(tmp + "/s4", {"h": [torch.zeros(2, 4)]}, [0.7])'),
    ("Data", "one reward per rollout missing", 'write_store_from_arrays(tmp + "/s5", {"h": [torch.zeros(2, 4)] * 2}, [1.0])'),
    ("Data", "a rollout with 0 states", 'write_store_from_arrays(tmp + "/s6", {"h": [torch.zeros(0, 4)]}, [1.0])'),
    ("Data", "NaN activations", 'write_store_from_arrays(tmp + "/s7", {"h": [torch.full((2, 4), float("nan"))]}, [1.0])'),
    ("Data", "widths that differ from the store's", 'write_store_from_arrays(tmp + "/s8", {"h": [torch.zeros(2, 4), torch.zeros(2, 5)]}, [1.0, 0.0])'),
    ("Data", "resuming a store with other hook points", 'ActivationStoreWriter(store.path, ["blocks.1.hook_resid_post"], model=store.model)'),
    ("Data", "resuming a store of another model", 'ActivationStoreWriter(store.path, store.hook_names, model="other-model")'),
    ("Data", "a hook the store does not hold", 'store.initial_states("blocks.5.hook_resid_post")'),
    ("Data", "rollout ids the store does not hold", 'store.index_of(["nope"])'),
    ("Data", "a task spec string instead of a Task", 'generate_rollouts(adapter, "arithmetic:1")'),
    ("Data", "strings instead of rollouts", 'build_store(adapter, ["1+1="], ["blocks.0.hook_resid_post"], tmp + "/s9")'),
    ("Data", "batch_size < 1", 'build_store(adapter, [Rollout("r", "t", "e", [5, 6], [7], "x", 1.0, "1")], ["hook_embed"], tmp + "/s10", batch_size=0)'),
    ("Data", "a store written by a newer reward_circuits (format_version 2)", "ActivationStore(newer_store)"),
    ("Data", "building a store into the folder of another task's store", 'build_store(adapter, [dataclasses.replace(r, task="other") for r in rollouts], ["blocks.0.hook_resid_post"], tmp + "/built")'),
    # ---- analysis
    ("Analysis", "hidden < 1", "ValueProbeConfig(hidden=0)"),
    ("Analysis", "gamma outside (0, 1]", "ValueProbeConfig(gamma=1.5)"),
    ("Analysis", "td_lambda outside [0, 1]", "ValueProbeConfig(td_lambda=2)"),
    ("Analysis", "unknown mode", 'ValueProbeConfig(mode="q")'),
    ("Analysis", "lr <= 0", "ValueProbeConfig(lr=0)"),
    ("Analysis", "negative weight decay", "ValueProbeConfig(weight_decay=-1)"),
    ("Analysis", "epochs < 1", "ValueProbeConfig(epochs=0)"),
    ("Analysis", "unknown activation", 'ValueProbeConfig(activation="swish")'),
    ("Analysis", "a non-integer seed", "ValueProbeConfig(seed=0.5)"),
    ("Analysis", "scoring before fitting", "ValueProbe().score(store)"),
    ("Analysis", "a hook the probe was not trained on", 'probe.probe_index("blocks.1.hook_mlp_out")'),
    ("Analysis", "rollout indices outside the store", "probe.score(store, [0, 999])"),
    ("Analysis", "duplicate rollout indices", "probe.score(store, [0, 0, 1])"),
    ("Analysis", "no rollout indices", "probe.score(store, [])"),
    ("Analysis", "AUC on rollouts of one reward only", "binary_auc([1, 1, 1], [0.1, 0.2, 0.3])"),
    ("Analysis", "a probe directory that holds no probe", "ValueProbe.load(tmp + \"/empty_dir\")"),
    ("Analysis", "a probe saved by a newer reward_circuits (format_version 2)", "ValueProbe.load(newer_probe)"),
    ("Analysis", "fitting on something that is not a store", 'ValueProbe().fit([1, 2], ["h"])'),
    ("Analysis", "NeuronSet indices outside the hook's width", 'NeuronSet("blocks.0.hook_resid_post", [40], d=32)'),
    ("Analysis", "duplicate NeuronSet indices", 'NeuronSet("blocks.0.hook_resid_post", [1, 1], d=32)'),
    ("Analysis", "one score per index missing", 'NeuronSet("blocks.0.hook_resid_post", [1, 2], d=32, scores=[0.5])'),
    ("Analysis", "more random dimensions than exist", 'NeuronSet.random("blocks.0.hook_resid_post", d=32, k=40, seed=0)'),
    ("Analysis", "a bootstrap of nothing", "bootstrap_ci([])"),
    ("Analysis", "unpaired samples in a paired test", "paired_bootstrap_diff([1, 0, 1], [1, 0])"),
    ("Analysis", "a verdict with expected_sign 0", "verdict(bootstrap_ci([0.1, 0.2]), expected_sign=0)"),
    # ---- interventions
    ("Interventions", "an unknown position scope", 'zero_ablate([0, 1], positions="answer")'),
    ("Interventions", "a position spec of the wrong type", "zero_ablate([0, 1], positions=3.5)"),
    ("Interventions", "negative neuron indices", "zero_ablate([-1, 2])"),
    ("Interventions", "duplicate neuron indices", "zero_ablate([2, 2])"),
    ("Interventions", "a NeuronSet's hook run at another hook point", 'adapter.forward(batch, fwd_hooks=[("blocks.1.hook_resid_post", zero_ablate(neurons))])'),
    ("Interventions", "a neuron index beyond the hook's width", 'adapter.forward(batch, fwd_hooks=[("blocks.0.hook_resid_post", zero_ablate([100]))])'),
    ("Interventions", "mean-ablation means of the wrong width", 'adapter.forward(batch, fwd_hooks=[("blocks.0.hook_resid_post", mean_ablate([0, 1], torch.zeros(7)))])'),
    ("Interventions", "a patch cache of another shape", 'adapter.forward(batch, fwd_hooks=[("blocks.0.hook_resid_post", patch_from({"blocks.0.hook_resid_post": torch.zeros(1, 1, 32)}))])'),
    ("Interventions", "something that is not a hook", 'as_fwd_hooks([42])'),
    ("Interventions", "an unknown ablation mode", 'ablation_interventions(neurons, mode="noise")'),
    ("Interventions", "mean ablation without means", 'ablation_interventions(neurons, mode="mean")'),
    ("Interventions", "no examples to evaluate", "generate_and_score(adapter, task, examples=[])"),
    # ---- pipeline
    ("Pipeline", "--limit too small", "RunConfig(limit=2)"),
    ("Pipeline", "an unknown stage", 'RunConfig(stages=("rollouts", "sae"))'),
    ("Pipeline", "no tasks", "RunConfig(tasks=())"),
    ("Pipeline", "negative layer numbers", "RunConfig(layers=(-1,))"),
    ("Pipeline", "test_fraction outside (0, 1)", "RunConfig(test_fraction=1.0)"),
    ("Pipeline", "eval_examples < 1", "RunConfig(eval_examples=0)"),
    ("Pipeline", "layers beyond the model", 'RunConfig(layers=(99,), tasks=("arithmetic:1",), limit=20, out=tmp + "/run", stages=("store",))'),
    ("Pipeline", "YFPO probe layers beyond the model",
     'run_yfpo(YFPOConfig(probe_layers=(1, 24), train_prompts=2, eval_prompts=2, relevance_prompts=2, out=tmp + "/yfpo"), '
     'progress=False, hf_model=hf, tokenizer=tok, task=task)'),
    ("Command line", "`reward-circuits run --limit 2`", 'cli(["run", "--limit", "2"])'),
    ("Command line", "`reward-circuits run --stages foo`", 'cli(["run", "--stages", "foo"])'),
    ("Command line", "`reward-circuits run --backend jax`", 'cli(["run", "--backend", "jax"])'),
    ("Command line", "`reward-circuits run --layers a,b`", 'cli(["run", "--layers", "a,b"])'),
    ("Command line", "`reward-circuits probe` on a missing store", 'cli(["probe", "--store", tmp + "/none", "--out", tmp + "/p"])'),
    ("Command line", "`reward-circuits probe` on the folder of the task stores", 'cli(["probe", "--store", tmp, "--out", tmp + "/p"])'),
    ("Command line", "`reward-circuits run --stages dopamine` with no value stage on disk", 'cli(["run", "--stages", "dopamine", "--out", tmp + "/fresh"])'),
    ("Command line", "`reward-circuits run` into a folder of an earlier run's other rollouts (another --primary-limit, --seed or task)", 'cli(["run", "--out", tmp + "/oldrun"])'),
    ("Command line", "`reward-circuits run --tasks` with a misspelt task", 'cli(["run", "--tasks", "arithmetc:1", "--out", tmp + "/fresh"])'),
    ("Command line", "`reward-circuits compare` with a mistyped run directory", 'cli(["compare", tmp + "/stor", tmp + "/store"])'),
]


class CommandFailed(Exception):
    """A command-line call that exited non-zero (its stderr is the message)."""


def setup(tmp: str) -> dict:
    import dataclasses

    import torch

    import reward_circuits as rc
    from reward_circuits.analysis import stats
    from reward_circuits.cli import main as cli_main
    from reward_circuits.interventions import ablation_interventions, as_fwd_hooks
    from reward_circuits.models.tiny import tiny_hf_model
    from reward_circuits.tasks import numeric_reward

    torch.manual_seed(0)
    hf, tok = tiny_hf_model(seed=0)
    adapter = rc.from_hf(hf, tok, "transformer_lens", name="tiny-llama-seed0")
    hooks = ["blocks.0.hook_resid_post"]
    g = torch.Generator().manual_seed(0)
    acts = {hooks[0]: [torch.randn(3, 32, generator=g) for _ in range(8)]}
    store = rc.write_store_from_arrays(Path(tmp) / "store", acts, [1.0, 0.0] * 4, model="tiny-llama-seed0")
    probe = rc.ValueProbe(epochs=1).fit(store, hooks)
    newer_store = Path(tmp) / "newer_store"  # artefacts whose format version is newer than this code's
    rc.write_store_from_arrays(newer_store, acts, [1.0, 0.0] * 4, model="tiny-llama-seed0")
    newer_probe = probe.save(Path(tmp) / "newer_probe")
    from reward_circuits.data.rollouts import Rollout, save_rollouts  # an earlier run's 2 rollouts of other prompts
    save_rollouts([Rollout(f"word_problems_0/q{i}/s0", "word_problems_0", f"q{i}", [1], [2], "2", 1.0, "2") for i in range(2)],
                  Path(tmp) / "oldrun" / "rollouts" / "word_problems_0")
    for meta in (newer_store / "manifest.json", newer_probe / "value_probe.json"):
        meta.write_text(json.dumps({**json.loads(meta.read_text()), "format_version": 2}))

    def cli(argv):
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = cli_main(argv)
            except SystemExit as e:  # argparse
                code = e.code
        if code:
            lines = [ln for ln in err.getvalue().strip().splitlines() if not ln.startswith(("usage:", " "))]
            raise CommandFailed(f"exit {code}: " + " ".join(lines))
        return code

    def run_config(**kw):  # RunConfig, and for a config that validates, the stage that reads it
        cfg = rc.RunConfig(**kw)
        if "layers" in kw and kw.get("stages"):
            rc.run(cfg, adapter=adapter)
        return cfg

    rollouts = rc.generate_rollouts(adapter, rc.get_task("arithmetic:1", n=2), rc.GenerationConfig(max_new_tokens=2, progress=False))
    rc.build_store(adapter, rollouts, hooks, Path(tmp) / "built", progress=False)
    from reward_circuits.studies.yfpo import YFPOConfig, run_yfpo

    ns = {name: getattr(rc, name) for name in rc.__all__}
    ns.update(YFPOConfig=YFPOConfig, run_yfpo=run_yfpo)
    ns.update(
        dataclasses=dataclasses, torch=torch, tmp=tmp, hf=hf, tok=tok, adapter=adapter, store=store, probe=probe,
        batch=adapter.tokenize(["1+1=", "2+3="]), task=rc.get_task("arithmetic:1", n=4),
        neurons=rc.NeuronSet(hooks[0], [1, 2, 3], d=32), numeric_reward=numeric_reward, cli=cli,
        newer_store=str(newer_store), newer_probe=str(newer_probe), rollouts=rollouts,
        bootstrap_ci=stats.bootstrap_ci, paired_bootstrap_diff=stats.paired_bootstrap_diff, verdict=stats.verdict,
        as_fwd_hooks=as_fwd_hooks, ablation_interventions=ablation_interventions, RunConfig=run_config,
    )
    return ns


def normalise(message: str, tmp: str) -> str:
    message = message.replace(os.path.realpath(tmp), "<tmp>").replace(tmp, "<tmp>")
    message = re.sub(r" at 0x[0-9a-f]+", "", message)
    return " ".join(message.split())


def collect(cases=CASES) -> tuple[list[tuple[str, str, str, str]], list[tuple[str, str, str]]]:
    """(rejected: (section, what, code, 'Type|message'), accepted: (section, what, code))."""
    import torch

    torch.set_num_threads(1)
    rejected, accepted = [], []
    with tempfile.TemporaryDirectory(prefix="rc_errors_") as tmp:
        (Path(tmp) / "empty_dir").mkdir()
        ns = setup(tmp)
        ns["tmp_dir"] = tmp
        for section, what, code in cases:
            try:
                with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
                    exec(code, dict(ns))  # noqa: S102 - the documented cases are our own code
            except Exception as e:  # noqa: BLE001 - recording what the API raises is the point
                kind = "exit code" if isinstance(e, CommandFailed) else type(e).__name__
                rejected.append((section, what, code, f"{kind}|{normalise(str(e), tmp)}"))
            else:
                accepted.append((section, what, code))
    return rejected, accepted


# a raw Python error leaking out of the library: it names neither the problem nor the fix
RAW_PYTHON_ERROR = re.compile(r"object is not (iterable|subscriptable|callable)|unsupported operand|has no attribute|"
                              r"index .* is out of bounds|takes \d+ positional argument")


def cell(text: str) -> str:
    return html.escape(text, quote=False).replace("|", "&#124;")


def code_cell(code: str) -> str:
    return "<code>" + cell(code) + "</code>"


def render(cases=CASES) -> str:
    rejected, accepted = collect(cases)
    out = [
        "# Rejected inputs",
        "",
        "Every bad input below was actually passed to the API by `docs/gen_errors.py` (on a tiny random",
        "model, a tiny store and probe; `tmp` is a scratch directory); the message is the one it raised.",
        "`tests/test_docs.py` regenerates this page and fails when it differs from the committed one, so",
        "it cannot drift from the code: after changing a message, run `PYTHONPATH=. python docs/gen_errors.py`.",
        "",
        f"{len(rejected)} inputs rejected, {len(accepted)} accepted without an error.",
        "",
    ]
    section = None
    for sec, what, code, msg in rejected:
        if sec != section:
            out += ["", f"## {sec}", "", "| Bad input | Call | Error |", "|---|---|---|"]
            section = sec
        kind, message = msg.split("|", 1)
        out.append(f"| {cell(what)} | {code_cell(code)} | **{kind}**: {cell(message)} |")
    raw = [(sec, what, code, msg.split("|", 1)[1]) for sec, what, code, msg in rejected if RAW_PYTHON_ERROR.search(msg)]
    out += ["", "## Messages that do not name the problem", ""]
    if raw:
        out += ["These are rejected, but by a raw Python error from deep inside, not by a message that names the",
                "problem and the fix:", "", "| Bad input | Call | Error |", "|---|---|---|"]
        out += [f"| {cell(what)} | {code_cell(code)} | {cell(message)} |" for _, what, code, message in raw]
    else:
        out.append("None.")
    out += ["", "## Accepted without an error", ""]
    if accepted:
        out += ["These bad inputs are *not* rejected yet (each is a gap to close):", "",
                "| Bad input | Call |", "|---|---|"]
        out += [f"| {cell(what)} | {code_cell(code)} |" for _, what, code in accepted]
    else:
        out.append("None: every bad input listed on this page is rejected.")
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if PAGE.read_text() != text:
            print(f"{PAGE} is stale: run `PYTHONPATH=. python docs/gen_errors.py`.", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(text)
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
