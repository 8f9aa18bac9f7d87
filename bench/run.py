"""``python -m bench``: every benchmark in one run, one table of ratios, each row next to its anchor.

Rows (issue 15, part B):

1. capture of the needed hook points vs a bare forward (target ≥ 0.95× throughput), vs
   TransformerLens ``run_with_cache`` without a filter and vs an nnsight ``trace`` that ``.save()``s
   every layer (time and peak extra memory);
2. rollout generation tokens/s on each backend vs plain HF ``generate`` on the same batch (target
   ≥ 0.9×), hooked vs plain (target ≤ 1.1× time), and vs the machine floor per decoding step:
   max(weight bytes / measured memory bandwidth, FLOPs / measured matmul throughput);
3. all-layer probe training vs a per-layer loop, and vs the matmul floor (target ≤ 1.5×);
4. peak RAM of probe training and of capture (``build_store``) as the store grows 1×, 4×, 16×
   (target: flat, 16×/1× ≤ 1.25);
5. SAE training throughput of ``reward_circuits.sae.train_sae`` vs sae-lens's own ``SAETrainer`` on the same
   activations, initial weights, batch order and hyper-parameters, with the final MSE / L0 of both (``bench_sae.py``);
6. the default main job: wall time and peak RSS per stage from a run's ``summary.json`` (``--main-job-summary``;
   the job records both), or measured here (``--main-job``, minutes);
7. computing less (issue 30, ``bench_speed.py``): the shared-trunk sweep vs today's sweep on an ablation study
   (tokens asserted identical), capture while generating vs generate-then-capture (rollouts + store);
8. the main job's own stages (issue 30, ``bench_speed.bench_job_stages``): rollouts + store captured while
   generating vs today's two passes, and the whole intervention stage with the shared trunk vs today's
   sweeps (tokens asserted identical), each run once.

Timing is the median of ``--repeats`` interleaved repeats after a warm-up (variants alternate inside
each repeat, so load from other processes hits them alike); peak memory is measured in a fresh
subprocess per variant/size (VmHWM after resetting it with ``/proc/self/clear_refs``). Results go to
``--json`` (default ``bench/results/latest.json``) with the machine and the load average.

    .venv/bin/python -m bench [--quick] [--repeats 5] [--main-job-summary runs/default/summary.json] [--main-job]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
warnings.filterwarnings("ignore")

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Row:
    """One line of the table: ``ours`` against ``anchor``; ``ratio`` reads as ``ratio_meaning``."""

    item: str  # issue row number
    what: str
    ours: float | None
    anchor: float | None
    unit: str
    ratio: float | None
    ratio_meaning: str
    target: str = ""  # e.g. ">=0.95" or "<=1.1"
    note: str = ""

    @property
    def verdict(self) -> str:
        if not self.target or self.ratio is None:
            return ""
        op, val = self.target[:2], float(self.target[2:])
        ok = self.ratio >= val if op == ">=" else self.ratio <= val
        return "ok" if ok else "MISS"


# ---- machine -------------------------------------------------------------------------------------


def machine_info() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), platform.processor())
    mem_kib = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal"))
    return {"cpu": cpu, "cpus": os.cpu_count(), "ram_gib": round(mem_kib / 2**20, 1), "python": platform.python_version(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "loadavg_start": os.getloadavg(),
            "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime())}


def memory_bandwidth_gbs(mib: int = 256, repeats: int = 7) -> float:
    """Sustained copy bandwidth: bytes read + written by ``dst.copy_(src)``, median of repeats."""
    src = torch.ones(mib * 2**20 // 4)
    dst = torch.empty_like(src)
    dst.copy_(src)
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        dst.copy_(src)
        ts.append(time.perf_counter() - t0)
    return 2 * src.numel() * 4 / statistics.median(ts) / 1e9


def matmul_gflops(m: int, k: int, n: int, repeats: int = 20, transpose_a: bool = False) -> float:
    """Measured float32 matmul throughput on an ``[m, k] × [k, n]`` product (median); ``transpose_a``: ``a`` is
    the transposed view of a contiguous ``[k, m]`` tensor (as in a weight gradient ``xᵀ @ g``)."""
    a, b = (torch.randn(k, m).T if transpose_a else torch.randn(m, k)), torch.randn(k, n)
    for _ in range(3):
        a @ b
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        ts.append(time.perf_counter() - t0)
    return 2 * m * k * n / statistics.median(ts) / 1e9


def interleaved_medians(runners: dict, repeats: int, grad: bool = False, cpu: dict | None = None) -> dict[str, float]:
    """Median wall seconds per runner; with ``cpu`` (a dict), also the median CPU seconds of the
    process (``time.process_time``: steadier than wall time on a loaded machine) into it."""
    times: dict[str, list[float]] = {k: [] for k in runners}
    cpus: dict[str, list[float]] = {k: [] for k in runners}
    with torch.set_grad_enabled(grad):
        for fn in runners.values():
            fn()  # warm-up
        for _ in range(repeats):
            for k, fn in runners.items():
                gc.collect()
                t0, c0 = time.perf_counter(), time.process_time()
                out = fn()
                times[k].append(time.perf_counter() - t0)
                cpus[k].append(time.process_time() - c0)
                del out
    if cpu is not None:
        cpu.update({k: statistics.median(v) for k, v in cpus.items()})
    return {k: statistics.median(v) for k, v in times.items()}


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


class AnonPeak:
    """Peak anonymous RSS (``RssAnon``: heap, tensors; not the page cache of memory-mapped shard files,
    which the kernel reclaims at will) sampled every 2 ms in a thread, minus the value at start."""

    def __enter__(self) -> "AnonPeak":
        gc.collect()
        self.before = self.peak = _status_kib("RssAnon")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _status_kib("RssAnon"))
            time.sleep(0.002)

    def __exit__(self, *exc) -> None:
        self.peak = max(self.peak, _status_kib("RssAnon"))
        self._stop.set()
        self._thread.join()

    @property
    def extra_mib(self) -> float:
        return (self.peak - self.before) / 1024

    @property
    def peak_mib(self) -> float:
        return self.peak / 1024


def reset_peak() -> int:
    """Reset VmHWM to the current RSS (Linux) and return the RSS in KiB."""
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status_kib("VmRSS")


def run_child(args: list[str], timeout: int = 900) -> dict | None:
    cmd = [sys.executable, "-m", "bench.run", *args]
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=str(REPO), env=env)
    for line in res.stdout.splitlines()[::-1]:
        if line.startswith("{"):
            return json.loads(line)
    print(f"[child {args} failed]\n{res.stderr[-1500:]}", file=sys.stderr)
    return None


# ---- 1. capture ----------------------------------------------------------------------------------


def bench_capture(adapters, args) -> list[Row]:
    from bench import bench_capture as bc

    ad_tl = adapters["transformer_lens"]
    batch = bc.rollout_like_batch(ad_tl, args.batch, args.tokens)
    hooks = bc.capture_hooks(ad_tl.n_layers)
    n_real = int(batch.attention_mask.sum())
    variants = {"transformer_lens": ["tl_bare", "tl_capture", "tl_run_with_cache"],
                "nnsight": ["hf_bare", "nn_capture", "nn_trace_save"]}
    t: dict[str, float] = {}
    for backend, vs in variants.items():
        t.update(interleaved_medians({v: bc.make_runner(v, adapters[backend], batch, hooks) for v in vs}, args.repeats))
    mem: dict[str, float | None] = {}
    if not args.no_memory:
        margs = argparse.Namespace(batch=args.batch, tokens=args.tokens, threads=args.threads)
        for vs in variants.values():
            for v in vs:
                mem[v] = bc.measure_memory(v, margs)[0]
    shape = f"{args.batch}x{args.tokens} tok, {len(hooks)} hooks"
    rows = []
    for backend, (bare, ours, anchor) in (("TL", variants["transformer_lens"]), ("nnsight", variants["nnsight"])):
        rows.append(Row("1", f"capture {backend}: ours vs bare forward ({shape})", n_real / t[ours], n_real / t[bare], "tok/s",
                        t[bare] / t[ours], "throughput ours/bare", ">=0.95"))
        label = "run_with_cache (no filter)" if backend == "TL" else "trace + .save() every layer"
        rows.append(Row("1", f"capture {backend}: ours vs {label}, time", t[ours], t[anchor], "s", t[anchor] / t[ours],
                        "speed-up over anchor"))
        if mem.get(ours) is not None and mem.get(anchor) is not None:
            rows.append(Row("1", f"capture {backend}: ours vs {label}, peak extra RAM", mem[ours], mem[anchor], "MiB",
                            mem[ours] / max(mem[anchor], 1e-9), "memory ours/anchor", note=f"bare forward: {mem.get(bare):.0f} MiB"))
    return rows


# ---- 2. generation -------------------------------------------------------------------------------


def bench_generation(adapters, args) -> list[Row]:
    from bench import bench_capture as bc
    from reward_circuits.interventions import zero_ablate
    from reward_circuits.models import GenerationConfig

    nn, tl = adapters["nnsight"], adapters["transformer_lens"]
    hf = nn.hf
    prompts = bc.gen_prompts(nn, args.gen_batch)
    batch = nn.tokenize(prompts, padding_side="left")
    eos = sorted(nn.eos_ids)
    tok = nn.tokenizer
    cfg = GenerationConfig(max_new_tokens=args.new_tokens, batch_size=args.gen_batch, progress=False, refill=False)  # the same batch as HF generate
    layers = [nn.n_layers // 4, nn.n_layers // 2, 3 * nn.n_layers // 4]
    k = max(1, nn.d_mlp // 100)
    hooks = [(f"blocks.{l}.mlp.hook_post", zero_ablate(list(range(k)))) for l in layers]

    def plain_hf():
        out = hf.generate(input_ids=batch.input_ids, attention_mask=batch.attention_mask, max_new_tokens=args.new_tokens,
                          do_sample=False, pad_token_id=tok.pad_token_id, eos_token_id=eos, temperature=None, top_p=None, top_k=None)
        return bc.count_new(out[:, batch.input_ids.shape[1]:].tolist(), set(eos))

    runners = {
        "hf": plain_hf,
        "tl": lambda: [g.response_ids for g in tl.generate(prompts, cfg)],
        "nn": lambda: [g.response_ids for g in nn.generate(prompts, cfg)],
        "tl_hooked": lambda: [g.response_ids for g in tl.generate(prompts, cfg, fwd_hooks=hooks)],
        "nn_hooked": lambda: [g.response_ids for g in nn.generate(prompts, cfg, fwd_hooks=hooks)],
    }
    outputs = {k_: fn() for k_, fn in runners.items()}
    cpu: dict[str, float] = {}
    med = interleaved_medians(runners, args.gen_repeats, cpu=cpu)
    n_tok = {k_: sum(len(r) for r in o) for k_, o in outputs.items()}
    steps = {k_: max(len(r) for r in o) for k_, o in outputs.items()}
    rate = {k_: n_tok[k_] / med[k_] for k_ in runners}

    # the machine floor per decoding step of the whole batch
    n_params = sum(p.numel() for p in hf.parameters())  # tied embedding counted once
    weight_bytes = sum(p.numel() * p.element_size() for p in hf.parameters())
    bw = memory_bandwidth_gbs()
    gf = matmul_gflops(args.gen_batch, nn.d_model, 49152 if nn.tokenizer.vocab_size > 40000 else nn.d_mlp)
    floor_bytes = weight_bytes / (bw * 1e9)
    floor_flops = 2 * n_params * args.gen_batch / (gf * 1e9)
    floor = max(floor_bytes, floor_flops)
    same = {k_: outputs[k_] == outputs["hf"] for k_ in ("tl", "nn")}
    note = f"{args.gen_batch} prompts x {args.new_tokens} new tokens, greedy"
    def by_cpu(a: str, b: str) -> str:
        return f"CPU time {cpu[a]:.2f} s vs {cpu[b]:.2f} s: {cpu[a] / cpu[b]:.2f}x"

    rows = [
        Row("2", "generate TL vs HF generate (same batch)", rate["tl"], rate["hf"], "new tok/s", rate["tl"] / rate["hf"],
            "throughput ours/HF", ">=0.9", note + ("" if same["tl"] else "; TOKENS DIFFER FROM HF")
            + f"; throughput by {by_cpu('hf', 'tl')}"),
        Row("2", "generate nnsight vs HF generate (same batch)", rate["nn"], rate["hf"], "new tok/s", rate["nn"] / rate["hf"],
            "throughput ours/HF", ">=0.9", ("" if same["nn"] else "TOKENS DIFFER FROM HF; ")
            + f"throughput by {by_cpu('hf', 'nn')}"),
        Row("2", "generate TL hooked vs plain (zero-ablate 1% at 3 layers)", med["tl_hooked"], med["tl"], "s",
            med["tl_hooked"] / med["tl"], "time hooked/plain", "<=1.1", by_cpu("tl_hooked", "tl")),
        Row("2", "generate nnsight hooked vs plain", med["nn_hooked"], med["nn"], "s", med["nn_hooked"] / med["nn"],
            "time hooked/plain", "<=1.1", by_cpu("nn_hooked", "nn")),
    ]
    for k_, label in (("hf", "HF generate"), ("tl", "TL"), ("nn", "nnsight")):
        per_step = med[k_] / steps[k_]
        rows.append(Row("2", f"generate {label}: time per step vs machine floor", per_step * 1e3, floor * 1e3, "ms/step",
                        per_step / floor, "times above floor",
                        note=(f"floor = max(weights {weight_bytes / 2**20:.0f} MiB / {bw:.1f} GB/s = {floor_bytes * 1e3:.1f} ms, "
                              f"{2 * n_params * args.gen_batch / 1e9:.1f} GFLOP / {gf:.0f} GFLOP/s = {floor_flops * 1e3:.1f} ms)"
                              if k_ == "hf" else "incl. prefill")))
    return rows


# ---- 3. probes -----------------------------------------------------------------------------------


def bench_probes(args) -> list[Row]:
    from reward_circuits.analysis.probes import ValueProbe, ValueProbeConfig
    from reward_circuits.data.store import write_store_from_arrays
    from reward_circuits.data.synthetic import planted_rollouts

    hooks = [f"blocks.{i}.hook_resid_post" for i in range(args.probe_hooks)]
    d, batch_states = 576, 4096
    with tempfile.TemporaryDirectory() as tmp:
        acts, rewards, _ = planted_rollouts(args.probe_rollouts, d=d, k=8, T_range=(30, 50), seed=0, hooks=hooks)
        store = write_store_from_arrays(f"{tmp}/store", acts, rewards.tolist(), model="planted-bench")
        del acts
        train, _test = store.split(0.3, seed=0)
        cfg = ValueProbeConfig(epochs=args.probe_epochs, batch_states=batch_states, seed=0)
        # what one fit trains: every (hook, weight-decay candidate) slot on the batches of its fit split
        fitted = ValueProbe(cfg.replace(epochs=1)).fit(store, hooks, train, verbose=False)
        sizes = [len(b) for b in store.iter_batches(hooks[0], batch_states=fitted.batch_states_, indices=fitted.fit_indices_)]
        n_slots = len(hooks) * (len(cfg.weight_decays) if fitted.validation_indices_.size else 1)
        n_states = sum(len(b) for b in store.iter_batches(hooks[0], indices=train))
        matmul_floor = probe_matmul_floor(sizes, d, cfg.hidden, n_slots, args.probe_epochs)
        runners = {
            "stacked": lambda: ValueProbe(cfg).fit(store, hooks, train, verbose=False),
            "loop": lambda: [ValueProbe(cfg).fit(store, h, train, verbose=False) for h in hooks],
            "floor": matmul_floor,  # timed in the same interleaved repeats, so under the same load
        }
        med = interleaved_medians(runners, args.repeats, grad=True)
    gflop = 4 * d * cfg.hidden * sum(sizes) * n_slots * args.probe_epochs / 1e9
    shape = f"{len(hooks)} hooks, {n_states} train states, d={d}, {args.probe_epochs} epochs"
    return [
        Row("3", f"probes: all layers at once vs per-layer loop ({shape})", med["stacked"], med["loop"], "s",
            med["loop"] / med["stacked"], "speed-up over loop"),
        Row("3", "probes: all layers at once vs matmul floor", med["stacked"], med["floor"], "s", med["stacked"] / med["floor"],
            "times above floor", "<=1.5",
            f"floor = the fit's first-layer matmuls alone, forward x@W1 + weight gradient x^T@g ({gflop:.1f} GFLOP, "
            f"{gflop / med['floor']:.0f} GFLOP/s): {n_slots} probe slots ({len(hooks)} hooks x {n_slots // len(hooks)} "
            f"weight decays) on the {sum(sizes)} states of the fit split (validation rollouts held out) in batches of "
            f"{max(sizes)}, {args.probe_epochs} epochs"),
    ]


def probe_matmul_floor(sizes: list[int], d: int, hidden: int, n_slots: int, epochs: int):
    """A runner doing only the FLOP-dominant work of ``ValueProbe.fit``: per epoch, batch and probe slot the
    forward ``x @ W1`` and the weight gradient ``xᵀ @ dL/dh`` (the states are frozen: no input gradient)."""
    xs = [torch.randn(n, d) for n in sizes]
    gs = [torch.randn(n, hidden) for n in sizes]
    w = torch.randn(d, hidden)
    out_f = [torch.empty(n, hidden) for n in sizes]
    out_w = torch.empty(d, hidden)

    def run() -> None:
        for _ in range(epochs):
            for x, g, of in zip(xs, gs, out_f):
                for _ in range(n_slots):
                    torch.mm(x, w, out=of)
                    torch.mm(x.T, g, out=out_w)

    return run


# ---- 4. peak RAM as the store grows ----------------------------------------------------------------


def child_ram_probe(store_path: str) -> None:
    from reward_circuits.analysis.probes import ValueProbe, ValueProbeConfig
    from reward_circuits.data.store import ActivationStore

    torch.set_num_threads(1)
    store = ActivationStore(store_path)
    ValueProbe(ValueProbeConfig(epochs=1, batch_states=2048)).fit(store, store.hook_names[:1], verbose=False)  # warm-up
    before = reset_peak()
    with AnonPeak() as anon:
        ValueProbe(ValueProbeConfig(epochs=1, batch_states=2048)).fit(store, store.hook_names, verbose=False)
    print(json.dumps({"extra_mib": anon.extra_mib, "peak_mib": anon.peak_mib,
                      "rss_extra_mib": (_status_kib("VmHWM") - before) / 1024, "n_states": store.n_states}))


def child_ram_capture(n: int, out: str) -> None:
    from reward_circuits.data.capture import build_store
    from reward_circuits.data.rollouts import Rollout
    from reward_circuits.models import load_model

    torch.set_num_threads(1)
    ad = load_model("default", backend="transformer_lens")
    tok = ad.tokenizer
    prompt = tok(ad.chat_prompt([{"role": "user", "content": "What is 7 + 5? Explain."}]), add_special_tokens=False)["input_ids"]
    rng = np.random.default_rng(0)
    rolls = [Rollout(id=f"r{i}", task="bench", example_id=f"e{i}", prompt_ids=prompt,
                     response_ids=rng.integers(100, 5000, size=int(rng.integers(8, 24))).tolist(), response_text="",
                     reward=float(i % 2), gold="12") for i in range(n)]
    hooks = [f"blocks.{l}.hook_resid_post" for l in range(0, ad.n_layers, 3)]
    build_store(ad, rolls[:8], hooks, out + "_warm", batch_size=8, progress=False)  # pages in the weights
    before = reset_peak()
    with AnonPeak() as anon:
        store = build_store(ad, rolls, hooks, out, batch_size=8, progress=False)
    print(json.dumps({"extra_mib": anon.extra_mib, "peak_mib": anon.peak_mib,
                      "rss_extra_mib": (_status_kib("VmHWM") - before) / 1024, "n_states": store.n_states}))


def random_store(path: str, n: int, seed: int, d: int = 576, per_shard: int = 100) -> None:
    """A store of ``n`` random rollouts (20-40 states, 2 hooks), written shard by shard (flat RAM here too)."""
    from reward_circuits.data.store import ActivationStoreWriter

    hooks = ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
    g = torch.Generator().manual_seed(seed)
    w = ActivationStoreWriter(path, hooks, model="random-bench")
    for a in range(0, n, per_shard):
        ids = [f"r{i}" for i in range(a, min(a + per_shard, n))]
        lens = torch.randint(20, 41, (len(ids),), generator=g).tolist()
        w.write(ids, [float(i % 2) for i in range(a, a + len(ids))],
                {h: [torch.randn(L, d, generator=g) for L in lens] for h in hooks})
    w.close()


def bench_ram_growth(args) -> list[Row]:
    sizes = [1, 4, 16]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        probe_mib, probe_rss, cap_rss, probe_extra, cap_extra = {}, {}, {}, {}, {}
        for s in sizes:
            path = f"{tmp}/probe_{s}"
            random_store(path, args.ram_probe_rollouts * s, seed=s)
            r = run_child(["--child-ram-probe", path])
            probe_mib[s] = r and r["peak_mib"]
            probe_extra[s] = r and r["extra_mib"]
            probe_rss[s] = r and r["rss_extra_mib"]
        cap_mib = {}
        for s in sizes:
            r = run_child(["--child-ram-capture", str(args.ram_capture_rollouts * s), f"{tmp}/cap_{s}"])
            cap_mib[s] = r and r["peak_mib"]
            cap_extra[s] = r and r["extra_mib"]
            cap_rss[s] = r and r["rss_extra_mib"]
    for name, mib, rss, extra, base in (("probe training", probe_mib, probe_rss, probe_extra, args.ram_probe_rollouts),
                                        ("capture (build_store)", cap_mib, cap_rss, cap_extra, args.ram_capture_rollouts)):
        if mib[1] is None or mib[16] is None:
            rows.append(Row("4", f"peak RAM of {name} at 16x vs 1x store", None, None, "MiB", None, "", note="child failed"))
            continue
        rows.append(Row("4", f"peak RAM of {name}: store 16x vs 1x ({base} -> {16 * base} rollouts)", mib[16], mib[1], "MiB",
                        mib[16] / max(mib[1], 1e-9), "peak RAM 16x/1x", "<=1.25",
                        f"peak anonymous RSS of the process (heap, tensors, weights; 4x: {mib[4]:.0f} MiB); extra over the "
                        "start of the call 1x/4x/16x: " + "/".join(f"{extra[s]:.0f}" for s in sizes)
                        + " MiB; VmHWM extra incl. mmapped shard pages: " + "/".join(f"{rss[s]:.0f}" for s in sizes) + " MiB"))
    return rows


# ---- 6. the main job ----------------------------------------------------------------------------


def main_job_rows(summary_path: str | None, measure: bool) -> list[Row]:
    rss_by_stage: dict[str, float] = {}
    if measure:
        out = tempfile.mkdtemp(prefix="bench_main_job_")
        samples: list[tuple[float, int]] = []
        t0 = time.time()
        proc = subprocess.Popen([sys.executable, "-m", "reward_circuits.cli", "run", "--out", out], cwd=str(REPO),
                                env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

        def sample():
            while proc.poll() is None:
                try:
                    rss = int(next(l for l in open(f"/proc/{proc.pid}/status") if l.startswith("VmRSS")).split()[1])
                    samples.append((time.time() - t0, rss))
                except (OSError, StopIteration):
                    pass
                time.sleep(0.5)

        th = threading.Thread(target=sample, daemon=True)
        th.start()
        proc.wait()
        th.join()
        wall = time.time() - t0
        summary_path = f"{out}/summary.json"
        if proc.returncode != 0:
            return [Row("6", "main job", None, None, "s", None, "", note=f"failed: {proc.stderr.read().decode()[-300:]}")]
        timings = json.load(open(summary_path))["timings"]
        start = wall - timings["total_s"]  # imports before the job's clock starts; stages run in order
        for stage, secs in timings.items():
            if stage == "total_s":
                continue
            window = [r for t, r in samples if start <= t <= start + secs]
            rss_by_stage[stage] = max(window) / 1024 if window else float("nan")
            start += secs
        rss_by_stage["total_s"] = max(r for _, r in samples) / 1024
    if not summary_path or not Path(summary_path).exists():
        return [Row("6", "main job (pass --main-job-summary runs/default/summary.json or --main-job)", None, None, "s", None, "",
                    note="not measured in this run")]
    summary = json.load(open(summary_path))
    timings = summary["timings"]
    recorded = summary.get("peak_rss_mb") or {}  # written by the main job itself (pipeline.stage_meter)
    rows = []
    for stage, secs in timings.items():
        rss = recorded.get(stage, rss_by_stage.get(stage))
        how = "recorded by the job: VmHWM per stage" if stage in recorded else ("sampled every 0.5 s" if stage in rss_by_stage else "")
        rows.append(Row("6", f"main job stage {stage.removesuffix('_s')}", secs, None, "s", None, "",
                        note="; ".join(x for x in (f"peak RSS {rss:,.0f} MiB ({how})" if rss is not None else "",
                                                   "" if measure else f"from {summary_path}") if x)))
    return rows


# ---- the table --------------------------------------------------------------------------------------


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:,.0f}"


def table(rows: list[Row]) -> str:
    head = "| # | benchmark | ours | anchor | unit | ratio | meaning | target | verdict | note |"
    lines = [head, "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = "-" if r.ratio is None else f"{r.ratio:.2f}x"
        lines.append(f"| {r.item} | {r.what} | {_fmt(r.ours)} | {_fmt(r.anchor)} | {r.unit} | {ratio} | {r.ratio_meaning} | "
                     f"{r.target.replace('>=', '≥ ').replace('<=', '≤ ')} | {r.verdict} | {r.note} |")
    return "\n".join(lines)


def _done(rows: list[Row], name: str) -> list[Row]:
    """Print a section's rows as soon as it finishes (a killed run keeps what it measured)."""
    print(f"{name} done:\n" + "\n".join(table(rows).splitlines()[2:]), flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smallest sizes (a smoke run, ratios are noisy)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--gen-repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=96)
    ap.add_argument("--gen-batch", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=24)
    ap.add_argument("--probe-rollouts", type=int, default=200)
    ap.add_argument("--probe-hooks", type=int, default=6)
    ap.add_argument("--probe-epochs", type=int, default=4)
    ap.add_argument("--ram-probe-rollouts", type=int, default=300,
                    help="1x store for the probe RAM row (300 x ~30 states > the 8192-state read batch)")
    ap.add_argument("--ram-capture-rollouts", type=int, default=16, help="1x rollouts for the capture RAM row (2 batches of 8)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: a shared machine's spinning OpenMP threads swamp timings)")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--sae-n", type=int, default=18000, help="activations for the SAE row (d=576)")
    ap.add_argument("--sae-epochs", type=int, default=2)
    ap.add_argument("--sae-repeats", type=int, default=3)
    ap.add_argument("--only", default="1,2,3,4,5,6,7", help="comma-separated row numbers to run (8: the main job's stages, minutes)")
    ap.add_argument("--device", default="cpu", help="torch device of the models of rows 1, 2 and 7 (cpu, cuda)")
    ap.add_argument("--speed-examples", type=int, default=8, help="row 7: prompts of the sweep / rollouts")
    ap.add_argument("--speed-random", type=int, default=3, help="row 7: random control sets of the ablation study")
    ap.add_argument("--speed-repeats", type=int, default=2, help="row 7: interleaved repeats")
    ap.add_argument("--speed-no-warmup", action="store_true", help="row 7: time the first runs (long sweeps)")
    ap.add_argument("--speed-late-only", action="store_true", help="row 7: the late-layer ablation study only")
    ap.add_argument("--speed-trunk-only", action="store_true", help="row 7: the shared-trunk rows only")
    ap.add_argument("--job-task", default="word_problems:0", help="row 8: the main job's task")
    ap.add_argument("--job-rollouts", type=int, default=160, help="row 8: rollouts (batch 128 x 48 tokens: more than one batch)")
    ap.add_argument("--job-examples", type=int, default=16, help="row 8: eval examples of the intervention stage")
    ap.add_argument("--job-random", type=int, default=2, help="row 8: random draws per control")
    ap.add_argument("--job-interventions-only", action="store_true",
                    help="row 8: time only the intervention stage (rollouts, store and value run once, untimed)")
    ap.add_argument("--job-layers", default="23,26,29", help="row 8: stored (and ablated) layers, comma-separated")
    ap.add_argument("--job-profile", choices=("default", "paper"), default="default",
                    help="row 8: 'paper': the paper profile's intervention conditions (early layer at depth 0.25 with "
                         "both controls; dose zero and mean at 1/2/5/10%%); store an early layer too (--job-layers 7,23,26,29)")
    ap.add_argument("--job-ways", default="trunk,certified",
                    help="row 8: which ways run beside today's sweeps (trunk, certified; comma-separated)")
    ap.add_argument("--main-job-summary", default=None, help="a run's summary.json to read stage timings from")
    ap.add_argument("--main-job", action="store_true", help="run the default main job here (minutes) and sample its RSS")
    ap.add_argument("--json", default=str(REPO / "bench" / "results" / "latest.json"))
    ap.add_argument("--child-ram-probe", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--child-ram-capture", nargs=2, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    ways = set(args.job_ways.split(","))
    if not ways or not ways <= {"trunk", "certified"}:
        ap.error(f"--job-ways {args.job_ways!r}: give trunk, certified or trunk,certified")
    torch.set_num_threads(args.threads)
    if args.child_ram_probe:
        return child_ram_probe(args.child_ram_probe)
    if args.child_ram_capture:
        return child_ram_capture(int(args.child_ram_capture[0]), args.child_ram_capture[1])
    if args.quick:
        args.repeats, args.gen_repeats, args.batch, args.tokens, args.new_tokens = 2, 1, 4, 48, 8
        args.probe_rollouts, args.probe_hooks, args.probe_epochs = 60, 3, 2
        args.ram_probe_rollouts, args.ram_capture_rollouts = 30, 8  # below one read batch: RAM ratios not meaningful
        args.sae_n, args.sae_epochs, args.sae_repeats = 2000, 1, 1
        args.speed_examples, args.speed_random, args.speed_repeats = 4, 1, 1
    only = set(args.only.split(","))
    machine = machine_info()
    print(f"machine: {machine['cpu']}, {machine['cpus']} CPUs, {machine['ram_gib']} GiB; torch {machine['torch']} "
          f"({args.threads} thread); load average {machine['loadavg_start'][0]:.2f}", flush=True)
    rows: list[Row] = []
    t_start = time.perf_counter()
    if only & {"1", "2", "7", "8"}:
        from reward_circuits.models import load_model

        backends = ("transformer_lens", "nnsight") if only & {"1", "2", "7"} else ("transformer_lens",)
        adapters = {b: load_model("default", backend=b, device=args.device) for b in backends}
        if "1" in only:
            rows += _done(bench_capture(adapters, args), "1. capture")
        if "2" in only:
            rows += _done(bench_generation(adapters, args), "2. generation")
        if "7" in only:
            from bench.bench_speed import bench_speed

            rows += _done(bench_speed(adapters, args), "7. shared trunk, capture while generating")
        if "8" in only:
            from bench.bench_speed import bench_job_stages

            rows += _done(bench_job_stages(adapters["transformer_lens"], args), "8. the main job's stages")
        del adapters
        gc.collect()
    if "3" in only:
        rows += _done(bench_probes(args), "3. probes")
    if "4" in only:
        rows += _done(bench_ram_growth(args), "4. RAM growth")
    if "5" in only:
        from bench.bench_sae import bench_sae

        rows += _done(bench_sae(args), "5. SAE training")
    if "6" in only:
        rows += main_job_rows(args.main_job_summary, args.main_job)
    machine["loadavg_end"] = os.getloadavg()
    machine["bench_seconds"] = round(time.perf_counter() - t_start, 1)
    print()
    print(table(rows))
    print(f"\nload average {machine['loadavg_start'][0]:.2f} at start, {machine['loadavg_end'][0]:.2f} at end "
          f"({machine['cpus']} CPUs): on a shared machine re-measure on a quiet one.")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    from reward_circuits.io import atomic_write_json, nan_to_none, relative_paths

    # paths in the record are relative to the record's own folder (a committed result names no machine path)
    atomic_write_json(out, nan_to_none({"machine": machine, "args": relative_paths(vars(args), out.parent), "rows": [dict(asdict(r), verdict=r.verdict) for r in rows],
                                        "table_markdown": table(rows)}))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
