"""``reward-circuits yfpo --out DIR``: options generated from :class:`~.config.YFPOConfig`."""

from __future__ import annotations

import time


def register(sub) -> None:
    from ...configs import add_config_arguments
    from .config import YFPOConfig

    p = sub.add_parser("yfpo", help="DPO vs DPO + neuron reward (value / AttnLRP / random neurons) with LoRA; writes the yfpo section")
    add_config_arguments(p, YFPOConfig)
    p.add_argument("--quiet", dest="progress", action="store_false", help="no progress bars (as --no-progress)")
    p.set_defaults(handler=_yfpo)


def _yfpo(args) -> int:
    from ...configs import config_from_args
    from ...analysis.claims import open_with_claims
    from ...report import Report
    from .config import YFPOConfig
    from .experiment import run_yfpo

    cfg = config_from_args(YFPOConfig, args)
    t0 = time.perf_counter()
    result = run_yfpo(cfg)
    report = Report(cfg.out, header={"model": result.model, "command": "yfpo"})
    report.add(result.to_section(cfg.out))
    open_with_claims(report)
    print(f"wrote {cfg.out}/summary.json and report.html in {time.perf_counter() - t0:.0f} s")
    for s in result.summaries():
        extra = "" if s.vs_dpo is None else f"  vs DPO {s.vs_dpo.estimate:+.3f} [{s.vs_dpo.low:+.3f}, {s.vs_dpo.high:+.3f}] ({s.verdict_vs_dpo})"
        print(f"  {s.condition:8s} accuracy {s.accuracy}  vs base {s.vs_base.estimate:+.3f}{extra}")
    return 0
