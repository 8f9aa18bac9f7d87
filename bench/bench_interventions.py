"""Benchmark: the intervention stage as sweeps vs one generation pass per condition, and generation
throughput vs HF ``generate``.

Rows (all ratios measured in one run, repeats interleaved, medians reported):

* ``stage``: (``<first way>_speedup``: each other way's median time over the first way's) :func:`reward_circuits.studies.run.interventions.run_intervention_stage` (ablation with
  random controls, dose-response, steering, confidence) on the same examples, three ways:
  ``sweep`` (today's code: every study one batched generation), ``per_condition`` (one
  ``adapter.generate`` per condition, finished rows leave), ``per_condition_keep`` (one pass per
  condition with finished rows kept in the batch: the code before sweeps). Checks that the
  accuracies of every condition are identical and reports the time ratios.
* ``tokens``: greedy tokens of the ablation conditions, sweep vs one pass per condition: the share
  of identical tokens and of identical rows (a batch of another size may flip a near-tie).
* ``generation``: new tokens/s of plain greedy generation of the same batch: HF ``generate`` vs our
  decoding loop on both backends.

Value sets are random 1% sets at two layers (the timing does not depend on which dims they are).
Runs on the packaged default model (``--model tiny``: the tiny random model, a smoke test).

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_interventions.py [--examples 32] [--new-tokens 48]
        [--repeats 1] [--threads 1] [--device cpu|cuda] [--ways sweep,per_condition,per_condition_keep]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import tempfile
import time
from contextlib import nullcontext

import torch

from reward_circuits.neurons import NeuronSet
from reward_circuits.interventions import ablation_interventions, per_condition_passes, sweep
from reward_circuits.models import GenerationConfig, load_model

WAYS = ("sweep", "per_condition", "per_condition_keep")


def _load(which: str, backend: str, device: str):
    if which == "tiny":
        from reward_circuits.models.tiny import tiny_adapter

        adapter = tiny_adapter(backend)
        if device != "cpu":
            (adapter.model if backend == "transformer_lens" else adapter.hf).to(device)
            adapter.device = torch.device(device)
        return adapter
    return load_model(which, backend=backend, device=device)


def _task(which: str, n: int, new_tokens: int):
    if which == "tiny":
        from reward_circuits.tasks import Example, Task

        examples = [Example(f"t{i}", f"Say {i} {'x' * (i % 5)}", "0") for i in range(n)]
        return Task("tiny", examples, lambda resp, ex: float(len(resp) % 2 == 0), max_new_tokens=new_tokens)
    from reward_circuits.tasks import get_task

    task = get_task("arithmetic:1", n=n, seed=7)  # the main job's default primary task, its eval seed
    task.max_new_tokens = new_tokens
    return task


def _value_sets(adapter, n_layers: int) -> dict[int, NeuronSet]:
    L = adapter.n_layers
    layers = sorted({L // 2, (2 * L) // 3, L // 3})[:n_layers]
    k = max(1, round(0.01 * adapter.d_model))
    return {l: NeuronSet.random(f"blocks.{l}.hook_resid_post", adapter.d_model, k, seed=l, layer=l)
            for l in layers}


def _accuracies(sections) -> dict:
    """Every accuracy number of the stage's sections (the results that must not change)."""
    out = {}

    def walk(x, path):
        if isinstance(x, dict):
            for k, v in x.items():
                walk(v, f"{path}/{k}")
        elif isinstance(x, list):
            for i, v in enumerate(x):
                walk(v, f"{path}[{i}]")
        elif ("acc" in path.rsplit("/", 1)[-1] or "accuracy" in path or "auc" in path or "spearman" in path) \
                and isinstance(x, (int, float)):
            out[path] = x

    for s in sections:
        walk(s.summary, s.key)
    return out


