"""The one matplotlib convention every figure of the package uses.

Figures are ``matplotlib.figure.Figure`` objects on an Agg canvas (no global backend switch, no
pyplot state, safe in notebooks and threads), saved atomically as PNG at one DPI.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..io import atomic_path

DPI = 110


def new_figure(width: float = 6.5, height: float = 4.0, nrows: int = 1, ncols: int = 1):
    """``(fig, axes)``: a Figure on the Agg canvas and its axes (one ``Axes`` when 1×1, else an array)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols)
    return fig, axes


def save_figure(fig, path: str | os.PathLike) -> str:
    """Write ``fig`` to ``path`` (PNG, atomically) and return the path's file name."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")
    return path.name
