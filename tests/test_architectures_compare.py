"""`reward-circuits architectures`: two runs of models of different depth, side by side in relative
depth (planted: the same per-layer numbers at layers 0 and 1 of a 2-layer and a 3-layer model)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

FIXTURE = Path(__file__).parent / "fixtures" / "refactor_equivalence_summary.json"


def _run_dir(tmp_path: Path, name: str, n_layers: int) -> Path:
    d = tmp_path / name
    d.mkdir()
    s = json.loads(FIXTURE.read_text())
    s["model"], s["n_layers"] = name, n_layers
    s["value"]["iou_across_tasks_by_layer"] = {"1": {"hook": "blocks.1.hook_resid_post", "n": 1, "iou": 1.0,
                                                     "random": 0.03, "matched_random": 0.2}}
    (d / "summary.json").write_text(json.dumps(s))
    return d


def test_layers_line_up_in_relative_depth_and_the_report_is_written(tmp_path):
    from reward_circuits.cli import main
    from reward_circuits.studies.run import compare_architectures

    a, b = _run_dir(tmp_path, "two-layer", 2), _run_dir(tmp_path, "three-layer", 3)
    result = compare_architectures([a, b])
    depth = {(r[0], r[1]): r[2] for r in result.rows()}
    assert depth[("two-layer", "1")] == 1.0 and depth[("three-layer", "1")] == 0.5
    assert depth[("two-layer", "0")] == depth[("three-layer", "0")] == 0.0
    summary = result.to_summary()
    assert summary["runs"][0]["by_layer"]["1"]["iou_across_tasks"]["iou"] == 1.0
    assert summary["runs"][1]["by_layer"]["0"]["auc"]["n"] > 0
    out = tmp_path / "out"
    assert main(["architectures", str(a), str(b), "--out", str(out)]) == 0
    written = json.loads((out / "summary.json").read_text())
    assert [r["model"] for r in written["architectures"]["runs"]] == ["two-layer", "three-layer"]
    assert (out / "architectures.png").stat().st_size > 1000 and "architectures.png" in (out / "report.html").read_text()


def test_a_directory_without_a_finished_run_is_refused(tmp_path):
    from reward_circuits.studies.run import compare_architectures

    with pytest.raises(FileNotFoundError, match="no summary.json"):
        compare_architectures([tmp_path, tmp_path])
    with pytest.raises(ValueError, match="at least two"):
        compare_architectures([tmp_path])
    shutil.rmtree(tmp_path)
