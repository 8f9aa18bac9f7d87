"""Task specs → tasks: ``get_task("arithmetic:2")``, ``get_task("gsm8k")``, ``get_task("data/my.jsonl")``."""

from __future__ import annotations

import difflib
import inspect
import os
from typing import Any, Callable

from .base import Task
from .datasets import is_local_spec, load_arc, load_gsm8k, load_local_task, load_math500, load_mmlu_stem
from .generators import (ARITHMETIC_LEVELS, WORD_PROBLEM_LEVELS, single_digit_phrasings, arithmetic_task,
                         multiple_choice_task, word_problem_task)  # fmt: skip

# --------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------

BUILTIN_TASKS: dict[str, Callable[..., Task]] = {
    "arithmetic": arithmetic_task,
    "word_problems": word_problem_task,
    "multiple_choice": multiple_choice_task,
}
"""Seeded generators, called as ``fn(n=..., seed=..., [difficulty=...])``."""

BUILTIN_LEVELS: dict[str, tuple[int, ...]] = {
    "arithmetic": ARITHMETIC_LEVELS,
    "word_problems": WORD_PROBLEM_LEVELS,
    "multiple_choice": (),
}
"""The levels (``":<difficulty>"``) each seeded generator takes; ``()``: it takes none."""

DISTINCT_PROMPTS_FLOOR = 5000
"""Distinct questions promised by every seeded level whose space is far larger (measured: 11,980 to
over 50,000 distinct among 60,000 draws), so that seeded draws of this many never repeat."""


def task_levels(families: tuple[str, ...] | None = None) -> list[str]:
    """Every seeded task level as a spec, e.g. ``["arithmetic:1", ..., "word_problems:3",
    "multiple_choice"]`` (only ``families`` when given)."""
    chosen = tuple(BUILTIN_LEVELS) if families is None else families
    unknown = [f for f in chosen if f not in BUILTIN_LEVELS]
    if unknown:
        raise ValueError(f"unknown task families {unknown}: choose from {list(BUILTIN_LEVELS)}.")
    return [f"{f}:{lvl}" for f in chosen for lvl in BUILTIN_LEVELS[f]] + [f for f in chosen if not BUILTIN_LEVELS[f]]


def distinct_prompts(spec: str) -> int | None:
    """How many distinct questions ``get_task(spec, n=..., seed=s)`` holds for ``n`` up to this number,
    for every seed (beyond it questions repeat); ``None`` for a dataset or a local file (count
    :attr:`Task.distinct_questions` of the loaded task instead). ``arithmetic:1`` is exact (155 sums ×
    16 phrasings: 2,480); every other level promises :data:`DISTINCT_PROMPTS_FLOOR`. A job that needs
    ``n`` distinct prompts checks ``distinct_prompts(spec) >= n`` before generating."""
    key, difficulty = _parse_builtin(spec)
    if key is None:
        return None
    if key == "arithmetic" and (1 if difficulty is None else difficulty) == 1:
        return len({q for q, _, _ in single_digit_phrasings()})
    return DISTINCT_PROMPTS_FLOOR


def _parse_builtin(spec: str) -> tuple[str | None, int | None]:
    """``("arithmetic", 2)`` for ``"arithmetic:2"``, ``(key, None)`` without a level, ``(None, None)``
    for a dataset or a local file; an unknown spec or level raises as :func:`get_task` does."""
    if not isinstance(spec, str):
        raise TypeError(f"task spec must be a string, got {type(spec).__name__} ({spec!r:.40}). Valid specs: {_valid_specs()}.")
    raw = spec.strip()
    key, _, arg = raw.partition(":")
    key = key.strip().lower().replace("-", "_")
    if os.path.exists(os.path.expanduser(raw)) or is_local_spec(raw) or "/" in raw or key in DATASET_LOADERS:
        return None, None
    if key not in BUILTIN_LEVELS:
        get_task(spec, n=1)  # raises the unknown-spec error with its hint
    if not arg.strip():
        return key, None
    if not BUILTIN_LEVELS[key]:
        raise ValueError(f"Task spec {spec!r}: {key} takes no ':' argument.")
    try:
        level = int(arg)
    except ValueError:
        raise ValueError(f"Task spec {spec!r}: difficulty after ':' must be an integer.") from None
    if level not in BUILTIN_LEVELS[key]:
        raise ValueError(f"Task spec {spec!r}: {key} levels are {list(BUILTIN_LEVELS[key])}.")
    return key, level


