"""Loaders for public benchmarks through :func:`datasets.load_dataset` (GSM8K, MATH-500, ARC, MMLU-STEM),
each also accepting a local ``.jsonl``/``.json``/``.parquet`` file or directory of the same schema.
``datasets`` is imported lazily.
"""

from __future__ import annotations

import dataclasses
import os
import random
from pathlib import Path
from typing import Any, Mapping, Sequence

from .base import Example, Task, format_choices, numeric_reward, choice_reward, math_reward
from .grading import to_fraction, extract_number
from .grading import CHOICE_INSTRUCTION, MATH_INSTRUCTION

# --------------------------------------------------------------------------------------
# Dataset loaders (Hugging Face datasets, or local files of the same schema)
# --------------------------------------------------------------------------------------

MMLU_STEM_SUBJECTS: tuple[str, ...] = (
    "abstract_algebra",
    "astronomy",
    "college_biology",
    "college_chemistry",
    "college_computer_science",
    "college_mathematics",
    "college_physics",
    "computer_security",
    "conceptual_physics",
    "electrical_engineering",
    "elementary_mathematics",
    "high_school_biology",
    "high_school_chemistry",
    "high_school_computer_science",
    "high_school_mathematics",
    "high_school_physics",
    "high_school_statistics",
    "machine_learning",
)
"""The MMLU subjects in the "STEM" category of the original MMLU release."""

_LOCAL_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}

_SCHEMAS = {
    "gsm8k": "fields 'question' and 'answer' (gold after '####', or the whole answer)",
    "math500": "fields 'problem' and 'answer'",
    "arc": "fields 'question', 'choices' {'text': [...], 'label': [...]} and 'answerKey'",
    "mmlu": "fields 'question', 'choices' (list of strings) and 'answer' (int index or letter)",
}


def is_local_spec(path: str) -> bool:
    """Whether ``path`` names a local file/dir (existing or not) rather than a Hub dataset id."""
    p = str(path)
    if os.path.exists(os.path.expanduser(p)):
        return True
    if Path(p).suffix.lower() in _LOCAL_BUILDERS:
        return True
    return p.startswith(("/", "./", "../", "~", ".\\")) or "\\" in p or p.count("/") > 1


def _pick_split(ds: Any, split: str, source: str) -> Any:
    """Pick ``split`` from a ``DatasetDict`` (or its only split); pass a ``Dataset`` through."""
    if not hasattr(ds, "keys"):
        return ds
    keys = list(ds.keys())
    if split in keys:
        return ds[split]
    if len(keys) == 1:
        return ds[keys[0]]
    raise ValueError(f"Split {split!r} not found in {source!r}; available splits: {keys}.")


def _load_rows(
    path: str,
    *,
    name: str | None,
    split: str,
    expected: str,
    cache_dir: str | os.PathLike | None = None,
) -> Any:
    """Load one split as a ``datasets.Dataset`` from a local file/dir or the Hub.

    * existing local file: ``load_dataset("json"|"parquet", data_files=path)`` (its only split);
    * existing local directory: ``load_dataset(dir)`` (``dir/name`` if that sub-folder exists);
    * a path-like string that does not exist: ``FileNotFoundError``;
    * anything else: ``load_dataset(path, name, split=split)`` from the Hub.
    """
    import datasets  # lazy: heavy import, only needed here

    cache = str(cache_dir) if cache_dir is not None else None
    p = Path(os.path.expanduser(str(path)))
    if p.is_file():
        builder = _LOCAL_BUILDERS.get(p.suffix.lower())
        if builder is None:
            raise ValueError(
                f"Unsupported file type {p.suffix!r} for {str(p)!r}: use one of {sorted(_LOCAL_BUILDERS)} "
                f"with {expected}."
            )
        ds = datasets.load_dataset(builder, data_files=str(p), cache_dir=cache)
        return _pick_split(ds, split, str(p))
    if p.is_dir():
        if name and (p / name).is_dir():
            p = p / name
        ds = datasets.load_dataset(str(p), cache_dir=cache)
        return _pick_split(ds, split, str(p))
    if is_local_spec(str(path)):
        raise FileNotFoundError(
            f"Local dataset {str(path)!r} not found. Expected an existing .jsonl/.json/.parquet file "
            f"(or a directory of them) with {expected}, or a Hugging Face Hub id."
        )
    return datasets.load_dataset(str(path), name, split=split, cache_dir=cache)


