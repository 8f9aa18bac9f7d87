"""The YFPO experiment: plain DPO vs DPO + neuron reward (value / AttnLRP / random neurons).

1. sample rollouts of the training prompts with the packaged model and pair a correct with an
   incorrect answer of the same prompt (:mod:`.pairs`);
2. choose neurons on training data only (:mod:`.selection`) and calibrate their signs and scales on
   the training pairs with the base model (:func:`~.neuron_reward.neuron_stats`);
3. for every seed and condition, LoRA-fine-tune a fresh copy of the base model with
   :class:`~.trainer.NeuronRewardDPOTrainer` (``beta_aux = 0`` for plain DPO, which still logs the
   value neurons' margin), measure greedy accuracy on held-out prompts, save the adapter;
4. summarise: accuracy per condition (mean over seeds per prompt, bootstrap over prompts), paired
   differences against the base model and against plain DPO, verdicts, training curves.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ...analysis.stats import (
    Interval,
    bootstrap_ci,
    mean_std,
    paired_bootstrap_diff,
    verdict,
)
from ...analysis.resampling import SignedTest, seeds_by_units_test
from ...neurons import iou
from ...io import atomic_write_json
from ...report import Section, Table, new_figure, save_figure
from . import resume
from .config import YFPOConfig
from .neuron_reward import NeuronReward, response_activations
from .pairs import pairs_dataset, preference_pairs, tokenize_pairs
from .sizing import sizing_lines
from .steps import AuxLossMonitor, StepSelection, split_validation_pairs

CURVE_KEYS = ("neuron/dpo_loss", "rewards/margins", "neuron/margin")


@dataclass
class TrainingRun:
    """One LoRA fine-tune: its held-out correctness per prompt, its logged curve and its adapter."""

    condition: str
    seed: int
    correct: list[float]
    curve: list[dict]
    adapter_dir: str | None
    seconds: float  # wall time of training and evaluation
    cpu_seconds: float | None = None  # the process's CPU time over the same span (None: a record from before it was kept)

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.correct))


@dataclass
class ConditionSummary:
    """Held-out accuracy of one condition over seeds, and paired differences (per prompt, seed-averaged)."""

    condition: str
    n_seeds: int
    accuracy: Interval
    seed_mean: float
    seed_std: float
    vs_base: Interval
    p_vs_base: float
    vs_dpo: Interval | None = None
    p_vs_dpo: float | None = None
    verdict_vs_dpo: str | None = None
    vs_dpo_test: SignedTest | None = None  # seeds and prompts resampled together (its df and method)


@dataclass
class YFPOResult:
    config: YFPOConfig
    model: str
    n_train_rollouts: int
    sampled_accuracy: float
    n_pairs: int
    base_correct: list[float]
    rewards: dict[str, NeuronReward]
    base_margin_accuracy: dict[str, float]
    value_auc: Interval | None
    value_hook: str | None
    lrp_check: dict
    runs: list[TrainingRun] = field(default_factory=list)
    seconds: float = 0.0
    sizing: list[str] = field(default_factory=list)  # what this run's seeds x prompts detect (.sizing)
    step_selection: dict = field(default_factory=dict)  # with --select-steps: the checks and the steps chosen (.steps)
    resumed: list[str] = field(default_factory=list)  # runs read back from an earlier invocation's records (.resume)
    resumed_seconds: float = 0.0  # their seconds, and a resumed pilot's

    @property
    def seconds_total(self) -> float:
        """The study's time summed over the invocations that made it: this one, plus the runs (and
        pilot) it read back; the repeated set-up of the earlier, interrupted invocations is not in it."""
        return self.seconds + self.resumed_seconds

    def per_prompt(self, condition: str) -> np.ndarray:
        """``[seed, prompt]`` held-out correctness of ``condition``."""
        return np.array([r.correct for r in self.runs if r.condition == condition], dtype=np.float64)

    def by_seed(self, condition: str) -> dict[int, list[float]]:
        return {r.seed: r.correct for r in self.runs if r.condition == condition}

    def versus(self, condition: str, other: str) -> tuple[Interval, float, SignedTest]:
        """``condition − other`` in held-out accuracy, paired by training seed and prompt, seeds and
        prompts resampled together (:func:`~reward_circuits.analysis.resampling.seeds_by_units_test`):
        the interval holds the seed variance. Returns the interval, the two-sided p and the test."""
        a, b = self.by_seed(condition), self.by_seed(other)
        seeds = [s for s in a if s in b]
        t = seeds_by_units_test(np.array([a[s] for s in seeds]) - np.array([b[s] for s in seeds]), seed=self.config.seed)
        return Interval(t.estimate, t.low, t.high, t.n), float(min(1.0, 2 * min(t.p_greater, t.p_less))), t

    def summaries(self) -> list[ConditionSummary]:
        base = np.asarray(self.base_correct, dtype=np.float64)
        has_dpo = any(r.condition == "dpo" for r in self.runs)
        out = []
        for cond in self.config.conditions:
            m = self.per_prompt(cond)
            if m.size == 0:
                continue
            avg = m.mean(0)
            s_mean, s_std = mean_std(m.mean(1).tolist())
            vs_base, p_base = paired_bootstrap_diff(avg, base, seed=self.config.seed)
            row = ConditionSummary(cond, m.shape[0], bootstrap_ci(avg, seed=self.config.seed), s_mean, s_std, vs_base, p_base)
            if cond != "dpo" and has_dpo:
                row.vs_dpo, row.p_vs_dpo, row.vs_dpo_test = self.versus(cond, "dpo")
                row.verdict_vs_dpo = verdict(row.vs_dpo, expected_sign=1)
            out.append(row)
        return out

    def mean_curve(self, condition: str, key: str) -> tuple[np.ndarray, np.ndarray]:
        """(steps, mean over seeds) of a logged metric."""
        runs = [r for r in self.runs if r.condition == condition]
        rows = [[c.get(key, np.nan) for c in r.curve] for r in runs]
        n = min((len(x) for x in rows), default=0)
        if n == 0:
            return np.arange(0), np.zeros(0)
        return np.arange(1, n + 1), np.nanmean(np.array([x[:n] for x in rows], dtype=np.float64), 0)

    def plot(self, out_dir: str | os.PathLike) -> list[str]:
        out_dir = Path(out_dir)
        fig, axes = new_figure(12.0, 3.6, 1, 3)
        titles = {"neuron/dpo_loss": "DPO loss (TRL's, without the aux term)",
                  "rewards/margins": "DPO implicit reward margin",
                  "neuron/margin": "neuron margin (chosen − rejected)"}
        for ax, key in zip(axes, CURVE_KEYS):
            for cond in self.config.conditions:
                for r in (r for r in self.runs if r.condition == cond):
                    ys = [c.get(key, np.nan) for c in r.curve]
                    ax.plot(range(1, len(ys) + 1), ys, lw=0.6, alpha=0.3, color=f"C{self.config.conditions.index(cond)}")
                steps, mean = self.mean_curve(cond, key)
                ax.plot(steps, mean, lw=2, label=cond, color=f"C{self.config.conditions.index(cond)}")
            ax.set_title(titles[key], fontsize=9)
            ax.set_xlabel("step")
        axes[0].legend(fontsize=8)
        fig.suptitle(f"training curves (thin: seeds; thick: mean over {len(self.config.seeds)} seeds)", fontsize=9)
        figs = [save_figure(fig, out_dir / "yfpo_curves.png")]

        fig, ax = new_figure(6.0, 3.6)
        rows = self.summaries()
        ax.axhline(float(np.mean(self.base_correct)), color="k", ls="--", lw=1, label="base model")
        for j, s in enumerate(rows):
            ax.errorbar([j], [s.accuracy.estimate], yerr=[[s.accuracy.estimate - s.accuracy.low], [s.accuracy.high - s.accuracy.estimate]],
                        fmt="o", capsize=4, color=f"C{self.config.conditions.index(s.condition)}")
        ax.set_xticks(range(len(rows)), [s.condition for s in rows])
        ax.set_ylabel(f"held-out accuracy (n={len(self.base_correct)} prompts)")
        ax.set_title("greedy accuracy after fine-tuning (95% bootstrap over prompts)", fontsize=9)
        ax.legend(fontsize=8)
        figs.append(save_figure(fig, out_dir / "yfpo_accuracy.png"))
        return figs

    def to_dict(self) -> dict:
        """The ``yfpo`` section of ``summary.json``."""
        return self.to_section(None).summary

    def section(self, out_dir: str | os.PathLike | None) -> Section:
        return self.to_section(out_dir)

    def to_section(self, out_dir: str | os.PathLike | None) -> Section:
        """The report's ``yfpo`` section (tables, notes, and with ``out_dir`` the training curves drawn there)."""
        cfg = self.config
        rows = self.summaries()
        base_acc = float(np.mean(self.base_correct))
        table = Table(
            f"held-out greedy accuracy ({len(self.base_correct)} prompts, {len(cfg.seeds)} seeds; base model {base_acc:.3f})",
            ["condition", "seeds", "accuracy [95% CI]", "per-seed mean ± sd", "Δ vs base [CI]", "p", "Δ vs DPO [CI]", "p", "this comparison alone (helps vs DPO; the Claims section adjusts for the family)"],
            [[s.condition, s.n_seeds, str(s.accuracy), f"{s.seed_mean:.3f} ± {s.seed_std:.3f}",
              f"{s.vs_base.estimate:+.3f} [{s.vs_base.low:+.3f}, {s.vs_base.high:+.3f}]", s.p_vs_base,
              "–" if s.vs_dpo is None else f"{s.vs_dpo.estimate:+.3f} [{s.vs_dpo.low:+.3f}, {s.vs_dpo.high:+.3f}]",
              s.p_vs_dpo, s.verdict_vs_dpo] for s in rows])
        sel = Table("neuron selections (blocks.L.mlp.hook_post; signs and scales from the base model on the training pairs)",
                    ["kind", "neurons", "layers", "pairs with margin > 0 (base model, same pairs as the calibration)", "IoU with value neurons"],
                    [[k, len(r.neurons), ",".join(map(str, r.layers)), self.base_margin_accuracy.get(k),
                      iou(r.neurons, self.rewards["value"].neurons) if "value" in self.rewards else None]
                     for k, r in self.rewards.items()])
        vs_random = {cond: self.versus(cond, "random") for cond in ("value", "attnlrp")
                     if any(r.condition == "random" for r in self.runs) and any(r.condition == cond for r in self.runs)}
        controls = [[cond, f"{d.estimate:+.3f} [{d.low:+.3f}, {d.high:+.3f}]", p, verdict(d, expected_sign=1)]
                    for cond, (d, p, _) in vs_random.items()]
        control = Table("selected vs random neurons (paired by seed and prompt): does the choice of neurons matter?",
                        ["condition", "Δ accuracy vs random [CI]", "p", "this comparison alone (beats random; the Claims section adjusts for the family)"], controls)
        runs = Table("runs", ["condition", "seed", "accuracy", "final DPO loss", "final neuron margin", "seconds", "CPU seconds", "adapter"],
                     [[r.condition, r.seed, r.accuracy, (r.curve[-1].get("neuron/dpo_loss") if r.curve else None),
                       (r.curve[-1].get("neuron/margin") if r.curve else None), round(r.seconds, 1),
                       None if r.cpu_seconds is None else round(r.cpu_seconds, 1), r.adapter_dir] for r in self.runs])
        notes = [
            (f"Pairs: {self.n_pairs} (correct, incorrect) pairs from {self.n_train_rollouts} sampled rollouts of {cfg.train_prompts} training prompts "
            f"(sampled accuracy {self.sampled_accuracy:.3f}, temperature {cfg.temperature}, {cfg.max_new_tokens} new tokens). "
            f"LoRA r={cfg.lora_r} on {','.join(cfg.lora_targets)}, {cfg.steps} steps × {cfg.batch_pairs} pairs, lr {cfg.lr}, β={cfg.beta}, β_aux={cfg.beta_aux}."),
            ("Loss = TRL's DPO loss − β_aux · mean log σ(margin), margin = r(chosen) − r(rejected), r = mean over response tokens and "
            "neurons of sign·(a − μ)/σ (signs, μ, σ from the base model on the training pairs). Plain DPO logs the value neurons' margin with β_aux = 0."),
            ("Intervals: accuracy, percentile bootstrap over held-out prompts of the seed-averaged correctness; Δ vs DPO and vs random "
            "neurons are paired by training seed and prompt, seeds and prompts resampled together (crossed bootstrap, t reference with "
            "seeds − 1 df), so the seed variance is inside their intervals. Verdict 'reproduces' = the paper's claim that the neuron "
            "reward improves on DPO holds at this n."),
        ]
        notes += [line.replace("[yfpo sizing] ", "Sizing: ") for line in self.sizing]
        if self.step_selection:
            notes.append(self.step_selection["line"])
        if self.value_hook:
            notes.append(f"Value neurons: the {len(self.rewards['value'].neurons)} largest-L1 inputs of the value probe on {self.value_hook}, "
                         f"the best of layers {list(cfg.probe_layers)} on validation prompts (AUC of V(s_0) {self.value_auc}).")
        if self.lrp_check:
            c = self.lrp_check
            notes.append(f"AttnLRP on {c['prompts']} gold answers: Σ relevance(embeddings) / logit = {c['embedding_share']:.3f} on average; "
                         f"softmax-absorbed relevance / logit = {c['absorbed_share']:.3f}; |Σ R + absorbed − logit| / |logit| ≤ {c['max_identity_error']:.1e}. "
                         f"Plain gradient × input: Σ relevance(embeddings) / logit = {c.get('gradient_x_input_embedding_share', float('nan')):.3f}. "
                         f"IoU of the top-{cfg.n_neurons} AttnLRP and gradient × activation neurons: {c.get('iou_with_gradient_x_activation', float('nan')):.3f}.")
        if self.resumed or self.step_selection.get("resumed"):
            notes.append(f"Resumed: {len(self.resumed)} of {len(self.runs)} runs"
                         + (" and the pilot" if self.step_selection.get("resumed") else "")
                         + f" were read back from an earlier invocation's records; this invocation took {self.seconds:.0f} s, "
                         f"{self.seconds_total:.0f} s with the runs read back (yfpo.seconds_total).")
        notes.append("Adapters (peft, safetensors) are saved per run under adapters/: load with PeftModel.from_pretrained, merge_and_unload, "
                     "then from_hf(...) to measure value-neuron transfer with the value API.")
        summary = {
            "config": cfg.to_dict(), "model": self.model, "n_pairs": self.n_pairs, "base_accuracy": base_acc,
            "base_correct": list(self.base_correct),
            "n_eval_prompts": len(self.base_correct), "seconds": self.seconds, "sizing": self.sizing,
            "seconds_total": self.seconds_total, "resumed_runs": list(self.resumed),
            "step_selection": self.step_selection,
            "conditions": {s.condition: {"accuracy": s.accuracy.to_dict(), "seed_mean": s.seed_mean, "seed_std": s.seed_std,
                                         "vs_base": s.vs_base.to_dict(), "p_vs_base": s.p_vs_base,
                                         "vs_dpo": s.vs_dpo.to_dict() if s.vs_dpo else None, "p_vs_dpo": s.p_vs_dpo,
                                         "verdict_vs_dpo": s.verdict_vs_dpo,
                                         "vs_dpo_df": s.vs_dpo_test.df if s.vs_dpo_test else None,
                                         "vs_dpo_method": s.vs_dpo_test.method if s.vs_dpo_test else None} for s in rows},
            "vs_random": {row[0]: {"delta": row[1], "p": row[2], "verdict": row[3], "df": vs_random[row[0]][2].df}
                          for row in controls},
            "neurons": {k: r.to_dict() for k, r in self.rewards.items()},
            "base_margin_accuracy": self.base_margin_accuracy,
            "value_probe": {"hook": self.value_hook, "auc": self.value_auc.to_dict() if self.value_auc else None},
            "attnlrp_check": self.lrp_check,
            "runs": [{"condition": r.condition, "seed": r.seed, "accuracy": r.accuracy, "correct": r.correct, "curve": r.curve,
                      "adapter_dir": r.adapter_dir, "seconds": r.seconds, "cpu_seconds": r.cpu_seconds} for r in self.runs],
        }
        return Section("yfpo", "YFPO: DPO with a neuron-guided auxiliary reward", summary, [table, control, sel, runs],
                       self.plot(out_dir) if out_dir is not None else [], notes)


