"""Settings of the main job: one validated dataclass; ``reward-circuits run``'s options are generated from it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ...configs import StudyConfig, apply_at_defaults
from ...models.base import DEFAULT_BACKEND
from .sizing import paper_sizing

# word_problems:0 first: 5,000 distinct questions (names, objects and numbers vary), the default model's
# accuracy 0.36 [0.24, 0.50] (`reward-circuits calibrate`); arithmetic:1 beyond its first 149 questions
# rewords the same 155 sums, and the rewording alone moves accuracy from 0.65 to 0.23 (a surface cue)
DEFAULT_TASKS = ("word_problems:0", "arithmetic:1")
ALL_STAGES = ("rollouts", "store", "value", "interventions", "dopamine")

PAPER = paper_sizing()  # sized in one place from the claims' minimum detectable effects (see .sizing)
PROFILES: dict[str, dict] = {
    "default": {},
    # Sized by .sizing.paper_sizing(): held-out rollouts of the primary task for a V(s0) AUC interval of
    # about +-0.03 (1457 of 3643 at a 0.4 test share), and examples per ablation pass with random draws
    # for a 0.10 accuracy difference (value vs matched random sets) at 80% power after Holm over the
    # ablation claim's family (1281 examples, 11 draws, m = 13). word_problems:0 first: 5,000 distinct
    # questions: the 2186 fit and validation prompts of its 3643 rollouts leave enough for 1281 evaluation prompts (fresh first, then held-out test prompts); arithmetic:1 (2,480) second.
    # The paper's early layers are ablated too: relative depth 0.25 besides the 3 validation-best layers.
    "paper": {"tasks": ("word_problems:0", "arithmetic:1"), "limit": 1000, "primary_limit": PAPER.primary_limit,
              "test_fraction": PAPER.targets.test_fraction, "eval_examples": PAPER.examples_per_pass,
              "random_draws": PAPER.random_draws, "ablation_layers": 3, "ablation_depths": (0.25,),
              "dose_modes": ("zero", "mean"), "dose_fractions": (0.01, 0.02, 0.05, 0.1), "robustness_seeds": 3,
              "robustness_widths": (16, 64, 256),
              "target_variants_all_layers": True},
}


# --quick: a whole-job smoke run (every stage, small n; about two minutes on the default model). The
# value stage's own quick mode trains fewer epochs and variants; the dopamine stage runs 200 permutations.
QUICK: dict = {"limit": 40, "primary_limit": 40, "test_fraction": 0.3, "max_new_tokens": 32, "eval_examples": 8, "random_draws": 1, "ablation_layers": 1}


@dataclass
class RunConfig(StudyConfig):
    """Settings of ``reward-circuits run`` (every CLI option is one field; defaults live here only)."""

    backend: Literal["transformer_lens", "nnsight"] = field(default=DEFAULT_BACKEND, metadata={"help": "which library runs the model (results agree on both)"})
    tasks: tuple[str, ...] = field(default=DEFAULT_TASKS, metadata={"help": "comma-separated task specs: arithmetic[:1-4], word_problems[:0-3], multiple_choice, gsm8k, math500, arc, mmlu_stem, or a local .jsonl/.parquet"})
    # sized so the job on the default model stays well under 10 min on 2 cores
    limit: int = field(default=200, metadata={"help": "examples per task (the primary task: --primary-limit)"})
    # 600: the headline (V(s_0)'s held-out AUC at the chosen layer) must decide. At the default model's
    # word_problems:0 accuracy (0.36) and an AUC near 0.6, 0.4 x 600 = 240 held-out rollouts give a 95%
    # interval of about +-0.075 (Hanley-McNeil); 200 rollouts gave +-0.17 (0.616 [0.429, 0.774], n = 47).
    primary_limit: int | None = field(default=600, metadata={"help": "examples of the primary (first) task; none: --limit"})
    out: str = field(default="runs/default", metadata={"help": "report directory"})
    layers: tuple[int, ...] | None = field(default=None, metadata={"help": "layers to store and probe (default: every 3rd and the last)"})
    # 48: the default model's answers come within 48 tokens (cutting the 64-token rollouts of both
    # default tasks at 48 left accuracy at 0.56 / 0.50 vs 0.56 / 0.48); the ~25% that run longer
    # ramble, and each such row holds its whole batch for every extra step.
    max_new_tokens: int = field(default=48, metadata={"help": "generation budget per rollout"})
    # 128: CPU decoding reads every weight once per step whatever the batch, so wide batches are
    # cheaper per row (measured: 200 rollouts at 128 rows took 0.72x the time of 32-row batches)
    batch_size: int = field(default=128, metadata={"help": "generation batch size (rollouts)"})
    eval_examples: int = field(default=32, metadata={"help": "examples per generation pass of the intervention studies"})
    ablation_layers: int = field(default=2, metadata={"help": "how many layers (best first) the ablation study covers"})
    ablation_depths: tuple[float, ...] = field(default=(), metadata={"help": "comma-separated relative depths (layer / n_layers, e.g. 0.25) whose nearest stored layer is always ablated too, with uniform and matched controls, besides the validation-best layers (the paper profile adds 0.25: the paper's early layers)"})
    random_draws: int = field(default=3, metadata={"help": "random neuron sets per control"})
    test_fraction: float = field(default=0.4, metadata={"help": "held-out share of rollouts (probes are reported on it)"})
    stages: tuple[str, ...] = field(default=ALL_STAGES, metadata={"help": f"comma-separated subset of {','.join(ALL_STAGES)}"})
    quick: bool = field(default=False, metadata={"help": "a whole-job smoke run: every stage at small n (40 examples per task, 32 new tokens, 8 examples per intervention pass, 1 random draw, 1 ablation layer, fewer probe epochs and variants); options given explicitly still win"})
    profile: Literal["default", "paper"] = field(default="default", metadata={"help": f"'paper': sized from the claims' minimum detectable effects (reward_circuits/studies/run/sizing.py): {PAPER.primary_limit} word_problems:0 rollouts ({PAPER.held_out} held out: AUC intervals ~ +-0.03), {PAPER.examples_per_pass} examples per ablation pass and {PAPER.random_draws} random draws (a 0.10 accuracy difference at 80% power after Holm), the early layers at relative depth 0.25 ablated too; options given explicitly still win"})
    transfer_from: str | None = field(default=None, metadata={"help": "a finished run directory (e.g. of the base model, when this run is a fine-tuned one): its value neurons at the ablated layers are ablated here too (transfer across models)"})
    target_variants_all_layers: bool = field(default=False, metadata={"help": "compare TD(0), TD(lambda) and Monte-Carlo targets on every layer (the paper profile does; default: the best layer only, ~2 min less)"})
    # the default runs the dose-response in the ablation study's mode (zero) at 5% and 10% of the dims:
    # its 1% point is the ablation study's own value set at the same layer (same dims, same mode, with
    # 3 uniform and 3 matched draws), and each (mode, dose) is 3 of the sweep's conditions
    # (value/uniform/matched sets); mean mode also needs a pass for the means. The default job must stay
    # within 10 minutes on 2 cores; the paper profile runs both modes at 4 doses
    dose_modes: tuple[str, ...] = field(default=("zero",), metadata={"help": "comma-separated ablation modes of the dose-response study: zero, mean (the paper profile runs both)"})
    dose_fractions: tuple[float, ...] = field(default=(0.05, 0.1), metadata={"help": "comma-separated shares of the value-ranked dims ablated in the dose-response study (the ablation study already ablates 1%; the paper profile runs 0.01,0.02,0.05,0.1)"})
    robustness_seeds: int = field(default=2, metadata={"help": "seeds per probe architecture in the value stage's robustness table (the paper profile runs 3)"})
    # the hidden-256 probe took 6 of the robustness table's 24 s in the default job (18 s without it,
    # 2026-12-02); the default job (<= 10 min on 2 cores) leaves it to the paper profile
    robustness_widths: tuple[int, ...] = field(default=(16, 64), metadata={"help": "comma-separated hidden widths of the probe architectures in the value stage's robustness table (the paper profile adds 256)"})
    exclude_massive: bool = field(default=False, metadata={"help": "keep massive-activation outlier dims (> 10x the layer's median |activation|) out of the value-neuron sets"})

    def limit_of(self, spec: str) -> int:
        """Examples of task ``spec``: ``primary_limit`` for the first task (when set), else ``limit``."""
        return self.primary_limit if spec == self.tasks[0] and self.primary_limit is not None else self.limit

    def __post_init__(self):
        super().__post_init__()
        if self.profile not in PROFILES:
            raise ValueError(f"unknown profile {self.profile!r}; choose from {sorted(PROFILES)}.")
        apply_at_defaults(self, PROFILES[self.profile])  # an explicit option wins over the profile
        if self.quick:  # then --quick shrinks every stage that neither an option nor the profile sized
            apply_at_defaults(self, QUICK)
            if self.primary_limit == QUICK["primary_limit"] and self.limit != QUICK["limit"]:
                self.primary_limit = self.limit  # --quick --limit N: N examples of every task
        self.tasks = tuple(self.tasks)
        self.stages = tuple(self.stages)
        if self.layers is not None:
            self.layers = tuple(int(x) for x in self.layers)
            if any(x < 0 for x in self.layers):
                raise ValueError(f"--layers {list(self.layers)}: layer numbers must be >= 0.")
        if self.primary_limit is not None and self.primary_limit < 4:
            raise ValueError(f"--primary-limit {self.primary_limit} is too small: use >= 20 (or leave it unset for --limit).")
        if self.limit < 4:
            raise ValueError(f"--limit {self.limit} is too small: probes need both rewards in train and test; use >= 20.")
        bad = [s for s in self.stages if s not in ALL_STAGES]
        if bad:
            raise ValueError(f"unknown stage(s) {bad}; choose from {list(ALL_STAGES)}.")
        if not self.tasks:
            raise ValueError("no tasks given: pass --tasks arithmetic:1 (or another spec).")
        if self.transfer_from is not None and not (Path(self.transfer_from) / "value" / "value_neurons_by_layer.json").is_file():
            raise ValueError(f"--transfer-from {self.transfer_from}: no value/value_neurons_by_layer.json there; give the "
                             "output directory of a finished `reward-circuits run` (value stage included).")
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}.")
        self.dose_fractions = tuple(float(f) for f in self.dose_fractions)
        self.ablation_depths = tuple(float(x) for x in self.ablation_depths)
        if any(not 0 <= x <= 1 for x in self.ablation_depths):
            raise ValueError(f"--ablation-depths {','.join(map(str, self.ablation_depths))}: give relative depths "
                             "(layer / n_layers) in [0, 1], e.g. 0.25.")
        if not self.dose_fractions or any(not 0 < f < 1 for f in self.dose_fractions):
            raise ValueError(f"--dose-fractions {self.dose_fractions}: give shares in (0, 1), e.g. 0.01,0.05,0.1.")
        self.dose_modes = tuple(self.dose_modes)
        if not self.dose_modes or any(m not in ("zero", "mean") for m in self.dose_modes):
            raise ValueError(f"--dose-modes {','.join(self.dose_modes)}: give one or both of mean, zero.")
        self.robustness_widths = tuple(int(w) for w in self.robustness_widths)
        if not self.robustness_widths or any(w < 1 for w in self.robustness_widths):
            raise ValueError(f"--robustness-widths {','.join(map(str, self.robustness_widths))}: give hidden widths >= 1, e.g. 16,64,256.")
        for name in ("max_new_tokens", "batch_size", "eval_examples", "ablation_layers", "random_draws", "robustness_seeds"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}.")
