"""``reward-circuits irm``: the implicit-reward-model study (options generated from :class:`IrmConfig`)."""

from __future__ import annotations

from ..configs import add_config_arguments, config_from_args
from .config import IrmConfig


def register(sub) -> None:
    p = sub.add_parser("irm", help="Marks et al.: fine-tune on the VADER reward, divergent layers, SAE pairs (MMCS), "
                                   "linear implicit reward model (Kendall tau), reward-feature ablation")
    add_config_arguments(p, IrmConfig)
    p.set_defaults(handler=_irm)


def _irm(args) -> int:
    from .study import run_irm

    config = config_from_args(IrmConfig, args)
    result = run_irm(config)
    print(f"wrote {config.out}/summary.json and report.html (Kendall tau {result.kendall.tau:.3f}, "
          f"p={result.kendall.p_value:.3g})")
    return 0