def greedy_correct(adapter, task, max_new_tokens: int, batch_size: int = 24) -> list[float]:
    """Greedy answers of ``adapter``'s model (either backend, any architecture it loads) to ``task``'s
    prompts, scored by the task's reward: :func:`~reward_circuits.interventions.generate_and_score`."""
    from ...interventions import generate_and_score
    from ...models import GenerationConfig

    config = GenerationConfig(max_new_tokens=max_new_tokens, batch_size=batch_size, progress=False)
    _, rewards, _ = generate_and_score(adapter, task, config=config)
    return [float(r) for r in rewards]


def _held_out_correct(cfg: YFPOConfig, hf_model, tokenizer, task, name: str) -> list[float]:
    """:func:`greedy_correct` of an HF model (e.g. a run's merged fine-tune) through an adapter of
    ``cfg.backend`` built over it."""
    from ...models import from_hf

    return greedy_correct(from_hf(hf_model.eval(), tokenizer, backend=cfg.backend, name=name), task,
                          cfg.max_new_tokens, cfg.eval_batch_size)


def _save_adapter(model, path: Path) -> str:
    """``model.save_pretrained`` into a temporary sibling directory, then renamed (atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        model.save_pretrained(str(tmp), safe_serialization=True)
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return str(path)


def load_finetuned(adapter_dir: str | os.PathLike, base_model="default"):
    """``(merged HF model, tokenizer)``: a saved YFPO adapter applied to the base model, e.g. to
    measure value-neuron transfer with ``from_hf(model, tok)`` and the value API. ``base_model`` is a
    model name for :func:`~reward_circuits.models.loading.load_hf` or an already loaded
    ``(hf_model, tokenizer)`` pair (which the merge modifies)."""
    from peft import PeftModel

    from ...models.loading import load_hf

    if not (Path(adapter_dir) / "adapter_model.safetensors").exists():
        raise FileNotFoundError(f"no adapter_model.safetensors in {adapter_dir}: pass a directory under OUT/adapters/.")
    hf, tok = load_hf(base_model) if isinstance(base_model, str) else base_model
    return PeftModel.from_pretrained(hf, str(adapter_dir)).merge_and_unload().eval(), tok


def _split_tasks(cfg: YFPOConfig, task=None):
    from ...tasks import get_task

    pool = task if task is not None else get_task(cfg.task, n=cfg.train_prompts + cfg.eval_prompts, seed=cfg.seed)
    examples = list(pool.examples)
    if len(examples) < cfg.train_prompts + cfg.eval_prompts:
        raise ValueError(f"task {cfg.task!r} has only {len(examples)} examples; lower --train-prompts/--eval-prompts.")
    train = dataclasses.replace(pool, examples=examples[:cfg.train_prompts])
    held_out = dataclasses.replace(pool, examples=examples[cfg.train_prompts:cfg.train_prompts + cfg.eval_prompts])
    return train, held_out


def _pair_batches(pairs, tokenizer, batch_pairs: int):
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    rows = tokenize_pairs(pairs, tokenizer)
    collate = DataCollatorForPreference(pad_token_id=tokenizer.pad_token_id)
    return [collate(rows[i:i + batch_pairs]) for i in range(0, len(rows), batch_pairs)]


def _make_trainer(cfg: YFPOConfig, base_model, tokenizer, dataset, reward: NeuronReward | None, beta_aux: float, seed: int,
                  run_dir: Path):
    """TRL's DPO trainer with the neuron reward on a LoRA copy of ``base_model`` (``cfg.steps`` steps)."""
    from peft import LoraConfig
    from transformers import set_seed
    from trl import DPOConfig

    from .trainer import NeuronRewardDPOTrainer

    set_seed(seed)
    args = DPOConfig(output_dir=str(run_dir), per_device_train_batch_size=cfg.batch_pairs, max_steps=cfg.steps,
                     learning_rate=cfg.lr, lr_scheduler_type="constant", beta=cfg.beta, logging_steps=1, report_to=[],
                     save_strategy="no", use_cpu=not torch.cuda.is_available(), seed=seed, data_seed=seed, disable_tqdm=True,
                     dataloader_num_workers=0, bf16=False, fp16=False, gradient_checkpointing=False,
                     precompute_ref_log_probs=True)
    # precompute_ref_log_probs: the reference (the base model: LoRA disabled) is the same in every run,
    # so TRL's own precomputation runs once and later runs get the columns with ``dataset``
    # (NeuronRewardDPOTrainer keeps them): no reference forward in any training step.
    # (TRL defaults to bf16 autocast, which on CPUs without bf16 units ran ~7x slower, and to gradient
    # checkpointing, which recomputes the forward: neither helps a 135M model with LoRA)
    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, target_modules=list(cfg.lora_targets), lora_dropout=0.0, task_type="CAUSAL_LM")
    trainer = NeuronRewardDPOTrainer(model=copy.deepcopy(base_model), args=args, train_dataset=dataset, processing_class=tokenizer,
                                     peft_config=lora, neuron_reward=reward, beta_aux=beta_aux)
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # curves go to the report, not to stdout
    return trainer


