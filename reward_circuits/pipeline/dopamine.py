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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import torch
from jaxtyping import Float

from ..analysis.dopamine import dopamine_neurons, dopamine_score_details, surprise_sets
from ..analysis.controls import activation_magnitudes
from ..analysis.dopamine_metrics import dopamine_metrics
from ..analysis.td import td_errors
from ..neurons import NeuronSet
from ..analysis.splits import distinct_groups_per_reward, grouped_stratified_split
from ..analysis.cross_fitting import cross_fitted_value_traces
from ..analysis.probes import ValueProbe
from ..data.protocol import Store
from ..io import nan_to_none
from ..models import layer_of
from ..report import Section, Table

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
    value_hook: str | None = None,
    prompt_groups: Sequence | None = None,
) -> DopamineStageResult:
    """Find dopamine neurons at ``hook`` and test them on held-out rollouts.

    Steps: ``store.split(test_fraction, seed)`` (stratified by reward) → ``V(s_0..s_T)`` of every rollout
    from ``probe.value_traces(store, value_hook or hook, indices)`` → arrival-aligned TD errors with
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
    magnitudes: dict[str, np.ndarray] = {}
    section = _dopamine_section(store, probe, hook, out_dir, value_neurons, c, token_strings, value_hook, prompt_groups,
                                magnitudes)
    top = section.summary.get("top_neurons") or []
    neurons = (NeuronSet(hook, list(top), store.d(hook), kind="dopamine", layer=layer_of(hook),
                         provenance={"model": getattr(store, "model", None)}) if top else None)
    return DopamineStageResult(section, neurons, magnitudes.get(hook))


def _dopamine_section(store, probe, hook, out_dir, value_neurons, c: DopamineStageConfig, token_strings, value_hook,
                      prompt_groups=None, magnitudes_out: dict | None = None) -> Section:
    test_fraction, k, seed, low_q, high_q, window = c.test_fraction, c.k, c.seed, c.low_q, c.high_q, c.window
    min_surprise, n_permutations, n_random_draws = c.min_surprise, c.n_permutations, c.n_random_draws
    random_pool_size, permutation, cross_fit_folds = c.random_pool_size, c.permutation, c.cross_fit_folds
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    value_hook = value_hook or hook
    summary = _empty_summary(hook)
    notes: list[str] = []
    title = f"Dopamine neurons (TD-error tracking) at {hook}"

    def insufficient(status: str, message: str) -> Section:
        summary["status"] = status
        return Section(key="dopamine", title=title, summary=summary, notes=[message] + notes)

    gamma = _probe_gamma(probe)
    summary.update(value_hook=value_hook, gamma=gamma, window=window, k=k, value_from_same_hook=value_hook == hook)
    if len(store) < 2:
        return insufficient("too_few_rollouts", f"The store holds {len(store)} rollout(s); the dopamine stage "
                            "needs a ranking split and a held-out split. No metrics computed.")
    if prompt_groups is not None:  # repeated prompts stay on one side (else the held-out split leaks)
        train_idx, test_idx = grouped_stratified_split(np.arange(len(store)), store.rewards, list(prompt_groups),
                                                       test_fraction, seed)
    else:
        train_idx, test_idx = store.split(test_fraction, seed)
    summary.update(n_train=int(len(train_idx)), n_test=int(len(test_idx)))
    if len(train_idx) == 0 or len(test_idx) == 0:
        return insufficient("too_few_rollouts", f"Split gave {len(train_idx)} ranking and {len(test_idx)} held-out "
                            "rollouts; both must be non-empty. No metrics computed.")

    # --- value traces and TD errors -----------------------------------------------------------
    all_idx = list(range(len(store)))
    if cross_fit_folds and isinstance(probe, ValueProbe):
        groups = list(prompt_groups) if prompt_groups is not None else list(range(len(store)))
        per_reward = distinct_groups_per_reward(store.rewards, groups)  # folds hold whole prompts
        folds = min(cross_fit_folds, min(per_reward))
        if folds < 2:
            return insufficient("insufficient_surprise", "Cross-fitting the values needs at least 2 distinct prompts with "
                                f"each reward; the store has {per_reward[0]} with reward 0 and {per_reward[1]} with "
                                "reward 1. Collect more rollouts. No metrics computed.")
        raw = cross_fitted_value_traces(store, value_hook, probe.cfg, folds, seed, groups=prompt_groups)
        summary["values"] = f"cross-fitted, {folds} folds"
        notes.append(f"V(s_0..s_T) is cross-fitted ({folds} folds stratified by reward"
                     + (", each prompt in one fold" if prompt_groups is not None else "") + "): each rollout's values "
                     "come from a probe (same config) that did not train on it, so surprises and TD errors are out-of-sample.")
    else:
        raw = probe.value_traces(store, value_hook, all_idx)
        summary["values"] = "probe as given"
    if len(raw) != len(all_idx):
        raise ValueError(f"probe.value_traces returned {len(raw)} traces for {len(all_idx)} rollouts.")
    values = {i: _as_trace(v) for i, v in zip(all_idx, raw)}
    bad = [i for i in all_idx if len(values[i]) != store.records[i].n_steps]
    if bad:  # a probe/store mismatch is a bug, not data scarcity: fail loudly
        i = bad[0]
        raise ValueError(f"probe.value_traces gave {len(values[i])} values for rollout {i}, which has "
                         f"{store.records[i].n_steps} states s_0..s_T ({len(bad)} rollouts mismatch).")
    rewards = store.rewards.astype(np.float64)
    td = {i: td_errors(values[i], rewards[i], gamma, align="arrival") for i in all_idx}

    # --- surprise sets (thresholds from the ranking split, reused on the held-out split) ------
    train_sets = surprise_sets([values[i][0] for i in train_idx], rewards[train_idx], low_q, high_q)
    pos_train, neg_train = train_idx[train_sets.positive].tolist(), train_idx[train_sets.negative].tolist()
    test_sets = surprise_sets([values[i][0] for i in test_idx], rewards[test_idx],
                              low_threshold=train_sets.low_threshold, high_threshold=train_sets.high_threshold)
    pos_test, neg_test = test_idx[test_sets.positive].tolist(), test_idx[test_sets.negative].tolist()
    summary.update(
        n_positive_surprise=len(pos_train), n_negative_surprise=len(neg_train),
        n_positive_surprise_test=len(pos_test), n_negative_surprise_test=len(neg_test),
        surprise_thresholds={"low_q": low_q, "high_q": high_q, "low_value": train_sets.low_threshold,
                             "high_value": train_sets.high_threshold},
    )
    surprise_rule = (f"positive surprise = V(s_0) ≤ {train_sets.low_threshold:.3g} (q{low_q:g} of the ranking split) "
                     f"and reward 1; negative surprise = V(s_0) ≥ {train_sets.high_threshold:.3g} (q{high_q:g}) and reward 0")
    if len(pos_train) < min_surprise or len(neg_train) < min_surprise:
        return insufficient(
            "insufficient_surprise",
            f"Too few surprise rollouts to rank dopamine neurons: the ranking split ({len(train_idx)} rollouts) has "
            f"{len(pos_train)} positive- and {len(neg_train)} negative-surprise rollouts ({surprise_rule}); at least "
            f"{min_surprise} of each are needed. Collect more rollouts, or widen low_q/high_q. No metrics computed.")

    # --- ranking (ranking split only) ----------------------------------------------------------
    try:
        details = dopamine_score_details(store, hook, td, pos_train, neg_train, window)
    except ValueError as err:
        return insufficient("no_surprise_events", f"Could not rank dopamine neurons: {err}")
    d = store.d(hook)
    neurons = dopamine_neurons(details.scores, hook, d, k, provenance={
        "model": store.model, "store": str(store.path), "seed": seed, "test_fraction": test_fraction,
        "gamma": gamma, "value_hook": value_hook, "window": window, "low_q": low_q, "high_q": high_q,
        "n_positive_surprise": len(details.positive_used), "n_negative_surprise": len(details.negative_used),
        "ranking": "median z-peak at positive-surprise events − median z-trough at negative-surprise events",
    })
    neurons_file = out_dir / f"dopamine_neurons.{_safe_name(hook)}.json"
    neurons.save(neurons_file)
    summary.update(top_neurons=neurons.indices, top_scores=neurons.scores, neurons_file=neurons_file.name)

    # --- held-out metrics ----------------------------------------------------------------------
    if value_neurons is not None and value_neurons.hook_name not in store.hook_names:
        notes.append(f"Value neurons live at {value_neurons.hook_name!r}, which this store does not hold; "
                     "they are left out of the comparison.")
        value_neurons = None
    # per-dim mean |activation| on the ranking split (label-free): the strata of the matched controls
    magnitudes = activation_magnitudes(store, hook, train_idx) if c.matched_controls else None
    if magnitudes is not None and magnitudes_out is not None:
        magnitudes_out[hook] = magnitudes
    metrics = dopamine_metrics(
        store, hook, neurons.indices, td, values, test_idx, positive_idx=pos_test, negative_idx=neg_test,
        value_neurons=value_neurons, ranking_idx=train_idx, n_random_draws=n_random_draws,
        random_pool_size=random_pool_size, n_permutations=n_permutations, permutation=permutation, seed=seed,
        magnitudes=magnitudes, massive_factor=c.massive_factor)
    c, r, v = metrics.candidates, metrics.random, metrics.value_neurons
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
    m = metrics.matched
    if compact.get("matched"):
        compact["matched"].pop("pool_dims", None)
    summary["metrics"] = compact
    summary.update(_matched_null_summary(m, metrics))
    summary = nan_to_none(summary)

    # --- figures -------------------------------------------------------------------------------
    figures: list[str] = []
    examples: list[tuple[str, int, int]] = []
    for label, held_out, ranking, sign in (("positive surprise", pos_test, pos_train, +1),
                                           ("negative surprise", neg_test, neg_train, -1)):
        pick = pick_example(td, held_out, sign)
        split = "held-out"
        if pick is None:
            pick, split = pick_example(td, ranking, sign), "ranking split"
            if pick is not None:
                notes.append(f"No held-out {label} rollout with an event; Figure shows a ranking-split rollout instead.")
        if pick is not None:
            examples.append((f"{label} ({split})", *pick))
    if examples:
        trace_figure(store, hook, neurons, details, td, examples, token_strings, out_dir / TRACE_FIGURE)
        figures.append(TRACE_FIGURE)
    distribution_figure(metrics, out_dir / DISTRIBUTION_FIGURE)
    figures.append(DISTRIBUTION_FIGURE)

    # --- tables and notes ------------------------------------------------------------------------
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
    tables = [
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
    if metrics.abs_corr_vs_random is not None:
        iv = metrics.abs_corr_vs_random
        notes.append(f"Claim 'dopamine candidates track δ more than random dims': mean |Pearson(act, δ)| of the candidates "
                     f"minus the random pool's = {iv.estimate:+.3f} [{iv.low:+.3f}, {iv.high:+.3f}] (95% bootstrap over "
                     f"{iv.n} held-out rollouts): {metrics.verdict}.")
    notes.extend(_matched_null_notes(m))
    notes.append(
        f"TD error δ at state s_t is γ·V(s_t) − V(s_(t−1)) with γ = {gamma:g} and V from the value probe at "
        f"{value_hook} (the error of the transition into s_t, attributed to the token that arrives; the terminal "
        "error r − V(s_T) is observed by no state and is excluded). Ranking used only the ranking split "
        f"({len(train_idx)} rollouts; {surprise_rule}); every metric is on the {len(test_idx)} held-out rollouts.")
    notes.append("The paper's window ranking also rewards value-tracking dims (V is high right after a positive "
                 "event and low after a negative one), and so does the surprise AUC; the partial correlation "
                 "partial(act, δ | V) regresses V(s_t) out of both and is ~0 for a pure value dim.")
    if value_hook == hook:
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
    return Section(key="dopamine", title=title, summary=summary, tables=tables, figures=figures, notes=notes)


def _finite_or_none(x: float | None) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)
