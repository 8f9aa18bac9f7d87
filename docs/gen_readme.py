"""The README's measured figures, generated from the committed summaries (never typed by hand).

The README holds blocks between ``<!-- BEGIN gen_readme: NAME -->`` and ``<!-- END gen_readme: NAME -->``;
each is :data:`BLOCKS`'s template for NAME with its placeholders (docs/hooks.py's syntax) resolved
against ``docs/results/``, followed by a line naming the summaries (the docs pages also cite their commits).

    PYTHONPATH=. python docs/gen_readme.py           # rewrite the blocks in README.md
    PYTHONPATH=. python docs/gen_readme.py --check   # exit 1 if README.md's blocks are stale
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
README = HERE.parent / "README.md"
_spec = importlib.util.spec_from_file_location("docs_hooks_readme", HERE / "hooks.py")
hooks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(hooks)

MAIN, QUICK = "2026-12-06/main", "2026-12-06/quick"
sys.path.insert(0, str(HERE.parent))
from reward_circuits.studies.run.config import PROFILES  # noqa: E402  (the paper profile's computed sizes)

PAPER = PROFILES["paper"]


def _m(key: str, fmt: str = ".0f", run: str = MAIN, scale: float = 1.0) -> str:
    return f'{{{{ result("{run}", "{key}", "{fmt}", scale={scale}) }}}}'


BLOCKS = {
    "main-job-time": (
        f"The default main job (`docs/results/{MAIN}/summary.json`) took **{_m('wall_time_s')} s** inside the job "
        f"({_m('timings.process_cpu_s')} s of CPU time; one torch thread on this shared 2-core VM with other jobs "
        "running, so its wall time is not an idle machine's): rollouts "
        f"{_m('timings.rollouts_arithmetic_1_s')} s + {_m('timings.rollouts_word_problems_0_s')} s, stores "
        f"{_m('timings.store_arithmetic_1_s')} s + {_m('timings.store_word_problems_0_s')} s, value stage "
        f"{_m('timings.value_s')} s, interventions {_m('timings.interventions_s')} s, dopamine "
        f"{_m('timings.dopamine_s')} s; peak RSS {_m('peak_rss_mb.total_s')} MB (the stage meter's "
        "`peak_rss_mb`). Its headline decides: V(s₀) at the validation-chosen layer "
        f"{_m('value.best_layer', '')} has a held-out AUC of {_m('value.auc_by_layer_ci.{value.best_layer}', '.3f')} "
        f"on {_m('value.auc_by_layer_ci.{value.best_layer}.n', '')} prompts (`srs.value_probe_auc`: "
        f"{_m('claims.0.verdict', '')}), while a bag-of-tokens regression on the prompt reaches "
        f"{_m('value.surface_baseline_auc.bag_of_tokens', '.3f')} (`srs.value_probe_beats_surface`: {_m('claims.1.verdict', '')}), "
        "so the neuron claims read \"premise not met\" (the Claims section of its report). The smoke run "
        f"(`bash scripts/run.sh --quick`, `docs/results/{QUICK}/summary.json`: {_m('config.limit', '', QUICK)} examples "
        f"per task, {_m('config.max_new_tokens', '', QUICK)} new tokens, {_m('config.eval_examples', '', QUICK)} examples "
        f"per intervention pass) took {_m('wall_time_s', '.0f', QUICK)} s inside the job and "
        f"{_m('timings.process_cpu_s', '.0f', QUICK)} s of CPU; at that n its dopamine stage reports "
        f"`{_m('dopamine.status', '', QUICK)}`."
    ),
    "commands": (
        "Wall time inside each command's committed run (`docs/results/`), on this project's shared 2-core VM\n"
        "(one or two torch threads, other jobs running; per-stage times are in each `summary.json`):\n\n"
        "| command | what | wall time of the committed run |\n|---|---|---|\n"
        "| `reward-circuits sae-td --out runs/sae_td` | three in-context RL tasks, SAEs on 4 layers | "
        f"{_m('sae_td.wall_s', '.0f', '2026-12-06/sae_td')} s (Gemma 3 270M: {_m('sae_td.wall_s', '.0f', '2026-12-06/sae_td-gemma')} s); "
        f"at `--n-experiments 30` on Gemma 3 270M, the two-step task alone: {_m('sae_td.wall_s', '.0f', '2026-12-06/sae_td-30-gemma')} s, "
        f"grid and graph: {_m('sae_td.wall_s', '.0f', '2026-12-06/sae_td-30-gridgraph-gemma')} s; on Qwen2.5 Coder 0.5B, all three tasks: "
        f"{_m('sae_td.wall_s', '.0f', '2026-12-06/sae_td-30-qwen')} s (one thread) |\n"
        "| `reward-circuits irm --out runs/irm` | GRPO + LoRA fine-tune, SAE pairs on base and fine-tuned, the paper's IRM, "
        "40 matched ablation draws | after the fine-tune: SAE pairs "
        f"{_m('irm.seconds.SAE pairs', '.0f', '2026-12-06/irm')} s, IRM {_m('irm.seconds.implicit reward model', '.0f', '2026-12-06/irm')} s, "
        f"ablation {_m('irm.seconds.ablation', '.0f', '2026-12-06/irm')} s; Gemma 3 270M: SAE pairs {_m('irm.seconds.SAE pairs', '.0f', '2026-12-06/irm-gemma')} s, "
        f"IRM {_m('irm.seconds.implicit reward model', '.0f', '2026-12-06/irm-gemma')} s, ablation {_m('irm.seconds.ablation', '.0f', '2026-12-06/irm-gemma')} s "
        "(the fine-tunes' times: each run's README) |\n"
        "| `reward-circuits yfpo --out runs/yfpo` | 4 conditions × 3 seeds, LoRA DPO, 8 steps each | "
        f"{_m('yfpo.seconds', '.0f', '2026-12-06/yfpo')} s |\n"
        "| `reward-circuits yfpo --profile sized --out runs/yfpo-sized` | sized for a 0.05 difference vs plain DPO "
        "(`studies/yfpo/sizing.py`, steps chosen by a pilot); resumable, and two invocations into one `--out` share the "
        "work. The committed SmolLM2 run (`docs/results/2026-12-07/yfpo-sized-819/`): "
        f"{_m('yfpo.n_eval_prompts', '', '2026-12-07/yfpo-sized-819')} held-out prompts × every seed = "
        f"{_m('claims.0.n', '', '2026-12-07/yfpo-sized-819')} (seed, prompt) pairs per comparison, "
        f"{_m('yfpo.config.steps', '', '2026-12-07/yfpo-sized-819')} steps | two invocations at once (one thread each), "
        f"{_m('yfpo.seconds', '.0f', '2026-12-07/yfpo-sized-819')} s wall for the second; "
        f"{_m('yfpo.seconds_total', '.0f', '2026-12-07/yfpo-sized-819')} s summed over both (`yfpo.seconds_total`) |\n"
        "| `reward-circuits applications --out runs/applications` | scorer, best-of-N, routing, detection | "
        f"{_m('wall_time_s', '.0f', '2026-12-06/applications')} s |\n"
        "| `reward-circuits compare runs/a runs/b` | regression monitoring of two runs | not recorded (seconds) |\n"
        "| `reward-circuits calibrate --model M --n 50` | greedy accuracy per task level with Wilson intervals; each family's level "
        "in the 30–70% band (`docs/results/2026-12-06/calibrate-*`) | SmolLM2, 8 levels × 50: "
        f"{_m('cpu_time_s', '.0f', '2026-12-06/calibrate-smollm2')} s of CPU (1 thread; "
        f"{_m('wall_time_s', '.0f', '2026-12-06/calibrate-smollm2')} s wall at load {_m('load_average_1min', '.1f', '2026-12-06/calibrate-smollm2')}) |\n"
        "| `reward-circuits architectures runs/default runs/gemma --out runs/arch` | two models' runs side by side in relative depth | not recorded (seconds) |\n"
        "| `reward-circuits run --model gemma-3-270m`; `reward-circuits run --model qwen2.5-0.5b --tasks word_problems:1,arithmetic:2` "
        "| the main job on the other two architectures (Qwen at its calibrated levels) | "
        f"Gemma 3 270M {_m('wall_time_s', '.0f', '2026-12-06/gemma')} s, Qwen2.5 Coder 0.5B "
        f"{_m('wall_time_s', '.0f', '2026-12-06/qwen')} s (one thread each; `docs/results/2026-12-06/gemma/`, `qwen/`) |\n"
        "| `reward-circuits run --profile paper --out runs/paper` | sized from the claims' minimum detectable effects "
        f"(`reward_circuits/studies/run/sizing.py`; printed when the job starts): {PAPER['primary_limit']} rollouts of the "
        f"primary task (AUC intervals ~ ±0.03), {PAPER['eval_examples']} examples per ablation pass with "
        f"{PAPER['random_draws']} random draws (a 0.10 accuracy difference at 80% power after Holm), the layer at relative "
        "depth 0.25 ablated too. The committed run (`docs/results/2026-12-06/paper-smollm2/`) predates this sizing: 1,000 rollouts per task, "
        "200 examples per pass; its value stage ran again at the sized n (`docs/results/2026-12-07/paper-smollm2-value/`: "
        f"{_m('value.auc_by_layer_ci.{value.best_layer}.n', '', '2026-12-07/paper-smollm2-value')} held-out rollouts, no intervention stages). "
        "Gemma 3 270M and Qwen2.5 Coder 0.5B ran it at the largest n that fit one stop on one thread "
        "(`docs/results/2026-12-07/paper-gemma/`: "
        f"{_m('config.primary_limit', '', '2026-12-07/paper-gemma')} primary rollouts, "
        f"{_m('config.eval_examples', '', '2026-12-07/paper-gemma')} examples per pass; `paper-qwen/`: "
        f"{_m('config.eval_examples', '', '2026-12-07/paper-qwen')} examples per pass on its default job's rollouts) "
        f"| SmolLM2, end to end: the stage table in its README (one shared thread); interventions and dopamine "
        f"{_m('wall_time_s', '.0f', '2026-12-06/paper-smollm2')} s of it; the sized value run "
        f"{_m('wall_time_s', '.0f', '2026-12-07/paper-smollm2-value')} s (rollouts and value stage). Gemma 3 270M "
        f"{_m('wall_time_s', '.0f', '2026-12-07/paper-gemma')} s end to end; Qwen2.5 Coder 0.5B "
        f"{_m('wall_time_s', '.0f', '2026-12-07/paper-qwen')} s for the value, intervention and dopamine stages (one thread each) |\n"
        "| `python -m bench` | every benchmark, one table of ratios (`bench/README.md`) | see `bench/README.md` |"
    ),
    "default-accuracy": (
        f"Default tasks: `{_m('config.tasks.0', '')}` first ({_m('config.primary_limit', '')} seeded examples; its held-out "
        f"{_m('config.test_fraction', '.0%')} decide the headline) and `{_m('config.tasks.1', '')}` "
        f"({_m('config.limit', '')} examples), {_m('config.max_new_tokens', '')} new tokens; the default model answers "
        f"{_m('rollouts.accuracy.{config.tasks.0}', '.1%')} and {_m('rollouts.accuracy.{config.tasks.1}', '.1%')} of\n"
        "them correctly, so rewards carry information."
    ),
}
BLOCK = re.compile(r"(<!-- BEGIN gen_readme: ([\w-]+) -->\n)(.*?)(<!-- END gen_readme: \2 -->)", re.DOTALL)


def render_block(name: str) -> str:
    text = hooks.resolve_results(BLOCKS[name], f"README.md ({name})", cite=False)
    page = hooks.Page("README.md", BLOCKS[name])
    hooks.PLACEHOLDER.sub(lambda m: page.resolve(m.group(1)), BLOCKS[name])  # which summaries, at which commits
    # paths only: a commit hash here would go stale whenever a merge re-commits a summary
    sources = ", ".join(f"`docs/results/{run}/summary.json`" for run in sorted(page.sources))
    return f"{text}\n\n<sub>Generated by `docs/gen_readme.py` from {sources}.</sub>\n"


def render(readme: str) -> str:
    """README text with every block regenerated; a block named in the README but not in BLOCKS is an error."""
    def sub(m: re.Match) -> str:
        if m.group(2) not in BLOCKS:
            raise KeyError(f"README.md has a gen_readme block {m.group(2)!r}; docs/gen_readme.py knows {sorted(BLOCKS)}")
        return m.group(1) + render_block(m.group(2)) + m.group(4)
    return BLOCK.sub(sub, readme)


def main(argv: list[str]) -> int:
    old = README.read_text()
    new = render(old)
    missing = [n for n in BLOCKS if f"<!-- BEGIN gen_readme: {n} -->" not in old]
    if "--check" in argv:
        stale = new != old or missing
        print(f"README.md is stale: run `PYTHONPATH=. python docs/gen_readme.py` (missing blocks: {missing})"
              if stale else "README.md's generated blocks are current")
        return int(bool(stale))
    README.write_text(new)
    print(f"wrote {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