def _train_one(cfg: YFPOConfig, base_model, tokenizer, dataset, reward: NeuronReward | None, beta_aux: float, seed: int,
               run_dir: Path):
    trainer = _make_trainer(cfg, base_model, tokenizer, dataset, reward, beta_aux, seed, run_dir)
    trainer.train()
    curve = [{k: v for k, v in h.items() if isinstance(v, (int, float))} for h in trainer.state.log_history if "loss" in h]
    return trainer.model, curve, _with_reference_logps(dataset, trainer.train_dataset)


def _choose_steps(run: "_YfpoRun", rewards: dict[str, NeuronReward], dataset, validation: list, fp: str) -> tuple[StepSelection, object]:
    """The pilot run of :mod:`.steps` (value neurons, or the first neuron reward there is; the first
    seed): the steps every compared run takes. Returns the selection and ``dataset`` with the
    reference log-probs the pilot computed. A selection an earlier run into the same ``OUT`` saved
    with fingerprint ``fp`` (:mod:`.resume`) is reused instead of training the pilot again."""
    cfg = run.cfg
    saved = resume.load_saved(run.out / "step_selection.json", fp)
    if saved is not None:
        sel = StepSelection(**{f.name: saved[f.name] for f in dataclasses.fields(StepSelection) if f.name in saved})
        sel.resumed = True
        run.stage(f"step selection resumed from step_selection.json: {sel.line()}")
        return sel, dataset
    t = time.perf_counter()
    sel = StepSelection(cfg.steps, cfg.step_check_every, cfg.aux_moved, n_validation_pairs=len(validation))
    reward = rewards.get("value") or next(iter(rewards.values()), None)
    if reward is None:
        return sel, dataset
    trainer = _make_trainer(cfg, run.hf, run.tok, dataset, reward, cfg.beta_aux, cfg.seeds[0], run.out / "trainer" / "pilot")
    trainer.add_callback(AuxLossMonitor(sel, reward, _pair_batches(validation, run.tok, cfg.batch_pairs),
                                        [p.example_id for p in validation]))
    trainer.train()
    sel.seconds = time.perf_counter() - t
    resume.save(run.out / "step_selection.json", sel.to_dict(), fp)
    run.stage(sel.line())
    return sel, _with_reference_logps(dataset, trainer.train_dataset)


