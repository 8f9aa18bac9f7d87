"""Per-stage wall time *and* peak resident memory of the main job, with no change to how stages are timed.

:class:`StageTimings` is the ``{stage: seconds}`` dict the main job already fills
(``timings["value_s"] = time.perf_counter() - t0``). Each time a stage's seconds are stored it also
records the process's peak RSS since the previous stored stage (since creation for the first one)
in :attr:`StageTimings.peak_rss_mb`, so a stage's peak is the highest resident memory seen while it
ran: on Linux the kernel's high-water mark ``VmHWM`` of ``/proc/self/status``, reset to the current
RSS after every stage through ``/proc/self/clear_refs`` (value 5, which resets only that mark). No
thread and no sampling interval: the kernel tracks the peak exactly. Where the reset is not
possible (no ``/proc``, or not writable) every stage gets the peak since the process started
(``resource.getrusage``), which the ``rss_peak_scope`` attribute says.

Side effect of the reset: the kernel's ``ru_maxrss`` follows the same mark, so after a run
``getrusage`` and ``/usr/bin/time``'s "Maximum resident set size" give only the peak since the last
reset (measured: 2.0 GB for a default job whose interventions stage peaked at 2.6 GB). The run's
peak is ``peak_rss_mb["total_s"]``.

    timings = StageTimings()
    ...; timings["store_s"] = time.perf_counter() - t0
    timings.peak_rss_mb            # {"store_s": 1534.2, ...}; "total_s" gets the whole run's peak
    timings.note("process_cpu_s", time.process_time())  # not a stage: no memory entry

:class:`StepTimings` is the same kind of dict *inside* a long stage: each step's stored seconds
advance the stage's progress bar.
"""

from __future__ import annotations

import resource
import sys

from tqdm.auto import tqdm

__all__ = ["StageTimings", "StepTimings", "peak_rss_mb", "reset_peak_rss"]

_STATUS = "/proc/self/status"
_CLEAR_REFS = "/proc/self/clear_refs"


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB: ``VmHWM`` (since the last reset), else ``ru_maxrss``."""
    try:
        with open(_STATUS) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return maxrss / 2**20 if sys.platform == "darwin" else maxrss / 1024


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark to the current RSS; ``False`` where that is not possible."""
    try:
        with open(_CLEAR_REFS, "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class StageTimings(dict):
    """``{stage: seconds}`` that also records each stage's peak RSS (MiB) in :attr:`peak_rss_mb`.

    Stages must be stored in the order they run, each right after it finishes (as the main job does).
    A key ending in ``total`` (``"total_s"``) gets the peak of the whole run instead of one stage's.
    """

    def __init__(self) -> None:
        super().__init__()
        self.peak_rss_mb: dict[str, float] = {}
        self.rss_peak_scope = "stage" if reset_peak_rss() else "since process start"
        self._run_peak = 0.0

    def __setitem__(self, stage: str, seconds: float) -> None:
        super().__setitem__(stage, seconds)
        peak = peak_rss_mb()
        self._run_peak = max(self._run_peak, peak)
        if stage.removesuffix("_s").endswith("total"):
            self.peak_rss_mb[stage] = round(self._run_peak, 1)
            return
        self.peak_rss_mb[stage] = round(peak, 1)
        if self.rss_peak_scope == "stage":
            reset_peak_rss()

    def note(self, key: str, value: float) -> None:
        """Store a figure that is not a stage (``process_cpu_s``): no peak-RSS entry, no reset."""
        super().__setitem__(key, value)


class StepTimings(dict):
    """``{step_s: seconds}`` of a stage; recording a step advances one bar (``n_steps`` in all) and
    names the step with its time. A context manager: the bar closes on exit, exceptions included."""

    def __init__(self, n_steps: int, desc: str, show: bool = True):
        super().__init__()
        self.bar = tqdm(total=n_steps, desc=desc, disable=not show)

    def __setitem__(self, key: str, seconds: float) -> None:
        super().__setitem__(key, seconds)
        self.bar.set_postfix_str(f"{key.removesuffix('_s').replace('_', ' ')} {seconds:.0f} s", refresh=False)
        self.bar.update(1)

    def __enter__(self) -> StepTimings:
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()
