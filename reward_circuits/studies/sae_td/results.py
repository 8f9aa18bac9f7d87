"""Typed results of the SAE × TD study and their report section ``sae_td`` (summary + tables + figure)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ...analysis.stats import Interval, verdict
from ...io import nan_to_none
from ...report import Section, Table, new_figure, save_figure

__all__ = ["InterventionResult", "LayerResult", "SAETDResult", "TargetCorrelation", "TaskResult"]


def _iv(x: Interval | None) -> dict | None:
    return None if x is None else x.to_dict()


@dataclass
class TargetCorrelation:
    """Held-out |r| with one target (TD error or Q-value) of the best single feature of each kind."""

    target: str
    sae_latent: int
    sae: Interval
    raw_dim: int
    raw: Interval
    null: Interval | None  # best latent of the SAE trained on shuffled-episode activations
    probe: Interval  # ridge probe on all raw dimensions
    sae_minus_raw: Interval
    sae_minus_raw_p: float
    sae_minus_null: Interval | None
    sae_minus_null_p: float | None
    sae_in_sample_max: float  # max |r| over all latents on the selection events (optimistic)
    raw_in_sample_max: float
    sae_given_reward: Interval | None = None  # held-out |partial r| of the chosen latent given the step's reward
    raw_given_reward: Interval | None = None
    probe_given_reward: Interval | None = None

    def to_dict(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if not isinstance(getattr(self, k), Interval)}
        for k in ("sae", "raw", "null", "probe", "sae_minus_raw", "sae_minus_null", "sae_given_reward",
                  "raw_given_reward", "probe_given_reward"):
            d[k] = _iv(getattr(self, k))
        return d


@dataclass
class LayerResult:
    layer: int
    hook: str
    sae_quality: dict  # SAEQuality.to_dict() on held-out experiments' tokens
    null_sae_quality: dict | None
    td_error: TargetCorrelation
    q_value: TargetCorrelation

    def to_dict(self) -> dict:
        return {"layer": self.layer, "hook": self.hook, "sae_quality": self.sae_quality,
                "null_sae_quality": self.null_sae_quality, "td_error": self.td_error.to_dict(),
                "q_value": self.q_value.to_dict()}


@dataclass
class InterventionResult:
    """Removing the top TD-correlated latents vs as many random latents (same seeds, paired by experiment)."""

    layer: int
    top_latents: list[int]
    random_latents: list[int]
    logodds_abs_change_top: Interval  # mean |Δ log-odds| of the baseline's choice, identical-context decisions
    logodds_abs_change_random: Interval
    logodds_top_minus_random: Interval
    logodds_p: float
    n_decisions: int
    reward_baseline: Interval
    reward_top: Interval
    reward_random: Interval
    reward_top_minus_random: Interval | None
    reward_p: float | None
    alpha_baseline: float
    alpha_top: float | None
    alpha_random: float | None

    def to_dict(self) -> dict:
        d = {}
        for k, v in asdict(self).items():
            val = getattr(self, k)
            d[k] = _iv(val) if isinstance(val, Interval) else v
        return d


@dataclass
class TaskResult:
    task: str
    n_experiments: int
    n_model_episodes: int
    n_events: int
    model_reward: Interval
    random_reward: Interval
    model_minus_random: Interval
    model_minus_random_p: float
    paper_alpha: float
    alpha_fit: dict
    layers: list[LayerResult]
    intervention: InterventionResult | None
    wall_s: float = float("nan")
    notes: list[str] = field(default_factory=list)

    def best_layer(self) -> LayerResult:
        return self.intervention_layer() or max(self.layers, key=lambda lr: lr.td_error.sae.estimate)

    def intervention_layer(self) -> LayerResult | None:
        if self.intervention is None:
            return None
        return next((lr for lr in self.layers if lr.layer == self.intervention.layer), None)

    def verdicts(self) -> dict:
        out = {"learns_in_context (model reward > random policy)": verdict(self.model_minus_random, +1)}
        lr = self.best_layer()
        out[f"TD latent beats best raw dim (layer {lr.layer})"] = verdict(lr.td_error.sae_minus_raw, +1)
        if lr.td_error.sae_minus_null is not None:
            out[f"TD latent beats shuffled-episode SAE null (layer {lr.layer})"] = verdict(lr.td_error.sae_minus_null, +1)
        if self.intervention is not None:
            out["removing TD latents moves choices more than random latents"] = verdict(
                self.intervention.logodds_top_minus_random, +1)
            if self.intervention.reward_top_minus_random is not None:
                out["removing TD latents lowers reward more than random latents"] = verdict(
                    self.intervention.reward_top_minus_random, -1)
        return out

    def to_dict(self) -> dict:
        return nan_to_none({
            "task": self.task, "n_experiments": self.n_experiments, "n_model_episodes": self.n_model_episodes,
            "n_events": self.n_events, "model_reward": _iv(self.model_reward), "random_reward": _iv(self.random_reward),
            "model_minus_random": _iv(self.model_minus_random), "model_minus_random_p": self.model_minus_random_p,
            "paper_alpha": self.paper_alpha, "alpha_fit": self.alpha_fit,
            "layers": [lr.to_dict() for lr in self.layers],
            "intervention": None if self.intervention is None else self.intervention.to_dict(),
            "verdicts": self.verdicts(), "wall_s": self.wall_s, "notes": self.notes,
        })


@dataclass
class SAETDResult:
    config: dict
    model: str
    tasks: list[TaskResult]
    wall_s: float = float("nan")

    def figure(self, out_dir: str | os.PathLike) -> str:
        """|held-out r| by layer: best SAE latent, best raw dim, shuffled-episode null, ridge probe."""
        n = len(self.tasks)
        fig, axes = new_figure(4.2 * n, 6.0, nrows=2, ncols=n)
        axes = np.asarray(axes).reshape(2, n)
        styles = [("sae", "SAE latent", "C0", "o"), ("raw", "raw dim", "C1", "s"), ("null", "shuffled-episode SAE", "C7", "x"),
                  ("probe", "ridge probe", "C2", "^")]
        for j, task in enumerate(self.tasks):
            for i, target in enumerate(("td_error", "q_value")):
                ax = axes[i, j]
                layers = [lr.layer for lr in task.layers]
                for k, (key, label, color, marker) in enumerate(styles):
                    ivs = [getattr(getattr(lr, target), key) for lr in task.layers]
                    if any(v is None for v in ivs):
                        continue
                    est = np.array([v.estimate for v in ivs])
                    err = np.array([[v.estimate - v.low for v in ivs], [v.high - v.estimate for v in ivs]])
                    ax.errorbar(np.array(layers) + 0.25 * (k - 1.5), est, yerr=np.clip(err, 0, None), label=label,
                                color=color, marker=marker, capsize=2, lw=1)
                ax.set_ylim(0, 1)
                ax.set_xlabel("layer")
                ax.set_ylabel(f"held-out |r| with {'TD error' if target == 'td_error' else 'Q(s,a)'}")
                ax.set_title(f"{task.task}")
                if i == 0 and j == 0:
                    ax.legend(fontsize=7)
        fig.tight_layout()
        return save_figure(fig, Path(out_dir) / "sae_td_corr_by_layer.png")

    def to_dict(self) -> dict:
        """The ``sae_td`` section of ``summary.json``."""
        return nan_to_none({"model": self.model, "config": self.config, "wall_s": self.wall_s,
                            "tasks": {t.task: t.to_dict() for t in self.tasks}})

    def to_section(self, out_dir: str | os.PathLike | None = None) -> Section:
        """The ``sae_td`` report section; with ``out_dir`` its figure is drawn there."""
        return self.section(out_dir)

    def section(self, out_dir: str | os.PathLike | None = None) -> Section:
        figures = [self.figure(out_dir)] if out_dir is not None and self.tasks else []
        summary = self.to_dict()
        behaviour = Table("Model vs random policy (mean reward per model-policy episode, per experiment)",
                          ["task", "n exp", "model", "random", "model − random (p)", "fitted α (paper α)", "fitted β"],
                          [[t.task, t.n_experiments, str(t.model_reward), str(t.random_reward),
                            f"{t.model_minus_random} (p={t.model_minus_random_p:.3g})",
                            f"{t.alpha_fit.get('alpha', float('nan')):.3g} ({t.paper_alpha})",
                            f"{t.alpha_fit.get('beta', float('nan')):.3g}"] for t in self.tasks])
        corr_rows = []
        for t in self.tasks:
            for lr in t.layers:
                td = lr.td_error
                corr_rows.append([t.task, lr.layer, f"{lr.sae_quality['explained_variance']:.3f}", f"{lr.sae_quality['l0']:.1f}",
                                  f"{lr.sae_quality['dead_fraction']:.2f}", str(td.sae), str(td.raw),
                                  "–" if td.null is None else str(td.null), str(td.probe), _iv_str(td.sae_given_reward),
                                  _iv_str(td.raw_given_reward), _iv_str(td.probe_given_reward), str(lr.q_value.sae)])
        corr = Table("Held-out |r| with the Q-learning TD error (feature chosen on other experiments)",
                     ["task", "layer", "SAE EV", "L0", "dead", "SAE latent", "raw dim", "shuffled null", "ridge probe",
                      "SAE latent | reward", "raw dim | reward", "probe | reward", "SAE latent vs Q"], corr_rows)
        int_rows = []
        for t in self.tasks:
            iv = t.intervention
            if iv is None:
                continue
            int_rows.append([t.task, iv.layer, len(iv.top_latents), str(iv.logodds_abs_change_top),
                             str(iv.logodds_abs_change_random), f"{iv.logodds_top_minus_random} (p={iv.logodds_p:.3g})",
                             str(iv.reward_baseline), str(iv.reward_top), str(iv.reward_random),
                             "–" if iv.reward_top_minus_random is None else f"{iv.reward_top_minus_random} (p={iv.reward_p:.3g})",
                             f"{iv.alpha_baseline:.3g} / {_f(iv.alpha_top)} / {_f(iv.alpha_random)}"])
        inter = Table("Removing the top TD latents vs as many random latents matched on mean contribution (paired by experiment)",
                      ["task", "layer", "k", "|Δ log-odds| top", "|Δ log-odds| random", "top − random (p)",
                       "reward base", "reward top", "reward random", "top − random reward (p)", "α base / top / random"],
                      int_rows)
        verdicts = Table("Interval readings of each task (unadjusted: the Claims section at the top holds the verdicts)",
                         ["task", "statement", "interval reading (unadjusted; the verdict is in the Claims section)"],
                         [[t.task, claim, v] for t in self.tasks for claim, v in t.verdicts().items()])
        notes = [
            (
                "Events: every step of every experiment; TD error δ_t = r_t + γ·max Q(s_{t+1}) − Q(s_t, a_t) of tabular "
                "Q-learning (γ = 0.99, the paper's α) read at the last token of the text revealing the outcome; Q(s_t, a_t) "
                "read at the action token."
            ),
            (
                "'| reward' columns: partial |r| given the step's reward. At an outcome token the TD error is mostly the "
                "reward just printed (δ = r − Q(s, a) when an episode ends), so a feature that only reads the reward token "
                "tracks δ; only the partial correlation says whether it carries the prediction error beyond the reward."
            ),
            (
                "Features are chosen (largest |r|) on the first half of the experiments and scored on the other half; "
                "intervals are percentile bootstraps that resample whole held-out experiments (events within an experiment "
                "are not independent), so n counts experiments; with few held-out experiments the intervals are rough."
            ),
            (
                "SAEs are trained on every token of the selection experiments; quality is measured on held-out tokens. The "
                "null SAE is trained on activations of the same episodes re-read in shuffled order, and scored against the "
                "TD errors of the original order."
            ),
            (
                "Log-odds changes compare the same decision under intervention and baseline, on decisions whose context is "
                "still identical to the baseline run's (the random-policy episodes and every choice before the first "
                "diverging one); rewards and refitted α come from closed-loop play under the intervention."
            ),
        ]
        for t in self.tasks:
            notes.extend(f"{t.task}: {n}" for n in t.notes)
        return Section("sae_td", "SAE view of TD learning (Demircan et al., ICLR 2025)", summary,
                       [behaviour, corr, inter, verdicts], figures, notes)


def _iv_str(x: Interval | None) -> str:
    return "–" if x is None else str(x)


def _f(x: float | None) -> str:
    return "–" if x is None else f"{x:.3g}"
