"""``report.html``: a header table, then one block per :class:`~reward_circuits.report.Section`.

A single self-contained page: the stylesheet is inline and every figure is embedded as a base64 PNG,
so the file travels alone.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any, Iterable, Mapping

from .sections import Section

STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
    "th{background:#f3f3f3}td.t{text-align:left}td:first-child,th:first-child{text-align:left}img{max-width:100%}"
    "figure{margin:1em 0}figcaption{color:#777;font-size:.8em}.note{background:#fffbe6;padding:.4em .8em;border-left:3px solid #e6c200}"
    "nav a{margin-right:1em}"
)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if v is None:
        return "–"
    return str(v)


def _img(fig: str, out_dir: Path) -> str:
    p = Path(fig)
    p = p if p.is_absolute() else out_dir / p
    if not p.exists():
        return f"<p><em>missing figure {html.escape(str(fig))}</em></p>"
    data = base64.b64encode(p.read_bytes()).decode()
    return f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(p.name)}"><figcaption>{html.escape(p.name)}</figcaption></figure>'


def render_html(header: Mapping[str, Any], sections: Iterable[Section], out_dir: str | Path) -> str:
    """The page's text: ``header``'s scalar entries as a table, a nav, then each section's notes,
    tables, figures (paths relative to ``out_dir`` or absolute) and its ``summary.json`` entry."""
    sections = list(sections)
    out_dir = Path(out_dir)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>reward_circuits report</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>reward_circuits report</h1>",
    ]
    if header:
        parts.append("<table>")
        for k, v in header.items():
            if not isinstance(v, (dict, list)):
                parts.append(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_fmt(v))}</td></tr>")
        parts.append("</table>")
    parts.append("<nav>" + "".join(f"<a href='#{html.escape(s.key)}'>{html.escape(s.title)}</a>" for s in sections) + "</nav>")
    for s in sections:
        parts.append(f"<h2 id='{html.escape(s.key)}'>{html.escape(s.title)}</h2>")
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
            parts.append(_img(f, out_dir))
        parts.append(f"<details><summary>summary.json › {html.escape(s.key)}</summary><pre>"
                     f"{html.escape(json.dumps(s.summary, indent=1, default=str)[:20000])}</pre></details>")
    parts.append("</body></html>")
    return "\n".join(parts)
