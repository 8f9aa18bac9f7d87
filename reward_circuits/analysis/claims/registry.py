"""Every claim of the four papers, and our own, declared once.

A :class:`Claim` says what a paper asserts (statement, where in the paper, its figure as the paper
or our concept pages quote it), which way (direction against ``null``), what is estimated, over
which independent unit, against which control, in which multiplicity family (one per paper: Holm
runs within a family per run), and which claim is its premise. ``paper_effect`` is the paper's
effect on our estimand's scale, only where the paper gives one (it sizes the ``n`` that would
detect it); ``paper_figure`` says "not quoted" where our docs quote no number: nothing is filled
in from memory.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

Direction = Literal["greater", "less", "two-sided"]
FAMILIES = ("sparse_reward", "sae_td", "irm", "yfpo", "ours")
NOT_QUOTED = "not quoted in our docs"


@dataclass(frozen=True)
class Claim:
    """One claim: what the paper says, and how a run tests it."""

    id: str
    paper: str
    where: str  # table / section of the paper
    statement: str
    paper_figure: str  # the paper's number or words; NOT_QUOTED where our docs quote none
    direction: Direction  # of ``estimand − null`` under the claim
    estimand: str
    unit: str  # the independent unit resampled or permuted
    control: str
    family: str
    premise: tuple[str, ...] = ()  # ids of the claims that must reproduce before this one is interpreted
    null: float = 0.0
    paper_effect: float | None = None  # on the estimand's scale, when the paper gives it
    # as another claim's premise: met only when it reproduces, or met unless it is contradicted
    as_premise: Literal["reproduces", "not contradicted"] = "reproduces"

    def __post_init__(self):
        if self.direction not in ("greater", "less", "two-sided"):
            raise ValueError(f"claim {self.id}: direction must be 'greater', 'less' or 'two-sided', got {self.direction!r}.")
        if isinstance(self.premise, str):
            object.__setattr__(self, "premise", (self.premise,))
        if self.family not in FAMILIES:
            raise ValueError(f"claim {self.id}: family must be one of {FAMILIES}, got {self.family!r}.")

    def to_dict(self) -> dict:
        return asdict(self)


SRS = "Sparse Reward Subsystem (arXiv 2602.00986)"
SAE = "Demircan et al., SAEs reveal TD learning (arXiv 2410.01280)"
IRM = "Marks et al., Interpreting Learned Feedback Patterns (arXiv 2310.08164)"
YFPO = "YFPO (arXiv 2605.11906)"
OURS = "reward_circuits (ours)"
VALUE_PREMISE = ("srs.value_probe_beats_surface", "srs.value_probe_floor")  # neurons of a probe below either are not read


def _srs(id: str, *fields: str, premise: str | tuple[str, ...] = VALUE_PREMISE, **kw) -> Claim:
    """A Sparse Reward Subsystem claim: ``fields`` are where … control, in :class:`Claim` order."""
    return Claim(f"srs.{id}", SRS, *fields, family="sparse_reward", premise=premise, **kw)


SPARSE_REWARD = (
    _srs("value_probe_auc", "§2", "the value probe's V(s0) ranks correct above incorrect answers (held-out AUC > 0.5)",
         NOT_QUOTED, "greater", "held-out AUC of V(s0)", "prompts", "chance (0.5)", premise=(), null=0.5),
    _srs("value_probe_beats_surface", "§2 (our premise)", "the probe beats the bag-of-tokens surface baseline on the same rollouts",
         "the paper has no surface baseline", "greater", "AUC(probe) − AUC(bag of tokens)", "prompts",
         "bag-of-tokens probe", premise=()),
    _srs("value_probe_floor", "§2 (our premise)", "the TD probe reaches its logistic-regression floor (as a premise: is not significantly below it)",
         "the paper has no floor", "greater", "AUC(TD probe) − AUC(logistic floor)", "prompts", "logistic floor", premise=(),
         as_premise="not contradicted"),
    _srs("sparsity_vs_unpruned", "§2, pruning curve", "the 99%-pruned probe keeps the unpruned AUC",
         "AUC 'barely drops' up to 99% pruning (no number quoted)", "greater",
         "AUC(99% pruned) − AUC(unpruned) (non-inferiority: > −0.05)", "prompts", "the unpruned probe", null=-0.05),
    _srs("sparsity_vs_random_masks", "§2, pruning curve", "pruning by W1 norm keeps more AUC than random masks of the same size",
         "random pruning falls to chance (no number quoted)", "greater", "AUC(99% pruned) − AUC(random 99% mask)",
         "random masks × prompts", "random masks of the same size"),
    _srs("ablation_vs_random", "§2.4", "zero-ablating the value neurons lowers accuracy more than random sets of the same size",
         "accuracy 75% → 20% with the top 1% zero-ablated; 1% random 'barely matters'", "less",
         "accuracy(value set ablated) − accuracy(random set ablated)", "random draws × examples",
         "uniform and magnitude-matched random sets", paper_effect=-0.55),
    _srs("dose_response", "§2.4", "ablating a larger value-ranked share lowers accuracy more than the same share of random dims",
         NOT_QUOTED, "less", "accuracy(value share ablated) − accuracy(random share ablated), per dose",
         "random draws × examples", "random sets of each dose"),
    _srs("transfer", "§2.4", "value neurons of one task matter on another task more than random sets",
         NOT_QUOTED, "less", "accuracy(transferred set ablated) − accuracy(random set ablated)", "random draws × examples",
         "random sets"),
    _srs("td_vs_final_reward_neurons", "§2 (our comparison)", "TD-probe neurons matter more than final-reward-probe neurons",
         NOT_QUOTED, "less", "accuracy(TD set ablated) − accuracy(final-reward set ablated)", "examples", "final-reward-probe set"),
    _srs("cross_task_iou", "§2, cross-task overlap", "value neurons of two tasks overlap more than random sets",
         "'high IoU' across tasks (no number quoted)", "greater", "IoU(task A, task B) − IoU of random sets",
         "probe seeds", "random sets of the same sizes"),
    _srs("dopamine_positive_rpe", "§4", "dopamine candidates correlate POSITIVELY with the TD error, more than random dim sets",
         "case studies (no number quoted)", "greater", "held-out signed Pearson(act, δ) of the set − random sets",
         "random sets (rank) / rollouts", "uniform and magnitude-matched random 10-dim sets"),
    _srs("dopamine_survives_length", "§4 (our control)", "the dopamine correlation survives the length control",
         "the paper has no length control", "greater", "partial Pearson(act, δ | position, tokens to end)", "rollouts",
         "position and tokens-to-end partialled out", premise="srs.dopamine_positive_rpe"),
    _srs("dopamine_causal_trace", "§4 (our check)", "ablating the dopamine set moves the TD-error trace more than random sets",
         NOT_QUOTED, "greater", "mean |Δδ| (dopamine set) − mean |Δδ| (random sets)", "random draws × rollouts",
         "random sets; a probe that does not read the ablated hook", premise="srs.dopamine_positive_rpe"),
    _srs("value_survives_length", "§2 (our control)", "V(s_t) tracks the reward after the length control",
         "the paper has no length control", "greater", "partial Pearson(V(s_t), reward | position, tokens to end)",
         "rollouts", "position and tokens-to-end partialled out", premise=()),
    _srs("confidence_v_s0", "§3, confidence", "V(s0) predicts correctness (Spearman with reward > 0)",
         "Spearman 0.47", "greater", "Spearman(V(s0), reward)", "prompts (disjoint from the probe's)", "0",
         premise=(), paper_effect=0.47),
    _srs("confidence_vs_next_token", "§3, confidence", "V(s0) predicts correctness better than next-token probability",
         NOT_QUOTED, "greater", "AUC(V(s0)) − AUC(next-token probability), paired", "prompts", "next-token probability", premise=()),
    _srs("confidence_vs_verbalized", "§3, confidence", "V(s0) predicts correctness better than the model's verbalized confidence",
         NOT_QUOTED, "greater", "AUC(V(s0)) − AUC(verbalized confidence), paired", "prompts", "verbalized confidence",
         premise=()),
    _srs("steering_vs_random", "§2.4, steering", "scaling the value neurons moves accuracy more than scaling a matched random set",
         NOT_QUOTED, "greater", "|accuracy shift| (value set scaled) − |accuracy shift| (matched random set scaled), "
         "from the unsteered baseline, per factor", "random draws × examples", "magnitude-matched random sets"),
)

SAE_TD = (
    Claim("sae_td.learns_in_context", SAE, "§3", "the model learns the task in context (reward above a random policy)",
          "Llama 3 70B learns the two-step, grid and graph tasks in context (no number quoted)", "greater",
          "mean reward(model) − mean reward(random policy)", "experiments", "random policy", "sae_td"),
    Claim("sae_td.latent_td_vs_random", SAE, "§4", "SAE latents correlate with Q-learning TD errors more than random latents",
          "latents correlate with TD errors more strongly than any raw dimension (no number quoted)", "greater",
          "|Pearson| of the best TD latent − random latents", "experiments", "random latents / shuffled-episode SAE",
          "sae_td", "sae_td.learns_in_context"),
    Claim("sae_td.latent_td_vs_raw", SAE, "§4", "the best TD latent beats the best raw residual dimension",
          NOT_QUOTED, "greater", "|r| best latent − |r| best raw dim (held out)", "experiments", "raw residual dims",
          "sae_td", "sae_td.learns_in_context"),
    Claim("sae_td.latent_q_values", SAE, "§4", "SAE latents correlate with Q-values more than random latents",
          NOT_QUOTED, "greater", "|Pearson| of the best Q latent − random latents", "experiments", "random latents",
          "sae_td", "sae_td.learns_in_context"),
    Claim("sae_td.ablation", SAE, "§5", "removing the TD latents changes choices and reward more than removing random latents",
          "changes behaviour and the refitted learning rate (no number quoted)", "less",
          "reward(TD latents removed) − reward(random latents removed)", "experiments", "as many random latents",
          "sae_td", "sae_td.learns_in_context"),
)

IRM_CLAIMS = (
    Claim("irm.finetune_raises_reward", IRM, "§4", "RL fine-tuning raises the known (VADER) reward",
          "mean reward base → fine-tuned 0.26 → 2.07 (Pythia-70m), −0.27 → 1.95 (Pythia-160m), 0.68 → 1.43 (GPT-Neo-125m)",
          "greater", "mean reward(fine-tuned) − mean reward(base)", "prompts", "the base model", "irm"),
    Claim("irm.kendall_tau", IRM, "§5", "the IRM ranks tokens like the true reward (Kendall tau > 0)",
          "tau 0.042 (p 0.26) / 0.093 (p 0.014) / 0.023 (p 0.48) for Pythia-70m / 160m / GPT-Neo-125m", "greater",
          "Kendall tau(IRM token value, lexicon value), paired", "tokens", "0", "irm", "irm.finetune_raises_reward"),
    Claim("irm.finetuned_tau_above_base", IRM, "§5", "the fine-tuned model's IRM tau exceeds the base model's",
          NOT_QUOTED, "greater", "tau(fine-tuned) − tau(base)", "tokens", "the base model's IRM", "irm",
          "irm.finetune_raises_reward"),
    Claim("irm.negative_tau", IRM, "§5", "tau > 0 on the negative-sentiment tokens alone", NOT_QUOTED, "greater",
          "Kendall tau on negative tokens", "tokens", "0", "irm", "irm.finetune_raises_reward"),
    Claim("irm.ablation_vs_matched", IRM, "§5 (our control)", "ablating the reward features lowers reward more than matched features",
          "the paper's ablation had no control", "less", "reward(features ablated) − reward(random features ablated)",
          "random draws × prompts", "as many random features", "irm", "irm.finetune_raises_reward"),
)

YFPO_CLAIMS = (
    Claim("yfpo.beats_dpo", YFPO, "main table", "DPO + neuron margin reward reaches higher held-out accuracy than plain DPO",
          NOT_QUOTED, "greater", "accuracy(DPO + neuron reward) − accuracy(DPO)", "seeds × prompts", "plain DPO", "yfpo"),
    Claim("yfpo.value_neurons_beat_random", YFPO, "(our control)", "value-neuron reward beats a random-neuron reward",
          "the paper has no random-neuron control", "greater", "accuracy(value neurons) − accuracy(random neurons)",
          "seeds × prompts", "random neurons", "yfpo"),
)

OURS_CLAIMS = (
    Claim("ours.value_guided_decoding", OURS, "applications", "value-guided best-of-N beats random choice of N samples",
          "—", "greater", "accuracy(value-guided) − accuracy(random pick)", "prompts", "random pick of the N samples", "ours"),
    Claim("ours.routing", OURS, "applications", "routing by V(s0) beats routing at random at the same budget",
          "—", "greater", "accuracy(routed by V) − accuracy(random routing)", "prompts", "random routing", "ours"),
    Claim("ours.error_detection", OURS, "applications", "flagged answers are wrong more often than the base rate",
          "—", "greater", "precision − base rate of errors", "prompts", "the base rate", "ours"),
    Claim("ours.calibration", OURS, "applications", "the ValueScorer's calibration error is below an uncalibrated constant's",
          "—", "less", "ECE(value scorer) − ECE(constant base rate)", "prompts", "constant score at the base rate", "ours"),
)

REGISTRY: dict[str, Claim] = {c.id: c for c in SPARSE_REWARD + SAE_TD + IRM_CLAIMS + YFPO_CLAIMS + OURS_CLAIMS}
