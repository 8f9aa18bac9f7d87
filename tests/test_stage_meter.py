"""The main job's per-stage peak RSS (pipeline.stage_meter.StageTimings)."""

import json

import pytest

from reward_circuits.studies.run.stage_meter import StageTimings

pytestmark = pytest.mark.usefixtures("one_thread")


_CHILD = """
import json, time
import numpy as np
from reward_circuits.studies.run.stage_meter import StageTimings, peak_rss_mb

def touch(mib):
    a = np.empty(mib * 2**20, dtype=np.uint8)
    a.fill(1)  # make the pages resident
    return a

timings = StageTimings()
out = {"scope": timings.rss_peak_scope}
if out["scope"] == "stage":
    t0 = time.perf_counter()
    big = touch(300)
    del big
    timings["big_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    small = touch(5)
    del small
    timings["small_s"] = time.perf_counter() - t0
    timings["total_s"] = 1.0
    out.update(peaks=timings.peak_rss_mb, now=peak_rss_mb())
print(json.dumps(out))
"""


def test_each_stage_gets_its_own_peak():
    # in a fresh process: inside the test session the allocator may reuse pages freed by earlier
    # tests, so a new 300 MiB need not raise the resident set at all
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, check=True,
                         env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    out = json.loads(res.stdout.strip().splitlines()[-1])
    if out["scope"] != "stage":
        pytest.skip("this kernel does not let a process reset its peak RSS (/proc/self/clear_refs)")
    peaks = out["peaks"]
    assert list(peaks) == ["big_s", "small_s", "total_s"]
    # the 300 MiB was freed before the second stage: its peak must not carry over
    assert peaks["big_s"] - peaks["small_s"] > 200, peaks
    assert peaks["total_s"] >= peaks["big_s"]
    assert out["now"] < peaks["big_s"]


def test_timings_stay_a_plain_json_dict():
    timings = StageTimings()
    timings["load_model_s"] = 1.5
    timings["total_s"] = 2.0
    assert json.loads(json.dumps(timings)) == {"load_model_s": 1.5, "total_s": 2.0}
    assert set(timings.peak_rss_mb) == {"load_model_s", "total_s"}
    assert all(v > 0 for v in timings.peak_rss_mb.values())


def test_a_noted_figure_is_not_a_stage():
    # process_cpu_s is stored after total_s: as a stage it got a "peak" since the last reset
    timings = StageTimings()
    timings["load_model_s"] = 1.5
    timings["total_s"] = 2.0
    timings.note("process_cpu_s", 3.0)
    assert timings["process_cpu_s"] == 3.0
    assert set(timings.peak_rss_mb) == {"load_model_s", "total_s"}
