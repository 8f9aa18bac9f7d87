"""report.html as a person sees it: rendered in headless Chromium (scripts/check_report.py), with a
screenshot, and no missing image, empty table or console error.

The report comes from the main job on the tiny model (as in test_pipeline.py), so every section and
figure of a real run is present. Skips, saying why, when Chromium is not installed (.ci/run installs
it). Set RC_REPORT_SCREENSHOT=path.png to keep the screenshot.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

import pytest

import reward_circuits.studies.run.main_job as pipeline
from reward_circuits.studies.run import RunConfig, run_and_report as run
from reward_circuits.report import Report, Section, Table
from reward_circuits.tasks import Example, Task

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("check_report", ROOT / "scripts" / "check_report.py")
check_report = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("check_report", check_report)  # dataclasses look their module up there
_spec.loader.exec_module(check_report)

needs_chromium = pytest.mark.skipif(
    check_report.find_chromium() is None,
    reason="chromium is not installed (Debian: apt-get install -y chromium; .ci/run installs it), so report.html "
           "cannot be rendered")


def _parity_task(spec: str, n: int, seed: int) -> Task:
    examples = [Example(f"{spec}-{seed}-{i}", f"Say something {i}.", "0") for i in range(n)]
    return Task(spec.replace(":", "_"), examples, lambda resp, ex: float(len(resp) % 2 == 0), max_new_tokens=8)


@pytest.fixture(scope="module")
def tiny_report(tl_adapter, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "run"
    mp = pytest.MonkeyPatch()
    mp.setattr(pipeline, "get_task", _parity_task)
    try:
        run(RunConfig(tasks=("a", "b"), limit=40, out=str(out), max_new_tokens=8, batch_size=16, eval_examples=6,
                      ablation_layers=1, random_draws=2, quick=True), adapter=tl_adapter)
    finally:
        mp.undo()
    return out / "report.html"


@needs_chromium
def test_main_job_report_renders_cleanly(tiny_report, tmp_path):
    shot = tmp_path / "report.png"
    r = check_report.render_report(tiny_report, shot)
    if os.environ.get("RC_REPORT_SCREENSHOT"):
        shutil.copy(shot, os.environ["RC_REPORT_SCREENSHOT"])
    assert not r.problems, r.problems
    facts = r.facts
    assert len(facts["images"]) >= 7 and all(i["width"] > 100 and i["height"] > 100 for i in facts["images"])
    assert len(facts["tables"]) >= 10 and all(t["visible"] for t in facts["tables"])
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 50_000
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert width >= 1000 and height >= facts["height"] * 0.95  # the whole page, not just the viewport


def _report_with(tmp_path, *, figures=(), tables=(), extra_html=""):
    rep = Report(tmp_path, header={"model": "m"})
    rep.add(Section("s", "Section", {"x": 1}, tables=list(tables) or [Table("ok", ["a"], [[1]])], figures=list(figures)))
    if extra_html:
        path = tmp_path / "report.html"
        path.write_text(path.read_text().replace("</body>", extra_html + "</body>"))
    return tmp_path / "report.html"


@needs_chromium
def test_a_figure_that_does_not_decode_is_caught(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 10)
    r = check_report.render_report(_report_with(tmp_path, figures=["broken.png"]), tmp_path / "s.png")
    assert any("did not load or decode" in p for p in r.problems), r.problems


@needs_chromium
def test_a_missing_figure_is_caught(tmp_path):
    r = check_report.render_report(_report_with(tmp_path, figures=["nowhere.png"]), tmp_path / "s.png")
    assert any("missing figure" in p for p in r.problems), r.problems


@needs_chromium
def test_an_empty_table_is_caught(tmp_path):
    r = check_report.render_report(_report_with(tmp_path, tables=[Table("Nothing here", ["a", "b"], [])]), tmp_path / "s.png")
    assert any("'Nothing here' is empty" in p for p in r.problems), r.problems


@needs_chromium
def test_a_console_error_is_caught(tmp_path):
    html = _report_with(tmp_path, extra_html="<script>console.error('boom from the page')</script>")
    r = check_report.render_report(html, tmp_path / "s.png")
    assert any("boom from the page" in p for p in r.problems), r.problems


@needs_chromium
def test_a_clean_handmade_report_has_no_problems(tmp_path):
    r = check_report.render_report(_report_with(tmp_path), tmp_path / "s.png")
    assert r.problems == [] and len(r.facts["tables"]) == 2
