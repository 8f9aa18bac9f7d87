"""M_base → M_RLHF: fine-tune a causal LM to maximise a known reward with a KL penalty to the base.

TRL 1.16 has no PPO trainer; we use its ``GRPOTrainer`` (group-relative policy optimisation, the
KL to the frozen base model weighted by ``beta``) with a ``peft`` LoRA on all linear layers. The
LoRA is merged into a copy of the base weights at the end and saved as an ordinary HF directory
(``model.safetensors`` + config + tokenizer), so the fine-tuned model loads like any other:
``load_model(path)`` or ``load_hf(path)``.

Measured on SmolLM2-135M-Instruct (r 16, 16 completions of 24 tokens a step, 1 thread on a shared
2-core machine), held-out mean VADER reward from 0.176: lr 1e-3, beta 0.05, 20 steps reached the
clip (9.92: a reward hack); 14 steps gave 3.17 (KL 1.09 nats/token); beta 0.2, 16 steps 0.86
(KL 0.13); beta 0.1, 14 steps 1.84 (KL 0.57, the default). ``FinetuneResult.step_kl`` is TRL's per-step estimate of the per-token KL to the
reference on the step's own completions (``kl`` in its logs). The study chooses its default on a
held-out criterion (:class:`~reward_circuits.studies.irm.config.IrmConfig`).
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from ...io import atomic_save_pretrained, atomic_write_text


@dataclass
class FinetuneConfig:
    """GRPO + LoRA hyperparameters (defaults: the configuration measured feasible on 2 cores)."""

    steps: int = field(default=14, metadata={"help": "optimizer steps"})
    learning_rate: float = field(default=1e-3, metadata={"help": "LoRA learning rate (5e-5 did not move in 20 steps)"})
    beta: float = field(default=0.1, metadata={"help": "KL coefficient to the base model"})
    completions_per_step: int = field(default=16, metadata={"help": "completions generated per optimizer step"})
    num_generations: int = field(default=8, metadata={"help": "completions per prompt (the GRPO group)"})
    max_new_tokens: int = field(default=24, metadata={"help": "completion length"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature during training"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha"})
    max_seconds: float = field(default=2400.0, metadata={"help": "stop training after this many seconds"})
    seed: int = 0

    def __post_init__(self):
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}.")
        if self.learning_rate <= 0 or self.beta < 0:
            raise ValueError("learning_rate must be > 0 and beta >= 0.")
        if self.num_generations < 2:
            raise ValueError("num_generations must be >= 2 (GRPO compares completions within a group).")
        if self.completions_per_step % self.num_generations:
            raise ValueError(f"completions_per_step ({self.completions_per_step}) must be a multiple of "
                             f"num_generations ({self.num_generations}).")
        if self.max_new_tokens < 1 or self.lora_r < 1:
            raise ValueError("max_new_tokens and lora_r must be >= 1.")
        if self.max_seconds <= 0:
            raise ValueError("max_seconds must be > 0.")


@dataclass
class FinetuneResult:
    """Where the merged model was saved and how training went (one row per logged step)."""

    path: str
    steps_done: int
    seconds: float
    step_rewards: list[float]
    step_kl: list[float]
    lora_targets: list[str] = field(default_factory=list)  # the modules the LoRA adapter wrapped (what it could change)


LORA_TARGETS_FILE = "lora_targets.json"


def lora_targets(peft_model) -> list[str]:
    """Names of the modules a ``peft`` model wrapped with a LoRA layer (``model.layers.3.self_attn.q_proj``,
    the PEFT prefix ``base_model.model.`` dropped): the only weights the fine-tune can change."""
    from peft.tuners.lora import LoraLayer

    names = [n for n, m in peft_model.named_modules() if isinstance(m, LoraLayer)]
    if not names:
        raise ValueError("the model has no LoRA layers: pass the peft model before merge_and_unload().")
    return sorted(n.removeprefix("base_model.model.") for n in names)


def read_lora_targets(model_dir: str | os.PathLike) -> list[str] | None:
    """The LoRA-wrapped module names :func:`finetune_grpo` saved beside a merged model (None when absent)."""
    path = Path(model_dir) / LORA_TARGETS_FILE
    return json.loads(path.read_text())["modules"] if path.is_file() else None


def as_trl_reward(reward_fn: Callable[[list[str]], Sequence[float]], name: str = "reward"):
    """Wrap ``reward_fn(texts) -> rewards`` as a TRL reward function ``f(prompts, completions, **kw)``
    (completions may be strings or chat message lists)."""

    def trl_reward(prompts=None, completions=(), **_kwargs) -> list[float]:
        texts = [c if isinstance(c, str) else " ".join(m.get("content", "") for m in c) for c in completions]
        return [float(x) for x in reward_fn(texts)]

    trl_reward.__name__ = name
    return trl_reward


def _time_limit_callback(max_seconds: float, total_steps: int):
    from transformers import TrainerCallback

    class TimeLimit(TrainerCallback):
        def __init__(self):
            self.start = time.monotonic()
            self.bar = tqdm(total=total_steps, desc="GRPO fine-tuning", leave=False)

        def on_step_end(self, args, state, control, **kwargs):
            self.bar.update(1)
            if time.monotonic() - self.start > max_seconds:
                control.should_training_stop = True
            return control

        def on_train_end(self, args, state, control, **kwargs):
            self.bar.close()

    return TimeLimit()


def finetune_grpo(hf_model, tokenizer, prompts: Sequence[str], reward_fn: Callable, out_dir: str | os.PathLike,
                  config: FinetuneConfig | None = None) -> FinetuneResult:
    """Fine-tune a *copy* of ``hf_model`` (the argument is left untouched) with GRPO + LoRA to
    maximise ``reward_fn`` (TRL signature ``f(prompts, completions, **kw) -> list[float]``) on
    ``prompts``; merge the LoRA and save the model to ``out_dir`` atomically (safetensors)."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from trl import GRPOConfig, GRPOTrainer

    config = config or FinetuneConfig()
    prompts = list(prompts)
    if not prompts:
        raise ValueError("no prompts to fine-tune on.")
    out_dir = Path(out_dir)
    policy = copy.deepcopy(hf_model).float().train()
    work = Path(tempfile.mkdtemp(prefix="grpo-"))
    args = GRPOConfig(
        output_dir=str(work), max_steps=config.steps, learning_rate=config.learning_rate, beta=config.beta,
        per_device_train_batch_size=config.completions_per_step, num_generations=config.num_generations,
        max_completion_length=config.max_new_tokens, temperature=config.temperature, logging_steps=1,
        save_strategy="no", report_to="none", use_cpu=not torch.cuda.is_available(), seed=config.seed,
        disable_tqdm=True, bf16=False, fp16=False, log_completions=False, lr_scheduler_type="constant",
        warmup_steps=0,
    )
    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, target_modules="all-linear",
                      lora_dropout=0.0, task_type="CAUSAL_LM")
    trainer = GRPOTrainer(model=policy, reward_funcs=reward_fn, args=args,
                          train_dataset=Dataset.from_dict({"prompt": prompts}), processing_class=tokenizer,
                          peft_config=lora, callbacks=[_time_limit_callback(config.max_seconds, config.steps)])
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # one progress bar instead of a dict per step
    start = time.monotonic()
    try:
        trainer.train()
        seconds = time.monotonic() - start
        targets = lora_targets(trainer.model)
        merged = trainer.model.merge_and_unload().eval()
        logs = [h for h in trainer.state.log_history if "reward" in h]
        atomic_save_pretrained(merged, tokenizer, out_dir)
        atomic_write_text(out_dir / LORA_TARGETS_FILE, json.dumps({"target_modules": "all-linear", "r": config.lora_r,
                                                                   "modules": targets}, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return FinetuneResult(path=str(out_dir), steps_done=int(trainer.state.global_step), seconds=float(seconds),
                          step_rewards=[float(h["reward"]) for h in logs],
                          step_kl=[float(h.get("kl", float("nan"))) for h in logs], lora_targets=targets)
