"""The whole study, in the paper's order: known reward → fine-tune → divergent layers → SAE pairs
(MMCS) → contrastive triples → linear IRM (Kendall tau) → reward-related features → ablation.

    from reward_circuits.studies.irm import IrmConfig, run_irm
    result = run_irm(IrmConfig(out="runs/irm"))
    result.kendall.tau, result.ablation.ablated_minus_random

Prompt splits are disjoint: *train* (fine-tuning), *select* (SAE corpus, feature selection) and
*eval* (rewards before/after, ablation; SAE corpus too, which is unsupervised).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...analysis.stats import Interval, bootstrap_ci, paired_bootstrap_diff, verdict
from ...models.base import GenerationConfig
from ...report import Section, Table, new_figure, save_figure
from .ablation import (
    AblationResult,
    CorrelationExplainer,
    FeatureExplainer,
    completion_features,
    feature_index,
    rewards_per_prompt,
    run_ablation,
    top_features,
)
from .config import IrmConfig
from .contrastive import (
    SAEFeatureReader,
    TokenDeltas,
    build_triples,
    sentiment_words,
    token_deltas,
)
from .dictionaries import (
    PAIR_COLUMNS,
    DictionarySet,
    text_activations,
    train_dictionary_pair,
)
from .divergence import LayerDivergence, layer_divergence
from .finetune import FinetuneResult, as_trl_reward, finetune_grpo
from .irm_model import KendallResult, LinearIRM, paired_kendall, reconstruction_table
from .prompts import imdb_prefixes, review_openings, split_prompts
from .reward import VaderReward

PAPER_KENDALL = {"pythia-70m": (0.042, 0.26), "pythia-160m": (0.093, 0.014), "gpt-neo-125m": (0.023, 0.48)}
PAPER_REWARD = {"pythia-70m": (0.26, 2.07), "pythia-160m": (-0.27, 1.95), "gpt-neo-125m": (0.68, 1.43)}


@dataclass
class RewardShift:
    """Mean reward of completions to held-out prompts, base vs fine-tuned (paired per prompt)."""

    base: Interval
    finetuned: Interval
    difference: Interval
    p_value: float
    finetune: FinetuneResult | None

    @property
    def verdict(self) -> str:
        return verdict(self.difference, +1)


@dataclass
class IrmFit:
    """The linear IRM fitted on training words, scored on held-out words."""

    model: LinearIRM
    kendall: KendallResult
    kendall_negative: KendallResult
    train_kendall: float
    words: list[str]
    true: np.ndarray
    predicted: np.ndarray
    n_features: int
    n_train_words: int
    feature_set: str = "shared"


@dataclass
class IrmResult:
    config: IrmConfig
    rewards: RewardShift
    divergence: LayerDivergence
    layers: list[int]
    dictionaries: DictionarySet
    cross_model_mmcs: dict[str, float]
    irm: IrmFit
    ablation: AblationResult
    seconds: dict[str, float] = field(default_factory=dict)
    figures: list[str] = field(default_factory=list)

    @property
    def kendall(self) -> KendallResult:
        return self.irm.kendall

    def to_dict(self) -> dict:
        """The ``irm`` section of ``summary.json``."""
        return self.summary()

    def to_section(self, out_dir: str | Path | None = None) -> Section:
        """The ``irm`` report section (its figures were drawn into ``config.out`` by :func:`run_irm`)."""
        return self.section()

    def summary(self) -> dict:
        a = self.ablation
        return {
            "reward_base": self.rewards.base.to_dict(), "reward_finetuned": self.rewards.finetuned.to_dict(),
            "reward_difference": self.rewards.difference.to_dict(), "reward_difference_p": self.rewards.p_value,
            "reward_verdict": self.rewards.verdict,
            "finetune_steps": self.rewards.finetune.steps_done if self.rewards.finetune else None,
            "finetune_step_rewards": self.rewards.finetune.step_rewards if self.rewards.finetune else None,
            "finetune_seconds": self.rewards.finetune.seconds if self.rewards.finetune else None,
            "top_divergence_layers": self.layers,
            "divergence_top_over_median": self.divergence.top_over_median(),
            "layer_distance": dict(zip(map(str, self.divergence.layers), self.divergence.distance)),
            "mmcs": {f"{p.model}/{p.hook_name}": {"mmcs": p.mmcs, "hungarian": p.mmcs_hungarian,
                                                  "shared_features": int(p.shared_latents.size),
                                                  "d_sae": [int(p.small.cfg.d_sae), int(p.large.cfg.d_sae)]}
                     for p in self.dictionaries.pairs},
            "mmcs_base_vs_finetuned": self.cross_model_mmcs,
            "kendall_tau": self.irm.kendall.tau, "kendall_p": self.irm.kendall.p_value,
            "kendall_tau_interval": self.irm.kendall.interval.to_dict(),
            "kendall_tau_negative": self.irm.kendall_negative.tau, "kendall_p_negative": self.irm.kendall_negative.p_value,
            "kendall_tau_negative_interval": self.irm.kendall_negative.interval.to_dict(),
            "kendall_tau_train": self.irm.train_kendall, "irm_features": self.irm.n_features,
            "irm_feature_set": self.irm.feature_set, "irm_train_words": self.irm.n_train_words,
            "irm_alpha": self.irm.model.alpha_, "irm_test_words": len(self.irm.words),
            "kendall_verdict": verdict(self.irm.kendall.interval, +1),
            "reward_after_ablation": a.reward_ablated.to_dict(), "reward_after_random_ablation": a.reward_random.to_dict(),
            "reward_without_ablation": a.reward_none.to_dict(),
            "ablation_minus_none": a.ablated_minus_none.to_dict(), "ablation_minus_none_p": a.ablated_minus_none_p,
            "ablation_minus_random": a.ablated_minus_random.to_dict(), "ablation_minus_random_p": a.ablated_minus_random_p,
            "ablation_verdict": verdict(a.ablated_minus_random, -1), "ablated_features": a.selected,
            "seconds": self.seconds, "paper_kendall": PAPER_KENDALL, "paper_reward": PAPER_REWARD,
        }

    def section(self) -> Section:
        r, k, a = self.rewards, self.irm, self.ablation
        tables = [
            Table("Mean VADER reward of completions to held-out prompts (paper Table 7 shape)",
                  ["model", "mean reward", "95% low", "95% high", "n prompts"],
                  [["base", r.base.estimate, r.base.low, r.base.high, r.base.n],
                   ["fine-tuned", r.finetuned.estimate, r.finetuned.low, r.finetuned.high, r.finetuned.n],
                   ["fine-tuned − base (paired)", r.difference.estimate, r.difference.low, r.difference.high, r.difference.n]]),
            self.divergence.table(max(5, len(self.layers))),
            Table("SAE dictionaries: mean max cosine similarity (small → large)", PAIR_COLUMNS,
                  [p.row() for p in self.dictionaries.pairs]),
            Table("Implicit reward model: Kendall tau (held-out words, paired values)",
                  ["tokens", "tau", "95% low", "95% high", "p", "n"],
                  [["all", k.kendall.tau, k.kendall.interval.low, k.kendall.interval.high, k.kendall.p_value, k.kendall.n],
                   ["negative only", k.kendall_negative.tau, k.kendall_negative.interval.low,
                    k.kendall_negative.interval.high, k.kendall_negative.p_value, k.kendall_negative.n]]
                  + [[f"paper: {m}", t, None, None, p, None] for m, (t, p) in PAPER_KENDALL.items()]),
            reconstruction_table(k.words, k.true, k.predicted),
            Table("Feature ablation during generation (fine-tuned model, held-out prompts; paper Table 5 + control)",
                  ["condition", "mean reward", "95% low", "95% high", "n prompts"],
                  [["no ablation", a.reward_none.estimate, a.reward_none.low, a.reward_none.high, a.reward_none.n],
                   [f"{a.n_features} reward-related features", a.reward_ablated.estimate, a.reward_ablated.low,
                    a.reward_ablated.high, a.reward_ablated.n],
                   [f"{a.n_features} random features ({len(a.random_draws)} draws)", a.reward_random.estimate,
                    a.reward_random.low, a.reward_random.high, a.reward_random.n],
                   ["related − none (paired)", a.ablated_minus_none.estimate, a.ablated_minus_none.low,
                    a.ablated_minus_none.high, a.ablated_minus_none.n],
                   ["related − random (paired)", a.ablated_minus_random.estimate, a.ablated_minus_random.low,
                    a.ablated_minus_random.high, a.ablated_minus_random.n]]),
        ]
        notes = [
            f"Fine-tuning raised the mean reward from {r.base} to {r.finetuned} (paired difference {r.difference}, "
            f"p={r.p_value:.3g}): {r.verdict}. Paper (base → fine-tuned): "
            + "; ".join(f"{m} {b:.2f} → {t:.2f}" for m, (b, t) in PAPER_REWARD.items()) + ".",
            f"Kendall tau of the IRM's reconstructed values vs VADER values on {k.kendall.n} held-out words: "
            f"{k.kendall.tau:.3f} [{k.kendall.interval.low:.3f}, {k.kendall.interval.high:.3f}] (p={k.kendall.p_value:.3g}); "
            f"negative words only {k.kendall_negative.tau:.3f} (p={k.kendall_negative.p_value:.3g}, n={k.kendall_negative.n}). "
            "Paper: " + ", ".join(f"{m} {t} (p {p})" for m, (t, p) in PAPER_KENDALL.items())
            + f". Verdict for 'the IRM ranks tokens like the reward (tau > 0)': {verdict(k.kendall.interval, +1)}.",
            (f"Removing the {a.n_features} most reward-correlated features changed the reward by {a.ablated_minus_none} "
            f"(p={a.ablated_minus_none_p:.3g}) vs no ablation and by {a.ablated_minus_random} (p={a.ablated_minus_random_p:.3g}) "
            f"vs as many random features: {verdict(a.ablated_minus_random, -1)} for 'reward features carry the reward'."),
            f"Layer divergence: the top layer's summed weight distance is {self.divergence.top_over_median():.3f}× the "
            "median layer's" + (" (nearly uniform: with a LoRA on every layer the 'most diverged' layers are only weakly "
                                "singled out)" if self.divergence.top_over_median() < 1.2 else "") + ".",
            ("Kendall tau is computed on paired (reconstructed, true) values per word; layer divergence on float32 "
            "weights; SAE data excludes padding; MMCS is the mean of per-feature maxima (Hungarian one-to-one shown "
            "separately); the ablation keeps the SAE error term (removing no feature leaves the forward unchanged)."),
        ]
        return Section("irm", "Implicit reward model (Marks et al.)", self.summary(), tables, list(self.figures), notes)


def _prompt_splits(config: IrmConfig) -> tuple[list[str], list[str], list[str]]:
    total = config.n_train_prompts + config.n_select_prompts + config.n_eval_prompts
    pool = review_openings(total, seed=config.seed) if config.prompts == "generated" else imdb_prefixes(total, seed=config.seed)
    pool = list(dict.fromkeys(pool))
    if len(pool) < total:
        raise ValueError(f"only {len(pool)} distinct prompts for {total} requested.")
    fr = [config.n_train_prompts / total, config.n_select_prompts / total]
    train, select, evaluation = split_prompts(pool[:total], fr + [1 - sum(fr)], seed=config.seed)
    return train, select, evaluation


def _fit_irm(deltas: TokenDeltas, config: IrmConfig) -> IrmFit:
    rng = np.random.default_rng(config.seed)
    test_parts, train_parts = [], []
    for side in (deltas.values > 0, deltas.values < 0):  # stratified: both signs in both splits
        idx = rng.permutation(np.flatnonzero(side))
        n_test = max(3, round(config.irm_test_fraction * idx.size))
        test_parts.append(idx[:n_test])
        train_parts.append(idx[n_test:])
    test, train = np.concatenate(test_parts), np.concatenate(train_parts)
    model = LinearIRM().fit(deltas.deltas[train], deltas.values[train])
    pred = model.predict(deltas.deltas[test])
    true = deltas.values[test]
    neg = true < 0
    return IrmFit(
        model=model, kendall=paired_kendall(pred, true, n_boot=1000, seed=config.seed),
        kendall_negative=paired_kendall(pred[neg], true[neg], n_boot=1000, seed=config.seed),
        train_kendall=model.score(deltas.deltas[train], deltas.values[train]),
        words=[deltas.words[i] for i in test], true=true, predicted=pred, n_features=int(deltas.deltas.shape[1]),
        n_train_words=int(train.size))


def _figures(result: IrmResult, out: Path) -> list[str]:
    names = []
    ft = result.rewards.finetune
    has_curve = bool(ft and ft.step_rewards)
    fig, axes = new_figure(12.5 if has_curve else 8.5, 3.8, 1, 3 if has_curve else 2)
    if has_curve:
        axes[0].plot(range(1, len(ft.step_rewards) + 1), ft.step_rewards, marker="o")
        axes[0].set_xlabel("GRPO step")
        axes[0].set_ylabel("mean reward of the step's completions")
        axes[0].set_title("fine-tuning")
        axes = axes[1:]
    r = result.rewards
    a = result.ablation
    bars = [("base", r.base), ("fine-tuned", r.finetuned), ("fine-tuned\n− reward\nfeatures", a.reward_ablated),
            ("fine-tuned\n− random\nfeatures", a.reward_random)]
    axes[0].bar(range(len(bars)), [b.estimate for _, b in bars],
                yerr=[[b.estimate - b.low for _, b in bars], [b.high - b.estimate for _, b in bars]], capsize=4,
                color=["tab:gray", "tab:blue", "tab:red", "tab:orange"])
    axes[0].set_xticks(range(len(bars)), [n for n, _ in bars], fontsize=7)
    axes[0].set_ylabel("mean VADER reward (95% CI)")
    axes[0].set_title("held-out prompts")
    k = result.irm
    axes[1].scatter(k.true, k.predicted, s=10, alpha=0.7)
    axes[1].set_xlabel("VADER value")
    axes[1].set_ylabel("IRM value")
    axes[1].set_title(f"held-out words, Kendall tau {k.kendall.tau:.3f}")
    fig.tight_layout()
    names.append(save_figure(fig, out / "irm_rewards_and_irm.png"))
    names.append(result.divergence.figure(out / "irm_layer_divergence.png"))
    return names


@dataclass
class _IrmRun:
    """What the study's steps share: the settings, the reward, the prompt splits, the sampling and the clock."""

    config: IrmConfig
    out: Path
    reward: object
    tokenizer: object
    gen: GenerationConfig
    splits: tuple[list[str], list[str], list[str]]
    seconds: dict[str, float] = field(default_factory=dict)
    clock: float = field(default_factory=time.monotonic)

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self.seconds[name] = round(now - self.clock, 1)
        self.clock = now
        print(f"[irm] {name}: {self.seconds[name]:.0f} s", flush=True)

    def completions(self, adapter, prompts):
        """Rewards per prompt (mean over samples) and the sampled generations."""
        return rewards_per_prompt(adapter, prompts, self.reward, self.gen, self.config.samples_per_prompt)