def _with_reference_logps(dataset, prepared):
    """``dataset`` with the reference log-probs TRL precomputed on ``prepared`` (its tokenized copy,
    same rows in the same order), for the next runs; ``dataset`` itself when they cannot be matched."""
    cols = ("ref_chosen_logps", "ref_rejected_logps")
    if all(c in dataset.column_names for c in cols) or not all(c in prepared.column_names for c in cols):
        return dataset
    if len(prepared) != len(dataset):
        return dataset  # TRL dropped rows (truncation): recompute in every run instead of mismatching
    for c in cols:
        dataset = dataset.add_column(c, list(prepared[c]))
    return dataset


@dataclass
class _YfpoRun:
    """What the experiment's steps share: settings, output directory, the HF model and its name, the clock."""

    cfg: YFPOConfig
    out: Path
    progress: bool
    hf: object
    tok: object
    model_name: str
    t0: float = field(default_factory=time.perf_counter)

    def stage(self, msg: str) -> None:
        if self.progress:
            tqdm.write(f"[yfpo {time.perf_counter() - self.t0:6.0f} s] {msg}")


def _attnlrp_neurons(run: _YfpoRun, train_task) -> tuple[NeuronReward, dict]:
    """AttnLRP neurons on the training prompts' gold answers, with the relevance checks (conservation,
    and the overlap with gradient × activation neurons)."""
    from .selection import select_relevance_neurons

    cfg = run.cfg
    rs = select_relevance_neurons(run.hf, run.tok, train_task, cfg.relevance_prompts, cfg.n_neurons, "attnlrp")
    rel = rs.relevance
    check = {"prompts": int(rel.target.numel()),
             "embedding_share": float((rel.embedding_relevance / rel.target).mean()),
             "absorbed_share": float((rel.absorbed / rel.target).mean()),
             "max_identity_error": float(rel.conservation_error().abs().max()),
             "per_prompt": {"target": rel.target.tolist(), "embedding_relevance": rel.embedding_relevance.tolist(),
                            "absorbed": rel.absorbed.tolist()}}
    baseline = select_relevance_neurons(run.hf, run.tok, train_task, cfg.relevance_prompts, cfg.n_neurons, "gradient_x_activation")
    check["iou_with_gradient_x_activation"] = iou(rs.reward.neurons, baseline.reward.neurons)
    check["gradient_x_input_embedding_share"] = float((baseline.relevance.embedding_relevance / baseline.relevance.target).mean())
    run.stage(f"AttnLRP neurons on {cfg.relevance_prompts} gold answers")
    return rs.reward, check


