"""The main job and its stages: rollouts → store → value → interventions → dopamine → report.

- :mod:`.config`: :class:`RunConfig` (the CLI is generated from its fields).
- :mod:`.main_job`: the job alone (``main_job.run(cfg) -> RunResult``): it chains the stages, each returns a
  typed result the next takes, and writes only its artefacts.
- :mod:`.result`: :class:`RunResult` (header and each stage's sections; ``to_sections``, ``to_dict``).
- :mod:`.commands`: the ``run``, ``probe`` and ``architectures`` commands; :func:`run_and_report` is the job
  with its report (``summary.json``, ``report.html``), what ``reward-circuits run`` does and what the
  top-level ``reward_circuits.run`` is.
- :mod:`.value`, :mod:`.interventions`, :mod:`.dopamine`: the stages.
- :mod:`.architectures`: finished runs of different models side by side in relative depth.

:class:`Report`, :class:`Section` and :class:`Table` are :mod:`reward_circuits.report`'s, re-exported here.
"""

from ...report import Report, Section, Table
from .config import ALL_STAGES, DEFAULT_TASKS, RunConfig
from .commands import run_and_report
from .main_job import run
from .result import RunResult

# the shape every study shares (the main job has a section per stage: ``Result.to_sections()``)
Config, Result = RunConfig, RunResult
from .architectures import ArchitectureComparison, compare_architectures

__all__ = ["Config", "Result", "ArchitectureComparison", "compare_architectures", "ALL_STAGES", "DEFAULT_TASKS", "Report", "RunConfig", "RunResult", "run_and_report", "Section", "Table", "run"]
