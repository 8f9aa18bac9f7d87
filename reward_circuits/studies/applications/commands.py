"""``reward-circuits applications`` and ``reward-circuits compare``: options generated from
:class:`ApplicationsConfig` and :class:`CompareConfig`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ...configs import add_config_arguments, add_device_argument, config_from_args
from ...report import Report
from .config import ApplicationsConfig
from .monitoring import CompareConfig

if TYPE_CHECKING:
    from ...models import ModelAdapter
    from .study import ApplicationsResult


def register(sub) -> None:
    a = sub.add_parser("applications", help="the value signal as calibrated confidence, best-of-N decoder, router, error "
                                            "detector and data curator, with accuracy-vs-compute curves")
    add_config_arguments(a, ApplicationsConfig)
    a.set_defaults(handler=_applications)

    c = sub.add_parser("compare", help="regression monitoring of two model versions (run directories or models); exits 1 on a regression")
    c.add_argument("a", help="version A: a run directory (`reward-circuits run` / `applications`) or a model name")
    c.add_argument("b", help="version B: a run directory or a model name")
    add_config_arguments(c, CompareConfig)
    c.add_argument("--fit-task", default="arithmetic:1", help="task on which a model given by name is probed")
    c.add_argument("--fit-prompts", type=int, default=48, help="prompts on which a model given by name is probed")
    c.add_argument("--backend", default="nnsight", choices=["nnsight", "transformer_lens"], help="backend for models given by name")
    add_device_argument(c, "torch device for models given by name: cpu, cuda, cuda:N")
    c.set_defaults(handler=_compare)


def write_applications_report(cfg: ApplicationsConfig, adapter: ModelAdapter | None = None, task=None,
                              train_task=None) -> ApplicationsResult:
    """:func:`~reward_circuits.studies.applications.study.run_applications`, then its ``applications`` section
    into ``cfg.out``'s summary.json and report.html (the command's report, assembled here)."""
    from .study import run_applications

    result = run_applications(cfg, adapter, task, train_task)
    report = Report(cfg.out, header={"model": adapter.name if adapter else cfg.model, "task": cfg.task,
                                     "wall_time_s": result.timings["total_s"]})
    report.add(result.to_section(cfg.out))
    from ...analysis.claims import open_with_claims  # imported on use: the CLI starts light

    open_with_claims(report)
    return result


def _applications(args) -> int:
    cfg = config_from_args(ApplicationsConfig, args)
    result = write_applications_report(cfg)
    bon = result.best_of_n
    n = bon.n_samples
    print(f"[applications] greedy {result.accuracy_greedy:.3f}; best-of-{n}: value {bon.at('value', n).accuracy}, "
          f"majority {bon.at('majority', n).accuracy}, random {bon.at('random', n).accuracy}")
    print(f"wrote {cfg.out}/summary.json and report.html ({result.timings['total_s']:.0f} s)")
    return 0


def _snapshot(spec: str, out: Path, args, side: str):
    from .monitoring import ValueSnapshot

    if Path(spec).is_dir():
        return ValueSnapshot.from_dir(spec)
    _refuse_mistyped_run_dir(spec)
    from .study import model_snapshot

    cfg = ApplicationsConfig(model=spec, task=args.fit_task, n_prompts=args.fit_prompts, backend=args.backend,
                             out=str(out / f"version_{side}"), seed=args.seed, device=args.device)
    return model_snapshot(spec, cfg)


def _refuse_mistyped_run_dir(spec: str) -> None:
    """``runs/defualt``: a path whose folder exists but not the run itself is a typo, not a model name
    (a hub id ``org/name`` has no local ``org`` folder)."""
    from ...models.loading import is_default, is_gemma, is_qwen

    parent = Path(spec).expanduser().parent
    if is_default(spec) or is_gemma(spec) or is_qwen(spec) or str(parent) in ("", ".") or not parent.is_dir():
        return
    runs = sorted(d.name for d in parent.iterdir() if (d / "summary.json").is_file())
    raise FileNotFoundError(f"{spec}: no such run directory. Run directories in {parent}/: "
                       f"{', '.join(runs) if runs else 'none'}. (A model to probe is given by name: 'default', "
                       "'gemma-3-270m', 'qwen2.5-0.5b', a local HF directory or a hub id.)")


def _compare(args) -> int:
    from .monitoring import compare_snapshots

    cfg = config_from_args(CompareConfig, args)
    out = Path(cfg.out) if cfg.out else Path("runs") / "compare"
    a, b = _snapshot(args.a, out, args, "a"), _snapshot(args.b, out, args, "b")
    result = compare_snapshots(a, b, cfg)
    if cfg.out:
        report = Report(cfg.out, header={"a": args.a, "b": args.b})
        report.add(result.section(cfg.out))
    print(result.line)
    return result.exit_code()
