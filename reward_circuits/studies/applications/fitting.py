"""The value signal the applications use: cross-fitted over prompts, or read from a run directory.

Cross-fitting: prompts are split into ``n_folds`` folds; for each fold a stacked
:class:`ValueProbe` is trained on the rollouts of the other folds at every requested layer, the
best layer is chosen on validation prompts held out of that training set, its value neurons are
the dimensions kept at ``prune_ratio``, and the held-out fold's value traces come from that probe
restricted to those neurons. Every value an application reports on was therefore produced by a
probe that never saw the prompt. A final probe on all rollouts is what :class:`ValueScorer`
ships (``out/value/``), for new prompts.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...neurons import NeuronSet
from ...analysis.probes import ValueProbe, ValueProbeConfig
from ...analysis.pruning import value_neurons
from ...analysis.splits import grouped_stratified_folds, grouped_stratified_split
from ...analysis.stats import binary_auc
from ...models import layer_of


@dataclass
class ValueSignal:
    """Value traces ``V(s_0) .. V(s_T)`` for every rollout (store order), and where they came from."""

    traces: list[np.ndarray]
    hooks_by_fold: list[str]
    final_probe: ValueProbe
    final_hook: str
    scorer_neurons: NeuronSet | None
    neuron_sets: dict[str, NeuronSet]
    validation_auc: list[dict[str, float]] = field(default_factory=list)
    source: str = "cross-fitted"
    full_probe_initial_values: np.ndarray | None = None  # V(s_0) of the unmasked probe (store order), for comparison


def _layer_key(hook: str) -> str:
    layer = layer_of(hook)
    return str(layer) if layer is not None else hook


def _scoring_probe(probe: ValueProbe, hook: str, prune_ratio: float | None, provenance: dict) -> tuple[ValueProbe, NeuronSet | None]:
    if not prune_ratio:
        return probe, None
    neurons = value_neurons(probe, hook, prune_ratio, provenance=provenance)
    return probe.masked(hook, neurons.mask()), neurons


def _fit_and_choose(store, train: np.ndarray, groups: Sequence[str], hooks: list[str], probe_cfg: ValueProbeConfig,
                    seed: int) -> tuple[ValueProbe, str, dict[str, float]]:
    """Fit on ``train`` minus a quarter of its prompts, choose the layer by AUC of V(s_0) there, refit on all of ``train``."""
    rewards = np.asarray(store.rewards)
    fit_idx, val_idx = grouped_stratified_split(train, rewards, groups, 0.25, seed + 17)  # a quarter of the prompts
    val_auc = {}
    if len(hooks) > 1 and np.unique(rewards[val_idx]).size == 2 and np.unique(rewards[fit_idx]).size == 2:
        probe = ValueProbe(probe_cfg).fit(store, hooks, fit_idx, verbose=False)
        values = probe.initial_values(store, val_idx, hooks)
        val_auc = {h: binary_auc(rewards[val_idx], values[j]) for j, h in enumerate(hooks)}
        best = max(hooks, key=lambda h: (val_auc[h], -hooks.index(h)))
    else:
        best = hooks[len(hooks) // 2]
    return ValueProbe(probe_cfg).fit(store, best, train, verbose=False), best, val_auc


@dataclass
class CrossFitSettings:
    """How :func:`cross_fitted_signal` fits, passed as its keywords (or ``settings=``): value neurons at
    ``prune_ratio`` (None: the whole probe scores), ``n_folds`` over prompts, probe ``epochs``, ``seed``."""

    prune_ratio: float | None = 0.99
    n_folds: int = 2
    epochs: int = 20
    seed: int = 0


def cross_fitted_signal(store, groups: Sequence[str], layers: Sequence[int], *, model: str = "",
                        train_only: Sequence[bool] | None = None, **settings) -> ValueSignal:
    """Cross-fitted value traces for every rollout of ``store`` (``groups[i]``: rollout i's prompt id).

    ``settings``: the fields of :class:`CrossFitSettings` as keywords (``prune_ratio=0.99``,
    ``n_folds=2``, ``epochs=20``, ``seed=0``), or one ``settings=CrossFitSettings(...)``.
    Rollouts marked ``train_only`` (extra training prompts) are in every fold's training set and
    never held out; their traces are ``None``."""
    cs = settings["settings"] if set(settings) == {"settings"} else CrossFitSettings(**settings)
    prune_ratio, n_folds, epochs, seed = cs.prune_ratio, cs.n_folds, cs.epochs, cs.seed
    if len(groups) != len(store):
        raise ValueError(f"{len(groups)} prompt ids for {len(store)} rollouts.")
    rewards = np.asarray(store.rewards)
    if np.unique(rewards).size < 2:
        raise ValueError(f"all {rewards.size} rollouts have reward {rewards[0]:g}: a value probe needs both outcomes. "
                         "Use more prompts or a task the model sometimes solves.")
    hooks = [f"blocks.{layer}.hook_resid_post" for layer in layers]
    missing = [h for h in hooks if h not in store.hook_names]
    if missing:
        raise KeyError(f"the store lacks {missing}; it holds {store.hook_names}.")
    probe_cfg = ValueProbeConfig(epochs=epochs, batch_states=1024, lr=2e-3, seed=seed)
    traces: list = [None] * len(store)
    full_v0 = np.full(len(store), np.nan)
    chosen, val_aucs = [], []
    extra = np.zeros(len(store), dtype=bool) if train_only is None else np.asarray(list(train_only), dtype=bool)
    if extra.size != len(store):
        raise ValueError(f"train_only has {extra.size} entries for {len(store)} rollouts.")
    evaluated = np.flatnonzero(~extra)
    folds = grouped_stratified_folds(rewards[evaluated], [groups[i] for i in evaluated], n_folds, seed)
    for f, (_, held_local) in enumerate(folds):
        held = evaluated[held_local]
        train = np.setdiff1d(np.arange(len(store)), held)
        if np.unique(rewards[train]).size < 2:
            raise ValueError(f"fold {f}: the training prompts' rollouts all have one reward; use more prompts.")
        probe, hook, val_auc = _fit_and_choose(store, train, groups, hooks, probe_cfg.replace(seed=seed + f), seed + f)
        scoring, _ = _scoring_probe(probe, hook, prune_ratio, {"fold": f, "model": model})
        for i, t in zip(held, scoring.value_traces(store, hook, held)):
            traces[int(i)] = t
        full_v0[held] = probe.initial_values(store, held, [hook])[0]
        chosen.append(hook)
        val_aucs.append(val_auc)
    final, final_hook, _ = _fit_and_choose(store, np.arange(len(store)), groups, hooks, probe_cfg, seed + n_folds)
    all_layers = ValueProbe(probe_cfg).fit(store, hooks, verbose=False)
    sets = {_layer_key(h): value_neurons(all_layers, h, prune_ratio or 0.99, provenance={"model": model, "seed": seed})
            for h in hooks}
    _, neurons = _scoring_probe(final, final_hook, prune_ratio, {"model": model, "seed": seed})
    return ValueSignal(traces, chosen, final, final_hook, neurons, sets, val_aucs, full_probe_initial_values=full_v0)


def run_dir_signal(run_dir: str | Path, store, prune_ratio: float | None = 0.99) -> ValueSignal:
    """Value traces from the probe and value neurons of a ``reward-circuits run`` directory (its best
    layer; ``store`` must hold that hook). The run's probe never saw these prompts only if they were
    drawn with another seed than the run's (``--prompt-seed``)."""
    run_dir = Path(run_dir)
    probe = ValueProbe.load(run_dir / "value" / "value_probe")
    with open(run_dir / "value" / "value_neurons_by_layer.json") as f:
        sets = {k: NeuronSet.from_dict(v) for k, v in json.load(f).items()}
    hook = run_best_hook(run_dir)
    neurons = None
    scoring = probe
    if prune_ratio:
        neurons = value_neurons(probe, hook, prune_ratio, provenance={"run": str(run_dir)})
        scoring = probe.masked(hook, neurons.mask())
    traces = scoring.value_traces(store, hook)
    return ValueSignal(traces, [hook], probe, hook, neurons, sets, [], source=f"run directory {run_dir}",
                       full_probe_initial_values=probe.initial_values(store, None, [hook])[0])


def run_best_hook(run_dir: str | Path) -> str:
    path = Path(run_dir) / "value" / "value_neurons.json"
    if not path.exists():
        raise FileNotFoundError(f"{run_dir} has no value/value_neurons.json: give a directory written by `reward-circuits run`.")
    return NeuronSet.load(path).hook_name
