"""``reward-circuits run`` (options generated from :class:`RunConfig`), ``probe`` and ``architectures``."""

from __future__ import annotations

import argparse

from ...configs import add_config_arguments, add_device_argument, config_from_args
from .config import RunConfig


def register(sub) -> None:
    r = sub.add_parser("run", help="the main job: rollouts, store, value probes, interventions, dopamine, report")
    add_config_arguments(r, RunConfig)
    r.add_argument("--task", dest="tasks", type=lambda s: tuple(x for x in s.split(",") if x), help=argparse.SUPPRESS)
    r.set_defaults(handler=_run)

    pr = sub.add_parser("probe", help="fit value probes on an existing store and write the value section",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    pr.add_argument("--store", required=True, help="activation store directory (from `run`)")
    pr.add_argument("--second-store", default=None, help="another task's store, for IoU across tasks")
    pr.add_argument("--out", required=True, help="report directory")
    pr.add_argument("--seed", type=int, default=0)
    pr.add_argument("--quick", action="store_true")
    add_device_argument(pr, "checked and accepted for a uniform command line; probes are fitted on the CPU")
    pr.set_defaults(handler=_probe)

    ar = sub.add_parser("architectures", help="finished runs of different models side by side, layers in relative depth",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ar.add_argument("runs", nargs="+", help="output directories of `reward-circuits run` (two or more models)")
    ar.add_argument("--out", required=True, help="report directory (summary.json section 'architectures', report.html)")
    add_device_argument(ar, "checked and accepted for a uniform command line; this command reads finished runs, no model")
    ar.set_defaults(handler=_architectures)


def _run(args) -> int:
    run_and_report(config_from_args(RunConfig, args))
    return 0


def run_and_report(cfg: RunConfig, adapter=None):
    """``reward-circuits run``: the main job with its report (``summary.json`` + ``report.html`` in ``cfg.out``,
    rewritten as each stage finishes) → :class:`~reward_circuits.studies.run.result.RunResult`.

    This is ``reward_circuits.run``. :func:`~reward_circuits.studies.run.main_job.run` is the job alone
    (artefacts, no report unless given one)."""
    from ...report import Report
    from .main_job import run

    report = Report(cfg.out)
    result = run(cfg, adapter=adapter, report=report)
    report.header.update(result.header)
    report.write()
    print(f"[done] {result.header['timings']['total_s']:.0f} s; report: {report.out_dir / 'report.html'}")
    return result


def _probe(args) -> int:
    from ...data.store import ActivationStore
    from ...report import Report
    from .value import ValueStageConfig, run_value_stage

    store = ActivationStore(args.store)
    second = ActivationStore(args.second_store) if args.second_store else None
    report = Report(args.out, header={"model": store.model, "store": args.store})
    report.add(run_value_stage(store, args.out, second_store=second, config=ValueStageConfig(seed=args.seed, quick=args.quick)))
    print(f"wrote {args.out}/summary.json and report.html")
    return 0


def _architectures(args) -> int:
    from .architectures import compare_architectures
    from ...report import Report

    result = compare_architectures(args.runs)
    report = Report(args.out, header={"runs": list(args.runs)})
    report.add(result.section(args.out))
    print(f"wrote {args.out}/summary.json and report.html")
    return 0
