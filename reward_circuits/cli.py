"""``reward-circuits``: the command line.

    reward-circuits run                      # the main job on the packaged default model
    reward-circuits run --limit 40 --quick   # a smoke run
    reward-circuits probe --store runs/default/store/arithmetic_1 --out runs/probe
"""

from __future__ import annotations

import argparse
import os
import sys


def _csv(s: str) -> tuple[str, ...]:
    return tuple(x for x in s.split(",") if x)


def _ints(s: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in s.split(",") if x)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated layer numbers, got {s!r}")


def build_parser() -> argparse.ArgumentParser:
    from .pipeline.main_job import ALL_STAGES, DEFAULT_TASKS, RunConfig

    d = RunConfig()
    p = argparse.ArgumentParser(prog="reward-circuits", description="Find, measure and use the reward subsystem of a language model.")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="the main job: rollouts, store, value probes, interventions, dopamine, report",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    r.add_argument("--model", default=d.model, help="'default' (packaged SmolLM2-135M-Instruct, offline), a local HF directory, or a hub id")
    r.add_argument("--backend", default=d.backend, choices=["transformer_lens", "nnsight"])
    r.add_argument("--task", dest="tasks", type=_csv, default=DEFAULT_TASKS,
                   help="comma-separated task specs: arithmetic[:1-4], word_problems[:0-3], multiple_choice, gsm8k, math500, arc, mmlu_stem, or a local .jsonl/.parquet")
    r.add_argument("--limit", type=int, default=d.limit, help="examples per task")
    r.add_argument("--out", default=d.out, help="report directory")
    r.add_argument("--device", default=d.device)
    r.add_argument("--seed", type=int, default=d.seed)
    r.add_argument("--layers", type=_ints, default=None, help="layers to store and probe (default: every 3rd and the last)")
    r.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens)
    r.add_argument("--batch-size", type=int, default=d.batch_size)
    r.add_argument("--eval-examples", type=int, default=d.eval_examples, help="examples per generation pass of the intervention studies")
    r.add_argument("--ablation-layers", type=int, default=d.ablation_layers)
    r.add_argument("--random-draws", type=int, default=d.random_draws)
    r.add_argument("--stages", type=_csv, default=ALL_STAGES, help=f"comma-separated subset of {','.join(ALL_STAGES)}")
    r.add_argument("--quick", action="store_true", help="fewer epochs and variants (smoke runs)")

    pr = sub.add_parser("probe", help="fit value probes on an existing store and write the value section",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    pr.add_argument("--store", required=True, help="activation store directory (from `run`)")
    pr.add_argument("--second-store", default=None, help="another task's store, for IoU across tasks")
    pr.add_argument("--out", required=True, help="report directory")
    pr.add_argument("--seed", type=int, default=0)
    pr.add_argument("--quick", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    import warnings

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    try:
        if args.command == "run":
            from .pipeline.main_job import RunConfig, run

            cfg = RunConfig(model=args.model, backend=args.backend, tasks=args.tasks, limit=args.limit, out=args.out,
                            device=args.device, seed=args.seed, layers=args.layers, max_new_tokens=args.max_new_tokens,
                            batch_size=args.batch_size, eval_examples=args.eval_examples,
                            ablation_layers=args.ablation_layers, random_draws=args.random_draws,
                            stages=args.stages, quick=args.quick)
            run(cfg)
        elif args.command == "probe":
            from .pipeline.report import Report
            from .data.store import ActivationStore
            from .pipeline.value import run_value_stage

            store = ActivationStore(args.store)
            second = ActivationStore(args.second_store) if args.second_store else None
            report = Report(args.out, header={"model": store.model, "store": args.store})
            report.add(run_value_stage(store, args.out, second_store=second, seed=args.seed, quick=args.quick))
            print(f"wrote {args.out}/summary.json and report.html")
    except (ValueError, FileNotFoundError, KeyError, RuntimeError) as e:
        print(f"reward-circuits: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
