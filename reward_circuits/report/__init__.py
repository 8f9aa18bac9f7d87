"""What every result renders to: report sections, figures, ``summary.json`` and ``report.html``.

The lowest layer above :mod:`reward_circuits.io` (it imports nothing else of the package), so every
analysis and every study can render its own section and figures:

- :mod:`.sections`: :class:`Section` (one analysis' block: summary, tables, figures, notes) and :class:`Table`.
- :mod:`.figures`: :func:`new_figure` / :func:`save_figure`, the one matplotlib convention every figure uses.
- :mod:`.render`: :func:`~reward_circuits.report.render.render_html`, the self-contained ``report.html`` page.
- :mod:`.report`: :class:`Report`, which keeps a run's sections and rewrites both files atomically after each one.

A section with a figure, written::

    report = Report("runs/demo", header={"model": "tiny"})
    fig, ax = new_figure()
    ax.plot([0, 1], [0, 1])
    report.add(Section("demo", "Demo", {"auc": 0.9}, [Table("t", ["a"], [[1]])], [save_figure(fig, "runs/demo/demo.png")]))
"""

from .figures import new_figure, save_figure
from .report import Report
from .sections import Section, Table

__all__ = ["Report", "Section", "Table", "new_figure", "save_figure"]
