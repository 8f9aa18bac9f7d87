"""The calibration study: greedy answers to ``n`` questions of every task level, accuracy with a
binomial interval per level, and the level of each family that lands in the accuracy band."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ...analysis import Interval, binomial_interval
from ...data import generate_rollouts
from ...models import GenerationConfig, load_model
from ...report import Section, Table, new_figure, save_figure
from ...tasks import Task, distinct_prompts, get_task
from ...tasks.base import FEW_SHOT_STOP
from .config import CalibrateConfig


@dataclass(frozen=True)
class LevelAccuracy:
    """One task level: greedy accuracy on ``accuracy.n`` questions, its interval and whether it lies in the band."""

    level: str
    accuracy: Interval
    in_band: bool  # the point estimate lies in the band
    interval_in_band: bool  # the whole interval does
    distinct_prompts: int | None  # the level's promise (None: a dataset)
    finished_with_eos: float
    mean_response_tokens: float
    seconds: float
    answers: tuple[dict, ...] = field(default=(), repr=False, compare=False)  # per question: id, question, response, reward

    @property
    def family(self) -> str:
        return self.level.split(":")[0]

    def to_dict(self) -> dict:
        return {"level": self.level, "accuracy": self.accuracy.to_dict(), "correct": round(self.accuracy.estimate * self.accuracy.n),
                "in_band": self.in_band, "interval_in_band": self.interval_in_band, "distinct_prompts": self.distinct_prompts,
                "finished_with_eos": self.finished_with_eos, "mean_response_tokens": self.mean_response_tokens,
                "seconds": self.seconds}  # fmt: skip


@dataclass
class CalibrationResult:
    """Accuracy per task level of one model (:func:`run_calibration`)."""

    model: str
    band: tuple[float, float]
    interval: str
    rows: list[LevelAccuracy]
    timings: dict = field(default_factory=dict)

    def in_band(self) -> dict[str, str | None]:
        """Per family, the level whose accuracy lies in the band and is nearest its middle (``None``: no level does)."""
        mid = sum(self.band) / 2
        out: dict[str, str | None] = {}
        for family in dict.fromkeys(r.family for r in self.rows):
            inside = [r for r in self.rows if r.family == family and r.in_band]
            out[family] = min(inside, key=lambda r: abs(r.accuracy.estimate - mid)).level if inside else None
        return out

    def answers(self) -> list[dict]:
        """Every graded answer of every level (question, response, gold, reward), for ``answers.jsonl``."""
        return [a for r in self.rows for a in r.answers]

    def to_dict(self) -> dict:
        return {"model": self.model, "band": list(self.band), "interval": self.interval,
                "levels": [r.to_dict() for r in self.rows], "in_band": self.in_band(), "timings": self.timings}

    def to_section(self, out: str | os.PathLike | None = None) -> Section:
        """The ``calibrate`` section: one table row per level, the figure (when ``out`` is given) and notes."""
        lo, hi = self.band
        rows = [[r.level, r.accuracy.n, round(r.accuracy.estimate * r.accuracy.n), r.accuracy.estimate, r.accuracy.low,
                 r.accuracy.high, "yes" if r.in_band else "no", r.distinct_prompts, r.finished_with_eos,
                 r.mean_response_tokens] for r in self.rows]  # fmt: skip
        table = Table(f"Greedy accuracy per task level ({self.interval} {self.rows[0].accuracy.level:.0%} intervals)",
                      ["level", "n", "correct", "accuracy", "low", "high", f"in {lo:.0%}-{hi:.0%}", "distinct prompts",
                       "ended with EOS", "mean tokens"], rows)  # fmt: skip
        picks = self.in_band()
        notes = [f"{family}: {level or 'no level'} lands in the {lo:.0%}-{hi:.0%} band" + ("" if level else
                 " (add an easier or harder level, or another prompt format)") for family, level in picks.items()]  # fmt: skip
        figures = [self._figure(Path(out))] if out is not None else []
        return Section("calibrate", f"Calibration: accuracy of {self.model} per task level", self.to_dict(), [table],
                       figures, notes)

    def _figure(self, out: Path) -> str:
        fig, ax = new_figure(width=max(5.0, 0.7 * len(self.rows) + 2), height=3.6)
        x = np.arange(len(self.rows))
        est = np.array([r.accuracy.estimate for r in self.rows])
        err = np.array([[r.accuracy.estimate - r.accuracy.low, r.accuracy.high - r.accuracy.estimate] for r in self.rows]).T
        ax.axhspan(*self.band, color="#e6c200", alpha=0.2, label="band")
        ax.errorbar(x, est, yerr=err, fmt="o", color="#1f4e79", capsize=3, label="accuracy")
        ax.set_xticks(x, [r.level for r in self.rows], rotation=30, ha="right")
        ax.set_ylim(0, 1)
        ax.set_ylabel("greedy accuracy")
        ax.set_title(self.model)
        ax.legend(loc="best", fontsize=8)
        return save_figure(fig, out / "calibrate.png")


def _level_task(spec: str, cfg: CalibrateConfig) -> tuple[Task, int | None]:
    """``cfg.n`` questions of ``spec`` drawn uniformly from every distinct question it promises (the
    first ``n`` of a seeded draw would favour the first phrasings of ``arithmetic:1``)."""
    promised = distinct_prompts(spec)
    if promised is None:
        task = get_task(spec, n=cfg.n, seed=cfg.seed)
    else:
        pool = get_task(spec, n=promised, seed=cfg.seed)
        task = pool.subset(min(cfg.n, len(pool)), seed=cfg.seed)
    task.max_new_tokens = cfg.max_new_tokens
    return task, promised


def _measure(adapter, spec: str, cfg: CalibrateConfig) -> LevelAccuracy:
    t0 = time.perf_counter()
    task, promised = _level_task(spec, cfg)
    # a base model prompted few-shot goes on to write the next question: stop there (as the main job does)
    few_shot = getattr(adapter.tokenizer, "chat_template", None) is None
    gen = GenerationConfig(max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size, seed=cfg.seed, progress=cfg.progress,
                           stop_strings=(FEW_SHOT_STOP,) if few_shot else ())  # fmt: skip
    rollouts = generate_rollouts(adapter, task, gen)
    correct = int(sum(r.reward for r in rollouts))
    acc = binomial_interval(correct, len(rollouts), level=cfg.confidence, method=cfg.interval)
    lo, hi = cfg.band
    answers = tuple({"level": spec, "id": e.id, "question": e.question, "gold": e.answer, "response": r.response_text,
                     "reward": r.reward, "expression": e.meta.get("expression")} for e, r in zip(task.examples, rollouts))  # fmt: skip
    return LevelAccuracy(level=spec, accuracy=acc, answers=answers, in_band=lo <= acc.estimate <= hi, interval_in_band=lo <= acc.low and acc.high <= hi,
                         distinct_prompts=promised, finished_with_eos=float(np.mean([r.finish_reason == "eos" for r in rollouts])),
                         mean_response_tokens=float(np.mean([len(r.response_ids) for r in rollouts])),
                         seconds=time.perf_counter() - t0)  # fmt: skip


def run_calibration(cfg: CalibrateConfig, adapter=None, on_level=None) -> CalibrationResult:
    """Greedy accuracy of ``cfg.model`` (or ``adapter``) on ``cfg.n`` questions of every level in
    ``cfg.specs()``, one level after another under a progress bar; ``on_level(result so far)`` is
    called after each level (the command rewrites its report then, so a stopped run keeps its levels)."""
    wall0, cpu0 = time.perf_counter(), time.process_time()
    if adapter is None:
        adapter = load_model(cfg.model, backend=cfg.backend, device=cfg.device)
    timings = {"load_model_s": time.perf_counter() - wall0}
    rows = []
    bar = tqdm(cfg.specs(), desc="calibrate", unit="level", disable=not cfg.progress)
    for spec in bar:
        bar.set_postfix_str(spec)
        rows.append(_measure(adapter, spec, cfg))
        bar.write(f"[calibrate] {spec}: {rows[-1].accuracy}" + (" in band" if rows[-1].in_band else ""))
        if on_level is not None:
            on_level(CalibrationResult(adapter.name, (cfg.band[0], cfg.band[1]), cfg.interval, list(rows),
                                       {**timings, "wall_s": time.perf_counter() - wall0}))
    timings.update(wall_s=time.perf_counter() - wall0, cpu_s=time.process_time() - cpu0, torch_threads=torch.get_num_threads(),
                   load_average_1min=os.getloadavg()[0])  # fmt: skip
    return CalibrationResult(adapter.name, (cfg.band[0], cfg.band[1]), cfg.interval, rows, timings)