DATASET_LOADERS: dict[str, Callable[..., Task]] = {
    "gsm8k": load_gsm8k,
    "math500": load_math500,
    "arc": load_arc,
    "mmlu_stem": load_mmlu_stem,
}
"""Dataset loaders (need the Hub or a local copy), called as ``fn(n=..., seed=...)``."""

_ARC_CONFIGS = {"challenge": "ARC-Challenge", "easy": "ARC-Easy"}


def _valid_specs() -> str:
    return (
        "arithmetic[:1-4], word_problems[:0-3], multiple_choice, gsm8k, math500, arc[:challenge|easy], "
        "mmlu_stem, or a path to a local .jsonl/.json/.parquet file"
    )


def get_task(spec: str, n: int = 100, seed: int = 0, **kwargs: Any) -> Task:
    """Build a task from a short spec.

    * ``"arithmetic"``, ``"arithmetic:3"`` (difficulty 1-4), ``"word_problems"``,
      ``"word_problems:2"`` (0-3), ``"multiple_choice"``: seeded generators with ``n``
      examples;
    * ``"gsm8k"``, ``"math500"``, ``"arc"`` (``"arc:easy"``), ``"mmlu_stem"``: dataset
      loaders; at most ``n`` examples sampled with ``seed``;
    * a path to a local ``.jsonl``/``.json``/``.parquet`` file: :func:`load_local_task`.

    Extra ``kwargs`` are passed to the factory (e.g. ``system_prompt``, ``cache_dir``).
    Raises ``ValueError`` for an unknown spec, listing the valid ones.
    """
    if not isinstance(spec, (str, os.PathLike)):
        raise TypeError(f"task spec must be a string, got {type(spec).__name__} ({spec!r:.40}). Valid specs: {_valid_specs()}.")
    raw = str(spec).strip()
    if os.path.exists(os.path.expanduser(raw)) or is_local_spec(raw) or "/" in raw:
        return _call_factory(load_local_task, spec, raw, n=n, seed=seed, **kwargs)
    key, _, arg = raw.partition(":")
    key = key.strip().lower().replace("-", "_")
    arg = arg.strip()
    if key in BUILTIN_TASKS:
        if arg:
            if key == "multiple_choice":
                raise ValueError(f"Task spec {spec!r}: multiple_choice takes no ':' argument.")
            try:
                kwargs["difficulty"] = int(arg)
            except ValueError:
                raise ValueError(f"Task spec {spec!r}: difficulty after ':' must be an integer.") from None
        return _call_factory(BUILTIN_TASKS[key], spec, n=n, seed=seed, **kwargs)
    if key in DATASET_LOADERS:
        if arg:
            if key != "arc" or arg.lower() not in _ARC_CONFIGS:
                raise ValueError(f"Task spec {spec!r}: only 'arc:challenge' and 'arc:easy' take an argument.")
            kwargs["name"] = _ARC_CONFIGS[arg.lower()]
        return _call_factory(DATASET_LOADERS[key], spec, n=n, seed=seed, **kwargs)
    close = difflib.get_close_matches(key, [*BUILTIN_TASKS, *DATASET_LOADERS], n=1, cutoff=0.6)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"Unknown task spec {spec!r}.{hint} Valid specs: {_valid_specs()}.")


def _call_factory(factory: Callable[..., Task], spec, *args, **kwargs) -> Task:
    """``factory(*args, **kwargs)``, with an unknown keyword named (and the closest known one) instead
    of Python's bare ``unexpected keyword argument``."""
    params = inspect.signature(factory).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        known = [k for k, p in params.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
        unknown = [k for k in kwargs if k not in known]
        if unknown:
            close = {k: difflib.get_close_matches(k, known, n=1, cutoff=0.6) for k in unknown}
            hint = "".join(f" Did you mean {c[0]!r} for {k!r}?" for k, c in close.items() if c)
            raise TypeError(f"task {spec!r} has no option(s) {unknown}.{hint} Its options are {known}.")
    return factory(*args, **kwargs)