def _take(rows: list[Any], n: int | None, seed: int | None) -> list[Any]:
    """At most ``n`` rows: the first ``n`` (``seed=None``) or a seeded sample kept in order."""
    if n is None or n >= len(rows):
        return list(rows)
    if n < 1:
        raise ValueError(f"n must be >= 1 or None, got {n}.")
    if seed is None:
        return list(rows[:n])
    idx = sorted(random.Random(seed).sample(range(len(rows)), n))
    return [rows[i] for i in idx]


def _gsm8k_gold(answer: Any) -> str:
    """Gold number of a GSM8K answer: text after the last '####', commas stripped."""
    text = str(answer)
    if "####" in text:
        gold = text.rsplit("####", 1)[1].strip()
    else:
        gold = text.strip()
    gold = gold.replace(",", "").replace("$", "").strip().rstrip(".")
    if to_fraction(gold) is None:
        extracted = extract_number(text)
        if extracted is not None:
            return extracted
    return gold


def _gsm8k_task(ds: Any, split: str, n: int | None, seed: int | None, **task_kwargs: Any) -> Task:
    rows = _take(list(enumerate(ds)), n, seed)
    examples = [
        Example(
            id=f"gsm8k-{split}-{i}",
            question=str(row["question"]),
            answer=_gsm8k_gold(row["answer"]),
            meta={"solution": str(row["answer"]), "source": "gsm8k", "index": i},
        )
        for i, row in rows
    ]
    task_kwargs.setdefault("instruction", "Solve the problem step by step, then give the final answer after '####'.")
    task_kwargs.setdefault("max_new_tokens", 512)
    return Task(name="gsm8k", examples=examples, reward_fn=numeric_reward, **task_kwargs)


def load_gsm8k(
    split: str = "test",
    path: str = "openai/gsm8k",
    n: int | None = None,
    *,
    seed: int | None = None,
    name: str = "main",
    cache_dir: str | os.PathLike | None = None,
    **task_kwargs: Any,
) -> Task:
    """GSM8K (fields ``question``, ``answer``); gold = text after ``####`` with commas stripped.

    ``path`` is a Hub id or a local ``.jsonl``/``.json``/``.parquet`` file or directory.
    ``n`` keeps at most ``n`` examples (first ``n``, or a seeded sample when ``seed`` is
    given). ``task_kwargs`` (``system_prompt``, ``instruction``, ``max_new_tokens``) go to
    :class:`Task`. Reward: :func:`numeric_reward`.
    """
    ds = _load_rows(path, name=name, split=split, expected=_SCHEMAS["gsm8k"], cache_dir=cache_dir)
    return _gsm8k_task(ds, split, n, seed, **task_kwargs)


def _math500_task(ds: Any, split: str, n: int | None, seed: int | None, **task_kwargs: Any) -> Task:
    rows = _take(list(enumerate(ds)), n, seed)
    examples = []
    for i, row in rows:
        meta = {k: row[k] for k in ("subject", "level", "unique_id", "solution") if k in row}
        meta.update(source="math500", index=i)
        examples.append(
            Example(id=f"math500-{split}-{i}", question=str(row["problem"]), answer=str(row["answer"]).strip(), meta=meta)
        )
    task_kwargs.setdefault("instruction", "Solve the problem step by step. " + MATH_INSTRUCTION)
    task_kwargs.setdefault("max_new_tokens", 1024)
    return Task(name="math500", examples=examples, reward_fn=math_reward, **task_kwargs)


