"""``reward-circuits sae-td --out DIR``: the SAE view of TD learning; options generated from :class:`SAETDConfig`.

    reward-circuits sae-td --out runs/sae_td                    # defaults: ~10 minutes on 2 cores
    reward-circuits sae-td --out runs/sae_td --tasks two_step --n-experiments 4 --n-episodes 6
    reward-circuits sae-td --out runs/sae_td_paper --paper-scale   # 100 experiments x 30 episodes
"""

from __future__ import annotations

import argparse

from ...configs import add_config_arguments, config_from_args
from .study import SAETDConfig


def register(sub) -> None:
    p = sub.add_parser("sae-td", help="in-context RL tasks, Q-learning TD errors, SAE latents that track them, interventions",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_config_arguments(p, SAETDConfig, exclude=("out",))
    p.add_argument("--out", required=True, help="report directory (summary.json, report.html, figures, saes/)")
    p.set_defaults(handler=_sae_td)


def _sae_td(args) -> int:
    import os

    import torch

    from ...analysis.claims import open_with_claims
    from ...report import Report
    from .study import run_sae_td

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1") or 1))
    config = config_from_args(SAETDConfig, args)
    report = None

    def write_report(partial) -> None:  # rewritten after each task, so a long run leaves its finished tasks
        nonlocal report
        report = report or Report(config.out, header={"model": partial.model, "command": "sae-td"})
        report.add(partial.to_section(config.out))
        open_with_claims(report)

    result = run_sae_td(config, on_task=write_report)
    for task in result.tasks:
        print(f"{task.task}: model reward {task.model_reward} vs random {task.random_reward}; "
              f"verdicts {task.verdicts()}")
    print(f"wrote {config.out}/summary.json and report.html ({result.wall_s:.0f} s)")
    return 0