def _stage(adapter, task, value_sets, args, way: str) -> tuple[float, float, dict]:
    """One run of the main job's intervention stage; (wall seconds, CPU seconds of this process, accuracies)."""
    from reward_circuits.studies.run.interventions import (InterventionInputs, InterventionStudyConfig,
                                                        run_intervention_stage)

    cfg = GenerationConfig(max_new_tokens=args.new_tokens, batch_size=args.batch_size, progress=False,
                           drop_finished=way != "per_condition_keep")
    study = InterventionStudyConfig(n_random_draws=args.draws, seed=0, dose_fractions=tuple(args.dose_fractions),
                                    dose_modes=("zero", "mean"), dose_random_draws=1,
                                    steering_factors=tuple(args.factors))
    ctx = nullcontext() if way == "sweep" else per_condition_passes()
    with tempfile.TemporaryDirectory() as out, ctx:
        t0, c0 = time.perf_counter(), time.process_time()
        result = run_intervention_stage(adapter, task, InterventionInputs(value_sets), out, study, cfg,
                                        examples=list(task.examples))
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    return seconds, cpu, _accuracies(result.to_sections())


def _token_agreement(adapter, task, value_sets, args) -> dict:
    conds = {"baseline": []}
    for l, ns in value_sets.items():
        conds[f"value/{l}"] = ablation_interventions(ns, "zero")
    cfg = GenerationConfig(max_new_tokens=args.new_tokens, batch_size=args.batch_size, progress=False)
    a = sweep(adapter, task, conds, cfg)
    with per_condition_passes():
        b = sweep(adapter, task, conds, cfg)
    same_tok = total_tok = same_rows = rows = 0
    for name in conds:
        for g, h in zip(a[name].generations, b[name].generations):
            rows += 1
            same_rows += g.response_ids == h.response_ids
            n = max(len(g.response_ids), len(h.response_ids))
            total_tok += n
            same_tok += sum(x == y for x, y in zip(g.response_ids, h.response_ids))  # position by position
    acc_same = all(a[k].accuracy == b[k].accuracy for k in conds)
    return {"identical_token_share": same_tok / max(total_tok, 1), "identical_row_share": same_rows / max(rows, 1),
            "rows": rows, "tokens": total_tok, "accuracies_identical": acc_same,
            "accuracy_sweep": a.accuracies(), "accuracy_per_condition": b.accuracies()}


def _generation(adapters, task, args) -> dict:
    nn = adapters.get("nnsight") or next(iter(adapters.values()))
    prompts = [task.render(ex, nn.tokenizer) for ex in task.examples][: args.gen_batch]
    batch = nn.tokenize(prompts)
    eos = sorted(nn.eos_ids)
    tok = nn.tokenizer
    hf = getattr(nn, "hf", None)
    cfg = GenerationConfig(max_new_tokens=args.new_tokens, batch_size=len(prompts), progress=False, refill=False)

    def count(rows):
        n = 0
        for r in rows:
            for t in r:
                n += 1
                if t in eos:
                    break
        return n

    runners = {}
    if hf is not None:
        def hf_generate():
            with torch.no_grad():
                out = hf.generate(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                                  max_new_tokens=args.new_tokens, do_sample=False, pad_token_id=tok.pad_token_id,
                                  eos_token_id=eos, temperature=None, top_p=None, top_k=None)
            return count(out[:, batch.input_ids.shape[1]:].tolist())
        runners["hf_generate"] = hf_generate
    for backend, ad in adapters.items():
        runners[f"{backend}_generate"] = (lambda ad=ad: count([g.response_ids for g in ad.generate(prompts, cfg)]))
    times: dict[str, list[float]] = {k: [] for k in runners}
    tokens: dict[str, int] = {}
    for r in range(args.gen_repeats):
        order = list(runners) if r % 2 == 0 else list(reversed(list(runners)))
        for k in order:
            t0 = time.perf_counter()
            tokens[k] = runners[k]()
            times[k].append(time.perf_counter() - t0)
    rows = {k: {"seconds": statistics.median(v), "tokens": tokens[k], "tokens_per_s": tokens[k] / statistics.median(v)}
            for k, v in times.items()}
    if "hf_generate" in rows:
        for k in rows:
            rows[k]["vs_hf_generate"] = rows[k]["tokens_per_s"] / rows["hf_generate"]["tokens_per_s"]
    return {"batch": len(prompts), "repeats": args.gen_repeats, **rows}