def _fine_tune(run: _IrmRun, base_hf, base):
    """Base rewards on held-out prompts, the fine-tune (GRPO, unless ``config.finetuned`` is given), its
    rewards; returns the fine-tuned HF model and adapter, the reward shift and the evaluation generations."""
    from ...models import from_hf
    from ...models.loading import load_hf

    config, (train_p, _, eval_p) = run.config, run.splits
    base_eval, base_eval_gens = run.completions(base, eval_p)
    run.lap("base rewards")
    finetune = None
    tuned_path = config.finetuned
    if tuned_path is None:
        finetune = finetune_grpo(base_hf, run.tokenizer, train_p, as_trl_reward(run.reward), run.out / "finetuned_model",
                                 config.finetune_config())
        tuned_path = finetune.path
        run.lap("fine-tuning")
    tuned_hf, _ = load_hf(tuned_path)
    tuned_hf = tuned_hf.to(run.config.device)
    tuned = from_hf(tuned_hf, run.tokenizer, run.config.backend, name="finetuned")
    tuned_eval, tuned_eval_gens = run.completions(tuned, eval_p)
    diff, p = paired_bootstrap_diff(tuned_eval, base_eval, n_boot=config.n_boot, seed=config.seed)
    rewards = RewardShift(bootstrap_ci(base_eval, n_boot=config.n_boot, seed=config.seed),
                          bootstrap_ci(tuned_eval, n_boot=config.n_boot, seed=config.seed), diff, p, finetune)
    run.lap("fine-tuned rewards")
    return tuned_hf, tuned, rewards, (base_eval_gens, tuned_eval_gens)


