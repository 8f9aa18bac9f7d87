"""Benchmark: all layers' value probes trained at once vs a Python loop of per-layer probes.

Builds a planted store of realistic size in a temp dir (400 rollouts × ~40 states, d=576, 10 hooks,
float16 like the real store), trains a stacked ValueProbe on all hooks, then one ValueProbe per
hook with the same config and seed, and prints both times, the speed ratio and the largest
difference of held-out AUC between the two (≈ 0: the probes are the same functions). It also times
the stacked fit with every probe in one batched matmul per step (``probe_chunk = n_hooks``, the
accelerator default) next to the CPU default (one probe per matmul inside each shared step), and
the compute floor: the probes' matmul FLOPs divided by the matmul throughput measured here on the
same shapes, i.e. the time no batching of the same probes can beat. Times are medians of
``--repeats`` interleaved runs after one warm-up run of each variant.

    .venv/bin/python bench/bench_probes.py [--repeats 3] [--epochs 10] [--rollouts 400] [--hooks 10] [--d 576] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np
import torch

from reward_circuits.analysis.probes import ValueProbe, ValueProbeConfig
from reward_circuits.data.store import write_store_from_arrays
from reward_circuits.data.synthetic import planted_rollouts


def compute_floor(n_states: int, n_probes: int, args) -> dict:
    """Time the probes' unavoidable matmuls would take at the measured matmul throughput.

    Per state, probe and epoch: the first layer's forward ``x @ W1`` and its weight gradient
    ``xᵀ @ g`` are ``2 · 2 · d · hidden`` FLOP (inputs need no gradient; the hidden → 1 layer is
    negligible). The throughput is measured on the same ``[batch_states, d] × [d, hidden]`` shapes.
    """
    hidden = ValueProbeConfig().hidden
    x, w, g = torch.randn(args.batch_states, args.d), torch.randn(args.d, hidden), torch.randn(args.batch_states, hidden)
    for _ in range(5):
        x @ w, x.T @ g
    reps, t0 = 100, time.perf_counter()
    for _ in range(reps):
        x @ w, x.T @ g
    gflops = reps * 4 * args.batch_states * args.d * hidden / (time.perf_counter() - t0) / 1e9
    gflop = 4 * args.d * hidden * n_states * n_probes * args.epochs / 1e9
    return {"gflop": gflop, "gflops": gflops, "seconds": gflop / gflops}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rollouts", type=int, default=400)
    ap.add_argument("--hooks", type=int, default=10)
    ap.add_argument("--d", type=int, default=576)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-states", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=3)
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

        fitted: dict[str, object] = {}

        def stacked():
            fitted["stacked"] = ValueProbe(cfg).fit(store, hooks, train, verbose=False)

        def one_matmul():  # the same, every probe in one batched matmul per step
            ValueProbe(cfg.replace(probe_chunk=len(hooks))).fit(store, hooks, train, verbose=False)

        def loop():
            fitted["loop"] = [ValueProbe(cfg).fit(store, h, train, verbose=False) for h in hooks]

        variants = {"stacked": stacked, "one_matmul": one_matmul, "loop": loop}
        for fn in variants.values():  # warm-up: page cache, allocator, thread pool (the first fit is ~50% slower)
            fn()
        times: dict[str, list[float]] = {k: [] for k in variants}
        for _ in range(args.repeats):  # interleaved, so machine load hits every variant alike
            for k, fn in variants.items():
                t0 = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - t0)
        t_stacked, t_one_matmul, t_loop = (statistics.median(times[k]) for k in variants)
        auc_stacked = fitted["stacked"].score(store, test)
        auc_loop = {h: p.score(store, test)[h] for h, p in zip(hooks, fitted["loop"])}

        n_train_states = sum(len(b) for b in store.iter_batches(hooks[0], indices=train))
        floor = compute_floor(n_train_states, len(hooks), args)

    diff = max(abs(auc_stacked[h] - auc_loop[h]) for h in hooks)
    print(f"medians of {args.repeats} interleaved runs after a warm-up, {args.epochs} epochs each")
    print(f"all layers at once : {t_stacked:7.2f} s  (probe_chunk=auto: {fitted['stacked'].cfg.probe_chunk or 1 if cfg.device == 'cpu' else len(hooks)})")
    print(f"  one batched matmul over all probes per step: {t_one_matmul:7.2f} s")
    print(f"per-layer loop     : {t_loop:7.2f} s")
    print(f"speed ratio        : {t_loop / t_stacked:7.2f}x  (one batched matmul: {t_loop / t_one_matmul:.2f}x)")
    print(f"compute floor      : {floor['seconds']:7.2f} s  = {floor['gflop']:.0f} GFLOP of probe matmuls (forward + weight "
          f"gradient) at this machine's {floor['gflops']:.0f} GFLOP/s measured on the same shapes; "
          f"no batching of the same probes can beat it: ratio ≤ {t_loop / floor['seconds']:.2f}x")
    print(f"max |AUC diff|     : {diff:.2e}")
    print(f"AUC signal hook    : {auc_stacked[hooks[0]]:.3f} (ceiling {info.ceiling_auc_on(test):.3f}); "
          f"noise hooks mean {np.mean([auc_stacked[h] for h in hooks[1:]]):.3f}")


if __name__ == "__main__":
    main()
