"""Peak memory of the main job's rollouts + store at 1,000 prompts: captured while generating vs today's.

``PYTHONPATH=. OMP_NUM_THREADS=1 python -m bench.capture_memory while`` (or ``then``): one process per way
(peaks do not mix). A tiny random Llama with d_model 256 (4 blocks) stands in for the model so the run
takes a minute; 1,000 prompts of different lengths, greedy, 48 new tokens, batch 128 (the main job's
settings), 5 hook points (``hook_embed`` and every ``resid_post``), a float16 store. Prints wall and CPU
time, the store's size and the process's peak RSS above its RSS before the call (``VmHWM`` after
resetting it: :func:`reward_circuits.studies.run.stage_meter.reset_peak_rss`).
"""

from __future__ import annotations

import gc
import sys
import tempfile
import time
from pathlib import Path

import torch


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS"))


def main(way: str, n: int = 1000) -> None:
    from reward_circuits.data import generate_rollouts_and_store
    from reward_circuits.models import GenerationConfig, from_hf
    from reward_circuits.models.tiny import tiny_hf_model
    from reward_circuits.studies.run.stage_meter import peak_rss_mb, reset_peak_rss
    from reward_circuits.tasks import Example, Task

    torch.set_num_threads(1)
    hf, tok = tiny_hf_model(n_layers=4, d_model=256, d_mlp=512, seed=0)
    adapter = from_hf(hf, tok, "transformer_lens", name="tiny-llama-d256")
    words = ["apple", "x", "the quick brown fox", "7 + 5 =", "zebra", "Hello there!", "q?", "abc def ghi"]
    task = Task("t", [Example(f"q{i}", f"{words[i % 8]} {i} {words[3 * i % 8]}", "0") for i in range(n)],
                lambda r, e: float(len(r) % 2 == 0), max_new_tokens=48)
    hooks = ["hook_embed"] + [f"blocks.{layer}.hook_resid_post" for layer in range(4)]
    cfg = GenerationConfig(max_new_tokens=48, batch_size=128, progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        gc.collect()
        reset_peak_rss()
        rss0 = _rss_mb()
        t0, c0 = time.perf_counter(), time.process_time()
        rollouts, store = generate_rollouts_and_store(adapter, task, hooks, Path(tmp) / "store", cfg,
                                                      while_generating=way == "while", progress=False)
        print(f"{way}: wall {time.perf_counter() - t0:.1f} s, CPU {time.process_time() - c0:.1f} s; "
              f"{len(rollouts)} rollouts, {store.n_states} states, store {store.nbytes() / 2**20:.1f} MiB; "
              f"peak RSS above the start {peak_rss_mb() - rss0:.1f} MiB")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "while")
