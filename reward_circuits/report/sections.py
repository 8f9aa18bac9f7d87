"""What every analysis result renders: a report :class:`Section` with :class:`Table` s.

Plain value types: an analysis builds its own section without knowing how it is written;
:class:`~reward_circuits.report.Report` writes them to ``summary.json`` and ``report.html``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[Any]]


@dataclass
class Section:
    """One analysis' contribution: ``summary[key]`` in summary.json and a block in report.html.

    ``figures`` are PNG paths relative to the report directory (or absolute inside it).
    """

    key: str
    title: str
    summary: dict | list  # a list for a list-valued entry (summary.json's ``claims``)
    tables: list[Table] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
