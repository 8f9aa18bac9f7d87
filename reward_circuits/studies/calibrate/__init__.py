"""``reward-circuits calibrate``: a model's accuracy on every task level, with binomial intervals, and
which levels land in the band where rewards carry information (30-70% by default).

    from reward_circuits.studies.calibrate import CalibrateConfig, run_calibration
    result = run_calibration(CalibrateConfig(model="default", levels=("arithmetic",), n=50))
    result.in_band()          # {"arithmetic": "arithmetic:2", ...}
"""

from .config import CalibrateConfig
from .study import CalibrationResult, LevelAccuracy, run_calibration

# the shape every study shares: ``Config`` → ``run(config) -> Result`` → ``Result.to_section(out)``
Config, Result, run = CalibrateConfig, CalibrationResult, run_calibration

__all__ = ["Config", "Result", "run", "CalibrateConfig", "CalibrationResult", "LevelAccuracy", "run_calibration"]
