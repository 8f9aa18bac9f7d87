"""The whole study, in the paper's order: known reward → fine-tune → reward-hack guard → divergent
layers → SAE pairs (MMCS, and a second base seed as the floor) → contrastive triples → the paper's
IRM (activation deltas → linear regression → Kendall tau) on the fine-tuned *and* the base model →
reward-related features → ablation against activation-matched random features.

    from reward_circuits.studies.irm import IrmConfig, run_irm
    result = run_irm(IrmConfig(out="runs/irm"))
    result.kendall.tau, result.base_control.difference, result.ablation.rank_p

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
from ...tasks.base import bos_prefix
from ...report import Section, Table, new_figure, save_figure
from .ablation import (
    AblationResult,
    CorrelationExplainer,
    FeatureExplainer,
    LatentStatistics,
    completion_features,
    feature_index,
    latent_statistics,
    matched_random_features,
    rewards_per_prompt,
    run_ablation,
    top_features,
)
from .config import IrmConfig
from .contrastive import (
    SAEFeatureReader,
    TokenDeltas,
    activation_deltas,
    build_triples,
    sentiment_words,
)
from .diagnostics import FinetuneDiagnostics, GuardConfig, check_not_reward_hack, distinct_n, kl_and_base_perplexity
from .dictionaries import (
    PAIR_COLUMNS,
    DictionarySet,
    mmcs,
    sae_change_vs_floor,
    text_activations,
    train_dictionary_pair,
)
from .divergence import ChangedLayers, LayerDivergence, changed_layers, layer_divergence
from .finetune import FinetuneResult, as_trl_reward, finetune_grpo, read_lora_targets
from .implicit_reward import BaseControl, ReconstructedLexicon, compare_to_base, reconstruct_lexicon
from .irm_model import KendallResult, LinearIRM, paired_kendall, reconstruction_table
from .prompts import imdb_prefixes, review_openings, split_prompts
from .reward import VaderReward

PAPER_KENDALL = {"pythia-70m": (0.042, 0.26), "pythia-160m": (0.093, 0.014), "gpt-neo-125m": (0.023, 0.48)}
PAPER_REWARD = {"pythia-70m": (0.26, 2.07), "pythia-160m": (-0.27, 1.95), "gpt-neo-125m": (0.68, 1.43)}
# Table 5: mean reward of the fine-tuned model before → after ablating its reward features
PAPER_ABLATION = {"pythia-70m": (2.07, 1.75), "pythia-160m": (1.95, 1.71), "gpt-neo-125m": (1.43, 1.34)}


@dataclass
class RewardShift:
    """Mean reward of completions to held-out prompts, base vs fine-tuned (paired per prompt)."""

    base: Interval
    finetuned: Interval
    difference: Interval
    p_value: float
    finetune: FinetuneResult | None
    diagnostics: FinetuneDiagnostics | None = None

    @property
    def verdict(self) -> str:
        return verdict(self.difference, +1)


@dataclass
class IrmFit:
    """The decodability ceiling (not the paper's IRM): a ridge regression from the fine-tuned model's
    per-word feature differences to the VADER values themselves, fitted on training words and
    scored on held-out words. Its tau says the lexicon value is linearly decodable from the features."""

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
    irm: IrmFit  # the decodability ceiling
    ablation: AblationResult
    paper_irm: ReconstructedLexicon | None = None  # the paper's IRM on the fine-tuned model
    base_irm: ReconstructedLexicon | None = None  # the same construction on the base model
    base_control: BaseControl | None = None
    mmcs_floor: dict[str, float] = field(default_factory=dict)  # base vs base (two SAE seeds)
    latent_stats: LatentStatistics | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    figures: list[str] = field(default_factory=list)
    changed: ChangedLayers | None = None  # per layer: relative weight change vs the floor, what LoRA could change
    sae_change: dict[str, dict] = field(default_factory=dict)  # per studied hook: 1 − MMCS vs the second-seed floor

    @property
    def kendall(self) -> KendallResult:
        """The paper's IRM's Kendall tau on the fine-tuned model."""
        return self.paper_irm.kendall if self.paper_irm is not None else self.irm.kendall

    def to_dict(self) -> dict:
        """The ``irm`` section of ``summary.json``."""
        return self.summary()

    def to_section(self, out_dir: str | Path | None = None) -> Section:
        """The ``irm`` report section (its figures were drawn into ``config.out`` by :func:`run_irm`)."""
        return self.section()

    def summary(self) -> dict:
        return {**_reward_summary(self.rewards), **_irm_summary(self), **_ablation_summary(self.ablation, self.latent_stats),
                "top_divergence_layers": self.layers, "divergence_top_over_median": self.divergence.top_over_median(),
                "layer_distance": dict(zip(map(str, self.divergence.layers), self.divergence.distance)),
                "mmcs": {f"{p.model}/{p.hook_name}": {"mmcs": p.mmcs, "hungarian": p.mmcs_hungarian,
                                                      "shared_features": int(p.shared_latents.size),
                                                      "d_sae": [int(p.small.cfg.d_sae), int(p.large.cfg.d_sae)]}
                         for p in self.dictionaries.pairs},
                "mmcs_base_vs_finetuned": self.cross_model_mmcs, "mmcs_base_vs_base_floor": self.mmcs_floor,
                "changed_layers": self.changed.summary() if self.changed else None,
                "sae_change_vs_floor": self.sae_change,
                "sae_layers_above_floor": [h for h, v in self.sae_change.items() if v["above_floor"]],
                "seconds": self.seconds, "paper_kendall": PAPER_KENDALL, "paper_reward": PAPER_REWARD,
                "paper_ablation": PAPER_ABLATION}

    def section(self) -> Section:
        tables = (_reward_tables(self.rewards) + [self.divergence.table(max(5, len(self.layers))), _mmcs_table(self)]
                  + ([self.changed.table()] if self.changed else []) + _irm_tables(self)
                  + _ablation_tables(self.ablation, self.latent_stats))
        notes = _guard_notes(self.rewards) + _irm_notes(self) + _ablation_notes(self.ablation) + [
            f"Layer divergence: the top layer's summed weight distance is {self.divergence.top_over_median():.3f}× the "
            "median layer's" + (" (nearly uniform: with a LoRA on every layer the 'most diverged' layers are only weakly "
                                "singled out)" if self.divergence.top_over_median() < 1.2 else "") + ".",
            *([self.changed.sentence()] if self.changed else []), *_sae_change_notes(self.sae_change),
            ("Kendall tau is computed on paired (reconstructed, true) values per word; layer divergence on float32 "
             "weights; SAE data excludes padding; MMCS is the mean of per-feature maxima (Hungarian one-to-one shown "
             "separately); the ablation keeps the SAE error term (removing no feature leaves the forward unchanged)."),
        ]
        return Section("irm", "Implicit reward model (Marks et al.)", self.summary(), tables, list(self.figures), notes)


def _sae_change_notes(change: dict[str, dict]) -> list[str]:
    if not change:
        return []
    parts = [f"{h}: 1 − MMCS {v['divergence']:.3f} vs floor {v['floor']:.3f}, difference "
             f"{v['difference']['estimate']:+.3f} [{v['difference']['low']:+.3f}, {v['difference']['high']:+.3f}]"
             f" ({'above' if v['above_floor'] else 'not above'} the floor)" for h, v in change.items()]
    return ["Dictionaries, base vs fine-tuned against base vs base from a second SAE seed (paired bootstrap over "
            "the base features): " + "; ".join(parts) + "."]


def _reward_summary(r: RewardShift) -> dict:
    ft, d = r.finetune, r.diagnostics
    return {"reward_base": r.base.to_dict(), "reward_finetuned": r.finetuned.to_dict(),
            "reward_difference": r.difference.to_dict(), "reward_difference_p": r.p_value, "reward_verdict": r.verdict,
            "finetune_steps": ft.steps_done if ft else None, "finetune_step_rewards": ft.step_rewards if ft else None,
            "finetune_step_kl": ft.step_kl if ft else None, "finetune_seconds": ft.seconds if ft else None,
            "finetune_diagnostics": d.to_dict() if d else None}


def _irm_summary(res: IrmResult) -> dict:
    k = res.irm
    out = {"ceiling_kendall_tau": k.kendall.tau, "ceiling_kendall_p": k.kendall.p_value,
           "ceiling_kendall_tau_interval": k.kendall.interval.to_dict(), "ceiling_kendall_tau_negative": k.kendall_negative.tau,
           "ceiling_kendall_p_negative": k.kendall_negative.p_value, "ceiling_kendall_tau_train": k.train_kendall,
           "ceiling_features": k.n_features, "ceiling_alpha": k.model.alpha_, "ceiling_test_words": len(k.words)}
    p = res.paper_irm
    if p is not None:
        out.update({"kendall_tau": p.kendall.tau, "kendall_p": p.kendall.p_value,
                    "kendall_tau_interval": p.kendall.interval.to_dict(), "kendall_tau_negative": p.kendall_negative.tau,
                    "kendall_p_negative": p.kendall_negative.p_value,
                    "kendall_tau_negative_interval": p.kendall_negative.interval.to_dict(),
                    "kendall_verdict": verdict(p.kendall.interval, +1),
                    "kendall_negative_verdict": verdict(p.kendall_negative.interval, +1), "irm_finetuned": p.summary()})
    if res.base_irm is not None:
        out["irm_base"] = res.base_irm.summary()
    if res.base_control is not None:
        out["irm_finetuned_minus_base"] = res.base_control.to_dict()
        out["irm_finetuned_minus_base_verdict"] = verdict(res.base_control.difference, +1)
    return out


def _ablation_summary(a: AblationResult, st: LatentStatistics | None) -> dict:
    out = {"reward_after_ablation": a.reward_ablated.to_dict(), "reward_after_random_ablation": a.reward_random.to_dict(),
           "reward_without_ablation": a.reward_none.to_dict(), "ablation_control": a.control,
           "ablation_minus_none": a.ablated_minus_none.to_dict(), "ablation_minus_none_p": a.ablated_minus_none_p,
           "ablation_minus_random": a.ablated_minus_random.to_dict(), "ablation_minus_random_p": a.ablated_minus_random_p,
           "ablation_verdict": verdict(a.ablated_minus_random, -1), "ablated_features": a.selected,
           "ablation_observed_drop": a.observed_drop, "ablation_draw_drops": a.draw_drops,
           "ablation_rank_p": a.rank_p, "ablation_n_draws": len(a.draw_drops)}
    if st is not None:
        out["activation_frequency"] = _frequency_rows(a, st)
    return out


def _frequency_rows(a: AblationResult, st: LatentStatistics) -> dict:
    """The paper's Table 6: activation frequency of the ablated, the matched and all features."""
    from scipy import stats as sps

    sel = st.of(a.selected)
    matched = np.concatenate([st.of(d) for d in a.random_draws]) if a.random_draws else np.array([])
    rows = {"ablated": sel, "matched random": matched, "all features": st.frequency}
    out = {k: {"mean": float(v.mean()), "median": float(np.median(v)), "n": int(v.size)} for k, v in rows.items() if v.size}
    if matched.size:
        out["ks_ablated_vs_matched_p"] = float(sps.ks_2samp(sel, matched).pvalue)
    out["ks_ablated_vs_all_p"] = float(sps.ks_2samp(sel, st.frequency).pvalue)
    return out


def _reward_tables(r: RewardShift) -> list[Table]:
    tables = [Table("Mean VADER reward of completions to held-out prompts (paper Table 7 shape)",
                    ["model", "mean reward", "95% low", "95% high", "n prompts"],
                    [["base", r.base.estimate, r.base.low, r.base.high, r.base.n],
                     ["fine-tuned", r.finetuned.estimate, r.finetuned.low, r.finetuned.high, r.finetuned.n],
                     ["fine-tuned − base (paired)", r.difference.estimate, r.difference.low, r.difference.high,
                      r.difference.n]])]
    d = r.diagnostics
    if d is not None:
        tables.append(Table("Fine-tune diagnostics (held-out prompts; the reward-hack guard reads these)",
                            ["model", "mean reward", "distinct-2", "KL to base / token", "perplexity under base"],
                            [["base", d.reward_base, d.distinct2_base, 0.0, d.perplexity_base],
                             ["fine-tuned", d.reward_finetuned, d.distinct2_finetuned, d.kl_to_base,
                              d.perplexity_finetuned_under_base]]))
        tables.append(Table("Sample completions (same prompts, same sampling seeds)", ["prompt", "base", "fine-tuned"],
                            [[s["prompt"], s["base"], s["finetuned"]] for s in d.samples]))
    return tables


def _mmcs_table(res: IrmResult) -> Table:
    rows = [p.row() for p in res.dictionaries.pairs]
    return Table("SAE dictionaries: mean max cosine similarity (small → large); cross-model MMCS of the large "
                 "dictionaries: base vs fine-tuned " + ", ".join(f"{h} {v:.3f}" for h, v in res.cross_model_mmcs.items())
                 + "; floor base vs base (second SAE seed) " + ", ".join(f"{h} {v:.3f}" for h, v in res.mmcs_floor.items()),
                 PAIR_COLUMNS, rows)


def _tau_row(name: str, k: KendallResult) -> list:
    return [name, k.tau, k.interval.low, k.interval.high, k.p_value, k.n]


def _irm_tables(res: IrmResult) -> list[Table]:
    rows = []
    for r in (res.paper_irm, res.base_irm):
        if r is not None:
            rows += [_tau_row(f"{r.model} IRM: all words", r.kendall), _tau_row(f"{r.model} IRM: negative words", r.kendall_negative)]
    c = res.base_control
    if c is not None:
        rows += [["fine-tuned − base: all (paired over words)", c.difference.estimate, c.difference.low, c.difference.high,
                  c.p_value, c.difference.n],
                 ["fine-tuned − base: negative", c.difference_negative.estimate, c.difference_negative.low,
                  c.difference_negative.high, c.p_value_negative, c.difference_negative.n]]
    k = res.irm
    rows += [_tau_row("decodability ceiling (ridge on VADER values; held-out words)", k.kendall),
             _tau_row("decodability ceiling: negative words", k.kendall_negative)]
    rows += [[f"paper Table 4: {m}", t, None, None, p, None] for m, (t, p) in PAPER_KENDALL.items()]
    tables = [Table("Implicit reward model: Kendall tau of reconstructed vs VADER values (paired per word)",
                    ["IRM", "tau", "95% low", "95% high", "p", "n"], rows)]
    tables += [r.table() for r in (res.paper_irm, res.base_irm) if r is not None]
    return tables


def _ablation_tables(a: AblationResult, st: LatentStatistics | None) -> list[Table]:
    iv = [("no ablation", a.reward_none), (f"{a.n_features} reward-related features", a.reward_ablated),
          (f"{a.n_features} {a.control}-matched random features ({len(a.random_draws)} draws, mean)", a.reward_random),
          ("related − none (paired)", a.ablated_minus_none), ("related − random (paired)", a.ablated_minus_random)]
    tables = [Table("Feature ablation during generation (fine-tuned model, held-out prompts; paper Table 5 + control)",
                    ["condition", "mean reward", "95% low", "95% high", "n prompts"],
                    [[n, i.estimate, i.low, i.high, i.n] for n, i in iv]
                    + [[f"paper: {m}", f"{b} → {t}", None, None, None] for m, (b, t) in PAPER_ABLATION.items()])]
    if st is not None:
        fr = _frequency_rows(a, st)
        tables.append(Table("Activation frequency of ablated vs matched vs all features (paper Table 6)",
                            ["features", "mean frequency", "median frequency", "n"],
                            [[k, v["mean"], v["median"], v["n"]] for k, v in fr.items() if isinstance(v, dict)]))
    return tables


def _guard_notes(r: RewardShift) -> list[str]:
    notes = [f"Fine-tuning raised the mean reward from {r.base} to {r.finetuned} (paired difference {r.difference}, "
             f"p={r.p_value:.3g}): {r.verdict}. Paper (base → fine-tuned): "
             + "; ".join(f"{m} {b:.2f} → {t:.2f}" for m, (b, t) in PAPER_REWARD.items()) + "."]
    d = r.diagnostics
    if d is not None and d.forced:
        notes.append("FORCED (--force-reward-hack): the guard flagged the fine-tuned model as a reward hack ("
                     + "; ".join(d.problems) + "); every analysis below describes that model.")
    elif d is not None:
        notes.append(f"Reward-hack guard passed: reward {d.reward_finetuned:.2f} (clip {d.reward_clip:g}), distinct-2 "
                     f"{d.distinct2_finetuned:.3f} (base {d.distinct2_base:.3f}), KL to base {d.kl_to_base:.3f} nats/token.")
    return notes


def _irm_notes(res: IrmResult) -> list[str]:
    notes = []
    p, c = res.paper_irm, res.base_control
    if p is not None:
        notes.append(
            f"The paper's IRM (activation deltas → linear regression, cross-fitted by word; never shown a VADER value) "
            f"on the fine-tuned model: Kendall tau vs VADER {p.kendall.tau:.3f} [{p.kendall.interval.low:.3f}, "
            f"{p.kendall.interval.high:.3f}] (p={p.kendall.p_value:.3g}, {p.kendall.n} words); negative words only "
            f"{p.kendall_negative.tau:.3f} [{p.kendall_negative.interval.low:.3f}, {p.kendall_negative.interval.high:.3f}] "
            f"(p={p.kendall_negative.p_value:.3g}). Paper Table 4: " + ", ".join(f"{m} {t} (p {q})" for m, (t, q) in PAPER_KENDALL.items())
            + f". Verdicts: tau > 0 {verdict(p.kendall.interval, +1)}; negative-only tau > 0 {verdict(p.kendall_negative.interval, +1)}.")
    if c is not None and res.base_irm is not None:
        notes.append(f"Base-model control: the same construction on the base model gives tau {res.base_irm.kendall.tau:.3f} "
                     f"(negative words {res.base_irm.kendall_negative.tau:.3f}); fine-tuned − base {c.difference} "
                     f"(p={c.p_value:.3g}): {verdict(c.difference, +1)} for 'the fine-tune's IRM tracks the reward better "
                     "than the base's'. Most of the overall tau comes from polarity, which the triples' slots give both models.")
    notes.append(f"Decodability ceiling (a ridge regression trained on the VADER values; not an IRM): held-out tau "
                 f"{res.irm.kendall.tau:.3f}, negative words {res.irm.kendall_negative.tau:.3f}.")
    return notes


def _ablation_notes(a: AblationResult) -> list[str]:
    return [f"Removing the {a.n_features} most reward-correlated features changed the reward by {a.ablated_minus_none} "
            f"(p={a.ablated_minus_none_p:.3g}) vs no ablation and by {a.ablated_minus_random} (p={a.ablated_minus_random_p:.3g}) "
            f"vs {a.control}-matched random features: {verdict(a.ablated_minus_random, -1)} for 'reward features carry the "
            f"reward'. Observed drop {a.observed_drop:.3f} ranks among {len(a.draw_drops)} matched draws with p = {a.rank_p:.3g} "
            "(1 + #draws dropping at least as much) / (k + 1). Paper Table 5: "
            + "; ".join(f"{m} {b} → {t}" for m, (b, t) in PAPER_ABLATION.items()) + "."]


def prompt_splits(config: IrmConfig) -> tuple[list[str], list[str], list[str]]:
    total = config.n_train_prompts + config.n_select_prompts + config.n_eval_prompts
    pool = review_openings(total, seed=config.seed) if config.prompts == "generated" else imdb_prefixes(total, seed=config.seed)
    pool = list(dict.fromkeys(pool))
    if len(pool) < total:
        raise ValueError(f"only {len(pool)} distinct prompts for {total} requested.")
    fr = [config.n_train_prompts / total, config.n_select_prompts / total]
    train, select, evaluation = split_prompts(pool[:total], fr + [1 - sum(fr)], seed=config.seed)
    return train, select, evaluation


def model_prompt_splits(config: IrmConfig, tokenizer) -> tuple[list[str], list[str], list[str]]:
    """:func:`prompt_splits` as the model reads them: with its BOS text in front when its tokenizer puts
    BOS first (Gemma 3: without it the model continues with empty or degenerate text). Generation and
    TRL tokenise without special tokens, so the BOS must be in the text; SmolLM2 has none to add."""
    bos = bos_prefix(tokenizer) or ""
    return tuple([bos + p for p in split] for split in prompt_splits(config))


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
        if any(np.isfinite(ft.step_kl)):
            twin = axes[0].twinx()
            twin.plot(range(1, len(ft.step_kl) + 1), ft.step_kl, color="tab:red", marker=".", linewidth=1)
            twin.set_ylabel("KL to base (per token)", color="tab:red")
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
    for r, colour in ((result.base_irm, "tab:gray"), (result.paper_irm, "tab:blue")):
        if r is not None:
            axes[1].scatter(r.vader, r.fit.reconstructed, s=10, alpha=0.6, color=colour,
                            label=f"{r.model}: tau {r.kendall.tau:.3f}")
    axes[1].legend(fontsize=7)
    axes[1].set_xlabel("VADER value")
    axes[1].set_ylabel("IRM value (normalised to [-4, 4])")
    axes[1].set_title("paper's IRM (activation deltas)")
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


def _diagnostics(run: _IrmRun, base, tuned, base_gens, tuned_gens, rewards: tuple[np.ndarray, np.ndarray]) -> FinetuneDiagnostics:
    """Distinct-2, KL to the base, perplexity under the base and sample completions; the guard's verdict."""
    config = run.config
    kl, ppl_tuned = kl_and_base_perplexity(tuned, base, tuned_gens)
    _, ppl_base = kl_and_base_perplexity(base, base, base_gens)
    prompts = run.splits[2]
    bos = bos_prefix(run.tokenizer) or ""
    samples = [{"prompt": p.removeprefix(bos) if bos else p, "base": b.text, "finetuned": t.text}
               for p, b, t in zip(prompts[:config.n_samples], base_gens[::config.samples_per_prompt],
                                  tuned_gens[::config.samples_per_prompt])]
    d = FinetuneDiagnostics(
        reward_base=float(rewards[0].mean()), reward_finetuned=float(rewards[1].mean()),
        reward_clip=float(getattr(run.reward, "clip", float("inf"))),
        distinct2_base=distinct_n([g.text for g in base_gens]), distinct2_finetuned=distinct_n([g.text for g in tuned_gens]),
        kl_to_base=kl, perplexity_base=ppl_base, perplexity_finetuned_under_base=ppl_tuned, samples=samples)
    return check_not_reward_hack(d, GuardConfig(min_distinct2=config.min_distinct2), force=config.force_reward_hack)


def _fine_tune(run: _IrmRun, base_hf, base):
    """Base rewards on held-out prompts, the fine-tune (GRPO, unless ``config.finetuned`` is given), its
    rewards and diagnostics (the reward-hack guard raises here); returns the fine-tuned HF model and
    adapter, the reward shift and the evaluation generations."""
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
    diagnostics = _diagnostics(run, base, tuned, base_eval_gens, tuned_eval_gens, (base_eval, tuned_eval))
    rewards = RewardShift(bootstrap_ci(base_eval, n_boot=config.n_boot, seed=config.seed),
                          bootstrap_ci(tuned_eval, n_boot=config.n_boot, seed=config.seed), diff, p, finetune, diagnostics)
    run.lap("fine-tuned rewards and diagnostics")
    return tuned_hf, tuned, rewards, (base_eval_gens, tuned_eval_gens)


def _dictionaries(run: _IrmRun, adapters: dict, hooks: list[str], corpus: list[str]) -> tuple[DictionarySet, dict, dict, dict]:
    """Small/large SAE pairs per hook and model on ``corpus`` (saved under ``out/saes``), the
    base-vs-fine-tuned MMCS per hook, its floor (base vs a second base SAE of another seed) and the
    per-hook test of the dictionary change against that floor."""
    from dataclasses import replace

    from ...sae import save_sae, train_sae

    config = run.config
    dicts = DictionarySet()
    width = adapters["base"].hook_width(hooks[0])
    sizes = tuple(round(s * width) for s in config.sae_sizes)
    floor, others = {}, {}
    for m, (name, adapter) in enumerate(adapters.items()):
        acts = text_activations(adapter, corpus, hooks)
        for h in hooks:  # every dictionary from its own seed: a shared initialisation would inflate MMCS
            pair = train_dictionary_pair(acts[h], h, sizes, replace(config.sae_config(), seed=config.seed + 2 * m + 10),
                                         name, config.similarity_threshold, hungarian=config.hungarian, progress=config.progress)
            dicts.pairs.append(pair)
            save_sae(pair.large, run.out / "saes" / name / h / "large")
            save_sae(pair.small, run.out / "saes" / name / h / "small")
            if name == "base":
                other = train_sae(acts[h], replace(config.sae_config(), d_sae=sizes[1], seed=config.seed + 99),
                                  hook_name=h, model_name="base-seed2").sae
                floor[h], others[h] = mmcs(pair.large, other), other
    cross = {h: dicts.cross_model_mmcs(h) for h in hooks}
    change = {h: sae_change_vs_floor(dicts.get("base", h).large, dicts.get("finetuned", h).large, others[h],
                                     n_boot=config.n_boot, seed=config.seed) for h in hooks}
    run.lap("SAE pairs")
    return dicts, cross, floor, change


def _shared_latents(config: IrmConfig, dicts: DictionarySet, model: str, hooks) -> tuple[dict | None, str]:
    if config.irm_features == "shared":
        latents = {h: dicts.get(model, h).shared_latents for h in hooks}
        if sum(len(v) for v in latents.values()) >= 2:
            return latents, "shared (high-similarity) latents"
        return None, "all latents (fewer than 2 shared latents)"
    return None, "all latents"


def _implicit_reward_model(run: _IrmRun, adapters: dict, saes: dict, dicts: DictionarySet):
    """The paper's IRM on each model (its own SAEs, its shared latents), the base control and the
    decodability ceiling (on the fine-tuned model)."""
    import torch

    config = run.config
    words = sentiment_words(config.n_positive_words, config.n_negative_words, seed=config.seed)
    triples = build_triples(words, config.templates_per_word, seed=config.seed)
    fits, ceiling = {}, None
    for name, adapter in adapters.items():
        latents, feature_set = _shared_latents(config, dicts, name, saes[name])
        with torch.no_grad():
            deltas = activation_deltas(triples, SAEFeatureReader(adapter, saes[name], latents,
                                                                 prefix=bos_prefix(run.tokenizer) or ""))
        fits[name] = reconstruct_lexicon(deltas, name, alpha=config.irm_alpha, n_folds=config.irm_folds,
                                         n_boot=config.n_boot, seed=config.seed)
        fits[name].feature_set = feature_set
        if name == "finetuned":
            ceiling = _fit_irm(deltas.token_deltas(), config)
            ceiling.feature_set = feature_set
    control = compare_to_base(fits["finetuned"], fits["base"], n_boot=config.n_boot, seed=config.seed)
    run.lap("implicit reward model")
    return fits["finetuned"], fits["base"], control, ceiling


def _feature_ablation(run: _IrmRun, tuned, tuned_saes: dict, sel_gens, explainer: FeatureExplainer):
    """The reward-related features (chosen on the selection completions) removed during generation on
    eval prompts, against random features matched on activation frequency and decoder norm × mean activation."""
    config = run.config
    feats = completion_features(tuned, sel_gens, tuned_saes)
    texts = [g.text for g in sel_gens]
    scores = explainer.relevance(feats, run.reward(texts), texts)
    selected = top_features(scores, feature_index(tuned_saes), config.n_ablate)
    st = latent_statistics(tuned, sel_gens, tuned_saes)
    draws = matched_random_features(selected, st, config.n_random_draws, seed=config.seed)
    ablation = run_ablation(tuned, tuned_saes, selected, run.splits[2], run.reward, run.gen,
                            samples_per_prompt=config.samples_per_prompt, seed=config.seed, n_boot=config.n_boot,
                            random_draws=draws)
    ablation.control = "activation"
    run.lap("ablation")
    return ablation, st


def run_irm(config: IrmConfig | None = None, explainer: FeatureExplainer | None = None, tokenizer=None, base_hf=None,
            reward=None) -> IrmResult:
    """Run the study → :class:`IrmResult`; writes only its artefacts to ``config.out`` (the fine-tuned
    model, the SAEs, the figures). ``result.to_section(out)`` is its ``irm`` report section (the
    ``irm`` command writes summary.json and report.html from it).

    Pass ``base_hf`` (+ ``tokenizer``) to study an already loaded model, ``config.finetuned`` to skip
    fine-tuning, ``explainer`` to choose reward-related features another way, and ``reward``
    (``texts -> rewards``) to replace the VADER reward in fine-tuning, evaluation and feature
    selection (the IRM is scored against the VADER lexicon values). Raises
    :class:`~reward_circuits.studies.irm.diagnostics.RewardHackError` when the fine-tuned model is at the
    reward clip or its completions collapsed, unless ``config.force_reward_hack``.
    """
    from ...models import from_hf
    from ...models.loading import load_hf

    start = time.monotonic()
    config = config or IrmConfig()
    explainer = explainer or CorrelationExplainer()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    if base_hf is None:
        base_hf, tokenizer = load_hf(config.model, device=config.device)
    splits = model_prompt_splits(config, tokenizer)
    gen = GenerationConfig(max_new_tokens=config.max_new_tokens, do_sample=True, temperature=config.temperature,
                           seed=config.seed, batch_size=32, progress=False)
    run = _IrmRun(config, out, reward or VaderReward(), tokenizer, gen, splits, clock=start)
    base = from_hf(base_hf.to(config.device), tokenizer, config.backend, name=config.model)
    tuned_hf, tuned, rewards, eval_gens = _fine_tune(run, base_hf, base)

    divergence = layer_divergence(base_hf, tuned_hf)
    changed = changed_layers(divergence, layer_divergence(base_hf, base_hf),
                             read_lora_targets(config.finetuned) if config.finetuned else rewards.finetune.lora_targets)
    layers = sorted(divergence.top_layers(config.n_layers))
    hooks = [f"blocks.{l}.{config.sae_site}" for l in layers]
    del tuned_hf, base_hf  # the weights are compared: from here on the adapters alone (the caller keeps its own base_hf)

    # SAE corpus: prompts + completions of both models on select and eval prompts, fed to each model
    _, base_sel_gens = run.completions(base, splits[1])
    __, tuned_sel_gens = run.completions(tuned, splits[1])
    base_eval_gens, tuned_eval_gens = eval_gens
    corpus = [(bos_prefix(tokenizer) or "") + tokenizer.decode(g.prompt_ids + g.response_ids, skip_special_tokens=True)
              for g in base_sel_gens + tuned_sel_gens + base_eval_gens + tuned_eval_gens]
    run.lap("selection completions")
    adapters = {"base": base, "finetuned": tuned}
    dicts, cross, floor, sae_change = _dictionaries(run, adapters, hooks, corpus)

    saes = {m: {h: dicts.get(m, h).large for h in hooks} for m in adapters}
    paper, base_irm, control, ceiling = _implicit_reward_model(run, {"finetuned": tuned, "base": base}, saes, dicts)
    ablation, st = _feature_ablation(run, tuned, saes["finetuned"], tuned_sel_gens, explainer)

    result = IrmResult(config, rewards, divergence, layers, dicts, cross, ceiling, ablation, paper_irm=paper,
                       base_irm=base_irm, base_control=control, mmcs_floor=floor, latent_stats=st, seconds=run.seconds,
                       changed=changed, sae_change=sae_change)
    result.figures = _figures(result, out)
    return result
