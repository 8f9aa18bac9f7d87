"""``reward-circuits calibrate``: options generated from :class:`CalibrateConfig`."""

from __future__ import annotations

import json
from pathlib import Path

from ...configs import add_config_arguments, config_from_args
from ...io import atomic_write_text
from ...report import Report
from .config import CalibrateConfig
from .study import CalibrationResult, run_calibration


def register(sub) -> None:
    c = sub.add_parser("calibrate", help="a model's greedy accuracy on every task level, with binomial intervals, "
                                         "and which levels land in the 30-70%% band")
    add_config_arguments(c, CalibrateConfig)
    c.set_defaults(handler=_calibrate)


def write_calibration_report(cfg: CalibrateConfig, adapter=None) -> CalibrationResult:
    """:func:`run_calibration`, then its ``calibrate`` section into ``cfg.out``'s summary.json and
    report.html, and every graded answer into answers.jsonl, rewritten after every level (a stopped run
    keeps the levels it finished)."""
    report = Report(cfg.out, header={"backend": cfg.backend, "n_per_level": cfg.n, "seed": cfg.seed,
                                     "max_new_tokens": cfg.max_new_tokens, "levels": cfg.specs()})

    def write(result: CalibrationResult, done: bool = False) -> None:
        report.header.update(model=result.model, complete=done, wall_time_s=result.timings["wall_s"],
                             load_model_s=result.timings.get("load_model_s"))
        names = {"cpu_s": "cpu_time_s", "torch_threads": "torch_threads", "load_average_1min": "load_average_1min"}
        report.header.update({names[k]: result.timings[k] for k in names if k in result.timings})
        report.add(result.to_section(cfg.out))
        atomic_write_text(Path(cfg.out) / "answers.jsonl", "".join(json.dumps(a) + "\n" for a in result.answers()))

    result = run_calibration(cfg, adapter, on_level=write)
    write(result, done=True)
    return result


def _calibrate(args) -> int:
    cfg = config_from_args(CalibrateConfig, args)
    result = write_calibration_report(cfg)
    for family, level in result.in_band().items():
        print(f"[calibrate] {family}: {level or 'no level'} in the {cfg.band[0]:.0%}-{cfg.band[1]:.0%} band")
    print(f"wrote {cfg.out}/summary.json and report.html ({result.timings['wall_s']:.0f} s)")
    return 0
