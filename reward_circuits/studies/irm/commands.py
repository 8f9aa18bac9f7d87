"""``reward-circuits irm``: the implicit-reward-model study (options generated from :class:`IrmConfig`).

The command runs the study (:func:`~reward_circuits.studies.irm.study.run_irm` → :class:`~reward_circuits.studies.irm.study.IrmResult`)
and assembles the report from the result here: :func:`write_irm_report`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...configs import add_config_arguments, config_from_args
from ...report import Report
from .config import IrmConfig

if TYPE_CHECKING:
    from .study import IrmResult


def register(sub) -> None:
    p = sub.add_parser("irm", help="Marks et al.: fine-tune on the VADER reward, divergent layers, SAE pairs (MMCS), "
                                   "linear implicit reward model (Kendall tau), reward-feature ablation")
    add_config_arguments(p, IrmConfig)
    p.set_defaults(handler=_irm)


def write_irm_report(result: IrmResult) -> Report:
    """The ``irm`` section of ``result.config.out``'s summary.json and report.html."""
    out = result.config.out
    from dataclasses import asdict

    # the validated config (lr, beta, steps, fine-tune seed, a given --finetuned model): what the run was
    report = Report(out, header={"model": result.config.model, "command": "irm", "config": asdict(result.config)})
    report.add(result.to_section(out))
    from ...analysis.claims import open_with_claims  # imported on use: the CLI starts light

    open_with_claims(report)
    return report


def _irm(args) -> int:
    from .study import run_irm

    config = config_from_args(IrmConfig, args)
    result = run_irm(config)
    write_irm_report(result)
    print(f"wrote {config.out}/summary.json and report.html (Kendall tau {result.kendall.tau:.3f}, "
          f"p={result.kendall.p_value:.3g})")
    return 0
