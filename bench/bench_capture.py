"""Benchmark: activation capture and generation overhead of our adapters on the default model.

Capture (a batch of ``--batch`` rollout-like sequences — chat prompt + response text — of
``--tokens - 15 .. --tokens`` tokens, left-padded):

* TransformerLens: (a) bare ``model(tokens, attention_mask=..., return_type=None)``, (b) our
  ``adapter.capture`` of 11 ``hook_resid_post`` hooks (evenly spaced, incl. the last layer, so no
  early exit) + ``hook_embed``, (c) ``run_with_cache`` with no filter.
* nnsight: (a) bare HF forward ``hf(input_ids, attention_mask)`` (with logits), (a') the HF base
  model without the LM head ``hf.model(...)`` (the stricter reference: capture needs no logits),
  (b) our ``adapter.capture`` of the same 12 hooks, (c) a user's own ``lm.trace`` that ``.save()``s
  every layer's output and the logits (no ``tracer.stop()``).

Time is the median of ``--repeats`` runs after one warm-up; variants are interleaved round-robin
inside each repeat, so load from other processes on a shared machine hits all variants alike.
Throughput ratio = t(bare) / t(variant) (1.0 = no overhead; target ≥ 0.95 for ours).

Peak extra memory: torch's CPU allocations are invisible to tracemalloc, so each variant runs once
in a *fresh subprocess*: load the model, warm up with the same variant on a 1×24-token batch (pages
in the lazily mmapped weights), build the batch, reset the kernel's peak-RSS counter
(``echo 5 > /proc/self/clear_refs``, Linux ≥ 4.0), record VmRSS, run the variant once (no warm-up),
then read VmHWM: peak extra = VmHWM − VmRSS(before). It counts every byte the call made resident
(activations, caches, allocator growth), not just live tensors. Without clear_refs it falls back to
``ru_maxrss`` − RSS(before), which is only a lower bound if loading peaked higher (marked ``≥``).

Generation: greedy, ``--new-tokens`` new tokens for ``--batch`` chat prompts in one batch:
``adapter.generate`` on each backend vs a plain HF ``generate`` on the same left-padded tokens;
tokens/s counts generated tokens up to and including EOS (identical for all three when the
outputs agree, which is checked). Target ratio ≥ 0.9.

Threads: 1 by default. On a shared 2-core machine torch's 2 OpenMP threads spin-wait against other
processes and a forward became ~60× slower (13.6 s vs 0.22 s for 2×40 tokens), which swamps
everything being measured. Pass ``--threads 2`` on an idle machine.

    .venv/bin/python bench/bench_capture.py [--batch 16] [--tokens 128] [--repeats 5] [--gen-repeats 5]
        [--new-tokens 48] [--threads 1] [--no-memory]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import warnings

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
warnings.filterwarnings("ignore")

TOPICS = ["a lighthouse keeper", "a lost robot", "the first snow", "a dragon who bakes", "a quiet library",
          "a comet", "an old violin", "a city under the sea", "a tiny garden", "a chess champion",
          "a time traveller's lunch", "the last bus home", "a friendly ghost", "a mountain village",
          "a broken clock", "a paper boat"]
FILLER = ("First, we add the two numbers together. Seven plus five equals twelve, so the answer is twelve. "
          "To check, we can count up from seven: eight, nine, ten, eleven, twelve. That is five steps, "
          "which confirms the result. In general, adding a number means moving that many steps forward "
          "on the number line, and subtraction moves backwards. ")

TL_VARIANTS = ["tl_bare", "tl_capture", "tl_run_with_cache"]
NN_VARIANTS = ["hf_bare", "hf_base_model", "nn_capture", "nn_trace_save"]


def capture_hooks(n_layers: int) -> list[str]:
    layers = sorted({int(round(x)) for x in np.linspace(0, n_layers - 1, 11)})
    assert len(layers) == 11
    return ["hook_embed"] + [f"blocks.{l}.hook_resid_post" for l in layers]


def rollout_like_batch(adapter, n: int, max_len: int):
    """``n`` chat prompt + response sequences of ``max_len - 15 .. max_len`` tokens, left-padded."""
    tok = adapter.tokenizer
    filler = tok(FILLER * 8, add_special_tokens=False)["input_ids"]
    rng = np.random.default_rng(0)
    seqs = []
    for i in range(n):
        prompt = adapter.chat_prompt([{"role": "user", "content": f"What is {7 + i} + {5 + i}? Explain."}])
        p = tok(prompt, add_special_tokens=False)["input_ids"]
        length = max_len - int(rng.integers(0, 16))
        start = int(rng.integers(0, 40))
        seqs.append(p + filler[start : start + length - len(p)])
    return adapter.pad(seqs, "left")


def gen_prompts(adapter, n: int) -> list[str]:
    return [adapter.chat_prompt([{"role": "user", "content": f"Write a short story about {TOPICS[i % len(TOPICS)]}."}])
            for i in range(n)]


def make_runner(variant: str, adapter, batch, hooks):
    if variant == "tl_bare":
        return lambda: adapter.model(batch.input_ids, attention_mask=batch.attention_mask, return_type=None)
    if variant in ("tl_capture", "nn_capture"):
        return lambda: adapter.capture(batch, hooks)
    if variant == "tl_run_with_cache":
        return lambda: adapter.model.run_with_cache(batch.input_ids, attention_mask=batch.attention_mask)
    if variant == "nn_trace_save":  # what a user writes in nnsight: trace, .save() every layer, logits too
        def trace_save():
            saved: dict = {}  # created outside the block: nnsight hands back only what is bound there
            with adapter.lm.trace({"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}):
                for i, layer in enumerate(adapter.lm.model.layers):
                    saved[i] = layer.output.save()
                saved["logits"] = adapter.lm.lm_head.output.save()
            return saved

        return trace_save
    if variant == "hf_bare":
        return lambda: adapter.hf(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
    if variant == "hf_base_model":
        return lambda: adapter.hf.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
    raise ValueError(variant)


def backend_of(variant: str) -> str:
    return "transformer_lens" if variant.startswith("tl_") else "nnsight"


# ---- memory: one variant in a fresh process ----------------------------------------------------


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def child_memory(variant: str, batch_size: int, tokens: int, threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)
    from reward_circuits.models import load_model

    adapter = load_model("default", backend=backend_of(variant))
    hooks = capture_hooks(adapter.n_layers)
    # warm-up with the same variant on a tiny batch: pages in mmapped weights (safetensors loads
    # lazily, ~530 MB would otherwise count as "extra") and runs one-time initialisation
    with torch.no_grad():
        make_runner(variant, adapter, rollout_like_batch(adapter, 1, 24), hooks)()
    batch = rollout_like_batch(adapter, batch_size, tokens)
    run = make_runner(variant, adapter, batch, hooks)
    gc.collect()
    try:  # hand the heap freed while loading (HF -> TL weight conversion) back to the OS, or later
        import ctypes  # allocations reuse it without raising RSS and the "extra" reads ~0

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    exact = True
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS
    except OSError:
        exact = False
    before = _status_kib("VmRSS")
    with torch.no_grad():
        out = run()
    peak = _status_kib("VmHWM") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    del out
    print(json.dumps({"variant": variant, "extra_mib": (peak - before) / 1024, "exact": exact}))


def measure_memory(variant: str, args) -> tuple[float | None, bool]:
    cmd = [sys.executable, os.path.abspath(__file__), "--child-memory", variant, "--batch", str(args.batch),
           "--tokens", str(args.tokens)] + (["--threads", str(args.threads)] if args.threads else [])
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    for line in res.stdout.splitlines()[::-1]:
        if line.startswith("{"):
            d = json.loads(line)
            return d["extra_mib"], d["exact"]
    print(f"[memory child for {variant} failed]\n{res.stderr[-1500:]}", file=sys.stderr)
    return None, False


# ---- timing ------------------------------------------------------------------------------------


def time_interleaved(runners: dict, repeats: int) -> dict[str, float]:
    times: dict[str, list[float]] = {k: [] for k in runners}
    with torch.no_grad():
        for fn in runners.values():  # warm-up
            fn()
        for _ in range(repeats):
            for k, fn in runners.items():
                gc.collect()
                t0 = time.perf_counter()
                out = fn()
                times[k].append(time.perf_counter() - t0)
                del out
    return {k: statistics.median(v) for k, v in times.items()}


def count_new(rows: list[list[int]], eos: set[int]) -> list[list[int]]:
    out = []
    for row in rows:
        cut = next((i + 1 for i, t in enumerate(row) if t in eos), len(row))
        out.append(row[:cut])
    return out


def bench_generation(adapters: dict, hf, args) -> list[dict]:
    from reward_circuits.models import GenerationConfig

    ad0 = adapters["nnsight"]
    prompts = gen_prompts(ad0, args.batch)
    batch = ad0.tokenize(prompts, padding_side="left")
    eos = sorted(ad0.eos_ids)
    tok = ad0.tokenizer
    cfg = GenerationConfig(max_new_tokens=args.new_tokens, batch_size=args.batch, progress=False,
                           refill=False)  # one batch, like HF generate (refill is measured by bench_interventions)

    def plain_hf():
        out = hf.generate(input_ids=batch.input_ids, attention_mask=batch.attention_mask, max_new_tokens=args.new_tokens,
                          do_sample=False, pad_token_id=tok.pad_token_id, eos_token_id=eos, temperature=None,
                          top_p=None, top_k=None)
        return count_new(out[:, batch.input_ids.shape[1]:].tolist(), set(eos))

    runners = {
        "hf_generate": plain_hf,
        "tl_generate": lambda: [g.response_ids for g in adapters["transformer_lens"].generate(prompts, cfg)],
        "nn_generate": lambda: [g.response_ids for g in adapters["nnsight"].generate(prompts, cfg)],
    }
    outputs = {k: fn() for k, fn in runners.items()}  # warm-up + the tokens to count
    times: dict[str, list[float]] = {k: [] for k in runners}
    with torch.no_grad():
        for _ in range(args.gen_repeats):
            for k, fn in runners.items():
                t0 = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    rows = []
    for k in runners:
        n_tok = sum(len(r) for r in outputs[k])
        same = outputs[k] == outputs["hf_generate"]
        rows.append(dict(section="generate", backend={"hf_generate": "HF", "tl_generate": "transformer_lens",
                                                      "nn_generate": "nnsight"}[k],
                         variant=k, seconds=med[k], rate=n_tok / med[k], rate_unit="new tok/s",
                         ratio=med["hf_generate"] / med[k], target=None if k == "hf_generate" else 0.9,
                         note=f"{n_tok} tokens; {'same tokens as HF' if same else 'TOKENS DIFFER FROM HF'}"))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--gen-repeats", type=int, default=5)
    ap.add_argument("--new-tokens", type=int, default=48)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (default 1: on a shared 2-core box, 2 OpenMP threads spin against other "
                         "processes and a forward runs ~60x slower)")
    ap.add_argument("--no-memory", action="store_true", help="skip the per-variant memory subprocesses")
    ap.add_argument("--child-memory", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_memory:
        child_memory(args.child_memory, args.batch, args.tokens, args.threads)
        return
    if args.threads:
        torch.set_num_threads(args.threads)

    from reward_circuits.models import load_model

    t0 = time.perf_counter()
    adapters = {b: load_model("default", backend=b) for b in ("transformer_lens", "nnsight")}
    hf = adapters["nnsight"].hf
    print(f"loaded {adapters['nnsight'].name} on both backends in {time.perf_counter() - t0:.1f}s; "
          f"torch threads={torch.get_num_threads()}; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs",
          flush=True)
    batch = rollout_like_batch(adapters["transformer_lens"], args.batch, args.tokens)
    n_real = int(batch.attention_mask.sum())
    hooks = capture_hooks(adapters["transformer_lens"].n_layers)
    print(f"capture batch: {tuple(batch.input_ids.shape)} ({n_real} real tokens, left-padded); hooks: "
          f"hook_embed + resid_post of layers {[int(h.split('.')[1]) for h in hooks[1:]]}", flush=True)

    rows: list[dict] = []
    # sanity: our capture returns what the bare references compute
    with torch.no_grad():
        a = adapters["transformer_lens"].capture(batch, hooks[-1:])[hooks[-1]]
        b = adapters["nnsight"].capture(batch, hooks[-1:])[hooks[-1]]
    m = batch.attention_mask.bool()
    print(f"check: last-layer resid_post TL vs nnsight max |diff| on real tokens = {float((a - b)[m].abs().max()):.2e} "
          f"(max |activation| {float(a[m].abs().max()):.1f})", flush=True)

    for backend, variants, bare in (("transformer_lens", TL_VARIANTS, "tl_bare"), ("nnsight", NN_VARIANTS, "hf_bare")):
        ad = adapters[backend]
        runners = {v: make_runner(v, ad, batch, hooks) for v in variants}
        med = time_interleaved(runners, args.repeats)
        for v in variants:
            rows.append(dict(section="capture", backend=backend, variant=v, seconds=med[v], rate=n_real / med[v],
                             rate_unit="tok/s", ratio=med[bare] / med[v],
                             target=0.95 if v.endswith("capture") else None, note=""))
        print(f"timed {backend} capture variants", flush=True)
    if not args.no_memory:
        for r in rows:
            extra, exact = measure_memory(r["variant"], args)
            r["mem"] = extra
            r["mem_exact"] = exact
        print("measured memory", flush=True)
    rows += bench_generation(adapters, hf, args)

    print()
    print(f"{'section':8} {'backend':16} {'variant':18} {'median s':>9} {'throughput':>18} {'ratio':>7} {'target':>7} "
          f"{'peak extra MiB':>15}  note")
    print("-" * 118)
    for r in rows:
        mem = r.get("mem")
        mem_s = "" if mem is None else (("" if r.get("mem_exact") else "≥") + f"{mem:.0f}")
        target = "" if r["target"] is None else f"≥{r['target']:.2f}"
        ok = "" if r["target"] is None else (" ok" if r["ratio"] >= r["target"] else " MISS")
        ref = {"capture": "vs bare", "generate": "vs HF"}[r["section"]]
        print(f"{r['section']:8} {r['backend']:16} {r['variant']:18} {r['seconds']:9.3f} "
              f"{r['rate']:10.0f} {r['rate_unit']:>7} {r['ratio']:6.3f}x {target:>7} {mem_s:>15}  "
              f"{ref}{ok}{'; ' + r['note'] if r['note'] else ''}")
    print(f"\nload average now {os.getloadavg()[0]:.2f} (shared machine: ratios come from interleaved medians).")


if __name__ == "__main__":
    main()