def load_math500(
    split: str = "test",
    path: str = "HuggingFaceH4/MATH-500",
    n: int | None = None,
    *,
    seed: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    **task_kwargs: Any,
) -> Task:
    """MATH-500 (fields ``problem``, ``answer``); reward :func:`math_reward` (light LaTeX normalisation).

    ``path``/``n``/``seed``/``task_kwargs`` as in :func:`load_gsm8k`.
    """
    ds = _load_rows(path, name=None, split=split, expected=_SCHEMAS["math500"], cache_dir=cache_dir)
    return _math500_task(ds, split, n, seed, **task_kwargs)


def _mc_example(
    ex_id: str, question: str, choices: Sequence[str], gold_index: int, meta: Mapping[str, Any]
) -> Example:
    letters = "ABCDEFGHIJ"[: len(choices)]
    full_meta = {"choices": [str(c) for c in choices], "letters": letters, **meta}
    return Example(id=ex_id, question=format_choices(question, choices, letters), answer=letters[gold_index], meta=full_meta)


def _arc_task(ds: Any, split: str, n: int | None, seed: int | None, **task_kwargs: Any) -> Task:
    rows = _take(list(enumerate(ds)), n, seed)
    examples = []
    for i, row in rows:
        choices = row["choices"]
        texts, labels = list(choices["text"]), [str(x).strip() for x in choices["label"]]
        key = str(row["answerKey"]).strip()
        if key not in labels:
            raise ValueError(f"ARC row {i}: answerKey {key!r} not among labels {labels}.")
        meta = {"source": "arc", "index": i, "original_labels": labels}
        if "id" in row:
            meta["original_id"] = row["id"]
        examples.append(_mc_example(f"arc-{split}-{i}", str(row["question"]), texts, labels.index(key), meta))
    task_kwargs.setdefault("instruction", CHOICE_INSTRUCTION)
    task_kwargs.setdefault("max_new_tokens", 64)
    return Task(name="arc", examples=examples, reward_fn=choice_reward, **task_kwargs)


def load_arc(
    split: str = "test",
    path: str = "allenai/ai2_arc",
    name: str = "ARC-Challenge",
    n: int | None = None,
    *,
    seed: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    **task_kwargs: Any,
) -> Task:
    """AI2 ARC (``question``, ``choices{text,label}``, ``answerKey``) as multiple choice.

    Options are re-lettered A, B, C, ... in their given order (some ARC rows use numeric
    labels "1".."4" or have 3/5 options); ``meta["letters"]`` records the valid letters.
    ``name`` is the Hub config (``"ARC-Challenge"``/``"ARC-Easy"``); for a local directory
    it selects a sub-folder of that name if one exists. Reward: :func:`choice_reward`.
    """
    ds = _load_rows(path, name=name, split=split, expected=_SCHEMAS["arc"], cache_dir=cache_dir)
    return _arc_task(ds, split, n, seed, **task_kwargs)


def _mmlu_gold_index(answer: Any, n_choices: int) -> int:
    if isinstance(answer, str) and not answer.strip().isdigit():
        idx = "ABCDEFGHIJ".find(answer.strip().upper())
    else:
        idx = int(answer)
    if not 0 <= idx < n_choices:
        raise ValueError(f"MMLU answer {answer!r} out of range for {n_choices} choices.")
    return idx


def _mmlu_task(
    rows_with_subject: list[tuple[str, Any]], split: str, n: int | None, seed: int | None, **task_kwargs: Any
) -> Task:
    rows = _take(list(enumerate(rows_with_subject)), n, seed)
    examples = []
    for i, (subject, row) in rows:
        choices = list(row["choices"])
        gold = _mmlu_gold_index(row["answer"], len(choices))
        meta = {"source": "mmlu", "subject": subject, "index": i}
        examples.append(_mc_example(f"mmlu-{split}-{i}", str(row["question"]), choices, gold, meta))
    task_kwargs.setdefault("instruction", CHOICE_INSTRUCTION)
    task_kwargs.setdefault("max_new_tokens", 64)
    return Task(name="mmlu_stem", examples=examples, reward_fn=choice_reward, **task_kwargs)


