"""Value-neuron transfer in the main job: across tasks (the second task's value set ablated on the
first task's examples) and across models (``--transfer-from`` a finished run), on the tiny model.

Planted truth: a run transferring from a run of the *same* model and settings ablates exactly its
own value set, so the transfer row must equal the own-set row (IoU 1, same accuracy, zero paired
difference)."""

from __future__ import annotations

import json

import pytest
from test_refactor_equivalence import run_fixed_job

pytestmark = pytest.mark.usefixtures("one_thread")


def test_transfer_from_a_run_of_the_same_model_equals_its_own_value_set(tmp_path, monkeypatch):
    first = run_fixed_job(tmp_path / "a", monkeypatch)
    # across tasks: the second task's value set (its own probe) ablated on the first task's examples
    assert "b value set" in first["ablation"]["transfer"]
    # across models: this run's value sets, read back by a second run of the same model
    second = run_fixed_job(tmp_path / "b", monkeypatch, transfer_from=str(tmp_path / "a"))
    rows = {k: v for k, v in second["ablation"]["transfer"].items() if "value set, layer" in k}
    assert len(rows) == 1, list(second["ablation"]["transfer"])
    (name, row), = rows.items()
    assert name.startswith("tiny-llama-seed0 value set, layer")
    assert row["iou_with_own"] == 1.0
    assert row["accuracy"] == row["own_value_acc"]
    assert row["minus_own"]["estimate"] == 0.0
    assert any("value neurons transfer" in k for k in second["ablation"]["verdicts"])


def test_transfer_from_a_directory_without_value_sets_is_refused(tmp_path):
    from reward_circuits.studies.run import RunConfig

    with pytest.raises(ValueError, match="no value/value_neurons_by_layer.json"):
        RunConfig(transfer_from=str(tmp_path))
    (tmp_path / "value").mkdir()
    (tmp_path / "value" / "value_neurons_by_layer.json").write_text(json.dumps({}))
    assert RunConfig(transfer_from=str(tmp_path)).transfer_from == str(tmp_path)