def _dictionaries(run: _IrmRun, adapters: dict, hooks: list[str], corpus: list[str]) -> tuple[DictionarySet, dict[str, float]]:
    """Small/large SAE pairs per hook and model on ``corpus`` (saved under ``out/saes``), and the
    base-vs-fine-tuned MMCS per hook."""
    from ...sae import save_sae

    config = run.config
    dicts = DictionarySet()
    width = adapters["base"].hook_width(hooks[0])
    sizes = tuple(round(s * width) for s in config.sae_sizes)
    for name, adapter in adapters.items():
        acts = text_activations(adapter, corpus, hooks)
        for h in hooks:
            pair = train_dictionary_pair(acts[h], h, sizes, config.sae_config(), name, config.similarity_threshold,
                                         hungarian=config.hungarian, progress=config.progress)
            dicts.pairs.append(pair)
            save_sae(pair.large, run.out / "saes" / name / h / "large")
            save_sae(pair.small, run.out / "saes" / name / h / "small")
    cross = {h: dicts.cross_model_mmcs(h) for h in hooks}
    run.lap("SAE pairs")
    return dicts, cross


def _implicit_reward_model(run: _IrmRun, tuned, tuned_saes: dict, dicts: DictionarySet) -> IrmFit:
    """The linear IRM on contrastive triples, read through the fine-tuned model's shared (or all) latents."""
    import torch

    config = run.config
    latents = None
    if config.irm_features == "shared":
        latents = {h: dicts.get("finetuned", h).shared_latents for h in tuned_saes}
        if sum(len(v) for v in latents.values()) < 2:
            latents = None  # too few shared features: fall back to all latents (noted in the summary)
    reader = SAEFeatureReader(tuned, tuned_saes, latents)
    words = sentiment_words(config.n_positive_words, config.n_negative_words, seed=config.seed)
    triples = build_triples(words, config.templates_per_word, seed=config.seed)
    with torch.no_grad():
        deltas = token_deltas(triples, reader)
    irm = _fit_irm(deltas, config)
    irm.feature_set = "shared (high-similarity) latents" if latents is not None else "all latents" + (
        " (fewer than 2 shared latents)" if config.irm_features == "shared" else "")
    run.lap("implicit reward model")
    return irm