def _neuron_rewards(run: _YfpoRun, adapter, rollouts, train_task) -> tuple[dict[str, NeuronReward], object, str | None, dict]:
    """The neuron sets each condition needs: value neurons (probe), AttnLRP neurons, random neurons."""
    from .selection import random_neurons_like, select_value_neurons

    cfg = run.cfg
    rewards: dict[str, NeuronReward] = {}
    value_auc = value_hook = None
    if any(c in cfg.conditions for c in ("value", "random", "dpo")):
        vs = select_value_neurons(adapter, rollouts, cfg.probe_layers, cfg.n_neurons, run.out / "store", seed=cfg.seed,
                                  progress=run.progress, epochs=cfg.probe_epochs)
        rewards["value"], value_auc, value_hook = vs.reward, vs.auc, vs.hook
    run.stage(f"value neurons from {value_hook}" if value_hook else "no value neurons needed")
    lrp_check: dict = {}
    if "attnlrp" in cfg.conditions:
        rewards["attnlrp"], lrp_check = _attnlrp_neurons(run, train_task)
    if "random" in cfg.conditions:
        rewards["random"] = random_neurons_like(rewards["value"], adapter.d_mlp, seed=cfg.seed,
                                                exclude=rewards["attnlrp"].neurons if "attnlrp" in rewards else ())
    return rewards, value_auc, value_hook, lrp_check


