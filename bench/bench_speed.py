"""Bench row 7 (issue 30): what computing less buys, side by side in one run, repeats interleaved.

* **shared trunk**: an ablation study (baseline, the value set, random controls: 1% of
  ``mlp.hook_post`` zeroed) swept with ``SweepConfig(share_trunk=True)`` vs today's sweep
  (``share_trunk=False``), at a late layer and at three layers (n/4, n/2, 3n/4, like the paper
  profile's ``ablation_layers=3``); tokens asserted identical; the share of block-rows the trunk
  actually computed is reported beside the time.
* **capture while generating**: ``generate_rollouts_and_store(while_generating=True)`` (states from
  the generation's own forwards) vs ``False`` (``generate_rollouts`` then ``build_store``, today's
  rollouts + store stages), on each backend.

Wall time and CPU time (``time.process_time``) are medians over interleaved repeats after a warm-up.
"""

from __future__ import annotations

import gc
import statistics
import tempfile
import time
from pathlib import Path

import torch

from bench.run import Row


def _timed(runners: dict, repeats: int, warmup: bool = True) -> tuple[dict[str, float], dict[str, float], dict]:
    """Median wall and CPU seconds per runner (interleaved repeats, after one warm-up unless
    ``warmup=False``: then the first repeat's outputs are returned), and each runner's output."""
    outputs = {k: fn() for k, fn in runners.items()} if warmup else {}
    wall: dict[str, list[float]] = {k: [] for k in runners}
    cpu: dict[str, list[float]] = {k: [] for k in runners}
    for _ in range(repeats):
        for k, fn in runners.items():
            gc.collect()
            w0, c0 = time.perf_counter(), time.process_time()
            out = fn()
            wall[k].append(time.perf_counter() - w0)
            cpu[k].append(time.process_time() - c0)
            outputs.setdefault(k, out)
    return ({k: statistics.median(v) for k, v in wall.items()}, {k: statistics.median(v) for k, v in cpu.items()},
            outputs)


def _ablation_conditions(adapter, layers: list[int], n_random: int) -> dict[str, list]:
    from reward_circuits.interventions import zero_ablate

    k = max(1, adapter.d_mlp // 100)
    g = torch.Generator().manual_seed(0)
    conds: dict[str, list] = {"baseline": []}
    for name in ["value"] + [f"random_{i}" for i in range(n_random)]:
        conds[name] = [(f"blocks.{l}.mlp.hook_post", zero_ablate(torch.randperm(adapter.d_mlp, generator=g)[:k].tolist()))
                       for l in layers]
    return conds


def _trunk_share(adapter, prompts, conds, cfg) -> float | None:
    """Share of the decoding block-rows the shared trunk computed (1.0: no saving)."""
    from reward_circuits.interventions import sweep
    from reward_circuits.models.tl_trunk import TrunkCache

    seen = {"rows": 0, "computed": 0}
    step = TrunkCache.step

    def counted(cache, tokens):
        r, c = cache.row_layers, cache.computed_layers
        out = step(cache, tokens)
        seen["rows"] += cache.row_layers - r
        seen["computed"] += cache.computed_layers - c
        return out

    TrunkCache.step = counted
    try:
        sweep(adapter, prompts, conds, cfg)
    finally:
        TrunkCache.step = step
    return seen["computed"] / seen["rows"] if seen["rows"] else None


def bench_trunk(tl, args) -> list[Row]:
    from bench import bench_capture as bc
    from reward_circuits.interventions import SweepConfig, sweep
    from reward_circuits.models import GenerationConfig

    prompts = bc.gen_prompts(tl, args.speed_examples)
    cfg = GenerationConfig(max_new_tokens=args.new_tokens, progress=False)
    n = tl.n_layers
    rows = []
    studies = [(f"late layer {n - 2}", [n - 2]), (f"layers {n // 4},{n // 2},{3 * n // 4}", [n // 4, n // 2, 3 * n // 4])]
    for label, layers in studies[: 1 if args.speed_late_only else 2]:
        conds = _ablation_conditions(tl, layers, args.speed_random)
        runners = {w: (lambda w=w: sweep(tl, prompts, conds, cfg, sweep_config=SweepConfig(share_trunk=(w == "trunk"))))
                   for w in ("today", "trunk")}
        wall, cpu, out = _timed(runners, args.speed_repeats, warmup=not args.speed_no_warmup)
        toks = {w: {c.name: [g.response_ids for g in c.generations] for c in r} for w, r in out.items()}
        assert toks["trunk"] == toks["today"], "shared-trunk sweep tokens differ from today's sweep"
        share = _trunk_share(tl, prompts, conds, cfg)
        note = (f"{len(conds)} conditions x {len(prompts)} prompts x {args.new_tokens} tokens; tokens identical; "
                f"CPU {cpu['trunk']:.1f} s vs {cpu['today']:.1f} s; trunk computed "
                f"{'-' if share is None else f'{share:.0%}'} of the decoding block-rows")
        rows.append(Row("7", f"sweep shared trunk vs today's sweep, ablation at {label} (TL)", wall["trunk"], wall["today"],
                        "s", wall["today"] / wall["trunk"], "speed-up today/trunk", ">=1.5", note))
    return rows


def bench_capture_while_generating(adapters, args) -> list[Row]:
    from bench import bench_capture as bc
    from reward_circuits.data import generate_rollouts_and_store
    from reward_circuits.models import GenerationConfig
    from reward_circuits.tasks import Example, Task

    rows = []
    for backend, adapter in adapters.items():
        prompts = [f"Write a short story about {t}." for t in bc.TOPICS][: args.speed_examples]
        task = Task(name="stories", examples=[Example(f"s{i}", p, "") for i, p in enumerate(prompts)],
                    reward_fn=lambda r, e: float(len(r) % 2), max_new_tokens=args.new_tokens)
        hooks = bc.capture_hooks(adapter.n_layers)
        cfg = GenerationConfig(max_new_tokens=args.new_tokens, batch_size=args.gen_batch, progress=False)
        with tempfile.TemporaryDirectory() as tmp:
            counter = iter(range(10**6))

            def run(while_generating: bool):
                return generate_rollouts_and_store(adapter, task, hooks, Path(tmp) / f"s{next(counter)}", cfg,
                                                   while_generating=while_generating, progress=False)

            wall, cpu, out = _timed({"then": lambda: run(False), "while": lambda: run(True)}, args.speed_repeats)
        n_states = sum(len(r.response_ids) + 1 for r in out["while"][0])
        same = [r.response_ids for r in out["while"][0]] == [r.response_ids for r in out["then"][0]]
        rows.append(Row("7", f"rollouts + store: capture while generating vs generate then capture ({backend})",
                        wall["while"], wall["then"], "s", wall["then"] / wall["while"], "speed-up then/while", ">=1.0",
                        f"{len(prompts)} prompts x {args.new_tokens} tokens, {len(hooks)} hook points, {n_states} states; "
                        f"CPU {cpu['while']:.1f} s vs {cpu['then']:.1f} s; "
                        + ("same tokens" if same else "tokens differ (batch-at-a-time vs refilled greedy: float order)")))
    return rows


def bench_speed(adapters, args) -> list[Row]:
    rows = bench_trunk(adapters["transformer_lens"], args)
    return rows if args.speed_trunk_only else rows + bench_capture_while_generating(adapters, args)