def _feature_ablation(run: _IrmRun, tuned, tuned_saes: dict, sel_gens, explainer: FeatureExplainer) -> AblationResult:
    """The reward-related features (chosen on the selection completions) removed during generation on eval prompts."""
    config = run.config
    feats = completion_features(tuned, sel_gens, tuned_saes)
    texts = [g.text for g in sel_gens]
    scores = explainer.relevance(feats, run.reward(texts), texts)
    selected = top_features(scores, feature_index(tuned_saes), config.n_ablate)
    ablation = run_ablation(tuned, tuned_saes, selected, run.splits[2], run.reward, run.gen,
                            samples_per_prompt=config.samples_per_prompt, n_random=config.n_random_draws,
                            seed=config.seed, n_boot=config.n_boot)
    run.lap("ablation")
    return ablation


def run_irm(config: IrmConfig | None = None, explainer: FeatureExplainer | None = None, tokenizer=None, base_hf=None,
            reward=None) -> IrmResult:
    """Run the study → :class:`IrmResult`; writes only its artefacts to ``config.out`` (the fine-tuned
    model, the SAEs, the figures). ``result.to_section(out)`` is its ``irm`` report section (the
    ``irm`` command writes summary.json and report.html from it).

    Pass ``base_hf`` (+ ``tokenizer``) to study an already loaded model, ``config.finetuned`` to skip
    fine-tuning, ``explainer`` to choose reward-related features another way, and ``reward``
    (``texts -> rewards``) to replace the VADER reward in fine-tuning, evaluation and feature
    selection (the IRM's targets stay the VADER lexicon values).
    """
    from ...models import from_hf
    from ...models.loading import load_hf

    start = time.monotonic()
    config = config or IrmConfig()
    explainer = explainer or CorrelationExplainer()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    splits = _prompt_splits(config)
    gen = GenerationConfig(max_new_tokens=config.max_new_tokens, do_sample=True, temperature=config.temperature,
                           seed=config.seed, batch_size=32, progress=False)
    if base_hf is None:
        base_hf, tokenizer = load_hf(config.model, device=config.device)
    run = _IrmRun(config, out, reward or VaderReward(), tokenizer, gen, splits, clock=start)
    base = from_hf(base_hf.to(config.device), tokenizer, config.backend, name=config.model)
    tuned_hf, tuned, rewards, eval_gens = _fine_tune(run, base_hf, base)

    divergence = layer_divergence(base_hf, tuned_hf)
    layers = sorted(divergence.top_layers(config.n_layers))
    hooks = [f"blocks.{l}.{config.sae_site}" for l in layers]
    del tuned_hf, base_hf  # the weights are compared: from here on the adapters alone (the caller keeps its own base_hf)

    # SAE corpus: prompts + completions of both models on select and eval prompts, fed to each model
    _, base_sel_gens = run.completions(base, splits[1])
    __, tuned_sel_gens = run.completions(tuned, splits[1])
    base_eval_gens, tuned_eval_gens = eval_gens
    corpus = [tokenizer.decode(g.prompt_ids + g.response_ids, skip_special_tokens=True)
              for g in base_sel_gens + tuned_sel_gens + base_eval_gens + tuned_eval_gens]
    run.lap("selection completions")
    dicts, cross = _dictionaries(run, {"base": base, "finetuned": tuned}, hooks, corpus)

    tuned_saes = {h: dicts.get("finetuned", h).large for h in hooks}
    irm = _implicit_reward_model(run, tuned, tuned_saes, dicts)
    ablation = _feature_ablation(run, tuned, tuned_saes, tuned_sel_gens, explainer)

    result = IrmResult(config, rewards, divergence, layers, dicts, cross, irm, ablation, run.seconds)
    result.figures = _figures(result, out)
    return result