def _calibrate(run: _YfpoRun, adapter, rewards: dict[str, NeuronReward], batches) -> dict[str, float]:
    """Calibrate each neuron reward on the pairs (base model; one pass for all), save it; the share of
    pairs whose margin is already > 0."""
    margin_acc = {}
    pooled = response_activations(adapter, [n for r in rewards.values() for n in r.neurons], batches)  # one pass for all
    for kind, r in list(rewards.items()):
        sub = pooled.subset(r.neurons)
        rewards[kind] = r = r.calibrate(sub.stats())
        margin_acc[kind] = float((sub.margins(r) > 0).float().mean())
        atomic_write_json(run.out / "neurons" / f"{kind}.json", r.to_dict())
    run.stage(f"neuron rewards calibrated on the pairs; base-model margin > 0 on {margin_acc}")
    return margin_acc


def _fine_tunes(run: _YfpoRun, result: YFPOResult, dataset, held_out, fp: str) -> None:
    """Every (seed, condition) fine-tune of a copy of the model, scored on the held-out prompts. Each
    is saved as it ends (:mod:`.resume`); one an earlier run into ``OUT`` saved with fingerprint ``fp``
    is read back instead of trained again."""
    cfg, out, rewards = run.cfg, run.out, result.rewards
    jobs = [(seed, cond) for seed in cfg.seeds for cond in cfg.conditions]
    for seed, cond in tqdm(jobs, desc="yfpo fine-tunes", disable=not run.progress):
        path = resume.run_path(out, cond, seed)
        saved = resume.load_saved(path, fp)
        if saved is not None:
            result.runs.append(TrainingRun(**saved))
            result.resumed.append(f"{cond}_s{seed}")
            run.stage(f"{cond} seed {seed}: resumed from {path.relative_to(out)} (held-out accuracy {np.mean(saved['correct']):.3f})")
            continue
        t, cpu = time.perf_counter(), time.process_time()
        reward = rewards.get(cond) if cond != "dpo" else rewards.get("value")
        model, curve, dataset = _train_one(cfg, run.hf, run.tok, dataset, reward, 0.0 if cond == "dpo" else cfg.beta_aux, seed,
                                           out / "trainer" / f"{cond}_s{seed}")
        adapter_dir = None
        if cfg.save_adapters:
            adapter_dir = os.path.relpath(_save_adapter(model, out / "adapters" / f"{cond}_s{seed}"), out)
        model = model.merge_and_unload()  # (the run's own copy) evaluated through an adapter over it
        correct = _held_out_correct(cfg, model, run.tok, held_out, f"{run.model_name} ({cond} s{seed})")
        result.runs.append(TrainingRun(cond, seed, correct, curve, adapter_dir, time.perf_counter() - t, time.process_time() - cpu))
        resume.save(path, dataclasses.asdict(result.runs[-1]), fp)
        del model
        run.stage(f"{cond} seed {seed}: held-out accuracy {np.mean(correct):.3f} "
                  f"({result.runs[-1].seconds:.0f} s, {result.runs[-1].cpu_seconds:.0f} s CPU)")
    shutil.rmtree(out / "trainer", ignore_errors=True)