def main(argv: list[str] | None = None) -> dict:
    """Run the bench; ``argv`` are command-line options (``None``: the defaults, not ``sys.argv``)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default", help="'default' (SmolLM2-135M-Instruct) or 'tiny'")
    ap.add_argument("--backend", default="transformer_lens", help="backend of the stage rows")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--examples", type=int, default=32, help="examples per condition (the main job's eval_examples)")
    ap.add_argument("--new-tokens", type=int, default=48)
    ap.add_argument("--batch-size", type=int, default=32, help="rows per pass of the per-condition runs")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument("--dose-fractions", type=float, nargs="*", default=[0.01, 0.02, 0.05, 0.1])
    ap.add_argument("--factors", type=float, nargs="*", default=[0.0, 0.5, 1.5, 2.0, 4.0])
    ap.add_argument("--ways", default=",".join(WAYS))
    ap.add_argument("--repeats", type=int, default=1, help="stage runs per way (interleaved; median)")
    ap.add_argument("--gen-batch", type=int, default=32)
    ap.add_argument("--gen-repeats", type=int, default=3)
    ap.add_argument("--skip", default="", help="comma list of rows to skip: stage,tokens,generation")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = ap.parse_args([] if argv is None else argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    skip = set(filter(None, args.skip.split(",")))
    ways = [w for w in args.ways.split(",") if w]
    bad = [w for w in ways if w not in WAYS]
    if bad:
        raise SystemExit(f"unknown ways {bad}: choose from {WAYS}")
    load1 = os.getloadavg()[0]
    adapter = _load(args.model, args.backend, args.device)
    task = _task(args.model, args.examples, args.new_tokens)
    value_sets = _value_sets(adapter, args.layers)
    rows: dict = {"config": {**{k: v for k, v in vars(args).items()}, "torch_threads": torch.get_num_threads(),
                             "cpus": os.cpu_count(), "model": adapter.name, "loadavg_start": load1}}
    print(f"model={adapter.name} backend={args.backend} device={args.device} threads={torch.get_num_threads()} "
          f"load={load1:.1f}", flush=True)
    adapter.generate(["warm up"], GenerationConfig(max_new_tokens=2, progress=False))

    if "stage" not in skip:
        times: dict[str, list[float]] = {w: [] for w in ways}
        cpus: dict[str, list[float]] = {w: [] for w in ways}
        accs: dict[str, dict] = {}
        for r in range(args.repeats):
            for way in (ways if r % 2 == 0 else list(reversed(ways))):
                seconds, cpu, accs[way] = _stage(adapter, task, value_sets, args, way)
                times[way].append(seconds)
                cpus[way].append(cpu)
                print(f"[stage] {way}: {seconds:.1f} s wall, {cpu:.1f} s CPU", flush=True)
        med = {w: statistics.median(t) for w, t in times.items()}
        med_cpu = {w: statistics.median(t) for w, t in cpus.items()}
        ref = ways[0]
        stage = {w: {"seconds": med[w], "runs": times[w], "cpu_seconds": med_cpu[w], "cpu_runs": cpus[w]} for w in ways}
        for w in ways:
            if w != ref:
                stage[w][f"{ref}_speedup"] = med[w] / med[ref]  # this way's time / the first way's time
                # CPU time of the process: with one torch thread, unaffected by other processes' load
                stage[w][f"{ref}_cpu_speedup"] = med_cpu[w] / med_cpu[ref]
                diffs = sorted(k for k in accs[ref] if not _same(accs[ref].get(k), accs[w].get(k)))
                stage[w]["results_identical"] = not diffs
                stage[w]["differing"] = diffs[:20]
        stage["n_results"] = len(accs[ref])
        stage["loadavg_end"] = os.getloadavg()[0]
        rows["stage"] = stage
        print(json.dumps(stage, indent=1), flush=True)
    if "tokens" not in skip:
        rows["tokens"] = _token_agreement(adapter, task, value_sets, args)
        print(json.dumps(rows["tokens"], indent=1), flush=True)
    if "generation" not in skip:
        adapters = {args.backend: adapter}
        other = "nnsight" if args.backend == "transformer_lens" else "transformer_lens"
        adapters[other] = _load(args.model, other, args.device)
        rows["generation"] = _generation(adapters, task, args)
        print(json.dumps(rows["generation"], indent=1), flush=True)
    rows["config"]["loadavg_end"] = os.getloadavg()[0]
    if args.json:
        from reward_circuits.io import atomic_write_json

        atomic_write_json(args.json, rows)
    return rows


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
