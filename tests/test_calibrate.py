"""``reward-circuits calibrate``: accuracy per task level with binomial intervals, and the band."""

from __future__ import annotations

import json

import pytest

from reward_circuits.analysis import binomial_interval
from reward_circuits.studies.calibrate import CalibrateConfig, run_calibration
from reward_circuits.studies.calibrate import study as calibrate_study
from reward_circuits.data import Rollout

pytestmark = pytest.mark.usefixtures("one_thread")


def test_binomial_interval_is_scipys_wilson_and_clopper_pearson():
    w, cp = binomial_interval(20, 50), binomial_interval(20, 50, method="exact")
    assert (w.estimate, w.n) == (0.4, 50) and round(w.low, 3) == 0.276 and round(w.high, 3) == 0.538
    assert cp.low < w.low and cp.high > w.high  # Clopper-Pearson is the wider (conservative) one
    assert binomial_interval(0, 10).low == 0.0 and binomial_interval(10, 10).high == 1.0
    with pytest.raises(ValueError, match="successes"):
        binomial_interval(11, 10)
    with pytest.raises(ValueError, match="n >= 1"):
        binomial_interval(0, 0)


def test_config_expands_families_and_names_bad_levels():
    cfg = CalibrateConfig(levels=("arithmetic", "word_problems:2", "arithmetic:3"))
    assert cfg.specs() == ["arithmetic:1", "arithmetic:2", "arithmetic:3", "arithmetic:4", "word_problems:2"]
    with pytest.raises(ValueError, match="levels are"):
        CalibrateConfig(levels=("arithmetic:7",))
    with pytest.raises(ValueError, match="band"):
        CalibrateConfig(band=(0.7, 0.3))


def test_planted_accuracies_are_recovered_and_the_band_picks_the_middle_level(tl_adapter, monkeypatch):
    """Rollouts whose rewards are planted per level (1.0, 0.5, 0.35, 0.0): the accuracies, the
    intervals and the band's pick (the in-band level nearest 50%) come back; no level is invented
    for a family where none lands in the band."""
    planted = {"arithmetic-d1": 1.0, "arithmetic-d2": 0.5, "arithmetic-d3": 0.35, "arithmetic-d4": 0.0,
               "word_problems-d0": 1.0, "word_problems-d1": 0.9, "word_problems-d2": 0.8, "word_problems-d3": 0.05}

    def fake_rollouts(adapter, task, config):
        k = round(planted[task.name] * len(task))
        return [Rollout(id=f"{task.name}/{e.id}", task=task.name, example_id=e.id, prompt_ids=[1], response_ids=[2, 3],
                        response_text="", reward=float(i < k), gold=e.answer, finish_reason="eos")
                for i, e in enumerate(task.examples)]  # fmt: skip

    monkeypatch.setattr(calibrate_study, "generate_rollouts", fake_rollouts)
    result = run_calibration(CalibrateConfig(n=40, progress=False), adapter=tl_adapter)
    got = {r.level: r.accuracy.estimate for r in result.rows}
    assert got == {f"{t.split('-d')[0]}:{t.split('-d')[1]}": round(a * 40) / 40 for t, a in planted.items()}
    assert result.in_band() == {"arithmetic": "arithmetic:2", "word_problems": None}
    mid = next(r for r in result.rows if r.level == "arithmetic:2")
    assert mid.accuracy.low < 0.5 < mid.accuracy.high and mid.in_band and mid.distinct_prompts >= 2000
    assert [r.in_band for r in result.rows] == [False, True, True, False, False, False, False, False]


def test_questions_are_drawn_from_the_whole_level():
    """arithmetic:1's questions come from all its phrasings, not only its first (canonical) ones."""
    task, promised = calibrate_study._level_task("arithmetic:1", CalibrateConfig(n=200))
    assert len(task) == 200 == task.distinct_questions and promised == 2480
    assert sum(not e.question.startswith("What is ") or "plus" in e.question or "minus" in e.question for e in task) > 100


def test_tiny_model_cli_writes_one_row_per_level(tiny_hf, tmp_path):
    """The command on a real (tiny, random) model: one row per level in summary.json and report.html."""
    from reward_circuits.cli import main

    hf, tok = tiny_hf
    hf.save_pretrained(tmp_path / "tiny")
    tok.save_pretrained(tmp_path / "tiny")
    out = tmp_path / "cal"
    levels = "arithmetic,word_problems:0,multiple_choice"
    assert main(["calibrate", "--model", str(tmp_path / "tiny"), "--levels", levels, "--n", "3", "--max-new-tokens", "3",
                 "--no-progress", "--out", str(out)]) == 0  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    rows = summary["calibrate"]["levels"]
    assert [r["level"] for r in rows] == ["arithmetic:1", "arithmetic:2", "arithmetic:3", "arithmetic:4", "word_problems:0",
                                          "multiple_choice"]  # fmt: skip
    assert all(r["accuracy"]["n"] == 3 and 0 <= r["accuracy"]["low"] <= r["accuracy"]["estimate"] <= r["accuracy"]["high"] <= 1
               for r in rows)  # fmt: skip
    answers = [json.loads(line) for line in (out / "answers.jsonl").read_text().splitlines()]
    assert len(answers) == 6 * 3 and sum(a["reward"] for a in answers) == sum(r["correct"] for r in rows)
    html = (out / "report.html").read_text()
    assert html.count("<td class='t'>arithmetic:") == 4 and "calibrate.png" in html
    assert summary["wall_time_s"] > 0 and summary["cpu_time_s"] > 0 and summary["torch_threads"] >= 1 and summary["complete"] is True
