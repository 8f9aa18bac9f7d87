"""mkdocs hook: ``<!-- tutorial: tutorials/NAME.py -->`` in a page becomes the tutorial itself.

The jupytext percent script is converted to Markdown (its markdown cells as text, its code cells
as fenced Python), so the docs show exactly the code CI executes (tests/test_tutorials.py).
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARKER = re.compile(r"<!--\s*tutorial:\s*(\S+)\s*-->")


def tutorial_markdown(path: str | Path) -> str:
    import jupytext

    nb = jupytext.read(ROOT / path)
    nb.metadata = {}
    text = jupytext.writes(nb, fmt="md")
    text = re.sub(r"\A---\n.*?\n---\n", "", text, flags=re.DOTALL)  # no YAML header
    source = f"tutorials/{Path(path).name}"
    note = (f'!!! info "Source"\n    `{source}` (a jupytext percent script: `jupytext --to ipynb {source}` '
            f"makes it a notebook). Run it with `python {source}`; `RC_TUTORIAL_SMALL=1` runs the small "
            "size CI executes.\n\n")
    title = re.match(r"\s*(# [^\n]*\n)", text)  # the note goes under the tutorial's own title
    return title.group(1) + "\n" + note + text[title.end():] if title else note + text


def on_page_markdown(markdown: str, page, config, files) -> str:
    return MARKER.sub(lambda m: tutorial_markdown(m.group(1)), markdown)
