"""The main job's typed result: what :func:`~reward_circuits.studies.run.main_job.run` returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ...report import Section


@dataclass
class RunResult:
    """One main-job run: its header (model, config, timings) and every stage's sections, in stage order.

    Stages not run this time hold the sections an earlier run into the same directory wrote
    (``sections.json``). ``to_sections()`` is what a :class:`~reward_circuits.report.Report` adds;
    ``to_dict()`` is ``summary.json``'s content (header, then each section's summary by key).
    """

    out: Path
    header: dict = field(default_factory=dict)
    stages: dict[str, list[Section]] = field(default_factory=dict)

    def to_sections(self) -> list[Section]:
        return [s for sections in self.stages.values() for s in sections]

    def section(self, key: str) -> Section:
        """The section ``key`` (``"rollouts"``, ``"value"``, ``"interventions"``, ``"dopamine"``, ...)."""
        for s in self.to_sections():
            if s.key == key:
                return s
        raise KeyError(f"no section {key!r} in this run: it has {[s.key for s in self.to_sections()]}.")

    def to_dict(self) -> dict:
        out = dict(self.header)
        out.update({s.key: s.summary for s in self.to_sections()})
        return out

    @property
    def summary(self) -> dict:
        """``summary.json``'s content (as :meth:`to_dict`)."""
        return self.to_dict()

    def __repr__(self) -> str:
        keys = ", ".join(s.key for s in self.to_sections())
        return f"RunResult(model={self.header.get('model')!r}, out={str(self.out)!r}, sections=[{keys}])"
