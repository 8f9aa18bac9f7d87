"""The report of one run: ``summary.json`` (machine-readable) and ``report.html`` (for a person).

Every analysis stage returns a :class:`~reward_circuits.report.Section`; :class:`Report` keeps them
in order and rewrites both files atomically after each stage, so a run stopped half-way still leaves
a valid report of what it finished.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..io import atomic_write_json, atomic_write_text, relative_paths
from .render import render_html
from .sections import Section


class Report:
    """The sections of one run, in the order added, written to ``out_dir/summary.json`` and ``out_dir/report.html``.

    ``header`` (model, config, timings, …) opens both files; ``summary.json`` maps each section's key to
    its ``summary``.
    """

    def __init__(self, out_dir: str | os.PathLike, header: dict | None = None):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.header = dict(header or {})
        self.sections: dict[str, Section] = {}

    @property
    def summary(self) -> dict:
        out = dict(self.header)
        for key, s in self.sections.items():
            out[key] = s.summary
        return out

    def add(self, item, first: bool = False) -> None:
        """Add a :class:`Section`, or a typed stage result (anything with ``to_sections()``), and rewrite both files.

        ``first=True`` puts the sections before every other (the claims a report opens with,
        computed once the stages have run)."""
        sections = item.to_sections() if hasattr(item, "to_sections") else [item]
        for section in sections:
            if not isinstance(section, Section):
                raise TypeError(f"Report.add takes a Section or a result with to_sections(), got {type(section).__name__}.")
            self.sections[section.key] = section
        if first:
            keys = [s.key for s in sections]
            self.sections = {**{k: self.sections[k] for k in keys}, **{k: v for k, v in self.sections.items() if k not in keys}}
        self.write()

    def write(self) -> None:
        """Both files; ``summary.json`` holds paths relative to ``out_dir`` (no machine's absolute paths)."""
        atomic_write_json(self.out_dir / "summary.json", relative_paths(self.summary, self.out_dir))
        atomic_write_text(self.out_dir / "report.html", self.render_html())

    def render_html(self) -> str:
        """``report.html``'s text: the header, then each section (figures embedded from ``out_dir``)."""
        return render_html(self.header, list(self.sections.values()), self.out_dir)
