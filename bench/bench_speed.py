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

Row 8 (:func:`bench_job_stages`) times the main job's own stages, each way once: its rollouts + store
stages captured while generating vs today's two passes, and its whole intervention stage with the
shared trunk vs today's sweeps (tokens asserted identical).
"""

from __future__ import annotations

import copy
import gc
import shutil
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


# ---- row 8: the main job's own stages ------------------------------------------------------------------


def _variant(adapter, share_trunk: bool, log: list, certify: bool = True):
    """``adapter`` (same model, a shallow copy) that shares the trunk only if ``share_trunk``, certifies
    greedy argmaxes only if ``certify``, and logs every generation it finishes as (prompt ids, response
    ids): ``share_trunk=False`` is today's sweep exactly (``SweepConfig(share_trunk=False)`` for every
    sweep of the stage)."""
    base = type(adapter)

    class Variant(base):
        @property
        def shares_trunk(self) -> bool:
            return share_trunk and base.shares_trunk.fget(self)

        def finish_generation(self, prompt_ids, new, config):
            g = base.finish_generation(self, prompt_ids, new, config)
            log.append((tuple(g.prompt_ids), tuple(g.response_ids)))
            return g

    out = copy.copy(adapter)
    out.__class__ = Variant
    out.certifies_argmax = certify
    return out


def _clocked(fn):
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w0, time.process_time() - c0


def _job_config(tmp: Path, out: str, stages: tuple, args):
    from reward_circuits.studies.run import RunConfig

    from reward_circuits.studies.run.config import PROFILES

    # --job-profile paper: the paper profile's intervention conditions (its early layer at relative depth
    # 0.25 ablated with both controls, dose-response in zero and mean mode at 1/2/5/10%); sizes as given
    paper = {k: PROFILES["paper"][k] for k in ("ablation_depths", "dose_modes", "dose_fractions")}
    cfg = RunConfig(tasks=(args.job_task,), primary_limit=args.job_rollouts, out=str(tmp / out), stages=stages,
                    progress=False, layers=tuple(int(x) for x in args.job_layers.split(",")),
                    eval_examples=args.job_examples, random_draws=args.job_random, ablation_layers=3,
                    **(paper if args.job_profile == "paper" else {}))
    cfg.quick = True  # after validation: the value stage's quick mode only (untimed); every size above as given
    return cfg


def _same_stores(a: Path, b: Path) -> float:
    """Largest |difference| between two stores' states over the largest |state|, of the worst hook point
    (same rollouts, same order asserted). One float16 rounding of the largest state is up to 2^-11."""
    from reward_circuits.data import ActivationStore

    s1, s2 = ActivationStore(a), ActivationStore(b)
    assert s1.rollout_ids == s2.rollout_ids, "captured-while-generating store holds other rollouts or another order"
    worst = 0.0
    for h in s1.hook_names:
        diff = max(float((s1.get(i, h) - s2.get(i, h)).abs().max()) for i in range(len(s1)))
        worst = max(worst, diff / max(float(s2.get(i, h).abs().max()) for i in range(len(s2))))
    return worst


def bench_job_stages(tl, args) -> list[Row]:
    """Row 8: the main job's rollouts + store stages captured while generating vs today's (``--stages
    rollouts`` then ``--stages store``: a second forward over the cached rollouts), and its whole
    intervention stage (ablation + random controls, dose-response, steering, confidence) with the shared
    trunk vs without (today's sweeps), each run once (a loaded machine: CPU time is the figure to read)."""
    from reward_circuits.data import load_rollouts
    from reward_circuits.studies.run import run

    rows, slug = [], args.job_task.replace(":", "_")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.job_interventions_only:
            run(_job_config(tmp, "while", ("rollouts", "store", "value"), args), adapter=tl)
            return rows + _job_interventions(tl, args, tmp)
        one, w1, c1 = _clocked(lambda: run(_job_config(tmp, "while", ("rollouts", "store"), args), adapter=tl))
        gen, w2a, c2a = _clocked(lambda: run(_job_config(tmp, "then", ("rollouts",), args), adapter=tl))
        two, w2b, c2b = _clocked(lambda: run(_job_config(tmp, "then", ("store",), args), adapter=tl))
        r1, r2 = (load_rollouts(tmp / d / "rollouts" / slug) for d in ("while", "then"))
        assert [r.response_ids for r in r1] == [r.response_ids for r in r2], "captured-while-generating rollouts differ"
        diff = _same_stores(tmp / "while" / "store" / slug, tmp / "then" / "store" / slug)
        n_states = sum(len(r.response_ids) + 1 for r in r1)
        rss = (one.header["peak_rss_mb"].get(f"rollouts_{slug}_s"), gen.header["peak_rss_mb"].get(f"rollouts_{slug}_s"),
               two.header["peak_rss_mb"].get(f"store_{slug}_s"))
        rows.append(Row("8", f"main job rollouts + store: captured while generating vs generate then capture (TL)",
                        w1, w2a + w2b, "s", (w2a + w2b) / w1, "speed-up then/while", ">=1.0",
                        f"{len(r1)} rollouts of {args.job_task}, batch 128 x 48 tokens, {len(one.header['config']['layers']) + 1} "
                        f"hook points, {n_states} states; CPU {c1:.1f} s vs {c2a + c2b:.1f} s "
                        f"(ratio {(c2a + c2b) / c1:.2f}x); same tokens, same store order, max |state diff| / max |state| "
                        f"{diff:.1e} (float16 store); peak RSS {rss[0]} MiB (while) vs {rss[1]} MiB generating, {rss[2]} MiB "
                        "capturing (today)"))
        run(_job_config(tmp, "while", ("value",), args), adapter=tl)  # the probe and neuron sets (untimed)
        return rows + _job_interventions(tl, args, tmp)


def _job_interventions(tl, args, tmp: Path) -> list[Row]:
    """Row 8's intervention stage three ways, on copies of one run folder (rollouts, store, value done):
    today's sweeps (no shared trunk), the shared trunk with every row unembedded, and the shared trunk
    with certified greedy argmaxes (``certifies_argmax``, opt-in); generations asserted identical."""
    from reward_circuits.studies.run import run

    ways = {w: v for w, v in {"today": (False, False), "trunk": (True, False), "certified": (True, True)}.items()
            if w in ("today",) + tuple(args.job_ways.split(","))}
    for way in ways:
        if way != "certified":
            shutil.copytree(tmp / "while", tmp / way)
    logs, res, rows = {w: [] for w in ways}, {}, []
    for way, (share, certify) in ways.items():
        adapter = _variant(tl, share, logs[way], certify)
        out = "while" if way == "certified" else way
        res[way] = _clocked(lambda: run(_job_config(tmp, out, ("interventions",), args), adapter=adapter))
    for way in set(ways) - {"today"}:
        assert sorted(logs[way]) == sorted(logs["today"]), f"{way} intervention stage tokens differ from today's"
    n_tok = sum(len(r) for _, r in logs["today"])
    done = res["trunk" if "trunk" in res else "certified"][0]
    hdr = done.header["config"]
    abl = done.section("ablation").summary  # where the conditions act decides what the trunk can share
    where = (f"ablated {abl['ablated_layers']['validation_best']} (controls at {abl['ablated_layers']['controlled']}), "
             f"dose and steering at {abl['study_layer']['dose']}")
    setup = (f"{args.job_examples} eval examples, {args.job_random} random draws, layers {args.job_layers} "
             f"(3 best ablated, depths {list(hdr['ablation_depths'])}), dose {list(hdr['dose_modes'])} x "
             f"{list(hdr['dose_fractions'])}; {where}; "
             f"{len(logs['today'])} generations, {n_tok} tokens, identical")
    (_, wo, co) = res["today"]
    for way, what in (("trunk", "shared trunk, every row unembedded"), ("certified", "shared trunk + certified argmax")):
        if way not in res:
            continue
        _, wt, ct = res[way]
        rows.append(Row("8", f"main job intervention stage: {what} vs today's sweeps (TL)", wt, wo, "s", wo / wt,
                        f"speed-up today/{way}", ">=1.5", f"{setup}; CPU {ct:.1f} s vs {co:.1f} s (ratio {co / ct:.2f}x)"))
    return rows
