"""The main job and its stages: rollouts → store → value → interventions → dopamine → report.

- :mod:`.config`: :class:`RunConfig` (the CLI is generated from its fields).
- :mod:`.main_job`: :func:`run`, which chains the stages; each returns a typed result the next takes.
- :mod:`.value`, :mod:`.interventions`, :mod:`.dopamine`: the stages.
- :mod:`.architectures`: finished runs of different models side by side in relative depth.

:class:`Report`, :class:`Section` and :class:`Table` are :mod:`reward_circuits.report`'s, re-exported here.
"""

from ...report import Report, Section, Table
from .config import ALL_STAGES, DEFAULT_TASKS, RunConfig
from .main_job import run
from .architectures import ArchitectureComparison, compare_architectures

__all__ = ["ArchitectureComparison", "compare_architectures", "ALL_STAGES", "DEFAULT_TASKS", "Report", "RunConfig", "Section", "Table", "run"]
