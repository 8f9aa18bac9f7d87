"""Settings of ``reward-circuits applications``: one validated dataclass; the CLI is generated from it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ...configs import StudyConfig, apply_at_defaults
from ...models.hook_names import check_layers_exist, layers_at_fractions

from .calibration import CALIBRATION_METHODS


# --quick: every stage of the study at small n (a smoke run of the whole study)
PROBE_DEPTHS = (0.2, 0.4, 0.6)  # default probed layers, as fractions of the layer count (layer ≈ f × n_layers)
QUICK = {"n_prompts": 12, "n_samples": 2, "train_prompts": 16, "probe_epochs": 5, "n_folds": 3}


@dataclass
class ApplicationsConfig(StudyConfig):
    """Settings of ``reward-circuits applications`` (defaults sized for ≲ 12 minutes on 2 shared CPU cores)."""

    backend: Literal["nnsight", "transformer_lens"] = field(default="nnsight", metadata={"help": "which library runs the model"})
    task: str = field(default="arithmetic:1", metadata={"help": "task spec (see `reward-circuits run --help`)"})
    n_prompts: int = field(default=32, metadata={"help": "prompts (each gets one greedy answer and n_samples samples)"})
    n_samples: int = field(default=4, metadata={"help": "sampled candidates per prompt (best-of-N's N)"})
    train_prompts: int = field(default=64, metadata={"help": "extra prompts with one greedy answer each that only train the value probe (never evaluated; questions equal to an evaluated one are dropped)"})
    prompt_seed: int = field(default=1, metadata={"help": "seed of the prompt draw (the main job draws with --seed 0)"})
    temperature: float = field(default=0.8, metadata={"help": "sampling temperature of the candidates"})
    # 24: the default model either answers arithmetic:1 within ~10 tokens or rambles to any budget
    # (measured at 40: 15 of 32 greedy answers took <= 9 tokens, 13 hit the limit); the ramblers hold their
    # whole batch for every extra step, so the budget sets the command's run time.
    max_new_tokens: int = field(default=24, metadata={"help": "generation budget per answer"})
    batch_size: int = field(default=32, metadata={"help": "generation batch size"})
    layers: tuple[int, ...] | None = field(default=None, metadata={"help": "layers probed (the best is chosen on validation prompts); default: the layers nearest 0.2, 0.4, 0.6 × the model's layer count (SmolLM2: 6,12,18; Gemma 3 270M: 4,7,11)"})
    prune_ratio: float | None = field(default=0.99, metadata={"help": "value neurons = dims kept at this L1 prune ratio; the scorer reads only them ('none' style: pass 0 to use the whole probe)"})
    probe_epochs: int = field(default=20, metadata={"help": "value-probe training epochs"})
    n_folds: int = field(default=4, metadata={"help": "cross-fitting folds over prompts: every reported value comes from a probe that never saw that prompt"})
    from_run: str | None = field(default=None, metadata={"help": "use the probe and value neurons of this run directory (`reward-circuits run`) instead of fitting"})
    calibration: Literal["isotonic", "platt", "none"] = field(default="isotonic", metadata={"help": "calibration of the confidence"})
    verbalized: bool = field(default=True, metadata={"help": "also ask the model for its verbalized confidence (one short generation per prompt)"})
    thresholds: Literal["quantile", "absolute"] = field(default="quantile", metadata={"help": "read the threshold options as quantiles of the (label-free) value distribution of these rollouts, or as values"})
    abort_drop: float = field(default=0.5, metadata={"help": "early abort when the value fell this far below its peak so far (quantile mode: this fraction of the 5-95% value range)"})
    flag_value_threshold: float = field(default=0.1, metadata={"help": "error detection: flag when V(s_t) falls below this (quantile mode: this quantile of all V(s_t))"})
    flag_td_threshold: float = field(default=0.05, metadata={"help": "error detection: flag when the TD error falls below minus this (quantile mode: the largest this fraction of |TD errors|)"})
    routing_selector: Literal["majority", "value"] = field(default="majority", metadata={"help": "how 'sample N' picks its answer when routing"})
    routing_fraction: float = field(default=0.5, metadata={"help": "headline routing point: this share of prompts (least confident) is sampled"})
    escalate_fraction: float = field(default=0.2, metadata={"help": "share of prompts (least confident) escalated"})
    confident_threshold: float = field(default=0.8, metadata={"help": "curation: confident-but-wrong means value at the last token >= this (quantile mode: this quantile)"})
    unconfident_threshold: float = field(default=0.2, metadata={"help": "curation: unconfident-but-right means value at the last token <= this (quantile mode: this quantile)"})
    n_boot: int = field(default=1000, metadata={"help": "bootstrap replicates of every interval"})
    quick: bool = field(default=False, metadata={"help": "a smoke run: 12 prompts, 2 samples each, 16 training prompts, 5 probe epochs, 3 folds (options given explicitly still win)"})
    out: str = field(default="runs/applications", metadata={"help": "report directory"})

    def __post_init__(self):
        super().__post_init__()
        if self.quick:  # a smoke run: every stage at small n; options given explicitly still win
            apply_at_defaults(self, QUICK)
        if self.layers is not None:
            self.layers = tuple(int(x) for x in self.layers)
        if self.n_prompts < 8:
            raise ValueError(f"--n-prompts {self.n_prompts} is too small: calibration and cross-fitting need >= 8 prompts.")
        if self.train_prompts < 0:
            raise ValueError(f"--train-prompts must be >= 0, got {self.train_prompts}.")
        if self.n_samples < 2:
            raise ValueError(f"--n-samples must be >= 2 for best-of-N, got {self.n_samples}.")
        if self.temperature <= 0:
            raise ValueError(f"--temperature must be > 0 (the candidates are sampled), got {self.temperature}.")
        if self.layers is not None and (not self.layers or any(x < 0 for x in self.layers)):
            raise ValueError(f"--layers {list(self.layers)}: give one or more layer numbers >= 0.")
        if self.prune_ratio is not None and not 0 <= self.prune_ratio < 1:
            raise ValueError(f"--prune-ratio must lie in [0, 1), got {self.prune_ratio} (0 keeps every dimension).")
        if not 2 <= self.n_folds <= self.n_prompts // 2:
            raise ValueError(f"--n-folds must lie in [2, n_prompts/2], got {self.n_folds}.")
        if self.calibration not in CALIBRATION_METHODS:
            raise ValueError(f"--calibration must be one of {CALIBRATION_METHODS}, got {self.calibration!r}.")
        for name in ("flag_value_threshold", "routing_fraction"):
            if not 0 < getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must lie in (0, 1), got {getattr(self, name)}.")
        if not 0 <= self.escalate_fraction < 1:
            raise ValueError(f"--escalate-fraction must lie in [0, 1), got {self.escalate_fraction}.")
        if self.abort_drop <= 0 or self.flag_td_threshold <= 0:
            raise ValueError("--abort-drop and --flag-td-threshold are sizes of a drop and must be > 0.")
        if self.thresholds == "quantile" and not (self.flag_td_threshold < 1 and self.abort_drop <= 1):
            raise ValueError("with --thresholds quantile, --flag-td-threshold must lie in (0, 1) and --abort-drop in (0, 1].")
        if not 0 <= self.unconfident_threshold < self.confident_threshold <= 1:
            raise ValueError("need 0 <= --unconfident-threshold < --confident-threshold <= 1.")
        for name in ("max_new_tokens", "batch_size", "probe_epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}.")
        if self.n_boot < 100:
            raise ValueError(f"--n-boot must be >= 100, got {self.n_boot}.")

    def resolve_layers(self, n_layers: int, model: str | None = None) -> tuple[int, ...]:
        """The probed layers on a model with ``n_layers`` blocks (named ``model`` in errors): ``layers`` when given (each must exist),
        else the layers nearest :data:`PROBE_DEPTHS` × ``n_layers``."""
        if self.layers is None:
            return layers_at_fractions(n_layers, PROBE_DEPTHS)
        check_layers_exist(self.layers, n_layers, model or self.model, "--layers",
                           default=f"layers {list(layers_at_fractions(n_layers, PROBE_DEPTHS))}")
        return self.layers

    def resolved_thresholds(self, traces) -> dict[str, float]:
        """The thresholds as values: in quantile mode read off the value traces (no rewards used)."""
        if self.thresholds == "absolute":
            return {"abort_drop": self.abort_drop, "flag_value": self.flag_value_threshold, "flag_td": self.flag_td_threshold,
                    "confident": self.confident_threshold, "unconfident": self.unconfident_threshold}
        import numpy as np

        states = np.concatenate([np.asarray(t, dtype=np.float64) for t in traces])
        drops = np.concatenate([np.abs(np.diff(np.asarray(t, dtype=np.float64))) for t in traces if len(t) > 1] or [np.zeros(1)])
        last = np.array([t[-1] for t in traces], dtype=np.float64)
        lo, hi = np.quantile(states, [0.05, 0.95])
        return {"abort_drop": float(max(self.abort_drop * (hi - lo), 1e-6)),
                "flag_value": float(np.quantile(states, self.flag_value_threshold)),
                "flag_td": float(max(np.quantile(drops, 1 - self.flag_td_threshold), 1e-6)),
                "confident": float(np.quantile(last, self.confident_threshold)),
                "unconfident": float(np.quantile(last, self.unconfident_threshold))}

    @property
    def uses_neurons(self) -> bool:
        return bool(self.prune_ratio)
