"""Configuration of the YFPO experiment (``reward-circuits yfpo``): one validated dataclass."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Literal

from ...configs import StudyConfig, apply_at_defaults
from ...models.hook_names import check_layers_exist, layers_at_fractions
from .sizing import yfpo_sizing

CONDITIONS = ("dpo", "value", "attnlrp", "random")
PROBE_DEPTHS = (0.2, 0.4, 0.6, 0.8)  # default probe layers, as fractions of the layer count (layer ≈ f × n_layers)


SIZED = yfpo_sizing()  # .sizing: seeds and held-out prompts for a 0.05 accuracy difference vs plain DPO
# --profile sized: the fewest seeds (>= 5) and held-out prompts whose MDE for DPO + neuron reward vs plain DPO
# is 0.05 at 80% power after Holm (seed variance in the interval); 4x the training prompts (pairs); steps
# chosen on validation pairs, up to 64, when the auxiliary loss has clearly moved (.steps)
PROFILES: dict[str, dict] = {
    "default": {},
    "sized": {"seeds": tuple(range(SIZED.seeds)), "eval_prompts": SIZED.eval_prompts, "train_prompts": 96,
              "steps": 64, "select_steps": True},
}

# --quick: every stage of the study at small n (a smoke run of the whole study)
QUICK = {"train_prompts": 8, "eval_prompts": 16, "samples_per_prompt": 2, "probe_epochs": 5, "relevance_prompts": 4,
         "seeds": (0,), "steps": 2}


@dataclass
class YFPOConfig(StudyConfig):
    """DPO vs DPO + neuron reward (value / AttnLRP / random neurons) with LoRA on rollout pairs."""

    out: str = field(default="runs/yfpo", metadata={"help": "report directory (summary.json, report.html, adapters)"})
    task: str = field(default="arithmetic:1", metadata={"help": "task spec (reward_circuits.tasks.get_task)"})
    train_prompts: int = field(default=24, metadata={"help": "prompts whose sampled rollouts give the preference pairs"})
    eval_prompts: int = field(default=48, metadata={"help": "held-out prompts (another seed of the task) for accuracy"})
    samples_per_prompt: int = field(default=4, metadata={"help": "sampled rollouts per training prompt"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature of the training rollouts"})
    max_new_tokens: int = field(default=24, metadata={"help": "response budget (rollouts and evaluation)"})
    pairs_per_prompt: int = field(default=2, metadata={"help": "at most this many (correct, incorrect) pairs per prompt"})
    probe_layers: tuple[int, ...] | None = field(default=None, metadata={"help": "layers whose mlp.hook_post the value probe sees; the best on validation rollouts is used (default: the layers nearest 0.2, 0.4, 0.6, 0.8 × the model's layer count: 6,12,18,24 on SmolLM2's 30, 4,7,11,14 on Gemma 3 270M's 18)"})
    probe_epochs: int = field(default=30, metadata={"help": "value-probe training epochs"})
    n_neurons: int = field(default=32, metadata={"help": "neurons per selection method"})
    relevance_prompts: int = field(default=16, metadata={"help": "training prompts (with their gold answers) for AttnLRP relevance"})
    conditions: tuple[str, ...] = field(default=CONDITIONS, metadata={"help": "which of dpo,value,attnlrp,random to train"})
    seeds: tuple[int, ...] = field(default=(0, 1, 2), metadata={"help": "training seeds (LoRA init and batch order)"})
    beta: float = field(default=0.1, metadata={"help": "DPO β"})
    beta_aux: float = field(default=1.0, metadata={"help": "weight of −log σ(neuron margin)"})
    steps: int = field(default=8, metadata={"help": "optimizer steps per run (with --select-steps: the most a run may take)"})
    select_steps: bool = field(default=False, metadata={"help": "choose the steps on validation pairs (a share of the training prompts' pairs, never trained on): a pilot run of the value condition stops at the first check where the auxiliary loss has clearly moved (mean at least --aux-moved below ln 2 and its 95% interval below ln 2); every run then takes that many steps"})
    step_check_every: int = field(default=4, metadata={"help": "with --select-steps: steps between validation checks"})
    aux_moved: float = field(default=0.1, metadata={"help": "with --select-steps: how far (nats) below ln 2 the validation auxiliary loss must fall"})
    profile: Literal["default", "sized"] = field(default="default", metadata={"help": f"'sized': {SIZED.seeds} seeds x {SIZED.eval_prompts} held-out prompts (a 0.05 accuracy difference vs plain DPO at 80% power after Holm, seed variance in the interval; reward_circuits/studies/yfpo/sizing.py), 96 training prompts, steps chosen on validation up to 64; options given explicitly still win"})
    batch_pairs: int = field(default=4, metadata={"help": "preference pairs per step"})
    lr: float = field(default=5e-4, metadata={"help": "LoRA learning rate"})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha"})
    lora_targets: tuple[str, ...] = field(default=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
                                          metadata={"help": "modules LoRA adapts"})
    eval_batch_size: int = field(default=24, metadata={"help": "prompts per greedy generation batch"})
    save_adapters: bool = field(default=True, metadata={"help": "save each run's LoRA adapter (safetensors) under OUT/adapters"})
    quick: bool = field(default=False, metadata={"help": "a smoke run: every condition with one seed, 2 steps, 8 training and 16 evaluation prompts, 5 probe epochs (options given explicitly still win)"})
    backend: Literal["transformer_lens", "nnsight"] = field(default="transformer_lens", metadata={"help": "adapter for rollouts and the store"})

    def __post_init__(self):
        super().__post_init__()
        if self.profile not in PROFILES:
            raise ValueError(f"unknown profile {self.profile!r}; choose from {sorted(PROFILES)}.")
        apply_at_defaults(self, PROFILES[self.profile])
        if self.quick:  # a smoke run: every stage at small n; options given explicitly still win
            apply_at_defaults(self, QUICK)
        if self.probe_layers is not None:
            self.probe_layers = tuple(int(x) for x in self.probe_layers)
        self.conditions = tuple(self.conditions)
        self.seeds = tuple(int(s) for s in self.seeds)
        self.lora_targets = tuple(self.lora_targets)
        for name in ("train_prompts", "eval_prompts", "samples_per_prompt", "max_new_tokens", "pairs_per_prompt",
                     "n_neurons", "probe_epochs", "relevance_prompts", "steps", "batch_pairs", "step_check_every", "lora_r", "lora_alpha", "eval_batch_size"):
            v = getattr(self, name)
            if not (isinstance(v, int) and v >= 1):
                raise ValueError(f"{name} must be a positive int, got {v!r}: pass --{name.replace('_', '-')} N with N >= 1.")
        if self.samples_per_prompt < 2:
            raise ValueError("samples_per_prompt must be >= 2: a pair needs a correct and an incorrect sample of the same prompt.")
        if self.relevance_prompts > self.train_prompts:
            raise ValueError(f"relevance_prompts ({self.relevance_prompts}) > train_prompts ({self.train_prompts}): "
                             "AttnLRP neurons are chosen on training prompts only; lower --relevance-prompts.")
        bad = [c for c in self.conditions if c not in CONDITIONS]
        if bad or not self.conditions:
            raise ValueError(f"conditions {bad or '()'} unknown: choose from {','.join(CONDITIONS)}.")
        if len(set(self.conditions)) != len(self.conditions):
            raise ValueError("conditions contain duplicates.")
        if not self.seeds:
            raise ValueError("give at least one seed (--seeds 0,1,2).")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError("seeds contain duplicates.")
        if self.probe_layers is not None and (not self.probe_layers or any(x < 0 for x in self.probe_layers)):
            raise ValueError(f"probe_layers must be non-negative layer numbers, got {self.probe_layers}.")
        for name in ("beta", "lr", "temperature", "aux_moved"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive number, got {v!r}.")
        if not (math.isfinite(self.beta_aux) and self.beta_aux >= 0):
            raise ValueError(f"beta_aux must be >= 0, got {self.beta_aux!r} (0 turns the neuron reward off).")
        if not self.lora_targets:
            raise ValueError("lora_targets is empty: name the modules LoRA adapts (e.g. q_proj,v_proj).")

    def resolve_probe_layers(self, n_layers: int, model: str | None = None) -> tuple[int, ...]:
        """The probe's layers on a model with ``n_layers`` blocks (named ``model`` in errors): ``probe_layers`` when given (each must
        exist), else the layers nearest :data:`PROBE_DEPTHS` × ``n_layers`` (so one profile fits every architecture)."""
        if self.probe_layers is None:
            return layers_at_fractions(n_layers, PROBE_DEPTHS)
        check_layers_exist(self.probe_layers, n_layers, model or self.model, "--probe-layers",
                           default=f"layers {list(layers_at_fractions(n_layers, PROBE_DEPTHS))}")
        return self.probe_layers

    def to_dict(self) -> dict:
        return asdict(self)
