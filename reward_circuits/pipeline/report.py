"""The main job's outputs: ``summary.json`` (machine-readable) and ``report.html`` (for a person).

Every analysis stage returns a :class:`Section`; :class:`Report` keeps them in order and rewrites
both files atomically after each stage, so a run stopped half-way still leaves a valid report of
what it finished.
"""

from __future__ import annotations

import base64
import html
import json
import os
from pathlib import Path
from typing import Any

from ..io import atomic_write_json, atomic_write_text
from ..sections import Section, Table  # noqa: F401  (re-exported: pipeline.report.Table)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if v is None:
        return "–"
    return str(v)


class Report:
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

    def add(self, item) -> None:
        """Add a :class:`Section`, or a typed stage result (anything with ``to_sections()``), and rewrite both files."""
        sections = item.to_sections() if hasattr(item, "to_sections") else [item]
        for section in sections:
            if not isinstance(section, Section):
                raise TypeError(f"Report.add takes a Section or a result with to_sections(), got {type(section).__name__}.")
            self.sections[section.key] = section
        self.write()

    def write(self) -> None:
        atomic_write_json(self.out_dir / "summary.json", self.summary)
        atomic_write_text(self.out_dir / "report.html", self.render_html())

    def _img(self, fig: str) -> str:
        p = Path(fig)
        p = p if p.is_absolute() else self.out_dir / p
        if not p.exists():
            return f"<p><em>missing figure {html.escape(str(fig))}</em></p>"
        data = base64.b64encode(p.read_bytes()).decode()
        return f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(p.name)}"><figcaption>{html.escape(p.name)}</figcaption></figure>'

    def render_html(self) -> str:
        parts = [
            "<!doctype html><html><head><meta charset='utf-8'><title>reward_circuits report</title>",
            "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
            "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
            "th{background:#f3f3f3}td.t{text-align:left}td:first-child,th:first-child{text-align:left}img{max-width:100%}"
            "figure{margin:1em 0}figcaption{color:#777;font-size:.8em}.note{background:#fffbe6;padding:.4em .8em;border-left:3px solid #e6c200}"
            "nav a{margin-right:1em}</style></head><body>",
            "<h1>reward_circuits report</h1>",
        ]
        if self.header:
            parts.append("<table>")
            for k, v in self.header.items():
                if not isinstance(v, (dict, list)):
                    parts.append(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_fmt(v))}</td></tr>")
            parts.append("</table>")
        parts.append("<nav>" + "".join(f"<a href='#{html.escape(k)}'>{html.escape(s.title)}</a>" for k, s in self.sections.items()) + "</nav>")
        for key, s in self.sections.items():
            parts.append(f"<h2 id='{html.escape(key)}'>{html.escape(s.title)}</h2>")
            for n in s.notes:
                parts.append(f"<p class='note'>{html.escape(n)}</p>")
            for t in s.tables:
                parts.append(f"<h3>{html.escape(t.title)}</h3><table><tr>")
                parts.append("".join(f"<th>{html.escape(str(c))}</th>" for c in t.columns) + "</tr>")
                for row in t.rows:
                    parts.append("<tr>" + "".join(
                        f"<td class='t'>{html.escape(_fmt(v))}</td>" if isinstance(v, str) else f"<td>{html.escape(_fmt(v))}</td>"
                        for v in row) + "</tr>")
                parts.append("</table>")
            for f in s.figures:
                parts.append(self._img(f))
            parts.append(f"<details><summary>summary.json › {html.escape(key)}</summary><pre>"
                         f"{html.escape(json.dumps(s.summary, indent=1, default=str)[:20000])}</pre></details>")
        parts.append("</body></html>")
        return "\n".join(parts)
