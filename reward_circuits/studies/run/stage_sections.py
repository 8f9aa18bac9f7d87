"""What each stage of the main job added to the report, kept on disk so a resumed or single-stage run
keeps every earlier section whole (tables, figures and notes too, not only its ``summary.json`` part).

``<out>/sections.json``: ``{"format_version": 1, "stages": {stage: [Section as a dict, ...]}}``,
rewritten atomically after every stage. A run directory written before this file existed falls
back to the sections of its ``summary.json`` (summary only; tables and figures come back when that
stage is re-run).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from ...io import atomic_write_json
from ...report import Section, Table

SECTIONS_FILE = "sections.json"
FORMAT_VERSION = 1
# the summary.json keys each stage writes (for run directories without sections.json)
_SUMMARY_KEYS = {"rollouts": ("rollouts",), "value": ("value",),
                 "interventions": ("ablation", "steering", "confidence"), "dopamine": ("dopamine",)}
_TITLES = {"rollouts": "Tasks, rollouts and the activation store", "value": "Value probes and value neurons",
           "ablation": "Ablating value neurons", "steering": "Steering (amplifying) value neurons",
           "confidence": "Confidence signals vs correctness", "dopamine": "Dopamine neurons"}


def section_from_dict(d: dict) -> Section:
    return Section(key=d["key"], title=d["title"], summary=d["summary"],
                   tables=[Table(**t) for t in d.get("tables", [])], figures=list(d.get("figures", [])),
                   notes=list(d.get("notes", [])))


def load_stage_sections(out: Path) -> dict[str, list[Section]]:
    """``{stage: its sections}`` that an earlier run into ``out`` wrote (empty for a new directory)."""
    path = out / SECTIONS_FILE
    if path.exists():
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON ({e}); delete it and re-run every stage into {out}.") from None
        if data.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{path} has format_version {data.get('format_version')!r}, not {FORMAT_VERSION}: "
                             f"delete it and re-run every stage into {out}.")
        return {stage: [section_from_dict(d) for d in secs] for stage, secs in data["stages"].items()}
    summary_path = out / "summary.json"
    if not summary_path.exists():
        return {}
    try:
        summary = json.loads(summary_path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{summary_path} is not valid JSON ({e}); delete it to start the report afresh.") from None
    return {stage: [Section(k, _TITLES[k], summary[k]) for k in keys if isinstance(summary.get(k), dict)]
            for stage, keys in _SUMMARY_KEYS.items() if any(isinstance(summary.get(k), dict) for k in keys)}


def save_stage_sections(out: Path, sections: dict[str, list[Section]]) -> None:
    atomic_write_json(out / SECTIONS_FILE, {"format_version": FORMAT_VERSION,
                                            "stages": {s: [asdict(x) for x in secs] for s, secs in sections.items()}})
