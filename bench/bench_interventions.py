"""Benchmark: the cost of generating under an intervention vs plain generation, on both backends.

Generates answers to N chat prompts (default 32 prompts × 32 new tokens, greedy, one batch) plain
and with a zero-ablation of 1% of the residual dimensions at 3 layers active on every forward,
and prints both times, the ratio (target ≤ 1.2×) and the time per decoding step (greedy rows may
stop at EOS, so the two runs can take a different number of steps). Runs on the packaged default
model when it loads (``load_model("default")``), else on the tiny random model. Each condition is
timed ``--repeats`` times in alternating order; the minimum is reported.

    .venv/bin/python bench/bench_interventions.py [--prompts 32] [--new-tokens 32] [--repeats 2] [--threads 0]
"""

from __future__ import annotations

import argparse
import time

import torch

from reward_circuits.interventions import ablation_interventions, as_fwd_hooks
from reward_circuits.models import GenerationConfig, load_model
from reward_circuits.analysis.neurons import NeuronSet


def _load(backend: str):
    try:
        return load_model("default", backend=backend), "default"
    except Exception as e:  # no packaged weights: the tiny model still exercises the code path
        print(f"[{backend}] default model unavailable ({type(e).__name__}: {e}); using the tiny model")
        from reward_circuits.models.tiny import tiny_adapter

        return tiny_adapter(backend), "tiny"


def _prompts(adapter, n: int) -> list[str]:
    try:
        from reward_circuits.tasks import arithmetic_task

        task = arithmetic_task(n, difficulty=2, seed=0)
        return [task.render(ex, adapter.tokenizer) for ex in task.examples]
    except Exception:
        return [adapter.chat_prompt([{"role": "user", "content": f"What is {i} + {2 * i + 1}? Think step by step."}])
                for i in range(n)]


def _timed(adapter, prompts, cfg, hooks) -> tuple[float, int]:
    t0 = time.perf_counter()
    gens = adapter.generate(prompts, cfg, fwd_hooks=hooks)
    return time.perf_counter() - t0, max(len(g.response_ids) for g in gens)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--fraction", type=float, default=0.01)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave torch's default)")
    ap.add_argument("--backends", default="transformer_lens,nnsight")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch threads={torch.get_num_threads()}")

    for backend in args.backends.split(","):
        adapter, which = _load(backend)
        n = adapter.n_layers
        layers = sorted({n // 4, n // 2, (3 * n) // 4})
        k = max(1, round(args.fraction * adapter.d_model))
        sets = [NeuronSet.random(f"blocks.{l}.hook_resid_post", adapter.d_model, k, seed=l, layer=l) for l in layers]
        hooks = as_fwd_hooks(ablation_interventions(sets, "zero"))
        prompts = _prompts(adapter, args.prompts)
        cfg = GenerationConfig(max_new_tokens=args.new_tokens, do_sample=False, batch_size=args.prompts, progress=False)
        adapter.generate(prompts[:2], GenerationConfig(max_new_tokens=2, progress=False))  # warm-up
        plain, hooked = [], []
        for r in range(args.repeats):
            order = [("plain", ()), ("hooked", hooks)] if r % 2 == 0 else [("hooked", hooks), ("plain", ())]
            for name, h in order:
                (plain if name == "plain" else hooked).append(_timed(adapter, prompts, cfg, h))
        tp, sp = min(plain)
        th, sh = min(hooked)
        print(f"[{backend}] model={which} ({adapter.name}), {len(prompts)} prompts × ≤{args.new_tokens} new tokens, "
              f"zero-ablating {k}/{adapter.d_model} dims at hook_resid_post of layers {layers}")
        print(f"[{backend}]   plain : {tp:7.2f} s  ({sp} steps, {1000 * tp / max(sp, 1):6.1f} ms/step)")
        print(f"[{backend}]   hooked: {th:7.2f} s  ({sh} steps, {1000 * th / max(sh, 1):6.1f} ms/step)")
        print(f"[{backend}]   ratio : {th / tp:5.2f}x total, {(th / max(sh, 1)) / (tp / max(sp, 1)):5.2f}x per step "
              f"(target <= 1.2x)")
        del adapter


if __name__ == "__main__":
    main()
