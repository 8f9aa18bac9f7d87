"""What an earlier run left in ``--out`` must be what this run asks for, or the run says so and stops.

The main job reads rollouts it finds on disk instead of generating them again (a stopped job resumes;
``--stages`` runs one stage at a time into one folder). Read back blindly, a folder of another run's
rollouts would silently stand in for the ones asked for: ``--primary-limit 2500`` into a folder of
1,000 rollouts ran on those 1,000, and ``--model gemma-3-270m`` into a SmolLM2 folder built Gemma's
store from SmolLM2's token ids. These checks compare the folder with the config (the prompts, by
example id, in order; the generation settings and the model its summary records) and name the fix.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

# settings that change a rollout's tokens (the prompts themselves are compared one by one)
_GENERATION_KEYS = ("max_new_tokens",)


class RunFolderMismatch(ValueError):
    """``--out`` holds an earlier run's rollouts that are not the ones this run asks for."""


def _fix(out: Path, paths: list[Path]) -> str:
    return (f"Run into a new folder (--out), or delete {' and '.join(str(p) for p in paths)} to generate them "
            f"again (the later stages in {out} then need re-running too).")


def _previous_header(out: Path) -> dict:
    try:
        return json.loads((out / "summary.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def check_cached_rollouts(cfg, out: Path, task_of: Callable) -> None:
    """Before the model loads: every task's rollouts on disk are of the prompts ``task_of(cfg, spec)``
    gives, in order, and were generated with this config's generation settings."""
    from datasets import load_from_disk

    header = _previous_header(out)
    previous = header.get("config") or {}
    for spec in cfg.tasks:
        slug = spec.replace(":", "_")
        rpath, spath = out / "rollouts" / slug, out / "store" / slug
        if not rpath.exists():
            continue
        changed = [f"--{k.replace('_', '-')} {previous[k]} then, {getattr(cfg, k)} now" for k in _GENERATION_KEYS
                   if k in previous and previous[k] != getattr(cfg, k)]
        if changed:
            raise RunFolderMismatch(f"{rpath} holds rollouts generated with other settings ({'; '.join(changed)}). "
                                    + _fix(out, [rpath, spath]))
        have = list(load_from_disk(str(rpath))["example_id"])
        want = [ex.id for ex in task_of(cfg, spec).examples]
        if have != want:
            first = next((i for i, (a, b) in enumerate(zip(have, want)) if a != b), min(len(have), len(want)))
            raise RunFolderMismatch(
                f"{rpath} holds {len(have)} rollouts of {spec}, but this run asks for {len(want)} "
                f"(--limit / --primary-limit, --seed); they differ from prompt {first} on. "
                + _fix(out, [rpath, spath]))


def check_same_model(out: Path, model_name: str) -> None:
    """After the model loads: a folder whose summary records another model is not resumed with this one."""
    before = _previous_header(out).get("model")
    if before and before != model_name and (out / "rollouts").exists():
        raise RunFolderMismatch(f"{out} holds a run of {before}, and this run loads {model_name}: its rollouts, "
                                "store and probes are the other model's. Run into a new folder (--out).")
