"""Data curation: rollouts where the value signal and the reward disagree most - confident but
wrong, unconfident but right - exported as a ``datasets`` table for fine-tuning or review.

Columns: ``id, example_id, prompt, response, gold, reward, confidence, category`` with
``category`` in ``{"confident_wrong", "unconfident_right"}``; saved with ``Dataset.save_to_disk``
into a temporary directory renamed into place (atomic), read back with :func:`load_curation`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...io import atomic_save_dataset
from ...report import Table

CATEGORIES = ("confident_wrong", "unconfident_right")
COLUMNS = ("id", "example_id", "prompt", "response", "gold", "reward", "confidence", "category")


@dataclass
class CurationResult:
    path: str | None
    confident_threshold: float
    unconfident_threshold: float
    n_rollouts: int
    n_confident_wrong: int
    n_unconfident_right: int
    examples: list[dict]

    def to_summary(self) -> dict:
        return {"path": self.path, "confident_threshold": self.confident_threshold,
                "unconfident_threshold": self.unconfident_threshold, "n_rollouts": self.n_rollouts,
                "n_confident_wrong": self.n_confident_wrong, "n_unconfident_right": self.n_unconfident_right}

    def section_parts(self) -> tuple[list[Table], list[str]]:
        rows = [[e["category"], e["confidence"], e["reward"], e["gold"], e["response"][:120]] for e in self.examples]
        table = Table("Curated rollouts (first examples)", ["category", "confidence", "reward", "gold", "response"], rows)
        notes = [(f"{self.n_confident_wrong} confident-but-wrong (confidence ≥ {self.confident_threshold}) and "
                 f"{self.n_unconfident_right} unconfident-but-right (≤ {self.unconfident_threshold}) of {self.n_rollouts} "
                 f"rollouts exported to {self.path} (a `datasets` table: datasets.load_from_disk).")]
        return [table], notes


@dataclass
class CurationColumns:
    """One entry per rollout: its id, its prompt's id, the prompt and response text, the gold answer,
    the reward and the confidence (e.g. the value at the last token)."""

    ids: Sequence[str]
    example_ids: Sequence[str]
    prompts: Sequence[str]
    responses: Sequence[str]
    golds: Sequence[str]
    rewards: Sequence[float]
    confidence: Sequence[float]

    def __post_init__(self):
        n = len(self.ids)
        if not all(len(x) == n for x in (self.example_ids, self.prompts, self.responses, self.golds, self.rewards,
                                         self.confidence)):
            raise ValueError("ids, example_ids, prompts, responses, golds, rewards and confidence must have one entry per rollout.")


def curation_rows(columns: CurationColumns, confident_threshold: float = 0.7, unconfident_threshold: float = 0.3) -> list[dict]:
    """Rows of the two disagreement categories, most surprising first (highest confidence among the
    wrong, lowest among the right)."""
    if not 0 <= unconfident_threshold < confident_threshold <= 1:
        raise ValueError(f"need 0 <= unconfident_threshold < confident_threshold <= 1, got "
                         f"{unconfident_threshold} and {confident_threshold}.")
    ids, example_ids, prompts, responses, golds = (columns.ids, columns.example_ids, columns.prompts, columns.responses,
                                                  columns.golds)
    n = len(ids)
    confidence, rewards = columns.confidence, columns.rewards
    c = np.asarray(confidence, dtype=np.float64)
    r = np.asarray(rewards, dtype=np.float64)
    rows = []
    for i in range(n):
        if not np.isfinite(c[i]):
            continue
        cat = ("confident_wrong" if r[i] == 0 and c[i] >= confident_threshold
               else "unconfident_right" if r[i] == 1 and c[i] <= unconfident_threshold else None)
        if cat:
            rows.append({"id": str(ids[i]), "example_id": str(example_ids[i]), "prompt": str(prompts[i]),
                         "response": str(responses[i]), "gold": str(golds[i]), "reward": float(r[i]),
                         "confidence": float(c[i]), "category": cat})
    rows.sort(key=lambda row: (row["category"], -row["confidence"] if row["category"] == "confident_wrong" else row["confidence"]))
    return rows


def save_curation(rows: Sequence[dict], path: str | os.PathLike):
    """Write ``rows`` as a ``datasets.Dataset`` at ``path`` (atomically) and return the dataset."""
    from datasets import Dataset, Features, Value

    features = Features({k: Value("float64") if k in ("reward", "confidence") else Value("string") for k in COLUMNS})
    ds = Dataset.from_dict({k: [row[k] for row in rows] for k in COLUMNS}, features=features)
    # one shard: an empty table (nothing to curate) still loads
    atomic_save_dataset(ds, path, num_shards=1)
    return ds


def load_curation(path: str | os.PathLike):
    from datasets import load_from_disk

    if not Path(path).exists():
        raise FileNotFoundError(f"no curated dataset at {path}; write one with `reward-circuits applications`.")
    return load_from_disk(str(path))


def curate(columns: CurationColumns, path: str | os.PathLike | None, confident_threshold: float = 0.7,
           unconfident_threshold: float = 0.3, n_examples: int = 6) -> CurationResult:
    """Select the disagreement rollouts of ``columns``, export them to ``path`` (when given) and summarise."""
    rows = curation_rows(columns, confident_threshold, unconfident_threshold)
    if path is not None:
        save_curation(rows, path)
    cw = sum(r["category"] == "confident_wrong" for r in rows)
    shown = [r for r in rows if r["category"] == "confident_wrong"][: n_examples // 2] + \
            [r for r in rows if r["category"] == "unconfident_right"][: n_examples - n_examples // 2]
    return CurationResult(None if path is None else str(path), confident_threshold, unconfident_threshold, len(columns.ids), cw,
                          len(rows) - cw, shown)
