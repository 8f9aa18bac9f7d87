"""The value stage of the main job: value probes per layer, pruning, value neurons, IoU, baselines.

:func:`run_value_stage` reproduces §2 of arXiv 2602.00986 on one activation store and returns a
:class:`ValueStageResult`: the fitted probe, the best layer, the value-neuron sets and the split,
which the next stages take as arguments, plus its report section (key ``"value"``). Protocol:

1. Stratified split: ``test_fraction`` of the rollouts are held out for every reported AUC; of the
   rest, ``val_fraction`` is a validation split used *only* to pick the best layer (choosing it on
   the test split would bias the reported AUC upward), the remainder trains the probes. Repeated
   prompts stay on one side. The split (of the second store too) is saved as ``splits.json``
   (:func:`~reward_circuits.analysis.splits.write_split_file`): a resumed run and ``compare`` read it back.
2. One stacked :class:`~reward_circuits.probes.ValueProbe` on all requested layers (plus
   ``hook_embed`` when the store has it: the surface baseline) in one pass per epoch.
3. For the best layer: L1 prune curve vs random masks, value neurons (top 1% at 99% pruning),
   TD vs final-reward (Monte-Carlo) targets, architecture robustness and the rotation check.
4. With a second store (another dataset): a probe at the best layer trained there (seed + 1, so
   a shared initialisation cannot inflate the overlap - compare with the seed-only IoU of the
   robustness block) and the IoU of the two value-neuron sets per prune ratio vs random sets.
5. Bag-of-tokens logistic regression on the prompts (when prompt token ids are given).
6. With a second store and ``pooled_probe``: one probe pooled over both tasks' training splits
   (:mod:`~reward_circuits.analysis.pooled`), its held-out AUC per task and pooled, per layer.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..analysis.baselines import EMBED_HOOK, bag_of_tokens_baseline
from ..analysis.controls import activation_magnitudes, massive_activations, matched_random_iou
from ..analysis.linear_probe import logistic_floors
from ..analysis.pooled import pooled_value_probe, shared_hooks
from ..analysis.splits import SPLIT_FILE, n_groups, read_split_file, task_split, write_split_file
from ..analysis.stats import bootstrap_auc_ci, paired_bootstrap_auc_diff, rank_by_score, verdict
from ..analysis.targets import TARGET_VARIANTS, compare_targets
from ..neurons import NeuronSet, expected_random_iou, iou
from ..analysis.probes import ValueProbe, ValueProbeConfig
from ..analysis.pruning import (
    architecture_robustness,
    architecture_variants,
    iou_from_scores,
    n_kept,
    prune_curve,
    prune_ratios_default,
    rotation_check,
    value_neurons,
)
from ..data.protocol import Store
from ..io import atomic_write_json as atomic_write_json_
from ..models import layer_of
from ..report import Section, Table, new_figure, save_figure
from .stage_meter import StepTimings


def stage_config(quick: bool = False, seed: int = 0) -> ValueProbeConfig:
    """Default probe settings of the stage: :class:`ValueProbeConfig`'s defaults (batch scaled to
    the store, early stopping and weight decay on the stage's validation split), fewer epochs and
    one weight decay when ``quick``."""
    if quick:
        return ValueProbeConfig(epochs=6, weight_decay=0.0, seed=seed)
    return ValueProbeConfig(seed=seed)


def _rkey(ratio: float) -> str:
    return f"{ratio:g}"


def _layer_key(hook: str) -> str:
    layer = layer_of(hook)
    return str(layer) if layer is not None else hook


def _prune_x(ratio: float) -> float:
    """x position of a prune ratio: −log10(1 − ratio) (0 → 0, 0.9 → 1, 0.99 → 2, 0.999 → 3)."""
    return float(-np.log10(max(1.0 - ratio, 1e-6)))


def _set_ratio_ticks(ax, ratios: Sequence[float]) -> None:
    shown = [r for r in ratios if r in (0, 0.5, 0.9, 0.95, 0.99, 0.999)] or list(ratios)
    ax.set_xticks([_prune_x(r) for r in shown])
    ax.set_xticklabels([_rkey(r) for r in shown])
    ax.set_xlabel("prune ratio (fraction of input dims masked, log-scaled)")


@dataclass
class ValueStageConfig:
    """Settings of the value stage. ``probe`` defaults to :func:`stage_config` (its seed is replaced by ``seed``)."""

    probe: ValueProbeConfig | None = None
    seed: int = 0
    quick: bool = False  # fewer epochs, ratios and robustness variants (tests, smoke runs)
    exclude_massive: bool = False  # keep massive-activation outlier dims out of the value-neuron sets
    massive_factor: float = 10.0  # outlier: mean |activation| > factor x the layer's median
    target_variants_all_layers: bool = True  # TD(0)/TD(λ)/MC compared on every layer (else the best only)
    robustness_seeds: int = 3  # seeds per probe architecture (hidden width x activation) in the robustness table
    robustness_widths: tuple[int, ...] = (16, 64, 256)  # hidden widths of the robustness table's probe architectures
    n_boot: int = 2000  # bootstrap replicates of every interval
    pooled_probe: bool = True  # with a second store: one probe trained on both tasks, AUC reported per task
    test_fraction: float = 0.3
    val_fraction: float = 0.2
    verbose: bool = False  # each probe fit's epoch bar
    progress: bool = True  # one bar for the stage, advanced as each of its steps ends
    # torch intra-op threads during the stage (restored after); on a CPU shared with other jobs,
    # 1 thread can be several times faster than 2 contended ones
    num_threads: int | None = None

    def __post_init__(self):
        for name in ("test_fraction", "val_fraction"):
            v = getattr(self, name)
            if not 0 < v < 1:
                raise ValueError(f"ValueStageConfig.{name} must be in (0, 1), got {v}.")
        if self.robustness_seeds < 1:
            raise ValueError(f"robustness_seeds must be >= 1, got {self.robustness_seeds}.")
        self.robustness_widths = tuple(int(w) for w in self.robustness_widths)
        if not self.robustness_widths or any(w < 1 for w in self.robustness_widths):
            raise ValueError(f"robustness_widths must be hidden widths >= 1, got {self.robustness_widths}.")
        if self.num_threads is not None and self.num_threads < 1:
            raise ValueError(f"num_threads must be >= 1 or None, got {self.num_threads}.")


@dataclass
class ValueStageResult:
    """What the value stage found; the intervention and dopamine stages take it as their input."""

    probe: ValueProbe
    best_hook: str
    best_key: str
    auc_test: dict[str, float]  # by hook, held-out test split
    auc_val: dict[str, float]  # by hook, validation split (the layer choice)
    value_sets: dict[str, NeuronSet]  # by layer key: the top 1% at 99% pruning
    best_neurons: NeuronSet
    final_reward_neurons: NeuronSet  # the Monte-Carlo probe's 1% at the best hook
    magnitudes: dict[str, np.ndarray]  # by hook: mean |activation| per dim (matched random controls)
    train_indices: np.ndarray
    val_indices: np.ndarray
    test_indices: np.ndarray
    section: Section

    def to_sections(self) -> list[Section]:
        return [self.section]

    def layers_by_validation(self) -> list[str]:
        """Layer keys, the best first, then by validation AUC (the split that chose the best layer)."""
        hook_of = {k: s.hook_name for k, s in self.value_sets.items()}
        keys = [k for k in self.value_sets if self.auc_val.get(hook_of[k]) is not None]
        return sorted(keys, key=lambda k: (k != self.best_key, -self.auc_val[hook_of[k]]))

    @classmethod
    def load(cls, out_dir: str | os.PathLike, summary: Mapping, *, store: Store | None = None) -> "ValueStageResult":
        """Rebuild the result of a finished stage from its files (to resume a stopped run only).

        ``train_indices`` / ``val_indices`` / ``test_indices`` are the stage's own split, read from
        ``splits.json`` (:func:`~reward_circuits.analysis.splits.read_split_file`); with ``store`` (the
        primary store) its rollout ids must match the saved ones. A directory without the file (older
        runs) raises ``FileNotFoundError`` naming the fix: re-run the value stage."""
        out = Path(out_dir)
        split = read_split_file(out / SPLIT_FILE, store, "primary")
        by_layer = json.loads((out / "value_neurons_by_layer.json").read_text())
        value_sets = {k: NeuronSet.from_dict(v) for k, v in by_layer.items()}
        best = NeuronSet.load(out / "value_neurons.json")
        hook_of = {k: s.hook_name for k, s in value_sets.items()}
        return cls(
            probe=ValueProbe.load(out / "value_probe"), best_hook=best.hook_name, best_key=str(summary["best_layer"]),
            auc_test={hook_of[k]: v for k, v in summary["auc_by_layer"].items() if k in hook_of},
            auc_val={hook_of[k]: v for k, v in summary["auc_by_layer_val"].items() if k in hook_of},
            value_sets=value_sets, best_neurons=best,
            final_reward_neurons=NeuronSet.load(out / "value_neurons_final_reward.json"),
            magnitudes={h: np.asarray(v) for h, v in json.loads((out / "activation_magnitudes.json").read_text()).items()}
            if (out / "activation_magnitudes.json").exists() else {},
            train_indices=split.fit, val_indices=split.val, test_indices=split.test,
            section=Section(key="value", title="Value probes and value neurons", summary=dict(summary)),
        )


def run_value_stage(
    store: Store,
    out_dir: str | os.PathLike,
    *,
    hooks: Sequence[str] | None = None,
    second_store: Store | None = None,
    prompt_tokens: Mapping[str, Sequence[int]] | None = None,
    vocab_size: int | None = None,
    config: ValueStageConfig | None = None,
) -> ValueStageResult:
    """Run the value stage on ``store``; write figures, the probe and the value neurons to ``out_dir``.

    Args:
        hooks: the layers' hook points (default: every ``blocks.{l}.`` hook of the store).
        second_store: another dataset's store (same model) for the IoU of value neurons across tasks.
        prompt_tokens: rollout id → prompt token ids, for the bag-of-tokens baseline.
        vocab_size: tokenizer vocabulary size (default: max token id + 1).
    """
    import torch

    config = config or ValueStageConfig()
    previous_threads = torch.get_num_threads()
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    try:
        return _run_value_stage(store, out_dir, hooks=hooks, second_store=second_store, prompt_tokens=prompt_tokens,
                                vocab_size=vocab_size, cfg=config.probe, seed=config.seed, quick=config.quick,
                                test_fraction=config.test_fraction, val_fraction=config.val_fraction,
                                verbose=config.verbose, stage=config)
    finally:
        torch.set_num_threads(previous_threads)


def cross_task_iou_by_layer(probe_a: ValueProbe, probe_b: ValueProbe, hooks: Sequence[str],
                            magnitudes: Mapping[str, np.ndarray], *, prune_ratio: float = 0.99, seed: int = 0,
                            n_draws: int = 200) -> dict[str, dict]:
    """Per layer: IoU of two probes' value neurons (top ``1 - prune_ratio`` by input-weight L1 norm)
    against uniform and magnitude-matched random sets."""
    out = {}
    for h in hooks:
        sa, sb = probe_a.input_weight_norms(h).numpy(), probe_b.input_weight_norms(h).numpy()
        d = sa.size
        k = n_kept(d, prune_ratio)
        top_a, top_b = rank_by_score(sa)[:k].tolist(), rank_by_score(sb)[:k].tolist()
        out[_layer_key(h)] = {
            "hook": h, "n": k, "iou": iou(top_a, top_b),
            "random": expected_random_iou(d, k),
            "matched_random": (matched_random_iou(top_a, top_b, magnitudes[h], n_draws=n_draws, seed=seed)
                               if h in magnitudes else None),
        }
    return out


def _run_value_stage(store, out_dir, *, hooks, second_store, prompt_tokens, vocab_size, cfg, seed, quick,
                     test_fraction, val_fraction, verbose, stage) -> ValueStageResult:
    t_start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = (cfg or stage_config(quick)).replace(seed=seed)
    notes: list[str] = []
    with StepTimings(n_steps=9, desc="value stage (steps)", show=stage.progress) as timings:
        return _value_stage_steps(store, out, hooks=hooks, second_store=second_store, prompt_tokens=prompt_tokens,
                                  vocab_size=vocab_size, cfg=cfg, seed=seed, quick=quick, test_fraction=test_fraction,
                                  val_fraction=val_fraction, verbose=verbose, stage=stage, notes=notes,
                                  timings=timings, t_start=t_start)


def _value_stage_steps(store, out, *, hooks, second_store, prompt_tokens, vocab_size, cfg, seed, quick,
                       test_fraction, val_fraction, verbose, stage, notes, timings, t_start) -> ValueStageResult:

    # ---- hooks and splits ----------------------------------------------------------------------
    if hooks is None:
        hooks = [h for h in store.hook_names if (layer_of(h) if layer_of(h) is not None else -1) >= 0]
    hooks = sorted(dict.fromkeys(hooks), key=lambda h: (layer_of(h) if layer_of(h) is not None else 10**6, h))
    if not hooks:
        raise ValueError(f"no layer hooks to probe: the store holds {store.hook_names}.")
    missing = [h for h in hooks if h not in store.hook_names]
    if missing:
        raise KeyError(f"hooks {missing} are not in the store; it holds {store.hook_names}.")
    keys = [_layer_key(h) for h in hooks]
    if len(set(keys)) != len(keys):  # several hooks per layer: key by hook name instead
        keys = list(hooks)
    key_of = dict(zip(hooks, keys))
    d = int(store.d(hooks[0]))
    embed = EMBED_HOOK if (EMBED_HOOK in store.hook_names and EMBED_HOOK not in hooks and int(store.d(EMBED_HOOK)) == d) else None

    rewards = np.asarray(store.rewards)
    # repeated prompts (generators draw with replacement) stay on one side of every split: copies on
    # both sides leak (greedy decoding gives every copy the same reward)
    def prompt_groups(st) -> list | None:
        return ([tuple(prompt_tokens[r]) for r in st.rollout_ids]
                if prompt_tokens is not None and all(r in prompt_tokens for r in st.rollout_ids) else None)

    groups = prompt_groups(store)
    fit_idx, val_idx, test = (split := task_split(store, test_fraction, val_fraction, seed, groups)).fit, split.val, split.test
    train_all = np.sort(np.concatenate([fit_idx, val_idx]))  # sorted, as the splitters return it
    # the second store (another task) is split the same way: its generator may repeat prompts too
    groups2 = prompt_groups(second_store) if second_store is not None else None
    split2 = task_split(second_store, test_fraction, val_fraction, seed, groups2) if second_store is not None else None
    # saved: every later reader (a resumed run, `compare`) scores these test rollouts, never a re-split
    write_split_file(out / SPLIT_FILE, {"primary": (store, split), **({"second": (second_store, split2)} if split2 else {})},
                     seed=seed, test_fraction=test_fraction, val_fraction=val_fraction)
    ratios = [r for r in prune_ratios_default if r <= 0.99] if quick else list(prune_ratios_default)

    # ---- all layers at once --------------------------------------------------------------------
    t0 = time.perf_counter()
    probe_hooks = hooks + ([embed] if embed else [])
    # early stopping and the weight decay use the stage's validation split (the one that picks the layer)
    probe = ValueProbe(cfg).fit(store, probe_hooks, fit_idx, validation_indices=val_idx if cfg.validation_fraction else None,
                                verbose=verbose)
    timings["fit_all_layers_s"] = time.perf_counter() - t0
    auc_test = probe.score(store, test)
    auc_val = probe.score(store, val_idx)
    test_labels = rewards[test]
    test_values = probe.initial_values(store, test, probe_hooks)
    # repeated prompts: resample prompts, not rollouts (copies are not independent evidence)
    test_groups = [groups[i] for i in test] if groups is not None else None
    auc_ci = {h: bootstrap_auc_ci(test_labels, test_values[j], n_boot=stage.n_boot, seed=seed, groups=test_groups)
              for j, h in enumerate(probe_hooks)}
    t0 = time.perf_counter()
    floors = logistic_floors(store, hooks, np.concatenate([fit_idx, val_idx]), test, seed=seed, n_boot=stage.n_boot, groups=groups,
                             Cs=(1e-3, 1e-2, 1e-1, 1.0) if quick else (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0))
    timings["logistic_floor_s"] = time.perf_counter() - t0
    # the TD probe must reach the linear floor minus the floor's interval half-width, at every layer
    floor_check = {h: bool(auc_test[h] >= floors[h].auc.estimate - (floors[h].auc.high - floors[h].auc.low) / 2) for h in hooks}
    t0 = time.perf_counter()
    magnitudes = {h: activation_magnitudes(store, h, fit_idx) for h in hooks}
    massive = {h: massive_activations(magnitudes[h], h, stage.massive_factor) for h in hooks}
    atomic_write_json_(out / "activation_magnitudes.json", {h: m.tolist() for h, m in magnitudes.items()})
    timings["magnitudes_s"] = time.perf_counter() - t0
    best_hook = max(hooks, key=lambda h: (auc_val[h], -hooks.index(h)))
    best_key = key_of[best_hook]
    auc_by_layer = {key_of[h]: auc_test[h] for h in hooks}

    # ---- pruning and value neurons -------------------------------------------------------------
    t0 = time.perf_counter()
    curve = prune_curve(probe, store, best_hook, ratios, test, random_draws=2 if quick else 5, seed=seed)
    curves_other = {}
    for h in dict.fromkeys([hooks[0], hooks[len(hooks) // 2], hooks[-1]]):
        if h != best_hook:
            curves_other[h] = prune_curve(probe, store, h, ratios, test, random_draws=0, seed=seed)["l1"]
    provenance = {"model": getattr(store, "model", None), "store": str(getattr(store, "path", "")),
                  "seed": seed, "n_train_rollouts": int(fit_idx.size)}
    excluded = {h: (massive[h].dims if stage.exclude_massive else []) for h in hooks}
    neurons = value_neurons(probe, best_hook, 0.99, provenance=provenance, exclude=excluded[best_hook])
    neurons.save(out / "value_neurons.json")
    all_layer_sets = {key_of[h]: value_neurons(probe, h, 0.99, provenance=provenance, exclude=excluded[h]) for h in hooks}
    massive_in_sets = {key_of[h]: massive[h].contained_in(all_layer_sets[key_of[h]].indices) for h in hooks}
    from ..io import atomic_write_json

    atomic_write_json(out / "value_neurons_by_layer.json", {k: s.to_dict() for k, s in all_layer_sets.items()})
    probe.save(out / "value_probe")
    timings["pruning_s"] = time.perf_counter() - t0

    # ---- TD vs final-reward targets -------------------------------------------------------------
    t0 = time.perf_counter()
    target_hooks = hooks if stage.target_variants_all_layers and not quick else [best_hook]
    # the stage's own probe is one of the variants (TD(λ = 0.9) by default): reuse it, do not refit
    reuse = {name: probe for name, v in TARGET_VARIANTS.items()
             if v["mode"] == cfg.mode and v.get("td_lambda", cfg.td_lambda) == cfg.td_lambda}
    targets = compare_targets(store, target_hooks, fit_idx, test, cfg, n_boot=stage.n_boot, seed=seed,
                              validation_indices=val_idx if cfg.validation_fraction else None, fitted=reuse, groups=groups)
    probe_mc = targets.probes["monte_carlo"]
    td_vs_mc = {"td": auc_test[best_hook] if cfg.mode == "td" else targets.auc["td0"][best_hook].estimate,
                "td_lambda": cfg.td_lambda if cfg.mode == "td" else 0.0,
                "final_reward": targets.auc["monte_carlo"][best_hook].estimate}
    # the Monte-Carlo probe's own 1% set: the intervention stage ablates it next to the TD set
    mc_neurons = value_neurons(probe_mc, best_hook, 0.99, provenance={**provenance, "mode": "final_reward"},
                               exclude=excluded[best_hook])
    mc_neurons.save(out / "value_neurons_final_reward.json")
    timings["final_reward_s"] = time.perf_counter() - t0

    # ---- across tasks --------------------------------------------------------------------------
    t0 = time.perf_counter()
    iou_tasks, iou_reason, second_auc, iou_tasks_by_layer = None, None, None, None
    if second_store is None:
        iou_reason = "no second store (another dataset) was given"
    elif best_hook not in second_store.hook_names:
        iou_reason = f"the second store has no hook {best_hook!r}"
    elif int(second_store.d(best_hook)) != d:
        iou_reason = f"the second store's {best_hook!r} has width {second_store.d(best_hook)}, not {d}"
    else:
        # every layer the second store shares (one stacked fit): the IoU across tasks by layer
        hooks2 = [h for h in hooks if h in second_store.hook_names and int(second_store.d(h)) == int(store.d(h))]
        probe2 = ValueProbe(cfg.replace(seed=seed + 1)).fit(second_store, hooks2, split2.fit, verbose=verbose,
                                                            validation_indices=split2.val if cfg.validation_fraction else None)
        second_auc = probe2.score(second_store, split2.test)[best_hook]
        iou_tasks_by_layer = cross_task_iou_by_layer(probe, probe2, hooks2, magnitudes, seed=seed,
                                                     n_draws=50 if quick else 200)
        value_neurons(probe2, best_hook, 0.99, provenance={"model": getattr(second_store, "model", None),
                      "store": str(getattr(second_store, "path", "")), "seed": seed + 1}).save(out / "value_neurons_second_store.json")
        iou_tasks = iou_from_scores(probe.input_weight_norms(best_hook), probe2.input_weight_norms(best_hook), ratios)
    iou_random = {_rkey(r): expected_random_iou(d, n_kept(d, r)) for r in ratios}
    iou_random_matched = None
    if iou_tasks is not None:  # random sets with the two value sets' magnitude profiles (outliers overlap)
        def top_a(sc, r):
            return rank_by_score(sc)[: n_kept(d, r)].tolist()

        sa, sb = probe.input_weight_norms(best_hook).numpy(), probe2.input_weight_norms(best_hook).numpy()
        iou_random_matched = {_rkey(r): matched_random_iou(top_a(sa, r), top_a(sb, r), magnitudes[best_hook],
                                                           n_draws=50 if quick else 200, seed=seed)
                              for r in ratios if n_kept(d, r) <= d // 2}
    timings["second_store_s"] = time.perf_counter() - t0

    # ---- surface baselines ---------------------------------------------------------------------
    surface = {"hook_embed": auc_test.get(embed) if embed else None, "bag_of_tokens": None}
    surface_reasons = {}
    if not embed:
        surface_reasons["hook_embed"] = ("the store has no 'hook_embed'" if EMBED_HOOK not in store.hook_names
                                         else "hook_embed was requested as a layer or has another width")
    probe_vs_surface = None
    td0_vs_mc = targets.vs_reference["monte_carlo"][best_hook]  # claims: (claim, evidence, verdict), summary + report
    claims = [(f"V(s_0) predicts the reward above chance at the best layer ({best_key}, chosen on validation)",
               f"AUC {auc_ci[best_hook]}", verdict(auc_ci[best_hook], expected_sign=1, null=0.5)),
              (f"TD(0) target beats the Monte-Carlo target at the best layer ({best_key})",
               f"AUC difference {td0_vs_mc.difference}", td0_vs_mc.verdict)]
    if prompt_tokens is None:
        surface_reasons["bag_of_tokens"] = "no prompt token ids were given"
    else:
        ids = store.rollout_ids
        absent = [i for i in ids if i not in prompt_tokens]
        if absent:
            raise KeyError(f"prompt_tokens lacks {len(absent)} of the store's rollout ids, e.g. {absent[:3]}.")
        toks = [list(prompt_tokens[i]) for i in ids]
        vs = vocab_size if vocab_size is not None else 1 + max((max(t) for t in toks if t), default=0)
        bot = bag_of_tokens_baseline(toks, rewards, train_all, test, vs, seed=seed, groups=groups)  # CV folds by prompt
        surface["bag_of_tokens"] = bot.auc
        surface_reasons["bag_of_tokens_C"] = bot.C
        diff, p_surf = paired_bootstrap_auc_diff(test_labels, test_values[probe_hooks.index(best_hook)], bot.test_scores,
                                                 n_boot=stage.n_boot, seed=seed, groups=test_groups)  # same test rollouts
        probe_vs_surface = {"hook": best_hook, "probe_minus_bag_of_tokens": diff.to_dict(), "p_value": p_surf,
                            "verdict": verdict(diff, expected_sign=1)}
        claims.append((f"the probe at the best layer ({best_key}) beats the bag-of-tokens surface baseline",
                       f"AUC difference {diff}, p = {p_surf:.3g}", probe_vs_surface["verdict"]))

    # ---- robustness ----------------------------------------------------------------------------
    t0 = time.perf_counter()
    variants = architecture_variants(cfg, hiddens=(16, 64) if quick else stage.robustness_widths,
                                     activations=("relu", "tanh"),
                                     seeds=tuple(seed + k for k in range(2 if quick else stage.robustness_seeds)))
    arch = architecture_robustness(store, best_hook, fit_idx, test, cfg, 0.99, variants, verbose=verbose)
    timings["architecture_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    rot = rotation_check(store, best_hook, fit_idx, test, cfg, seed=seed, probe=probe, verbose=verbose)
    timings["rotation_s"] = time.perf_counter() - t0
    arch_scores = arch.pop("scores", None)
    seed_names = [n for n, c in variants.items() if c.hidden == cfg.hidden and c.activation == cfg.activation and c.seed != cfg.seed]
    iou_seed_curve = None
    if arch_scores and seed_names:
        iou_seed_curve = iou_from_scores(probe.input_weight_norms(best_hook), np.asarray(arch_scores[seed_names[0]]), ratios)

    # ---- one probe pooled over both tasks -------------------------------------------------------
    t0 = time.perf_counter()
    pooled, pooled_reason = None, ("pooled_probe=False" if not stage.pooled_probe else "no second store (another dataset) was given")
    if stage.pooled_probe and second_store is not None:
        pooled_hooks = shared_hooks([store, second_store], hooks)
        pooled_reason = None if pooled_hooks else "the second store shares none of the layers' hooks (with one width)"
    if pooled_reason is None:
        names = [str((s.meta if isinstance(getattr(s, "meta", None), dict) else {}).get("task") or n)
                 for s, n in ((store, "primary"), (second_store, "second"))]
        names = names if names[0] != names[1] else ["primary", "second"]
        pooled = pooled_value_probe(
            {names[0]: store, names[1]: second_store}, {names[0]: split, names[1]: split2},
            pooled_hooks, cfg, n_boot=stage.n_boot, seed=seed, verbose=verbose,
            floor_Cs=(1e-3, 1e-2, 1e-1, 1.0) if quick else (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0),
            reference_scores={h: test_values[j] for j, h in enumerate(probe_hooks)},
            groups=({names[0]: groups, names[1]: groups2} if groups is not None and groups2 is not None else None))
    timings["pooled_probe_s"] = time.perf_counter() - t0

    # ---- figures -------------------------------------------------------------------------------
    figures = []
    layer_x = [layer_of(h) if layer_of(h) is not None else i for i, h in enumerate(hooks)]
    fig, ax = new_figure(6.5, 4)
    ax.errorbar(layer_x, [auc_test[h] for h in hooks],
                yerr=[[auc_test[h] - auc_ci[h].low for h in hooks], [auc_ci[h].high - auc_test[h] for h in hooks]],
                fmt="o-", capsize=3, label="value probe V(s_0), test (95% CI)")
    ax.plot(layer_x, [floors[h].auc.estimate for h in hooks], "x:", color="green", label="logistic floor, test")
    ax.plot(layer_x, [auc_val[h] for h in hooks], "o--", alpha=0.5, label="validation (layer choice)")
    for t in (pooled.tasks if pooled else []):
        ax.plot([layer_x[hooks.index(h)] for h in pooled.hooks], [pooled.auc[t][h].estimate if pooled.auc[t][h] else np.nan
                for h in pooled.hooks], "d-.", alpha=0.8, label=f"pooled probe, {t} test")
    for name, style in (("hook_embed", ":"), ("bag_of_tokens", "-.")):
        if surface[name] is not None:
            ax.axhline(surface[name], ls=style, color="gray" if name == "hook_embed" else "purple", label=f"surface: {name}")
    ax.axhline(0.5, color="k", lw=0.5)
    ax.set_xlabel("layer")
    ax.set_ylabel("AUC of V(s_0) vs reward")
    ax.set_title("Value probe AUC by layer")
    ax.legend(fontsize=8)
    figures.append(save_figure(fig, out / "value_auc_by_layer.png"))

    fig, ax = new_figure(6.5, 4)
    xs = [_prune_x(r) for r in ratios]
    ax.plot(xs, [curve["l1"][r] for r in ratios], "o-", lw=2, label=f"L1 pruning, layer {best_key} (best)")
    ax.plot(xs, [curve["random"][r] for r in ratios], "s--", label=f"random masks, layer {best_key}")
    for h, c in curves_other.items():
        ax.plot(xs, [c[r] for r in ratios], "-", lw=1, alpha=0.6, label=f"L1 pruning, layer {key_of[h]}")
    ax.axhline(0.5, color="k", lw=0.5)
    _set_ratio_ticks(ax, ratios)
    ax.set_ylabel("test AUC of V(s_0)")
    ax.set_title("Pruning the probe's input dimensions (no retraining)")
    ax.legend(fontsize=8)
    figures.append(save_figure(fig, out / "value_prune_curve.png"))

    if iou_tasks is not None or iou_seed_curve is not None:
        fig, ax = new_figure(6.5, 4)
        if iou_tasks is not None:
            ax.plot(xs, [iou_tasks[r][0] for r in ratios], "o-", label="across tasks (store vs second store)")
        if iou_seed_curve is not None:
            ax.plot(xs, [iou_seed_curve[r][0] for r in ratios], "^-", alpha=0.7, label="same data, another probe seed")
        ax.plot(xs, [iou_random[_rkey(r)] for r in ratios], "k--", label="random sets (expected)")
        _set_ratio_ticks(ax, ratios)
        ax.set_ylabel("IoU of kept input dims")
        ax.set_title(f"Overlap of value-neuron sets, layer {best_key}")
        ax.legend(fontsize=8)
        figures.append(save_figure(fig, out / "value_iou_curve.png"))

    # ---- summary, tables, notes ----------------------------------------------------------------
    summary = {
        "auc_by_layer": auc_by_layer,
        "auc_by_layer_val": {key_of[h]: auc_val[h] for h in hooks},
        "auc_by_layer_ci": {key_of[h]: auc_ci[h].to_dict() for h in hooks},
        "logistic_floor_by_layer": {key_of[h]: floors[h].to_dict() for h in hooks},
        "probe_reaches_logistic_floor": {key_of[h]: floor_check[h] for h in hooks},
        "probe_training": {key_of[h]: {"weight_decay": probe.weight_decay_.get(h), "best_epoch": probe.best_epoch_.get(h),
                                       "validation_auc": probe.validation_auc_.get(h)} for h in hooks},
        "massive_activations": {key_of[h]: massive[h].to_dict() for h in hooks},
        "massive_in_value_set": massive_in_sets,
        "value_sets_exclude_massive": stage.exclude_massive,
        "target_variants": targets.to_dict(),
        "verdicts": {claim: v for claim, _, v in claims},
        "probe_vs_surface": probe_vs_surface,
        "best_layer": best_key,
        "best_hook": best_hook,
        "best_layer_selected_on": "validation split (not the test split)",
        "prune_curve": {_rkey(r): curve["l1"][r] for r in ratios},
        "prune_curve_random": {_rkey(r): curve["random"][r] for r in ratios},
        "prune_curve_random_std": {_rkey(r): curve["random_std"][r] for r in ratios},
        "prune_curve_other_layers": {key_of[h]: {_rkey(r): c[r] for r in ratios} for h, c in curves_other.items()},
        "n_kept_by_ratio": {_rkey(r): curve["n_kept"][r] for r in ratios},
        "n_value_neurons": len(neurons),
        "value_neurons": neurons.indices,
        "value_neuron_scores": neurons.scores,
        "iou_across_tasks": ({_rkey(r): v[0] for r, v in iou_tasks.items()} if iou_tasks is not None else None),
        "iou_across_tasks_by_layer": iou_tasks_by_layer,
        "iou_across_tasks_reason": iou_reason,
        "second_store_auc": second_auc,
        "iou_random_baseline": iou_random,
        "iou_random_baseline_magnitude_matched": iou_random_matched,
        "pooled": pooled.to_dict(key_of) if pooled else None,
        "pooled_reason": pooled_reason,
        "iou_same_data_other_seed": ({_rkey(r): v[0] for r, v in iou_seed_curve.items()} if iou_seed_curve else None),
        "td_vs_final_reward": td_vs_mc,
        "surface_baseline_auc": surface,
        "surface_baseline_notes": surface_reasons,
        "robustness": {"architecture": arch, "rotation": rot},
        "config": dict(vars(cfg)),
        "splits": {"train": int(fit_idx.size), "val": int(val_idx.size), "test": int(test.size),
                   "grouped_by_prompt": groups is not None,
                   "distinct_prompts": n_groups(groups, range(len(store))) if groups is not None else None,
                   "second_store": split2.counts() if split2 is not None else None},
        "timings_s": {**timings, "total_s": time.perf_counter() - t_start},
        "files": {"probe": "value_probe/", "value_neurons": "value_neurons.json", "value_neurons_by_layer": "value_neurons_by_layer.json"},
    }

    tables = [
        Table("Claims and verdicts (95% bootstrap CI, n)", ["claim", "evidence", "verdict"], [list(c) for c in claims]),
        Table("Held-out AUC of V(s_0) by layer (95% bootstrap CI over test rollouts) and the logistic floor",
              ["layer", "hook", "val AUC", "test AUC", "95% CI", "logistic floor (95% CI)", "reaches floor", "massive dims in value set"],
              [[key_of[h], h, auc_val[h], auc_test[h], f"[{auc_ci[h].low:.3f}, {auc_ci[h].high:.3f}]", str(floors[h].auc),
                floor_check[h], str(massive_in_sets[key_of[h]] or "none")] for h in hooks]
              + [["surface", k, None, v, None, None, None, None] for k, v in surface.items() if v is not None]),
        Table(f"Pruning layer {best_key} (test AUC, no retraining)", ["prune ratio", "dims kept", "L1 pruning", "random (mean)", "random (std)"],
              [[_rkey(r), curve["n_kept"][r], curve["l1"][r], curve["random"][r], curve["random_std"][r]] for r in ratios]),
        Table(f"Value targets on the same split (n={targets.n_test} test rollouts; paired bootstrap differences)",
              targets.table_columns(), targets.table_rows()),
        Table("Architecture robustness (99% pruned sets)", ["variant", "test AUC", "value neurons (top 5)"],
              [[n, arch["auc"][n], str(arch["kept_dims"][n][:5])] for n in variants]
              + [["mean pairwise IoU", arch["mean_pairwise_iou"], f"random baseline {arch['random_baseline_iou']:.3g}"]]),
        Table("Rotation check (random orthogonal Q on the states)", ["quantity", "original basis", "rotated basis"],
              [["test AUC", rot["auc_original"], rot["auc_rotated"]],
               ["test AUC at 99% pruning", rot["auc_pruned_original"], rot["auc_pruned_rotated"]],
               ["L1 mass in top 1%", rot["top_l1_mass_original"], rot["top_l1_mass_rotated"]],
               ["(uniform L1 mass)", rot["uniform_mass"], rot["uniform_mass"]]]),
    ]
    if iou_tasks_by_layer:
        tables.append(Table("Value neurons (1% at 99% pruning) across tasks, every layer: IoU vs random sets",
                            ["layer", "n dims", "IoU", "uniform random", "magnitude-matched random"],
                            [[k, e["n"], e["iou"], e["random"], e["matched_random"]]
                             for k, e in iou_tasks_by_layer.items()]))
    if iou_tasks is not None:
        tables.append(Table(f"IoU of value-neuron sets across tasks, layer {best_key}", ["prune ratio", "IoU", "random baseline"],
                            [[_rkey(r), v[0], v[1]] for r, v in iou_tasks.items()]))
    if pooled is not None:
        tables.append(pooled.table(key_of))
        notes.extend(pooled.notes())
        if best_hook in pooled.hooks:
            notes.append(f"Pooled probe at the best layer ({best_key}), claim 'V(s_0) predicts the reward above chance': "
                         + "; ".join(f"{t}: {pooled.auc[t][best_hook]} → {pooled.verdicts[t][best_hook]}"
                                     for t in pooled.tasks if pooled.auc[t][best_hook] is not None) + ".")
    out_of_floor = [key_of[h] for h in hooks if not floor_check[h]]
    notes.append("Every layer's TD probe reaches the logistic floor (minus its interval half-width)." if not out_of_floor
                 else f"TD probe below the logistic floor (minus its interval) at layers {out_of_floor}: there a logistic "
                 "regression fitted to s_0 alone reads the reward better than a value function learned from every "
                 "state (docs: concepts/value-probes); interpret those layers' value neurons with care.")
    notes.append("Massive-activation dims (> %gx median |act|) per layer: " % stage.massive_factor
                 + "; ".join(f"{key_of[h]}: {massive[h].dims[:5] or 'none'}" for h in hooks)
                 + (" (excluded from the value sets)." if stage.exclude_massive else "."))
    notes.append(f"Best layer {best_key} chosen by validation AUC; every AUC shown is on {test.size} held-out test rollouts "
                 f"(probes trained on {fit_idx.size}).")
    if iou_reason:
        notes.append(f"IoU across tasks not computed: {iou_reason}.")
    else:
        notes.append("The second-store probe uses seed+1 so that a shared initialisation cannot inflate the IoU; "
                     "compare with the same-data/other-seed IoU.")
    rot_gap = rot["auc_pruned_original"] - rot["auc_pruned_rotated"]
    notes.append(
        f"Rotation check: AUC {rot['auc_original']:.3f} → {rot['auc_rotated']:.3f} after rotation; at 99% pruning "
        f"{rot['auc_pruned_original']:.3f} → {rot['auc_pruned_rotated']:.3f}; top-1% L1 mass "
        f"{rot['top_l1_mass_original']:.3f} → {rot['top_l1_mass_rotated']:.3f} (uniform {rot['uniform_mass']:.3f}). "
        + ("Sparsity is basis-aligned (it drops after rotation)." if rot_gap > 0.05 else
           "Pruned AUC does not drop after rotation: neuron-level sparsity is not supported by this check.")
    )
    section = Section(key="value", title="Value probes and value neurons", summary=summary, tables=tables, figures=figures, notes=notes)
    return ValueStageResult(probe=probe, best_hook=best_hook, best_key=best_key, auc_test=dict(auc_test), auc_val=dict(auc_val),
                            value_sets=all_layer_sets, best_neurons=neurons, final_reward_neurons=mc_neurons,
                            magnitudes=magnitudes,
                            train_indices=fit_idx, val_indices=val_idx, test_indices=test, section=section)
