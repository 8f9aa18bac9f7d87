"""Rollouts: responses generated for a task's prompts, scored by the task's reward function.

Kept as a ``datasets.Dataset`` on disk (one row per rollout: ids, prompt and response token ids,
text, reward), written atomically.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

from ..io import atomic_save_dataset, atomic_write_json
from ..models import GenerationConfig, ModelAdapter, generation_config
from ..reprs import short_text
from ..tasks import Task


@dataclass
class Rollout:
    id: str
    task: str
    example_id: str
    prompt_ids: list[int]
    response_ids: list[int]
    response_text: str
    reward: float
    gold: str
    finish_reason: str = "length"
    meta: dict = field(default_factory=dict)

    @property
    def prompt_len(self) -> int:
        return len(self.prompt_ids)

    def __repr__(self) -> str:
        return (f"Rollout({self.id!r}, reward={self.reward:g}, text={short_text(self.response_text, 60)}, "
                f"gold={short_text(self.gold, 30)}, n_tokens={len(self.response_ids)}, finish={self.finish_reason!r})")


def generate_rollouts(
    adapter: ModelAdapter,
    task: Task,
    config: GenerationConfig | None = None,
    *,
    samples_per_prompt: int = 1,
    fwd_hooks=(),
) -> list[Rollout]:
    """Generate ``samples_per_prompt`` responses per example (batched, seeded) and score them."""
    config = rollout_config(task, config, samples_per_prompt)
    examples = list(task.examples)
    prompts = [task.render(ex, adapter.tokenizer) for ex in examples]
    rollouts: list[Rollout] = []
    for s in range(samples_per_prompt):
        gens = adapter.generate(prompts, sample_config(config, s), fwd_hooks=fwd_hooks)
        rollouts += rollouts_of(task, examples, gens, s)
    return rollouts


def rollout_config(task: Task, config: GenerationConfig | None, samples_per_prompt: int) -> GenerationConfig:
    """The checked generation config of a rollout run (default: the task's ``max_new_tokens``)."""
    if not isinstance(task, Task):
        raise TypeError(f"task must be a Task, got {type(task).__name__} ({task!r:.40}): build one with "
                        "get_task('arithmetic'), or Task(name, examples, reward_fn).")
    if len(task) == 0:
        raise ValueError(f"task {task.name!r} has no examples.")
    if samples_per_prompt < 1:
        raise ValueError("samples_per_prompt must be >= 1.")
    config = generation_config(config or GenerationConfig(max_new_tokens=task.max_new_tokens))
    if samples_per_prompt > 1 and not config.do_sample:
        raise ValueError("samples_per_prompt > 1 with greedy decoding gives identical samples; set do_sample=True.")
    return config


def sample_config(config: GenerationConfig, s: int) -> GenerationConfig:
    """The config of sample ``s`` (its own seed)."""
    return GenerationConfig(**{**config.__dict__, "seed": config.seed + 1000 * s})


def rollouts_of(task: Task, examples: Sequence, gens: Sequence, s: int) -> list[Rollout]:
    """Sample ``s``'s generations of ``examples``, scored, as Rollouts (ids ``task/example/s{s}``)."""
    return [Rollout(id=f"{task.name}/{ex.id}/s{s}", task=task.name, example_id=ex.id,
                    prompt_ids=g.prompt_ids, response_ids=g.response_ids, response_text=g.text,
                    reward=task.reward(g.text, ex), gold=str(ex.answer), finish_reason=g.finish_reason)
            for ex, g in zip(examples, gens)]


def accuracy(rollouts: Sequence[Rollout]) -> float:
    return float(sum(r.reward for r in rollouts) / max(len(rollouts), 1))


def save_rollouts(rollouts: Sequence[Rollout], path: str | os.PathLike) -> None:
    """Save as a ``datasets.Dataset`` directory, atomically (temp dir + rename)."""
    from datasets import Dataset

    path = Path(path)
    rows = [asdict(r) for r in rollouts]
    for row in rows:
        row["meta"] = json.dumps(row["meta"])
    ds = Dataset.from_list(rows)
    atomic_save_dataset(ds, path)


def settings_record_path(path: str | os.PathLike) -> Path:
    """Where the record of what made the rollouts saved at ``path`` lives: ``<path>.settings.json`` beside them
    (the main job's per task, YFPO's training rollouts; each study decides what a mismatch means)."""
    path = Path(path)
    return path.with_name(f"{path.name}.settings.json")


def write_settings_record(path: str | os.PathLike, settings: dict) -> None:
    """Save what made the rollouts at ``path`` beside them, atomically (after the rollouts: a run killed
    in between leaves rollouts without a record, never a record of other rollouts)."""
    atomic_write_json(settings_record_path(path), settings)


def read_settings_record(path: str | os.PathLike) -> dict:
    """The record beside the rollouts at ``path``; ``{}`` when absent or damaged (nothing is known of them)."""
    try:
        record = json.loads(settings_record_path(path).read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def load_rollouts(path: str | os.PathLike) -> list[Rollout]:
    from datasets import load_from_disk

    if not Path(path).exists():
        raise FileNotFoundError(f"no rollouts at {path}; generate them with `reward-circuits run`.")
    ds = load_from_disk(str(path))
    out = []
    for row in ds:
        row = dict(row)
        row["meta"] = json.loads(row["meta"]) if row.get("meta") else {}
        out.append(Rollout(**row))
    return out
