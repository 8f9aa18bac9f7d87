"""The dopamine stage: rank dopamine neurons on one split, test them quantitatively on the other.

``run_dopamine_stage`` turns a value probe's traces into TD errors (see :mod:`reward_circuits.dopamine`
for the exact conventions), ranks the dimensions of one hook with the paper's case-study criterion
on the ranking split's surprise rollouts, and measures the top ``k`` on held-out rollouts against
random dimensions and value neurons. It returns a :class:`~reward_circuits.report.Section` (key
``"dopamine"``), writes two figures and the chosen :class:`~reward_circuits.neurons.NeuronSet`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import torch
from jaxtyping import Float

from ...analysis.dopamine import dopamine_neurons, dopamine_score_details, surprise_sets
from ...analysis.controls import activation_magnitudes
from ...analysis.dopamine_metrics import dopamine_metrics
from ...analysis.td import td_errors
from ...neurons import NeuronSet
from ...analysis.splits import distinct_groups_per_reward, grouped_stratified_split
from ...analysis.cross_fitting import cross_fitted_value_traces
from ...analysis.probes import ValueProbe
from ...data.protocol import Store
from ...io import nan_to_none
from ...models import layer_of
from ...report import Section, Table

from .dopamine_causal import run_dopamine_causal_check  # noqa: F401  (re-exported: the stage's causal check)
from .dopamine_figures import DISTRIBUTION_FIGURE, TRACE_FIGURE, distribution_figure, pick_example, trace_figure


def _probe_gamma(probe: Any) -> float:
    """The discount the probe was trained with (``probe.cfg.gamma``, else ``probe.gamma``)."""
    for owner in (getattr(probe, "cfg", None), probe):
        gamma = getattr(owner, "gamma", None)
        if gamma is not None:
            return float(gamma)
    raise ValueError("the value probe exposes no discount: expected probe.cfg.gamma (or probe.gamma).")


def _as_trace(v: Any) -> Float[np.ndarray, " T_plus_1"]:
    if isinstance(v, torch.Tensor):
        v = v.detach().to("cpu", torch.float64).numpy()
    return np.asarray(v, dtype=np.float64).reshape(-1)


def _safe_name(hook: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", hook)


def _empty_summary(hook: str) -> dict:
    """Every summary key the stage promises, with null metrics."""
    return {
        "status": None,
        "hook": hook,
        "value_hook": None,
        "values": None,
        "value_from_same_hook": None,
        "gamma": None,
        "top_neurons": [],
        "top_scores": [],
        "corr_with_td_error": {"candidates": None, "candidates_spearman": None, "candidates_abs": None,
                               "random": None, "random_std": None, "random_abs": None, "random_abs_std": None,
                               "random_spearman": None, "value_neurons": None, "value_neurons_spearman": None,
                               "value_neurons_abs": None, "candidates_partial_given_value": None,
                               "random_partial_given_value": None, "value_neurons_partial_given_value": None},
        "corr_with_value": {"candidates": None, "random": None, "random_std": None, "value_neurons": None},
        "auc_surprise": {"candidates": None, "random": None, "random_std": None, "value_neurons": None},
        "p_value": None,
        "permutation": None,
        "candidates_z_vs_random": None,
        "candidate_rank_by_test_pearson": None,
        "n_positive_surprise": 0,
        "n_negative_surprise": 0,
        "n_positive_surprise_test": 0,
        "n_negative_surprise_test": 0,
        "n_positive_events_test": 0,
        "n_negative_events_test": 0,
        "n_train": 0,
        "n_test": 0,
        "surprise_thresholds": None,
        "window": None,
        "k": None,
        "neurons_file": None,
        "value_neurons": None,
        "metrics": None,
        "matched_null": None,
        "massive_activations": None,
        "massive_in_dopamine_set": None,
        "verdicts": None,
    }


def _fmt_pm(mean: float | None, std: float | None) -> str:
    if mean is None or not np.isfinite(mean):
        return "–"
    return f"{mean:.3f} ± {std:.3f}" if std is not None and np.isfinite(std) else f"{mean:.3f}"


CLAIM_UNIFORM = "dopamine candidates track δ more than uniform random dims of the hook (held-out |Pearson|)"
CLAIM_MATCHED = "dopamine candidates track δ more than magnitude-matched random dims (held-out |Pearson|)"


def _matched_null_summary(m, metrics) -> dict:
    """Summary keys of the magnitude-matched null (``m``: a MatchedNull or None) and both verdicts."""
    verdicts = {CLAIM_UNIFORM: metrics.verdict}
    if m is None:
        return {"verdicts": verdicts}
    verdicts[CLAIM_MATCHED] = m.verdict
    iv = m.abs_corr_vs_matched
    return {
        "matched_null": {"n_draws": m.n_draws, "set_size": m.set_size, "p_value": m.p_abs_vs_matched,
                         "mean_abs_pearson_td": m.mean_abs_pearson_td, "std_abs_pearson_td": m.std_abs_pearson_td,
                         "abs_corr_vs_matched_ci": iv.to_dict() if iv else None, "verdict": m.verdict,
                         "candidate_strata": m.candidate_strata, "draws_share_candidate_dims": m.lent_own_dims},
        "massive_activations": m.massive.to_dict(),
        "massive_in_dopamine_set": m.massive_in_candidates,
        "verdicts": verdicts,
    }


def _matched_null_notes(m) -> list[str]:
    if m is None:
        return ["Magnitude-matched random dims were not drawn (matched_controls=False)."]
    iv = m.abs_corr_vs_matched
    out = [f"Massive-activation dims of {m.massive.hook} (> {m.massive.factor:g}x median |act|): {m.massive.dims[:10] or 'none'}; "
           f"in the dopamine set: {m.massive_in_candidates or 'none'}."]
    if iv is not None:
        out.append(f"Claim '{CLAIM_MATCHED}': candidates minus {m.n_draws} magnitude-matched draws (each candidate replaced "
                   f"by a dim of its magnitude decile, or of the massive stratum) = {iv.estimate:+.3f} [{iv.low:+.3f}, "
                   f"{iv.high:+.3f}] (95% bootstrap over {iv.n} held-out rollouts); draw-share p = {m.p_abs_vs_matched:.3g}: "
                   f"{m.verdict}." + (" Some strata had too few other dims, so the draws share candidate dims."
                                      if m.lent_own_dims else ""))
    return out


@dataclass
class DopamineStageConfig:
    """Settings of the dopamine stage (see :func:`run_dopamine_stage`)."""

    test_fraction: float = 0.5
    k: int = 10
    seed: int = 0
    low_q: float = 0.3
    high_q: float = 0.7
    window: int = 2
    min_surprise: int = 3
    n_permutations: int = 1000
    n_random_draws: int = 1000
    random_pool_size: int = 256
    permutation: Literal["within_rollout", "circular_shift"] = "within_rollout"
    cross_fit_folds: int = 5
    matched_controls: bool = True  # also compare with magnitude-matched random dims (mean |act| strata)
    massive_factor: float = 10.0  # massive-activation outlier: mean |activation| > factor x the hook's median
    # the hook whose value probe gives V (hence δ); None: the ranked hook itself. Another layer's probe
    # keeps the dims the probe weights from correlating with δ by construction
    value_hook: str | None = None

    def __post_init__(self):
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}.")
        if not 0 < self.low_q < self.high_q < 1:
            raise ValueError(f"need 0 < low_q < high_q < 1, got low_q={self.low_q}, high_q={self.high_q}.")
        if self.k < 1 or self.window < 0 or self.min_surprise < 1:
            raise ValueError("k and min_surprise must be >= 1 and window >= 0.")
        if self.permutation not in ("within_rollout", "circular_shift"):
            raise ValueError(f"permutation must be 'within_rollout' or 'circular_shift', got {self.permutation!r}.")
        if self.cross_fit_folds < 0 or self.cross_fit_folds == 1:
            raise ValueError("cross_fit_folds must be 0 (no cross-fitting) or >= 2.")


@dataclass
class DopamineStageResult:
    """The dopamine section and the top dopamine neurons (None when too few surprises to rank)."""

    section: Section
    top_neurons: NeuronSet | None
    magnitudes: np.ndarray | None = None  # mean |activation| per dim of the hook (ranking split): matched controls

    def __repr__(self) -> str:
        return f"DopamineStageResult(top_neurons={self.top_neurons!r}, section={self.section.key!r})"

    def to_sections(self) -> list[Section]:
        return [self.section]


def run_dopamine_stage(
    store: Store,
    probe: "ValueProbe | Any",
    hook: str,
    out_dir: str | os.PathLike,
    *,
    value_neurons: NeuronSet | None = None,
    config: DopamineStageConfig | None = None,
    token_strings: list[list[str]] | None = None,
    prompt_groups: Sequence | None = None,
) -> DopamineStageResult:
    """Find dopamine neurons at ``hook`` and test them on held-out rollouts.

    Steps: ``store.split(test_fraction, seed)`` (stratified by reward) → ``V(s_0..s_T)`` of every rollout
    from ``probe.value_traces(store, config.value_hook or hook, indices)`` → arrival-aligned TD errors with
    ``γ = probe.cfg.gamma`` → surprise sets on the ranking split (quantiles ``low_q``/``high_q`` of
    its ``V(s_0)``; the same thresholds define the held-out sets) → paper ranking
    (:func:`~reward_circuits.dopamine.dopamine_scores`, ``window``) → top ``k`` → held-out metrics
    (:func:`~reward_circuits.dopamine.dopamine_metrics`).

    ``prompt_groups[i]`` (optional, e.g. rollout ``i``'s prompt token ids) keeps rollouts of the same
    prompt on one side of the ranking/held-out split, so repeated prompts cannot leak across it.

    ``token_strings[i]`` (optional, indexed by store rollout) labels rollout ``i``'s response tokens
    (length T, or T+1 including s_0); otherwise ``store.records[i].meta["response_tokens"]`` is used
    when present. With fewer than ``min_surprise`` positive or negative surprise rollouts in the
    ranking split the Section reports the counts, explains why, and leaves every metric null.

    ``cross_fit_folds`` > 0 (with a :class:`~reward_circuits.probes.ValueProbe`): the values are
    cross-fitted (:func:`~reward_circuits.probes.cross_fitted_value_traces`, the probe's config
    refitted on the other folds), so no rollout's surprise or TD errors come from a probe that
    trained on it; 0 uses ``probe``'s own values on every rollout.
    """
    c = config or DopamineStageConfig()
    run = _DopamineRun(store=store, probe=probe, hook=hook, out_dir=Path(out_dir), value_neurons=value_neurons, c=c,
                       token_strings=token_strings, value_hook=c.value_hook or hook, prompt_groups=prompt_groups,
                       summary=_empty_summary(hook))
    section = _dopamine_section(run)
    top = section.summary.get("top_neurons") or []
    neurons = (NeuronSet(hook, list(top), store.d(hook), kind="dopamine", layer=layer_of(hook),
                         provenance={"model": getattr(store, "model", None)}) if top else None)
    return DopamineStageResult(section, neurons, run.magnitudes)


@dataclass
class _DopamineRun:
    """One run of the stage: its inputs, and the summary and notes its steps fill in."""

    store: Store
    probe: Any
    hook: str
    out_dir: Path
    value_neurons: NeuronSet | None
    c: DopamineStageConfig
    token_strings: list[list[str]] | None
    value_hook: str  # the hook the probe reads V from (default: ``hook``)
    prompt_groups: Sequence | None
    summary: dict
    notes: list[str] = field(default_factory=list)
    gamma: float = 0.0
    magnitudes: np.ndarray | None = None  # mean |activation| per dim of the hook (ranking split)

    @property
    def title(self) -> str:
        return f"Dopamine neurons (TD-error tracking) at {self.hook}"


class _Insufficient(Exception):
    """Too little data for a step: the section reports ``status`` and ``message`` with null metrics."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status, self.message = status, message


@dataclass
class _Surprises:
    """Positive and negative surprise rollouts of both splits (thresholds from the ranking split)."""

    train_idx: np.ndarray
    test_idx: np.ndarray
    pos_train: list[int]
    neg_train: list[int]
    pos_test: list[int]
    neg_test: list[int]
    rule: str  # the surprise rule, in words


def _dopamine_section(run: _DopamineRun) -> Section:
    run.out_dir.mkdir(parents=True, exist_ok=True)
    run.gamma = _probe_gamma(run.probe)
    c = run.c
    run.summary.update(value_hook=run.value_hook, gamma=run.gamma, window=c.window, k=c.k,
                       value_from_same_hook=run.value_hook == run.hook)
    try:
        train_idx, test_idx = _split(run)
        values, td = _values_and_td(run)
        sur = _surprises(run, values, train_idx, test_idx)
        details, neurons = _rank(run, td, sur)
    except _Insufficient as err:
        run.summary["status"] = err.status
        return Section(key="dopamine", title=run.title, summary=run.summary, notes=[err.message] + run.notes)
    metrics = _held_out_metrics(run, neurons, td, values, sur)
    run.summary = nan_to_none(run.summary)
    figures = _figures(run, neurons, details, td, sur, metrics)
    tables = _tables(neurons, metrics)
    _notes(run, metrics, sur)
    return Section(key="dopamine", title=run.title, summary=run.summary, tables=tables, figures=figures, notes=run.notes)


def _split(run: _DopamineRun) -> tuple[np.ndarray, np.ndarray]:
    """The ranking and held-out splits (repeated prompts stay on one side, else the held-out split leaks)."""
    store, c = run.store, run.c
    if len(store) < 2:
        raise _Insufficient("too_few_rollouts", f"The store holds {len(store)} rollout(s); the dopamine stage "
                            "needs a ranking split and a held-out split. No metrics computed.")
    if run.prompt_groups is not None:
        train_idx, test_idx = grouped_stratified_split(np.arange(len(store)), store.rewards, list(run.prompt_groups),
                                                       c.test_fraction, c.seed)
    else:
        train_idx, test_idx = store.split(c.test_fraction, c.seed)
    run.summary.update(n_train=int(len(train_idx)), n_test=int(len(test_idx)))
    if len(train_idx) == 0 or len(test_idx) == 0:
        raise _Insufficient("too_few_rollouts", f"Split gave {len(train_idx)} ranking and {len(test_idx)} held-out "
                            "rollouts; both must be non-empty. No metrics computed.")
    return train_idx, test_idx


def _value_traces(run: _DopamineRun, all_idx: list[int]) -> list:
    """V(s_0..s_T) of every rollout: cross-fitted (each from a probe that did not train on it) or the probe's own."""
    store, probe, prompt_groups, c = run.store, run.probe, run.prompt_groups, run.c
    if not (c.cross_fit_folds and isinstance(probe, ValueProbe)):
        run.summary["values"] = "probe as given"
        return probe.value_traces(store, run.value_hook, all_idx)
    groups = list(prompt_groups) if prompt_groups is not None else list(range(len(store)))
    per_reward = distinct_groups_per_reward(store.rewards, groups)  # folds hold whole prompts
    folds = min(c.cross_fit_folds, min(per_reward))
    if folds < 2:
        raise _Insufficient("insufficient_surprise", "Cross-fitting the values needs at least 2 distinct prompts with "
                            f"each reward; the store has {per_reward[0]} with reward 0 and {per_reward[1]} with "
                            "reward 1. Collect more rollouts. No metrics computed.")
    raw = cross_fitted_value_traces(store, run.value_hook, probe.cfg, folds, c.seed, groups=prompt_groups)
    run.summary["values"] = f"cross-fitted, {folds} folds"
    run.notes.append(f"V(s_0..s_T) is cross-fitted ({folds} folds stratified by reward"
                     + (", each prompt in one fold" if prompt_groups is not None else "") + "): each rollout's values "
                     "come from a probe (same config) that did not train on it, so surprises and TD errors are out-of-sample.")
    return raw


def _values_and_td(run: _DopamineRun) -> tuple[dict, dict]:
    """Every rollout's value trace and its arrival-aligned TD errors."""
    store = run.store
    all_idx = list(range(len(store)))
    raw = _value_traces(run, all_idx)
    if len(raw) != len(all_idx):
        raise ValueError(f"probe.value_traces returned {len(raw)} traces for {len(all_idx)} rollouts.")
    values = {i: _as_trace(v) for i, v in zip(all_idx, raw)}
    bad = [i for i in all_idx if len(values[i]) != store.records[i].n_steps]
    if bad:  # a probe/store mismatch is a bug, not data scarcity: fail loudly
        i = bad[0]
        raise ValueError(f"probe.value_traces gave {len(values[i])} values for rollout {i}, which has "
                         f"{store.records[i].n_steps} states s_0..s_T ({len(bad)} rollouts mismatch).")
    rewards = store.rewards.astype(np.float64)
    td = {i: td_errors(values[i], rewards[i], run.gamma, align="arrival") for i in all_idx}
    return values, td


def _surprises(run: _DopamineRun, values: dict, train_idx: np.ndarray, test_idx: np.ndarray) -> _Surprises:
    """Surprise sets: thresholds from the ranking split, reused on the held-out split."""
    c, rewards = run.c, run.store.rewards.astype(np.float64)
    train_sets = surprise_sets([values[i][0] for i in train_idx], rewards[train_idx], c.low_q, c.high_q)
    pos_train, neg_train = train_idx[train_sets.positive].tolist(), train_idx[train_sets.negative].tolist()
    test_sets = surprise_sets([values[i][0] for i in test_idx], rewards[test_idx],
                              low_threshold=train_sets.low_threshold, high_threshold=train_sets.high_threshold)
    pos_test, neg_test = test_idx[test_sets.positive].tolist(), test_idx[test_sets.negative].tolist()
    run.summary.update(
        n_positive_surprise=len(pos_train), n_negative_surprise=len(neg_train),
        n_positive_surprise_test=len(pos_test), n_negative_surprise_test=len(neg_test),
        surprise_thresholds={"low_q": c.low_q, "high_q": c.high_q, "low_value": train_sets.low_threshold,
                             "high_value": train_sets.high_threshold},
    )
    rule = (f"positive surprise = V(s_0) ≤ {train_sets.low_threshold:.3g} (q{c.low_q:g} of the ranking split) "
            f"and reward 1; negative surprise = V(s_0) ≥ {train_sets.high_threshold:.3g} (q{c.high_q:g}) and reward 0")
    if len(pos_train) < c.min_surprise or len(neg_train) < c.min_surprise:
        raise _Insufficient(
            "insufficient_surprise",
            f"Too few surprise rollouts to rank dopamine neurons: the ranking split ({len(train_idx)} rollouts) has "
            f"{len(pos_train)} positive- and {len(neg_train)} negative-surprise rollouts ({rule}); at least "
            f"{c.min_surprise} of each are needed. Collect more rollouts, or widen low_q/high_q. No metrics computed.")
    return _Surprises(train_idx, test_idx, pos_train, neg_train, pos_test, neg_test, rule)


def _rank(run: _DopamineRun, td: dict, sur: _Surprises):
    """The paper's ranking on the ranking split only; the top ``k`` saved as a NeuronSet."""
    store, hook, c = run.store, run.hook, run.c
    try:
        details = dopamine_score_details(store, hook, td, sur.pos_train, sur.neg_train, c.window)
    except ValueError as err:
        raise _Insufficient("no_surprise_events", f"Could not rank dopamine neurons: {err}") from None
    neurons = dopamine_neurons(details.scores, hook, store.d(hook), c.k, provenance={
        "model": store.model, "store": str(store.path), "seed": c.seed, "test_fraction": c.test_fraction,
        "gamma": run.gamma, "value_hook": run.value_hook, "window": c.window, "low_q": c.low_q, "high_q": c.high_q,
        "n_positive_surprise": len(details.positive_used), "n_negative_surprise": len(details.negative_used),
        "ranking": "median z-peak at positive-surprise events − median z-trough at negative-surprise events",
    })
    neurons_file = run.out_dir / f"dopamine_neurons.{_safe_name(hook)}.json"
    neurons.save(neurons_file)
    run.summary.update(top_neurons=neurons.indices, top_scores=neurons.scores, neurons_file=neurons_file.name)
    return details, neurons


def _held_out_metrics(run: _DopamineRun, neurons: NeuronSet, td: dict, values: dict, sur: _Surprises):
    """Candidates vs random dims (uniform and magnitude-matched) and value neurons on the held-out split."""
    store, hook, c, value_neurons = run.store, run.hook, run.c, run.value_neurons
    if value_neurons is not None and value_neurons.hook_name not in store.hook_names:
        run.notes.append(f"Value neurons live at {value_neurons.hook_name!r}, which this store does not hold; "
                         "they are left out of the comparison.")
        value_neurons = None
    # per-dim mean |activation| on the ranking split (label-free): the strata of the matched controls
    run.magnitudes = activation_magnitudes(store, hook, sur.train_idx) if c.matched_controls else None
    metrics = dopamine_metrics(
        store, hook, neurons.indices, td, values, sur.test_idx, positive_idx=sur.pos_test, negative_idx=sur.neg_test,
        value_neurons=value_neurons, ranking_idx=sur.train_idx, n_random_draws=c.n_random_draws,
        random_pool_size=c.random_pool_size, n_permutations=c.n_permutations, permutation=c.permutation, seed=c.seed,
        magnitudes=run.magnitudes, massive_factor=c.massive_factor)
    run.summary.update(_metrics_summary(metrics))
    return metrics


def _metrics_summary(metrics) -> dict:
    """The summary keys of the held-out metrics (headline: candidates vs random dims of the same hook)."""
    c, r, v = metrics.candidates, metrics.random, metrics.value_neurons
    summary: dict[str, Any] = {}
    summary["corr_with_td_error"] = {
        "candidates": c.mean_pearson_td, "candidates_spearman": c.mean_spearman_td, "candidates_abs": c.mean_abs_pearson_td,
        "random": r.mean_pearson_td, "random_std": r.std_pearson_td, "random_abs": r.mean_abs_pearson_td,
        "random_abs_std": r.std_abs_pearson_td, "random_spearman": r.mean_spearman_td,
        "value_neurons": v.mean_pearson_td if v else None, "value_neurons_spearman": v.mean_spearman_td if v else None,
        "value_neurons_abs": v.mean_abs_pearson_td if v else None,
        "candidates_partial_given_value": c.mean_partial_td_given_value,
        "random_partial_given_value": r.mean_partial_td_given_value,
        "value_neurons_partial_given_value": v.mean_partial_td_given_value if v else None,
    }
    summary["corr_with_value"] = {"candidates": c.mean_pearson_value, "random": r.mean_pearson_value,
                                  "random_std": r.std_pearson_value, "value_neurons": v.mean_pearson_value if v else None}
    summary["auc_surprise"] = {"candidates": c.mean_auc_surprise, "random": r.mean_auc_surprise,
                               "random_std": r.std_auc_surprise, "value_neurons": v.mean_auc_surprise if v else None}
    perm = metrics.permutation
    # headline: do the candidates track δ better than random dims of the same hook? The token-shuffle
    # permutation p is kept too, but smooth activations of *any* dim beat that null.
    summary["p_value"] = r.p_abs_vs_random
    summary["abs_corr_vs_random_ci"] = metrics.abs_corr_vs_random.to_dict() if metrics.abs_corr_vs_random else None
    summary["verdict"] = metrics.verdict
    summary["p_value_vs_random_dims"] = r.p_abs_vs_random
    summary["p_value_permutation"] = perm.p_value if perm else None
    summary["permutation"] = {"scheme": perm.scheme, "n_permutations": perm.n_permutations, "statistic": perm.statistic,
                              "observed": perm.observed, "null_mean": perm.null_mean, "null_q95": perm.null_q95} if perm else None
    summary.update(
        status="ok", candidates_z_vs_random=metrics.candidates_z_vs_random,
        candidate_rank_by_test_pearson=metrics.candidate_rank_by_test_pearson,
        n_positive_events_test=metrics.n_positive_events, n_negative_events_test=metrics.n_negative_events,
        value_neurons={"hook": v.hook, "dims": v.dims} if v else None,
    )
    compact = metrics.to_dict()
    for key in ("pool_dims", "pool_pearson_td", "pool_pearson_value", "pool_partial_td_given_value", "pool_auc_surprise"):
        compact["random"].pop(key, None)
    if compact.get("matched"):
        compact["matched"].pop("pool_dims", None)
    summary["metrics"] = compact
    summary.update(_matched_null_summary(metrics.matched, metrics))
    return summary


def _figures(run: _DopamineRun, neurons: NeuronSet, details, td: dict, sur: _Surprises, metrics) -> list[str]:
    """Example traces (a held-out rollout of each surprise sign, else a ranking-split one) and the distributions."""
    figures: list[str] = []
    examples: list[tuple[str, int, int]] = []
    for label, held_out, ranking, sign in (("positive surprise", sur.pos_test, sur.pos_train, +1),
                                           ("negative surprise", sur.neg_test, sur.neg_train, -1)):
        pick = pick_example(td, held_out, sign)
        split = "held-out"
        if pick is None:
            pick, split = pick_example(td, ranking, sign), "ranking split"
            if pick is not None:
                run.notes.append(f"No held-out {label} rollout with an event; Figure shows a ranking-split rollout instead.")
        if pick is not None:
            examples.append((f"{label} ({split})", *pick))
    if examples:
        trace_figure(run.store, run.hook, neurons, details, td, examples, run.token_strings, run.out_dir / TRACE_FIGURE)
        figures.append(TRACE_FIGURE)
    distribution_figure(metrics, run.out_dir / DISTRIBUTION_FIGURE)
    figures.append(DISTRIBUTION_FIGURE)
    return figures


def _tables(neurons: NeuronSet, metrics) -> list[Table]:
    """Held-out metrics by group (candidates, random, matched, value neurons) and per top neuron."""
    c, r, v, m = metrics.candidates, metrics.random, metrics.value_neurons, metrics.matched

    def row(name: str, g, n_dims) -> list:
        return [name, n_dims, g.mean_pearson_td, g.mean_spearman_td, g.mean_abs_pearson_td,
                g.mean_partial_td_given_value, g.mean_pearson_value, g.mean_auc_surprise]

    group_rows = [row(f"dopamine candidates (top {len(neurons)})", c, len(neurons))]
    group_rows.append([f"random dims ({r.n_draws} draws of {r.set_size})", r.set_size,
                       _fmt_pm(r.mean_pearson_td, r.std_pearson_td), _fmt_pm(r.mean_spearman_td, r.std_spearman_td),
                       _fmt_pm(r.mean_abs_pearson_td, r.std_abs_pearson_td),
                       _fmt_pm(r.mean_partial_td_given_value, r.std_partial_td_given_value),
                       _fmt_pm(r.mean_pearson_value, r.std_pearson_value),
                       _fmt_pm(r.mean_auc_surprise, r.std_auc_surprise)])
    if m is not None:
        group_rows.append([f"magnitude-matched random dims ({m.n_draws} draws of {m.set_size})", m.set_size,
                           m.mean_pearson_td, None, _fmt_pm(m.mean_abs_pearson_td, m.std_abs_pearson_td), None,
                           m.mean_pearson_value, None])
    if v is not None:
        group_rows.append(row(f"value neurons ({v.hook})", v, len(v.dims)))
    group_rows = [[None if isinstance(x, float) and not np.isfinite(x) else x for x in rr] for rr in group_rows]
    return [
        Table("Held-out metrics by group", ["group", "dims", "Pearson(act, δ)", "Spearman(act, δ)", "|Pearson(act, δ)|",
                                             "partial(act, δ | V)", "Pearson(act, V)", "AUC +/− surprise event"], group_rows),
        Table("Top dopamine neurons", ["dim", "ranking score", "held-out Pearson(act, δ)", "Spearman(act, δ)",
                                       "partial(act, δ | V)", "Pearson(act, V)", "AUC +/− surprise",
                                       "rank by held-out Pearson (of d)"],
              [[j, sc, pt, sp, pa, pv, au, rk] for j, sc, pt, sp, pa, pv, au, rk in zip(
                  neurons.indices, neurons.scores, *[[_finite_or_none(x) for x in col] for col in
                                                     (c.pearson_td, c.spearman_td, c.partial_td_given_value,
                                                      c.pearson_value, c.auc_surprise)],
                  metrics.candidate_rank_by_test_pearson)]),
    ]


def _notes(run: _DopamineRun, metrics, sur: _Surprises) -> None:
    """The claims, the TD-error convention, the caveats and the permutation test, appended to ``run.notes``."""
    notes, c, r, perm = run.notes, metrics.candidates, metrics.random, metrics.permutation
    if metrics.abs_corr_vs_random is not None:
        iv = metrics.abs_corr_vs_random
        notes.append(f"Claim 'dopamine candidates track δ more than random dims': mean |Pearson(act, δ)| of the candidates "
                     f"minus the random pool's = {iv.estimate:+.3f} [{iv.low:+.3f}, {iv.high:+.3f}] (95% bootstrap over "
                     f"{iv.n} held-out rollouts): {metrics.verdict}.")
    notes.extend(_matched_null_notes(metrics.matched))
    notes.append(
        f"TD error δ at state s_t is γ·V(s_t) − V(s_(t−1)) with γ = {run.gamma:g} and V from the value probe at "
        f"{run.value_hook} (the error of the transition into s_t, attributed to the token that arrives; the terminal "
        "error r − V(s_T) is observed by no state and is excluded). Ranking used only the ranking split "
        f"({len(sur.train_idx)} rollouts; {sur.rule}); every metric is on the {len(sur.test_idx)} held-out rollouts.")
    notes.append("The paper's window ranking also rewards value-tracking dims (V is high right after a positive "
                 "event and low after a negative one), and so does the surprise AUC; the partial correlation "
                 "partial(act, δ | V) regresses V(s_t) out of both and is ~0 for a pure value dim.")
    if run.value_hook == run.hook:
        notes.append("Caution: V (hence δ) comes from a probe reading this same hook, so dimensions the probe weights "
                     "heavily correlate with δ partly by construction. For a clean test pass value_hook= another "
                     "layer's probe, and check partial(act, δ | V).")
    notes.append(f"p_value = {r.p_abs_vs_random:.3g}: share of {r.n_draws} random sets of {r.set_size} dims of this hook "
                 f"whose mean |Pearson(act, δ)| on held-out tokens reaches the candidates' "
                 f"({c.mean_abs_pearson_td:.3g} vs random {r.mean_abs_pearson_td:.3g} ± {r.std_abs_pearson_td:.3g}).")
    if perm is not None:
        notes.append(f"Permutation test ({perm.scheme}, {perm.n_permutations} permutations, seed {perm.seed}): "
                     f"candidates' mean |Pearson(act, δ)| = {perm.observed:.3g} vs null mean {perm.null_mean:.3g} "
                     f"(95th pct {perm.null_q95:.3g}); p = {perm.p_value:.3g}. Shuffling δ within each rollout keeps "
                     "rollout-level associations in the null, so only token-level tracking counts; but temporally smooth "
                     "activations of any dimension beat this null, so compare with p_value (vs random dims).")
    if metrics.n_positive_events == 0 or metrics.n_negative_events == 0:
        notes.append(f"Held-out split has {metrics.n_positive_events} positive- and {metrics.n_negative_events} "
                     "negative-surprise events, so the surprise AUC is undefined (null).")


def _finite_or_none(x: float | None) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)
