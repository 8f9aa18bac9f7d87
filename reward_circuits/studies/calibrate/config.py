"""Settings of ``reward-circuits calibrate``: one validated dataclass; the CLI is generated from it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ...configs import StudyConfig
from ...tasks import BUILTIN_LEVELS, distinct_prompts, task_levels


@dataclass
class CalibrateConfig(StudyConfig):
    """Settings of ``reward-circuits calibrate`` (accuracy of a model on every task level)."""

    levels: tuple[str, ...] = field(default=("arithmetic", "word_problems"), metadata={
        "help": "task levels to measure, comma-separated: a family (every level of it: arithmetic, word_problems, "
                "multiple_choice) or one level (arithmetic:2), or any task spec"})
    n: int = field(default=50, metadata={"help": "questions per level, drawn uniformly from the level's distinct prompts"})
    backend: Literal["nnsight", "transformer_lens"] = field(default="nnsight", metadata={"help": "which library runs the model"})
    max_new_tokens: int = field(default=48, metadata={"help": "generation budget per answer (the main job's default)"})
    batch_size: int = field(default=16, metadata={"help": "generation batch size"})
    band: tuple[float, ...] = field(default=(0.3, 0.7), metadata={"help": "accuracy band where rewards carry most information: low,high"})
    interval: Literal["wilson", "exact"] = field(default="wilson", metadata={"help": "binomial interval: Wilson score or Clopper-Pearson ('exact')"})
    confidence: float = field(default=0.95, metadata={"help": "confidence level of the intervals"})
    out: str = field(default="runs/calibrate", metadata={"help": "report directory"})

    def __post_init__(self):
        super().__post_init__()
        self.levels = tuple(str(x).strip() for x in self.levels if str(x).strip())
        if not self.levels:
            raise ValueError("--levels is empty: name task families (arithmetic,word_problems) or levels (arithmetic:2).")
        for spec in self.specs():
            distinct_prompts(spec)  # an unknown spec or level fails here, before the model loads
        if self.n < 1:
            raise ValueError(f"--n must be >= 1 question per level, got {self.n}.")
        self.band = tuple(float(x) for x in self.band)
        if len(self.band) != 2 or not 0 <= self.band[0] < self.band[1] <= 1:
            raise ValueError(f"--band takes two accuracies low,high with 0 <= low < high <= 1, got {self.band}.")
        if not 0 < self.confidence < 1:
            raise ValueError(f"--confidence must lie in (0, 1), got {self.confidence}.")
        for name in ("max_new_tokens", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}.")

    def specs(self) -> list[str]:
        """The task levels measured: each family expanded to its levels, in the order given, once each."""
        out: list[str] = []
        for item in self.levels:
            family = item.lower().replace("-", "_")
            for spec in (task_levels((family,)) if family in BUILTIN_LEVELS else [item]):
                if spec not in out:
                    out.append(spec)
        return out
