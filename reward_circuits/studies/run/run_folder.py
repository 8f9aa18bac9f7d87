"""What an earlier run left in ``--out`` must be what this run asks for, or the run says so and stops.

The main job reads rollouts it finds on disk instead of generating them again (a stopped job resumes;
``--stages`` runs one stage at a time into one folder). Read back blindly, a folder of another run's
rollouts would silently stand in for the ones asked for: ``--primary-limit 2500`` into a folder of
1,000 rollouts ran on those 1,000, and ``--model gemma-3-270m`` into a SmolLM2 folder built Gemma's
store from SmolLM2's token ids. These checks compare each task's rollouts with the config (the
prompts, by example id, in order; the generation settings and the model, from the record saved next
to the rollouts, else the folder's ``summary.json``) and name the fix, for every task at once.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

from ...data.rollouts import read_settings_record, write_settings_record


class RunFolderMismatch(ValueError):
    """``--out`` holds an earlier run's rollouts that are not the ones this run asks for."""


def task_slug(spec: str) -> str:
    """A task spec's folder name under ``rollouts/`` and ``store/``."""
    return spec.replace(":", "_").replace("/", "_")


def save_rollout_record(out: Path, spec: str, cfg, model_name: str) -> None:
    """Written beside a task's rollouts when they are generated: what made them."""
    record = {"model": model_name, "max_new_tokens": cfg.max_new_tokens, "seed": cfg.seed, "limit": cfg.limit_of(spec)}
    write_settings_record(out / "rollouts" / task_slug(spec), record)


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _same_model(a: str, b: str) -> bool:
    if a == b:
        return True
    return os.path.isdir(a) and os.path.isdir(b) and os.path.realpath(a) == os.path.realpath(b)


def _problem(cfg, spec: str, rpath: Path, task_of: Callable, record: dict) -> str | None:
    """What differs between ``spec``'s rollouts on disk and what ``cfg`` asks for (None: nothing)."""
    from datasets import load_from_disk

    if "max_new_tokens" in record and record["max_new_tokens"] != cfg.max_new_tokens:
        return f"generated with --max-new-tokens {record['max_new_tokens']}, this run asks for {cfg.max_new_tokens}"
    ds = load_from_disk(str(rpath))
    longest = max((len(r) for r in ds["response_ids"]), default=0)
    if longest > cfg.max_new_tokens:
        return f"has responses of {longest} tokens, longer than this run's --max-new-tokens {cfg.max_new_tokens}"
    have, want = list(ds["example_id"]), [ex.id for ex in task_of(cfg, spec).examples]
    if have != want:
        first = next((i for i, (a, b) in enumerate(zip(have, want)) if a != b), min(len(have), len(want)))
        return (f"holds {len(have)} rollouts of {spec}, this run asks for {len(want)} (--limit / --primary-limit, "
                f"--seed); they differ from prompt {first} on")
    return None


def check_cached_rollouts(cfg, out: Path, task_of: Callable) -> None:
    """Before the model loads: every task's rollouts on disk are of the prompts ``task_of(cfg, spec)``
    gives, in order, generated with this config's ``max_new_tokens``. Every mismatch is named at once."""
    previous = _read(out / "summary.json").get("config") or {}
    problems, paths = [], []
    for spec in cfg.tasks:
        rpath = out / "rollouts" / task_slug(spec)
        if not rpath.exists():
            continue
        record = read_settings_record(rpath) or {k: previous[k] for k in ("max_new_tokens",) if k in previous}
        problem = _problem(cfg, spec, rpath, task_of, record)
        if problem:
            problems.append(f"{rpath} {problem}")
            paths += [rpath, out / "store" / task_slug(spec)]
    if problems:
        raise RunFolderMismatch("; ".join(problems) + ". Run into a new folder (--out), or delete "
                                + " and ".join(str(p) for p in paths) + f" to generate them again (the later stages in "
                                f"{out} then need re-running too).")


def check_same_model(out: Path, model_name: str, specs) -> None:
    """After the model loads: rollouts made by another model (their record, else the folder's summary)
    are not resumed with this one."""
    summary_model = _read(out / "summary.json").get("model")
    for spec in specs:
        if not (out / "rollouts" / task_slug(spec)).exists():
            continue
        before = read_settings_record(out / "rollouts" / task_slug(spec)).get("model") or summary_model
        if before and not _same_model(before, model_name):
            raise RunFolderMismatch(f"{out} holds rollouts of {before}, and this run loads {model_name}: its rollouts, "
                                    "store and probes are the other model's. Run into a new folder (--out).")
