"""The main job's per-stage peak RSS (pipeline.stage_meter.StageTimings)."""

import json
import time

import numpy as np
import pytest

from reward_circuits.pipeline.stage_meter import StageTimings, peak_rss_mb

pytestmark = pytest.mark.usefixtures("one_thread")


def _touch_mib(mib: int) -> np.ndarray:
    a = np.empty(mib * 2**20, dtype=np.uint8)
    a.fill(1)  # make the pages resident
    return a


def test_each_stage_gets_its_own_peak():
    timings = StageTimings()
    if timings.rss_peak_scope != "stage":
        pytest.skip("this kernel does not let a process reset its peak RSS (/proc/self/clear_refs)")
    t0 = time.perf_counter()
    big = _touch_mib(300)
    del big
    timings["big_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    small = _touch_mib(5)
    del small
    timings["small_s"] = time.perf_counter() - t0
    timings["total_s"] = 1.0
    peaks = timings.peak_rss_mb
    assert list(peaks) == ["big_s", "small_s", "total_s"]
    # the 300 MiB was freed before the second stage: its peak must not carry over
    assert peaks["big_s"] - peaks["small_s"] > 200, peaks
    assert peaks["total_s"] >= peaks["big_s"]
    assert peak_rss_mb() < peaks["big_s"]


def test_timings_stay_a_plain_json_dict():
    timings = StageTimings()
    timings["load_model_s"] = 1.5
    timings["total_s"] = 2.0
    assert json.loads(json.dumps(timings)) == {"load_model_s": 1.5, "total_s": 2.0}
    assert set(timings.peak_rss_mb) == {"load_model_s", "total_s"}
    assert all(v > 0 for v in timings.peak_rss_mb.values())
