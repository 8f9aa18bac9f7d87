"""Resuming a stopped YFPO study: what a long ``--profile sized`` run has finished is kept.

The sized study is tens of LoRA fine-tunes (seeds × 4 conditions, ``sizing.py``) of up to 64 steps
each, hours on a CPU. Each finished fine-tune is written to ``OUT/runs/<condition>_s<seed>.json`` as it ends (its
held-out correctness, training curve, adapter path and seconds), and the pilot run's step selection
to ``OUT/step_selection.json``. The sampled training rollouts are kept in ``OUT/rollouts/train`` with
the settings that made them (``train.settings.json``: model and a digest of its weights, the rendered
prompts and answers, backend, generation config), and read back when a later run asks for the same
ones and the task still grades them alike (20 minutes of sampling on Gemma 3 270M at the sized profile). A later
``reward-circuits yfpo`` into the same ``OUT`` recomputes the cheap shared steps (pairs, neuron selection
and calibration: seeded, so the same on the same machine) and reuses a saved file only where its
**fingerprint** matches: a hash of the settings that
decide a run's outcome (every config field except where it is written and which seeds / conditions
are run), the model, the preference pairs, the calibrated neuron rewards and the held-out prompts.
Anything that differs (another model, other pairs after a change of sampling, a new step count)
misses, and that run is trained again: a reused run is always one this exact study would train.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import os
from pathlib import Path
from typing import Callable

from ...io import atomic_write_json

# config fields that do not change a fine-tune's outcome: where it is written, how it reports, which
# seeds and conditions this invocation runs (a run added later reuses the others), and the labels
# whose effect is already in the fields they set
NOT_IN_FINGERPRINT = ("out", "progress", "save_adapters", "explicit", "seeds", "conditions", "quick", "profile")
SIGNIFICANT_DIGITS = 6  # calibration floats are rounded: the same computation on another thread count may differ in the last bits


def _rounded(x):
    if isinstance(x, float):
        return float(f"{x:.{SIGNIFICANT_DIGITS}g}")
    if isinstance(x, dict):
        return {k: _rounded(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_rounded(v) for v in x]
    return x


def pair_rows(pairs) -> list[list[str]]:
    """Preference pairs as JSON rows (for :func:`fingerprint`)."""
    return [[p.example_id, p.prompt, p.chosen, p.rejected] for p in pairs]


def fingerprint(cfg, model_name: str, pairs, rewards: dict, held_out, **extra) -> str:
    """sha256 of what decides a fine-tune's outcome (see the module docstring); ``extra``: more of it,
    JSON-able (the step selection's validation pairs and pilot seed)."""
    settings = {k: v for k, v in cfg.to_dict().items() if k not in NOT_IN_FINGERPRINT}
    content = {"config": settings, "model": model_name, "pairs": pair_rows(pairs),
               "rewards": {k: _rounded(r.to_dict()) for k, r in sorted(rewards.items())},
               "held_out": [[e.id, e.question, e.answer] for e in held_out.examples], "extra": extra}
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()


def run_path(out: str | os.PathLike, condition: str, seed: int) -> Path:
    return Path(out) / "runs" / f"{condition}_s{seed}.json"


def load_saved(path: str | os.PathLike, fp: str) -> dict | None:
    """The saved record at ``path`` when its fingerprint is ``fp``; None when absent, unreadable or another study's."""
    try:
        saved = json.loads(Path(path).read_text())
    except (FileNotFoundError, ValueError):
        return None
    if not isinstance(saved, dict) or saved.get("fingerprint") != fp:
        return None
    return saved.get("record")


def save(path: str | os.PathLike, record: dict, fp: str) -> None:
    """Write ``record`` with its fingerprint (atomically: a killed write never leaves a half file that counts)."""
    atomic_write_json(path, {"fingerprint": fp, "record": record})


def model_digest(hf, values_per_tensor: int = 512) -> str:
    """A cheap fingerprint of an HF model's weights: its config, and for every named parameter its name,
    shape and the exact bytes of ``values_per_tensor`` values strided over the whole tensor (a checkpoint
    overwritten in place, a merged adapter on any module, or two models of one class, differ; identical
    weights give the same digest: no copy of a whole tensor, no float reduction whose order varies)."""
    h = hashlib.sha256(json.dumps(hf.config.to_dict() if hasattr(hf, "config") else {}, sort_keys=True, default=str).encode())
    for name, p in hf.named_parameters():
        flat = p.detach().reshape(-1)
        step = max(1, flat.numel() // values_per_tensor)
        h.update(f"{name}{tuple(p.shape)}".encode())
        h.update(flat[::step][:values_per_tensor].float().cpu().numpy().tobytes())
    return h.hexdigest()


def rollout_settings(cfg, model_name: str, model_fp: str, task, tokenizer, gen) -> dict:
    """What decides the sampled training rollouts: the model (name and weight digest), the prompts as
    rendered (chat template, system prompt, few-shot) with their answers, the backend and the whole
    generation config (round-tripped through JSON, as it is compared after reading back)."""
    rendered = [task.render(e, tokenizer) for e in task.examples]
    # the token ids too: another tokenizer can render the same text into other ids (stored in each rollout)
    ids = tokenizer(rendered, add_special_tokens=False)["input_ids"] if rendered else []
    prompts = [[e.id, text, list(i), str(e.answer)] for e, text, i in zip(task.examples, rendered, ids)]
    generation = {k: v for k, v in dataclasses.asdict(gen).items() if k != "progress"}
    return json.loads(json.dumps({
        "model": model_name, "weights": model_fp, "task": cfg.task, "n_prompts": len(prompts),
        "prompts": hashlib.sha256(json.dumps(prompts).encode()).hexdigest(), "backend": cfg.backend,
        "device": cfg.device, "samples_per_prompt": cfg.samples_per_prompt, "generation": generation}, default=str))


def _read_back(path: Path, settings: dict, task) -> list | None:
    """The kept rollouts when their record equals ``settings`` and the task's reward still gives each
    its stored reward (a changed grader samples again); else None."""
    from ...data.rollouts import load_rollouts, read_settings_record

    if read_settings_record(path) != settings:  # absent or damaged reads as {}
        return None
    try:
        rollouts = load_rollouts(path)
    except (FileNotFoundError, ValueError, TypeError, KeyError):  # absent, damaged, or an older Rollout layout
        return None
    examples = {e.id: e for e in task.examples}
    if any(r.example_id not in examples or task.reward(r.response_text, examples[r.example_id]) != r.reward
           for r in rollouts):
        return None
    return rollouts


def training_rollouts(out: str | os.PathLike, settings: dict, task, generate: Callable[[], list]) -> tuple[list, bool]:
    """The sampled training rollouts and whether they were read back: from ``OUT/rollouts/train`` when the
    settings saved beside them equal ``settings`` (:func:`_read_back`), else ``generate()``'d and saved
    (the record removed first, then the store built from the old rollouts, the rollouts, then their
    settings record, each atomically: a run killed before the record samples again)."""
    from ...data.rollouts import save_rollouts, settings_record_path, write_settings_record

    path = Path(out) / "rollouts" / "train"
    kept = _read_back(path, settings, task)
    if kept is not None:
        return kept, True
    rollouts = generate()
    settings_record_path(path).unlink(missing_ok=True)  # never a record beside rollouts it did not make, even if killed here
    # the store resumes by rollout id, and ids do not change with the sampling: its states and rewards are
    # the old rollouts', so it goes with them (rebuilt from these by the value-neuron selection)
    shutil.rmtree(Path(out) / "store", ignore_errors=True)
    save_rollouts(rollouts, path)
    write_settings_record(path, settings)
    return rollouts, False