def run_yfpo(cfg: YFPOConfig, progress: bool | None = None, hf_model=None, tokenizer=None, task=None) -> YFPOResult:
    """Run the experiment of :mod:`reward_circuits.studies.yfpo.experiment` (see its docstring) → :class:`YFPOResult`.

    Writes only its artefacts to ``cfg.out`` (the sampled training rollouts with their settings record,
    the store, the neuron sets, the adapters, each finished run's record);
    ``result.to_section(out)`` is its ``yfpo`` report section (the ``yfpo`` command writes the report).
    ``hf_model``/``tokenizer``: an already loaded HF causal LM to use instead of ``cfg.model``
    (never modified: every run fine-tunes a copy). ``task``: a :class:`~reward_circuits.tasks.Task`
    to use instead of ``cfg.task`` (its first ``train_prompts`` examples train, the next
    ``eval_prompts`` are held out). ``progress`` overrides ``cfg.progress``."""
    progress = cfg.progress if progress is None else progress
    from ...data.rollouts import accuracy, generate_rollouts
    from ...models import GenerationConfig, from_hf
    from ...models.loading import DEFAULT_MODEL, is_default, load_hf

    t0 = time.perf_counter()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if hf_model is not None:
        hf, tok = hf_model, tokenizer
        model_name = getattr(hf.config, "name_or_path", None) or type(hf).__name__
    else:
        hf, tok = load_hf(cfg.model, device=cfg.device)
        model_name = DEFAULT_MODEL if is_default(cfg.model) else cfg.model
    run = _YfpoRun(cfg, out, progress, hf, tok, model_name, t0)
    sizing = sizing_lines(len(cfg.seeds), cfg.eval_prompts, cfg.conditions)
    print("\n".join(sizing))  # what this many seeds and prompts can detect, before anything runs
    train_task, held_out = _split_tasks(cfg, task)
    run.stage(f"model loaded; {len(train_task)} training / {len(held_out)} held-out prompts")
    adapter = from_hf(hf, tok, backend=cfg.backend, name=model_name)
    layers = cfg.resolve_probe_layers(adapter.n_layers, model_name)  # before any rollout: a bad layer fails in seconds
    adapter.validate_hooks([f"blocks.{layer}.mlp.hook_post" for layer in layers])
    cfg = run.cfg = copy.copy(cfg)
    cfg.probe_layers = layers  # the summary and the resume fingerprint record the layers actually probed
    gen = GenerationConfig(max_new_tokens=cfg.max_new_tokens, do_sample=True, temperature=cfg.temperature, seed=cfg.seed,
                           progress=progress)
    rollouts, reused = resume.training_rollouts(
        out, resume.rollout_settings(cfg, model_name, resume.model_digest(hf), train_task, tok, gen), train_task,
        lambda: generate_rollouts(adapter, train_task, gen, samples_per_prompt=cfg.samples_per_prompt))
    pairs = preference_pairs(rollouts, tok, cfg.pairs_per_prompt, seed=cfg.seed)
    pairs, validation = split_validation_pairs(pairs, seed=cfg.seed) if cfg.select_steps else (pairs, [])
    dataset = pairs_dataset(pairs)
    run.stage(f"{len(rollouts)} rollouts{' (read back from OUT/rollouts/train)' if reused else ''} "
              f"(accuracy {accuracy(rollouts):.2f}) -> {len(pairs)} preference pairs"
              + (f" + {len(validation)} validation pairs" if validation else ""))

    rewards, value_auc, value_hook, lrp_check = _neuron_rewards(run, adapter, rollouts, train_task)
    margin_acc = _calibrate(run, adapter, rewards, _pair_batches(pairs, tok, cfg.batch_pairs))
    base_correct = greedy_correct(adapter, held_out, cfg.max_new_tokens, cfg.eval_batch_size)
    del adapter  # the fine-tunes train (copies of) the HF model through TRL: they need its autograd graph
    run.stage(f"base held-out accuracy {np.mean(base_correct):.3f}")
    result = YFPOResult(cfg, model_name, len(rollouts), accuracy(rollouts), len(pairs), base_correct, rewards, margin_acc,
                        value_auc, value_hook, lrp_check, sizing=sizing)
    if cfg.select_steps:  # a pilot run picks the steps every compared run takes (.steps)
        pilot_fp = resume.fingerprint(cfg, model_name, pairs, rewards, held_out, validation=resume.pair_rows(validation),
                                      pilot_seed=cfg.seeds[0])
        selection, dataset = _choose_steps(run, rewards, dataset, validation, pilot_fp)
        run.cfg = result.config = copy.copy(cfg)
        run.cfg.steps = selection.steps
        result.step_selection = selection.to_dict()
        if selection.resumed:
            result.resumed_seconds += selection.seconds
    _fine_tunes(run, result, dataset, held_out, resume.fingerprint(run.cfg, model_name, pairs, rewards, held_out))
    result.resumed_seconds += sum(r.seconds for r in result.runs if f"{r.condition}_s{r.seed}" in result.resumed)
    result.seconds = time.perf_counter() - t0
    return result
