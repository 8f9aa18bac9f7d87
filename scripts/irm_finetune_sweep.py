"""One point of the IRM fine-tune sweep (issue 28): GRPO + LoRA with the given (lr, beta, steps), then the
held-out diagnostics the selection criterion of ``IrmConfig`` reads (reward, KL to the base, distinct-2,
base perplexity). Hyperparameters are chosen on these figures only, never on the IRM result.

    OMP_NUM_THREADS=1 python scripts/irm_finetune_sweep.py OUT_JSON LR BETA STEPS [MODEL] [FINETUNE_SEED]

MODEL: ``default`` (SmolLM2-135M-Instruct) or ``gemma-3-270m`` (or any name ``IrmConfig.model`` takes);
the fine-tuned model is saved to ``/tmp/irm_sweep_[MODEL_]LR_BETA_STEPS[_sSEED]`` (MODEL_ only when not default,
_sSEED only for a FINETUNE_SEED other than the config's seed 0). FINETUNE_SEED changes the GRPO run only: the
held-out prompts and their sampling seeds stay the same, so seeds of one point are compared on the same prompts.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
import torch


def main(out_json: str, lr: float, beta: float, steps: int, model: str = "default", finetune_seed: int = 0) -> None:
    torch.set_num_threads(1)
    from reward_circuits.io import atomic_write_text
    from reward_circuits.studies.irm import IrmConfig
    from reward_circuits.studies.irm.diagnostics import distinct_n, kl_and_base_perplexity
    from reward_circuits.studies.irm.finetune import as_trl_reward, finetune_grpo
    from reward_circuits.studies.irm.reward import VaderReward
    from reward_circuits.studies.irm.study import model_prompt_splits
    from reward_circuits.models import from_hf
    from reward_circuits.models.base import GenerationConfig
    from reward_circuits.models.loading import load_hf
    from reward_circuits.tasks.base import bos_prefix

    cfg = IrmConfig(model=model, learning_rate=lr, beta=beta, steps=steps, max_finetune_seconds=3600.0,
                    finetune_seed=finetune_seed)
    base_hf, tok = load_hf(cfg.model)
    train_p, _, eval_p = model_prompt_splits(cfg, tok)  # with the model's BOS text where it needs one (Gemma 3)
    reward = VaderReward()
    gen = GenerationConfig(max_new_tokens=cfg.max_new_tokens, do_sample=True, temperature=cfg.temperature,
                           seed=cfg.seed, batch_size=32, progress=False)
    base = from_hf(base_hf, tok, "transformer_lens", name="base")
    wall, cpu = time.monotonic(), time.process_time()
    seed_tag = f"_s{finetune_seed}" if finetune_seed != cfg.seed else ""
    out_dir = f"/tmp/irm_sweep_{'' if model == 'default' else model + '_'}{lr}_{beta}_{steps}{seed_tag}"
    ft = finetune_grpo(base_hf, tok, train_p, as_trl_reward(reward), out_dir, cfg.finetune_config())
    ft_wall, ft_cpu = time.monotonic() - wall, time.process_time() - cpu
    tuned_hf, _ = load_hf(out_dir)
    tuned = from_hf(tuned_hf, tok, "transformer_lens", name="tuned")
    bg = base.generate(eval_p, gen)
    tg = tuned.generate(eval_p, gen)
    kl, ppl_t = kl_and_base_perplexity(tuned, base, tg)
    _, ppl_b = kl_and_base_perplexity(base, base, bg)
    res = {"model": model, "model_dir": os.path.basename(out_dir),  # under /tmp; no absolute path in committed JSON
           "lr": lr, "beta": beta, "steps": steps, "finetune_seed": finetune_seed, "steps_done": ft.steps_done,
           "finetune_wall_s": round(ft_wall, 1), "finetune_cpu_s": round(ft_cpu, 1), "load": os.getloadavg(),
           "reward_base": float(np.mean(reward([g.text for g in bg]))),
           "reward_finetuned": float(np.mean(reward([g.text for g in tg]))),
           "distinct2_base": distinct_n([g.text for g in bg]), "distinct2_finetuned": distinct_n([g.text for g in tg]),
           "kl_to_base": kl, "perplexity_base": ppl_b, "perplexity_finetuned_under_base": ppl_t,
           "step_rewards": ft.step_rewards, "step_kl": ft.step_kl,
           "samples": [{"prompt": p.removeprefix(bos_prefix(tok) or ""), "base": b.text, "finetuned": t.text} for p, b, t in zip(eval_p[:4], bg, tg)]}
    atomic_write_text(out_json, json.dumps(res, indent=1))
    print(json.dumps({k: v for k, v in res.items() if k != "samples"}))


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), *sys.argv[5:6],
         *[int(a) for a in sys.argv[6:7]])
