"""Every tutorial runs, end to end, at its small size (RC_TUTORIAL_SMALL=1), on the packaged model.

Each tutorial is a jupytext percent script (tutorials/NN_name.py); it is executed as a script in a
fresh interpreter, one torch thread, from a scratch directory. The small size exists only for CI:
its numbers mean nothing, the run proves the code a reader copies works.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TUTORIALS = sorted((ROOT / "tutorials").glob("[0-9][0-9]_*.py"))


def test_tutorials_exist():
    names = [t.stem for t in TUTORIALS]
    assert len(names) >= 3, names


@pytest.mark.parametrize("path", TUTORIALS, ids=[t.stem for t in TUTORIALS])
def test_tutorial_is_a_paired_percent_notebook(path):
    jupytext = pytest.importorskip("jupytext", reason="docs extra not installed: pip install -e '.[docs]'")
    nb = jupytext.read(path)
    kinds = [c.cell_type for c in nb.cells]
    assert kinds[0] == "markdown" and nb.cells[0].source.startswith("# "), "a tutorial opens with a markdown title"
    assert kinds.count("code") >= 3 and kinds.count("markdown") >= 3
    assert "py:percent" in str(nb.metadata.get("jupytext", {}).get("formats", "")), "pair it: formats: py:percent,ipynb"
    assert "RC_TUTORIAL_SMALL" in path.read_text(), "every tutorial needs the CI size knob"


@pytest.mark.parametrize("path", TUTORIALS, ids=[t.stem for t in TUTORIALS])
def test_tutorial_runs(path, tmp_path):
    env = {**os.environ, "RC_TUTORIAL_SMALL": "1", "RC_TUTORIAL_THREADS": "1", "OMP_NUM_THREADS": "1",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TQDM_DISABLE": "1",
           "MPLBACKEND": "Agg", "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop("RC_VALUE_NEURONS", None)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(path)], cwd=tmp_path, env=env, capture_output=True, text=True, check=False,
                          timeout=900)
    wall = time.perf_counter() - start
    assert proc.returncode == 0, f"{path.name} failed after {wall:.0f} s:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    assert proc.stdout.strip(), f"{path.name} printed nothing"
