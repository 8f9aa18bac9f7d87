"""Benchmark: all layers' value probes trained at once vs a Python loop of per-layer probes.

Builds a planted store of realistic size in a temp dir (400 rollouts × ~40 states, d=576, 10 hooks,
float16 like the real store), trains a stacked ValueProbe on all hooks, then one ValueProbe per
hook with the same config and seed, and prints both times, the speed ratio and the largest
difference of held-out AUC between the two (≈ 0: the probes are the same functions). It also times
the stacked fit with every probe in one batched matmul per step (``probe_chunk = n_hooks``, the
accelerator default) next to the CPU default (one probe per matmul inside each shared step).

    .venv/bin/python bench/bench_probes.py [--epochs 10] [--rollouts 400] [--hooks 10] [--d 576] [--threads N]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch

from reward_circuits.probes import ValueProbe, ValueProbeConfig
from reward_circuits.store import write_store_from_arrays
from reward_circuits.synthetic import planted_rollouts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rollouts", type=int, default=400)
    ap.add_argument("--hooks", type=int, default=10)
    ap.add_argument("--d", type=int, default=576)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-states", type=int, default=4096)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    hooks = [f"blocks.{i}.hook_resid_post" for i in range(args.hooks)]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        acts, rewards, info = planted_rollouts(args.rollouts, d=args.d, k=8, T_range=(30, 50), seed=args.seed, hooks=hooks)
        store = write_store_from_arrays(f"{tmp}/store", acts, rewards.tolist(), model="planted-bench", dtype="float16")
        del acts
        print(f"store: {len(store)} rollouts, {store.n_states} states, {len(hooks)} hooks, d={args.d}, "
              f"{store.nbytes() / 2**20:.0f} MiB ({time.perf_counter() - t0:.1f}s to build); torch threads={torch.get_num_threads()}")
        train, test = store.split(0.3, seed=args.seed)
        cfg = ValueProbeConfig(epochs=args.epochs, batch_states=args.batch_states, seed=args.seed)

        t0 = time.perf_counter()
        stacked = ValueProbe(cfg).fit(store, hooks, train, verbose=False)
        t_stacked = time.perf_counter() - t0
        auc_stacked = stacked.score(store, test)

        t0 = time.perf_counter()  # the same, every probe in one batched matmul per step
        ValueProbe(cfg.replace(probe_chunk=len(hooks))).fit(store, hooks, train, verbose=False)
        t_one_matmul = time.perf_counter() - t0

        t0 = time.perf_counter()
        auc_loop = {}
        for h in hooks:
            single = ValueProbe(cfg).fit(store, h, train, verbose=False)
            auc_loop[h] = single.score(store, test)[h]
        t_loop = time.perf_counter() - t0

    diff = max(abs(auc_stacked[h] - auc_loop[h]) for h in hooks)
    print(f"all layers at once : {t_stacked:7.2f} s  ({args.epochs} epochs; probe_chunk={stacked.cfg.probe_chunk or 'auto'})")
    print(f"  one batched matmul over all probes per step: {t_one_matmul:7.2f} s")
    print(f"per-layer loop     : {t_loop:7.2f} s")
    print(f"speed ratio        : {t_loop / t_stacked:7.2f}x  (one batched matmul: {t_loop / t_one_matmul:.2f}x)")
    print(f"max |AUC diff|     : {diff:.2e}")
    print(f"AUC signal hook    : {auc_stacked[hooks[0]]:.3f} (ceiling {info.ceiling_auc_on(test):.3f}); "
          f"noise hooks mean {np.mean([auc_stacked[h] for h in hooks[1:]]):.3f}")


if __name__ == "__main__":
    main()
