""":class:`IrmConfig`: every knob of ``reward-circuits irm`` (the CLI options are generated from it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ...configs import StudyConfig, apply_at_defaults
from ...sae import SAETrainConfig
from .finetune import FinetuneConfig


# --quick: every stage of the study at small n (a smoke run of the whole study)
QUICK = {"steps": 2, "max_finetune_seconds": 60.0, "n_train_prompts": 16, "n_select_prompts": 12, "n_eval_prompts": 12,
         "sae_epochs": 2, "n_positive_words": 20, "n_negative_words": 20, "templates_per_word": 1, "n_ablate": 5,
         "n_random_draws": 5, "n_boot": 200}


@dataclass
class IrmConfig(StudyConfig):
    """The implicit-reward-model study (Marks et al.) on one (base, fine-tuned) model pair.

    Fine-tune selection criterion (stated before the sweep, issue 28; never the IRM result): on the
    held-out *eval* prompts (48 by default, 24 sampled tokens at temperature 1, same seeds for both
    models) a configuration (learning rate, beta, steps) is admissible when

    1. the fine-tuned model's mean VADER reward is in the paper's band, 1.5 <= reward <= 3.0
       (paper: 0.26 → 2.07, −0.27 → 1.95, 0.68 → 1.43; the clip is 10);
    2. the mean per-token KL(fine-tuned ‖ base) on its completions is <= 0.5 nats/token (12 nats
       over a 24-token completion);
    3. distinct-2 of its completions is >= 0.8 × the base's (no collapse toward a few words).

    The sweep's points are listed in order before they run; the first admissible point in that order
    is the default (``scripts/irm_sweep_table.py``); with none admissible, the sweep goes on (lower
    learning rate / fewer steps / larger beta).

    Sweep (2026-12-06, docs/results/2026-12-06/irm/finetune_sweep.json; lr 1e-3, LoRA r 16, held-out
    reward from 0.176, distinct-2 0.955): beta 0.05 / 14 steps → 3.17, KL 1.09, distinct-2 0.74;
    beta 0.1 / 10 → 1.03, KL 0.29; beta 0.1 / 13 → 1.48, KL 0.48; beta 0.1 / 14 → 1.84, KL 0.57,
    distinct-2 0.86; beta 0.2 / 16 → 0.86, KL 0.13. A second, pre-stated round (same README):
    lr 8e-4 / beta 0.1 / 14 → 1.40, KL 0.35; lr 1e-3 / beta 0.12 / 14 → 1.20, KL 0.29; lr 8e-4 /
    beta 0.1 / 16 → 1.80, KL 0.52; lr 9e-4 / beta 0.1 / 14 → 1.81, KL 0.62, distinct-2 0.80.
    **No point met all three criteria**: every point in the reward band has KL 0.52–0.62, every point
    under the KL bound a reward under 1.5. The default stays beta 0.1 / 14 steps (in the band, no
    collapse, KL 0.07 over the bound), as the plan stated before the second round.
    Gemma 3 270M (docs/results/2026-12-06/irm-gemma/, base reward 0.393): the same recipe is a reward
    hack there (6.09, KL 1.56, distinct-2 0.90 → 0.24, "Great! Great! ..."); pass a smaller
    ``--learning-rate`` / larger ``--beta`` for Gemma.
    GRPO is deterministic at a fixed seed here (the 13- and 14-step runs share their first 13 steps).

    Cost is dominated by GRPO (``max_finetune_seconds`` caps it), the 10 SAEs (two sizes per model
    and hook, plus a second base seed for the MMCS floor), generation (the ablation sweeps 2 + 40
    matched-draw conditions: 40 so the rank test can reach the one-sided α 0.025) and the IRM (both
    models). GRPO took 60–100 s a step at 1 thread on a 2-core machine at load 7–8 (1033 s for 14 steps); lower ``sae_epochs`` / ``n_*_prompts`` /
    ``n_random_draws`` for a quicker run.
    """

    out: str = field(default="runs/irm", metadata={"help": "report directory (summary.json, report.html, models, SAEs)"})
    finetuned: str | None = field(default=None, metadata={
        "help": "an already fine-tuned HF directory of the same architecture (skips fine-tuning)"})
    prompts: Literal["generated", "imdb"] = field(default="generated", metadata={
        "help": "review prefixes: the packaged seeded generator (offline) or IMDb via datasets (network)"})
    n_train_prompts: int = field(default=120, metadata={"help": "prompts for fine-tuning"})
    n_select_prompts: int = field(default=48, metadata={"help": "prompts for the SAE corpus and feature selection"})
    n_eval_prompts: int = field(default=48, metadata={"help": "held-out prompts for rewards and ablation"})
    samples_per_prompt: int = field(default=1, metadata={"help": "sampled completions per prompt"})
    max_new_tokens: int = field(default=24, metadata={"help": "completion length (training and evaluation)"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature (training and evaluation)"})
    # fine-tuning (GRPO + LoRA)
    steps: int = field(default=14, metadata={"help": "GRPO optimizer steps"})
    learning_rate: float = field(default=1e-3, metadata={"help": "LoRA learning rate"})
    beta: float = field(default=0.1, metadata={"help": "KL coefficient to the base model"})
    completions_per_step: int = field(default=16, metadata={"help": "completions per GRPO step"})
    num_generations: int = field(default=8, metadata={"help": "completions per prompt in a GRPO group"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank"})
    finetune_seed: int | None = field(default=None, metadata={
        "help": "seed of the GRPO run only (default: --seed); prompts, SAEs and evaluation keep --seed, so two "
                "fine-tune seeds are compared on the same held-out prompts"})
    max_finetune_seconds: float = field(default=2400.0, metadata={
        "help": "stop fine-tuning after this long (a cut-short run is not the validated recipe: keep it above the "
                "steps' time; 14 steps took 1033 s wall on a loaded 2-core machine)"})
    # layers and dictionaries
    n_layers: int = field(default=2, metadata={"help": "number of most-diverged layers to study"})
    sae_site: Literal["hook_mlp_out", "mlp.hook_post"] = field(default="hook_mlp_out", metadata={
        "help": "MLP activation the SAEs read: the MLP output (d_model) or the hidden neurons (d_mlp)"})
    sae_sizes: tuple[float, ...] = field(default=(1.0, 2.0), metadata={
        "help": "small,large dictionary sizes as multiples of the activation width"})
    sae_architecture: Literal["standard", "topk"] = field(default="topk", metadata={"help": "SAE architecture"})
    sae_k: int = field(default=16, metadata={"help": "active latents per token (topk)"})
    sae_epochs: int = field(default=20, metadata={"help": "SAE training epochs"})
    sae_lr: float = field(default=1e-3, metadata={"help": "SAE Adam learning rate"})
    similarity_threshold: float = field(default=0.7, metadata={
        "help": "a large-dictionary feature is 'shared' when its max cosine with the small dictionary is >= this"})
    hungarian: bool = field(default=True, metadata={"help": "also report the one-to-one (Hungarian) matching"})
    # implicit reward model
    irm_features: Literal["shared", "all"] = field(default="shared", metadata={
        "help": "IRM inputs: the fine-tuned model's shared (high-similarity) features or all latents"})
    n_positive_words: int = field(default=150, metadata={"help": "positive lexicon words in contrastive triples"})
    n_negative_words: int = field(default=150, metadata={"help": "negative lexicon words in contrastive triples"})
    templates_per_word: int = field(default=3, metadata={"help": "templates each word is placed in"})
    irm_test_fraction: float = field(default=0.3, metadata={
        "help": "held-out fraction of words for the decodability ceiling's Kendall tau"})
    irm_alpha: float | None = field(default=None, metadata={
        "help": "ridge penalty of the paper's IRM regression on standardised features (default: chosen by "
                "leave-one-out CV on the activation deltas, never on VADER; 0: ordinary least squares)"})
    irm_folds: int = field(default=5, metadata={"help": "cross-fitting folds of the paper's IRM (grouped by word)"})
    # ablation
    n_ablate: int = field(default=10, metadata={"help": "reward-related features to ablate"})
    n_random_draws: int = field(default=40, metadata={
        "help": "random-feature control draws (matched on activation frequency and decoder norm x mean activation); "
                "the rank test's smallest p is 1/(draws + 1): 39 or more reach the one-sided alpha 0.025"})
    n_boot: int = field(default=2000, metadata={"help": "bootstrap resamples"})
    # reward-hack guard
    force_reward_hack: bool = field(default=False, metadata={
        "help": "run the analyses even when the guard flags the fine-tuned model (reward at the clip or collapsed "
                "distinct-2); the report says so"})
    min_distinct2: float = field(default=0.3, metadata={
        "help": "the guard's floor on distinct-2 of the fine-tuned completions (also >= half the base's)"})
    n_samples: int = field(default=6, metadata={"help": "sample completions (base and fine-tuned) in the report"})
    quick: bool = field(default=False, metadata={"help": "a smoke run: 2 GRPO steps (60 s cap), 16/12/12 prompts, 2 SAE epochs, 20+20 words, 5 matched draws, 200 bootstrap resamples (options given explicitly still win)"})

    def __post_init__(self):
        super().__post_init__()
        if self.quick:  # a smoke run: every stage at small n; options given explicitly still win
            apply_at_defaults(self, QUICK)
        for name in ("n_train_prompts", "n_select_prompts", "n_eval_prompts", "samples_per_prompt", "max_new_tokens",
                     "steps", "n_layers", "sae_epochs", "n_ablate", "n_random_draws", "templates_per_word", "sae_k",
                     "n_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")
        if self.n_positive_words < 3 or self.n_negative_words < 3:
            raise ValueError("n_positive_words and n_negative_words must be >= 3.")
        if len(self.sae_sizes) != 2 or not 0 < self.sae_sizes[0] < self.sae_sizes[1]:
            raise ValueError(f"sae_sizes must be two increasing positive multiples (small,large), got {self.sae_sizes}; "
                             "e.g. --sae-sizes 1,2.")
        if not 0 < self.irm_test_fraction < 1:
            raise ValueError(f"irm_test_fraction must be in (0, 1), got {self.irm_test_fraction}.")
        if min(self.n_positive_words, self.n_negative_words) * (1 - self.irm_test_fraction) < 3:
            raise ValueError("too few words left to train the IRM: raise n_positive_words / n_negative_words or "
                             "lower irm_test_fraction.")
        if self.irm_folds < 2 or (self.irm_alpha is not None and self.irm_alpha < 0):
            raise ValueError(f"irm_folds must be >= 2 and irm_alpha >= 0, got {self.irm_folds} and {self.irm_alpha}.")
        if min(self.n_positive_words, self.n_negative_words) < self.irm_folds:
            raise ValueError(f"the paper's IRM cross-fits over {self.irm_folds} folds of words: use at least that many "
                             "positive and negative words, or lower irm_folds.")
        if not 0 <= self.min_distinct2 <= 1:
            raise ValueError(f"min_distinct2 must be in [0, 1], got {self.min_distinct2}.")
        if not 0 < self.similarity_threshold <= 1:
            raise ValueError(f"similarity_threshold must be in (0, 1], got {self.similarity_threshold}.")
        if self.temperature <= 0:
            raise ValueError("temperature must be > 0 (completions are sampled).")
        if self.prompts == "generated" and self.n_train_prompts + self.n_select_prompts + self.n_eval_prompts > 240:
            raise ValueError("the packaged generator has 240 distinct openings: lower n_train/select/eval_prompts "
                             "to 240 in total, or use --prompts imdb.")
        self.finetune_config()  # validates the fine-tuning fields

    def finetune_config(self) -> FinetuneConfig:
        return FinetuneConfig(steps=self.steps, learning_rate=self.learning_rate, beta=self.beta,
                              completions_per_step=self.completions_per_step, num_generations=self.num_generations,
                              max_new_tokens=self.max_new_tokens, temperature=self.temperature, lora_r=self.lora_r,
                              lora_alpha=2 * self.lora_r, max_seconds=self.max_finetune_seconds,
                              seed=self.seed if self.finetune_seed is None else self.finetune_seed)

    def sae_config(self) -> SAETrainConfig:
        return SAETrainConfig(architecture=self.sae_architecture, k=self.sae_k, epochs=self.sae_epochs, lr=self.sae_lr,
                              batch_size=256, seed=self.seed)