def load_mmlu_stem(
    split: str = "test",
    path: str = "cais/mmlu",
    subjects: Sequence[str] | None = MMLU_STEM_SUBJECTS,
    n: int | None = None,
    *,
    seed: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    **task_kwargs: Any,
) -> Task:
    """MMLU STEM subjects (``question``, ``choices`` list, ``answer`` int) as multiple choice.

    From the Hub each subject is loaded as its own config. A local file (or directory) is
    loaded once and, if it has a ``subject`` column, filtered to ``subjects``; a local
    directory with one sub-folder per subject is also accepted. ``subjects=None`` keeps
    everything. Reward: :func:`choice_reward`.
    """
    expected = _SCHEMAS["mmlu"]
    wanted = list(subjects) if subjects is not None else None
    p = Path(os.path.expanduser(str(path)))
    rows: list[tuple[str, Any]] = []
    per_subject_dirs = p.is_dir() and wanted is not None and any((p / s).is_dir() for s in wanted)
    if per_subject_dirs or not is_local_spec(str(path)):
        if wanted is None:
            wanted = ["all"]
        for subject in wanted:
            if per_subject_dirs and not (p / subject).is_dir():
                continue
            ds = _load_rows(str(p / subject) if per_subject_dirs else path, name=subject, split=split,
                            expected=expected, cache_dir=cache_dir)  # fmt: skip
            rows.extend((str(r.get("subject") or subject), r) for r in ds)
    else:
        ds = _load_rows(path, name=None, split=split, expected=expected, cache_dir=cache_dir)
        has_subject = "subject" in (ds.column_names or [])
        for r in ds:
            subject = str(r["subject"]) if has_subject else "unknown"
            if has_subject and wanted is not None and subject not in wanted:
                continue
            rows.append((subject, r))
    if not rows:
        raise ValueError(
            f"No MMLU rows for subjects {wanted} in {str(path)!r} (split {split!r}); expected {expected} "
            "and, for filtering, a 'subject' column."
        )
    return _mmlu_task(rows, split, n, seed, **task_kwargs)


def load_local_task(
    path: str | os.PathLike,
    n: int | None = None,
    seed: int | None = None,
    *,
    split: str = "test",
    cache_dir: str | os.PathLike | None = None,
    **task_kwargs: Any,
) -> Task:
    """Load a local ``.jsonl``/``.json``/``.parquet`` file (or directory), detecting its schema.

    Schemas, checked in this order: ARC (``choices`` dict + ``answerKey``), MMLU
    (``choices`` list + ``answer``), MATH (``problem`` + ``answer``), GSM8K/plain numeric
    (``question`` + ``answer``). The task is named after the file stem.
    """
    p = str(path)
    if not os.path.exists(os.path.expanduser(p)):
        raise FileNotFoundError(
            f"Local task file {p!r} not found. Expected a .jsonl/.json/.parquet file with one of: "
            + "; ".join(f"{k}: {v}" for k, v in _SCHEMAS.items())
            + "."
        )
    ds = _load_rows(p, name=None, split=split, expected="one of the supported schemas", cache_dir=cache_dir)
    cols = set(ds.column_names or [])
    stem = Path(p).stem or "local"
    if {"question", "choices", "answerKey"} <= cols:
        task = _arc_task(ds, split, n, seed, **task_kwargs)
    elif {"question", "choices", "answer"} <= cols:
        has_subject = "subject" in cols
        task = _mmlu_task([(str(r["subject"]) if has_subject else "unknown", r) for r in ds], split, n, seed,
                          **task_kwargs)  # fmt: skip
    elif {"problem", "answer"} <= cols:
        task = _math500_task(ds, split, n, seed, **task_kwargs)
    elif {"question", "answer"} <= cols:
        task = _gsm8k_task(ds, split, n, seed, **task_kwargs)
    else:
        raise ValueError(
            f"Cannot detect the schema of {p!r} (columns {sorted(cols)}). Expected one of: "
            + "; ".join(f"{k}: {v}" for k, v in _SCHEMAS.items())
            + "."
        )
    return dataclasses.replace(task, name=stem)


