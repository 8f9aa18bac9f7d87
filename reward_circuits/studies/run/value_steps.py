"""The value stage's steps, in the order they run (see :mod:`.value` for the protocol).

Each step reads the stage's :class:`ValueStageInputs` (stores, settings, layers, split) and the
results of the steps before it, and returns its own small result: :class:`LayerFit` (all layers at
once, the logistic floor, the magnitudes, the best layer), :class:`ValueNeuronSets` (pruning, value
neurons), :class:`TargetsFound` (TD vs final-reward targets), :class:`AcrossTasks` (the second
store), :class:`SurfaceBaselines` (embedding and bag-of-tokens baselines, the claims),
:class:`Robustness` (architectures, rotation) and :class:`PooledProbe`. :mod:`.value_report` turns
them into the report section.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from ...analysis.baselines import EMBED_HOOK, bag_of_tokens_baseline
from ...analysis.controls import activation_magnitudes, massive_activations, matched_random_iou
from ...analysis.linear_probe import logistic_floors
from ...analysis.pooled import pooled_value_probe, shared_hooks
from ...analysis.probes import ValueProbe, ValueProbeConfig
from ...analysis.pruning import (
    architecture_robustness,
    architecture_variants,
    iou_from_scores,
    n_kept,
    prune_curve,
    prune_ratios_default,
    rotation_check,
    value_neurons,
)
from ...analysis.splits import SPLIT_FILE, TaskSplit, task_split, write_split_file
from ...analysis.stats import bootstrap_auc_ci, paired_bootstrap_auc_diff, rank_by_score, verdict
from ...analysis.targets import TARGET_VARIANTS, compare_targets
from ...data.protocol import Store
from ...io import atomic_write_json
from ...models import layer_of
from ...neurons import NeuronSet, expected_random_iou, iou
from .value_checks import iou_over_probe_seeds, value_length_control

if TYPE_CHECKING:
    from .value import ValueStageConfig


def rkey(ratio: float) -> str:
    """A prune ratio as a summary key (``0.99`` → ``"0.99"``)."""
    return f"{ratio:g}"


def layer_key(hook: str) -> str:
    """A hook's layer as a summary key (the hook name itself when it has no layer)."""
    layer = layer_of(hook)
    return str(layer) if layer is not None else hook


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
        out[layer_key(h)] = {
            "hook": h, "n": k, "iou": iou(top_a, top_b),
            "random": expected_random_iou(d, k),
            "matched_random": (matched_random_iou(top_a, top_b, magnitudes[h], n_draws=n_draws, seed=seed)
                               if h in magnitudes else None),
        }
    return out


# ---- the inputs every step reads ---------------------------------------------------------------


@dataclass
class ValueStageRequest:
    """What :func:`~.value.run_value_stage` was asked to do (its arguments, ``stage`` its config)."""

    store: Store
    out: Path
    hooks: Sequence[str] | None
    second_store: Store | None
    prompt_tokens: Mapping[str, Sequence[int]] | None
    vocab_size: int | None
    stage: "ValueStageConfig"


@dataclass
class ValueSplits:
    """The stage's split of the primary store (and of the second store), and the prompt groups."""

    primary: TaskSplit
    second: TaskSplit | None
    groups: list | None  # rollout i's prompt (repeated prompts stay on one side), or None
    groups2: list | None

    @property
    def fit(self) -> np.ndarray:
        return self.primary.fit

    @property
    def val(self) -> np.ndarray:
        return self.primary.val

    @property
    def test(self) -> np.ndarray:
        return self.primary.test

    @property
    def train_all(self) -> np.ndarray:
        """Probe training and validation rollouts, sorted (as the splitters return them)."""
        return np.sort(np.concatenate([self.fit, self.val]))


@dataclass
class ValueStageInputs:
    """The request plus what is fixed before any fit: probe settings, layers, prune ratios, split."""

    request: ValueStageRequest
    cfg: ValueProbeConfig  # the probe settings, the stage's seed applied
    timings: Any  # a StepTimings: each step's seconds
    t_start: float
    hooks: list[str]  # the layers' hooks, by layer
    key_of: dict[str, str]  # hook → summary key
    d: int  # width of the layers' hooks
    embed: str | None  # hook_embed when probed as the surface baseline
    ratios: list[float]
    splits: ValueSplits

    @property
    def store(self) -> Store:
        return self.request.store

    @property
    def second_store(self) -> Store | None:
        return self.request.second_store

    @property
    def out(self) -> Path:
        return self.request.out

    @property
    def stage(self) -> "ValueStageConfig":
        return self.request.stage

    @property
    def seed(self) -> int:
        return self.request.stage.seed

    @property
    def quick(self) -> bool:
        return self.request.stage.quick

    @property
    def verbose(self) -> bool:
        return self.request.stage.verbose


def _resolve_hooks(store: Store, hooks: Sequence[str] | None) -> list[str]:
    if hooks is None:
        hooks = [h for h in store.hook_names if (layer_of(h) if layer_of(h) is not None else -1) >= 0]
    hooks = sorted(dict.fromkeys(hooks), key=lambda h: (layer_of(h) if layer_of(h) is not None else 10**6, h))
    if not hooks:
        raise ValueError(f"no layer hooks to probe: the store holds {store.hook_names}.")
    missing = [h for h in hooks if h not in store.hook_names]
    if missing:
        raise KeyError(f"hooks {missing} are not in the store; it holds {store.hook_names}.")
    return hooks


def _split_stores(request: ValueStageRequest) -> ValueSplits:
    """Split both stores; repeated prompts (generators draw with replacement) stay on one side of every
    split: copies on both sides leak (greedy decoding gives every copy the same reward)."""
    store, second_store, prompt_tokens, stage = request.store, request.second_store, request.prompt_tokens, request.stage

    def prompt_groups(st) -> list | None:
        return ([tuple(prompt_tokens[r]) for r in st.rollout_ids]
                if prompt_tokens is not None and all(r in prompt_tokens for r in st.rollout_ids) else None)

    groups = prompt_groups(store)
    split = task_split(store, stage.test_fraction, stage.val_fraction, stage.seed, groups)
    # the second store (another task) is split the same way: its generator may repeat prompts too
    groups2 = prompt_groups(second_store) if second_store is not None else None
    split2 = (task_split(second_store, stage.test_fraction, stage.val_fraction, stage.seed, groups2)
              if second_store is not None else None)
    # saved: every later reader (a resumed run, `compare`) scores these test rollouts, never a re-split
    write_split_file(request.out / SPLIT_FILE,
                     {"primary": (store, split), **({"second": (second_store, split2)} if split2 else {})},
                     seed=stage.seed, test_fraction=stage.test_fraction, val_fraction=stage.val_fraction)
    return ValueSplits(split, split2, groups, groups2)


def prepare_inputs(request: ValueStageRequest, cfg: ValueProbeConfig, timings, t_start: float) -> ValueStageInputs:
    """Step 0: the layers' hooks and keys, the surface hook, the prune ratios, and the saved split."""
    store = request.store
    hooks = _resolve_hooks(store, request.hooks)
    keys = [layer_key(h) for h in hooks]
    if len(set(keys)) != len(keys):  # several hooks per layer: key by hook name instead
        keys = list(hooks)
    d = int(store.d(hooks[0]))
    embed = EMBED_HOOK if (EMBED_HOOK in store.hook_names and EMBED_HOOK not in hooks and int(store.d(EMBED_HOOK)) == d) else None
    splits = _split_stores(request)
    ratios = [r for r in prune_ratios_default if r <= 0.99] if request.stage.quick else list(prune_ratios_default)
    return ValueStageInputs(request=request, cfg=cfg, timings=timings, t_start=t_start, hooks=hooks,
                            key_of=dict(zip(hooks, keys)), d=d, embed=embed, ratios=ratios, splits=splits)


# ---- all layers at once ------------------------------------------------------------------------


@dataclass
class LayerFit:
    """The stacked probe on every layer, its held-out AUCs, the logistic floor, the magnitudes, the best layer."""

    probe: ValueProbe
    probe_hooks: list[str]  # the layers' hooks, plus hook_embed when probed
    auc_test: dict[str, float]
    auc_val: dict[str, float]
    test_labels: np.ndarray
    test_values: Any  # V(s_0) of the test rollouts, one row per probe hook
    test_groups: list | None
    auc_ci: dict
    floors: dict
    floor_check: dict[str, bool]
    magnitudes: dict[str, np.ndarray]
    massive: dict
    best_hook: str
    best_key: str


def fit_layers(inp: ValueStageInputs) -> LayerFit:
    """Step 1: one stacked probe on all layers, bootstrap intervals, the logistic floor, the
    activation magnitudes (saved), and the best layer by validation AUC."""
    store, cfg, stage, sp, hooks, timings = inp.store, inp.cfg, inp.stage, inp.splits, inp.hooks, inp.timings
    seed, quick = inp.seed, inp.quick
    rewards = np.asarray(store.rewards)
    t0 = time.perf_counter()
    probe_hooks = hooks + ([inp.embed] if inp.embed else [])
    # early stopping and the weight decay use the stage's validation split (the one that picks the layer)
    probe = ValueProbe(cfg).fit(store, probe_hooks, sp.fit, validation_indices=sp.val if cfg.validation_fraction else None,
                                verbose=inp.verbose)
    timings["fit_all_layers_s"] = time.perf_counter() - t0
    auc_test = probe.score(store, sp.test)
    auc_val = probe.score(store, sp.val)
    test_labels = rewards[sp.test]
    test_values = probe.initial_values(store, sp.test, probe_hooks)
    # repeated prompts: resample prompts, not rollouts (copies are not independent evidence)
    test_groups = [sp.groups[i] for i in sp.test] if sp.groups is not None else None
    auc_ci = {h: bootstrap_auc_ci(test_labels, test_values[j], n_boot=stage.n_boot, seed=seed, groups=test_groups)
              for j, h in enumerate(probe_hooks)}
    t0 = time.perf_counter()
    floors = logistic_floors(store, hooks, np.concatenate([sp.fit, sp.val]), sp.test, seed=seed, n_boot=stage.n_boot,
                             groups=sp.groups, Cs=(1e-3, 1e-2, 1e-1, 1.0) if quick else (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0))
    timings["logistic_floor_s"] = time.perf_counter() - t0
    # the TD probe must reach the linear floor minus the floor's interval half-width, at every layer
    floor_check = {h: bool(auc_test[h] >= floors[h].auc.estimate - (floors[h].auc.high - floors[h].auc.low) / 2) for h in hooks}
    t0 = time.perf_counter()
    magnitudes = {h: activation_magnitudes(store, h, sp.fit) for h in hooks}
    massive = {h: massive_activations(magnitudes[h], h, stage.massive_factor) for h in hooks}
    atomic_write_json(inp.out / "activation_magnitudes.json", {h: m.tolist() for h, m in magnitudes.items()})
    timings["magnitudes_s"] = time.perf_counter() - t0
    best_hook = max(hooks, key=lambda h: (auc_val[h], -hooks.index(h)))
    return LayerFit(probe=probe, probe_hooks=probe_hooks, auc_test=auc_test, auc_val=auc_val, test_labels=test_labels,
                    test_values=test_values, test_groups=test_groups, auc_ci=auc_ci, floors=floors,
                    floor_check=floor_check, magnitudes=magnitudes, massive=massive, best_hook=best_hook,
                    best_key=inp.key_of[best_hook])


# ---- pruning and value neurons -----------------------------------------------------------------


@dataclass
class ValueNeuronSets:
    """The prune curves and the value neurons (top 1% at 99% pruning) of the best and every layer."""

    curve: dict
    curves_other: dict
    provenance: dict
    excluded: dict[str, list]
    neurons: NeuronSet
    all_layer_sets: dict[str, NeuronSet]
    massive_in_sets: dict


def prune_and_select(inp: ValueStageInputs, fit: LayerFit) -> ValueNeuronSets:
    """Step 2: the L1 prune curve vs random masks, the value neurons of every layer (saved), the probe (saved)."""
    store, probe, hooks, best_hook, test, seed = inp.store, fit.probe, inp.hooks, fit.best_hook, inp.splits.test, inp.seed
    t0 = time.perf_counter()
    curve = prune_curve(probe, store, best_hook, inp.ratios, test, random_draws=2 if inp.quick else 5, seed=seed)
    curves_other = {}
    for h in dict.fromkeys([hooks[0], hooks[len(hooks) // 2], hooks[-1]]):
        if h != best_hook:
            curves_other[h] = prune_curve(probe, store, h, inp.ratios, test, random_draws=0, seed=seed)["l1"]
    provenance = {"model": getattr(store, "model", None), "store": str(getattr(store, "path", "")),
                  "seed": seed, "n_train_rollouts": int(inp.splits.fit.size)}
    excluded = {h: (fit.massive[h].dims if inp.stage.exclude_massive else []) for h in hooks}
    neurons = value_neurons(probe, best_hook, 0.99, provenance=provenance, exclude=excluded[best_hook])
    neurons.save(inp.out / "value_neurons.json")
    key_of = inp.key_of
    all_layer_sets = {key_of[h]: value_neurons(probe, h, 0.99, provenance=provenance, exclude=excluded[h]) for h in hooks}
    massive_in_sets = {key_of[h]: fit.massive[h].contained_in(all_layer_sets[key_of[h]].indices) for h in hooks}
    atomic_write_json(inp.out / "value_neurons_by_layer.json", {k: s.to_dict() for k, s in all_layer_sets.items()})
    probe.save(inp.out / "value_probe")
    inp.timings["pruning_s"] = time.perf_counter() - t0
    return ValueNeuronSets(curve=curve, curves_other=curves_other, provenance=provenance, excluded=excluded,
                           neurons=neurons, all_layer_sets=all_layer_sets, massive_in_sets=massive_in_sets)


# ---- TD vs final-reward targets ----------------------------------------------------------------


@dataclass
class TargetsFound:
    """TD(0)/TD(λ)/Monte-Carlo targets compared, and the Monte-Carlo probe's value neurons."""

    targets: Any  # a TargetComparison
    td_vs_mc: dict
    mc_neurons: NeuronSet


def compare_value_targets(inp: ValueStageInputs, fit: LayerFit, sets: ValueNeuronSets) -> TargetsFound:
    """Step 3: the value targets on the same split; the final-reward probe's 1% set (saved)."""
    cfg, stage, best_hook, sp = inp.cfg, inp.stage, fit.best_hook, inp.splits
    t0 = time.perf_counter()
    target_hooks = inp.hooks if stage.target_variants_all_layers and not inp.quick else [best_hook]
    # the stage's own probe is one of the variants (TD(λ = 0.9) by default): reuse it, do not refit
    reuse = {name: fit.probe for name, v in TARGET_VARIANTS.items()
             if v["mode"] == cfg.mode and v.get("td_lambda", cfg.td_lambda) == cfg.td_lambda}
    targets = compare_targets(inp.store, target_hooks, sp.fit, sp.test, cfg, n_boot=stage.n_boot, seed=inp.seed,
                              validation_indices=sp.val if cfg.validation_fraction else None, fitted=reuse,
                              groups=sp.groups)
    probe_mc = targets.probes["monte_carlo"]
    td_vs_mc = {"td": fit.auc_test[best_hook] if cfg.mode == "td" else targets.auc["td0"][best_hook].estimate,
                "td_lambda": cfg.td_lambda if cfg.mode == "td" else 0.0,
                "final_reward": targets.auc["monte_carlo"][best_hook].estimate}
    # the Monte-Carlo probe's own 1% set: the intervention stage ablates it next to the TD set
    mc_neurons = value_neurons(probe_mc, best_hook, 0.99, provenance={**sets.provenance, "mode": "final_reward"},
                               exclude=sets.excluded[best_hook])
    mc_neurons.save(inp.out / "value_neurons_final_reward.json")
    inp.timings["final_reward_s"] = time.perf_counter() - t0
    return TargetsFound(targets=targets, td_vs_mc=td_vs_mc, mc_neurons=mc_neurons)


# ---- across tasks ------------------------------------------------------------------------------


@dataclass
class AcrossTasks:
    """The second store's probe and the IoU of the two tasks' value-neuron sets vs random sets."""

    iou_tasks: dict | None = None
    iou_reason: str | None = None
    second_auc: float | None = None
    iou_tasks_by_layer: dict | None = None
    iou_random: dict | None = None
    iou_random_matched: dict | None = None
    probe2: Any = None  # the second store's probe (seed + 1), for the IoU over probe seeds


def _across_tasks_reason(inp: ValueStageInputs, best_hook: str) -> str | None:
    second_store, d = inp.second_store, inp.d
    if second_store is None:
        return "no second store (another dataset) was given"
    if best_hook not in second_store.hook_names:
        return f"the second store has no hook {best_hook!r}"
    if int(second_store.d(best_hook)) != d:
        return f"the second store's {best_hook!r} has width {second_store.d(best_hook)}, not {d}"
    return None


def across_tasks(inp: ValueStageInputs, fit: LayerFit) -> AcrossTasks:
    """Step 4: a probe on the second store (seed + 1, every shared layer), the IoU of the value sets."""
    store, second_store, cfg, seed, d, ratios = inp.store, inp.second_store, inp.cfg, inp.seed, inp.d, inp.ratios
    probe, best_hook, split2 = fit.probe, fit.best_hook, inp.splits.second
    t0 = time.perf_counter()
    res = AcrossTasks(iou_reason=_across_tasks_reason(inp, best_hook))
    if res.iou_reason is None:
        # every layer the second store shares (one stacked fit): the IoU across tasks by layer
        hooks2 = [h for h in inp.hooks if h in second_store.hook_names and int(second_store.d(h)) == int(store.d(h))]
        probe2 = ValueProbe(cfg.replace(seed=seed + 1)).fit(second_store, hooks2, split2.fit, verbose=inp.verbose,
                                                            validation_indices=split2.val if cfg.validation_fraction else None)
        res.second_auc = probe2.score(second_store, split2.test)[best_hook]
        res.probe2 = probe2
        res.iou_tasks_by_layer = cross_task_iou_by_layer(probe, probe2, hooks2, fit.magnitudes, seed=seed,
                                                         n_draws=50 if inp.quick else 200)
        value_neurons(probe2, best_hook, 0.99, provenance={"model": getattr(second_store, "model", None),
                      "store": str(getattr(second_store, "path", "")), "seed": seed + 1}).save(inp.out / "value_neurons_second_store.json")
        res.iou_tasks = iou_from_scores(probe.input_weight_norms(best_hook), probe2.input_weight_norms(best_hook), ratios)
    res.iou_random = {rkey(r): expected_random_iou(d, n_kept(d, r)) for r in ratios}
    if res.iou_tasks is not None:  # random sets with the two value sets' magnitude profiles (outliers overlap)
        def top_a(sc, r):
            return rank_by_score(sc)[: n_kept(d, r)].tolist()

        sa, sb = probe.input_weight_norms(best_hook).numpy(), probe2.input_weight_norms(best_hook).numpy()
        res.iou_random_matched = {rkey(r): matched_random_iou(top_a(sa, r), top_a(sb, r), fit.magnitudes[best_hook],
                                                              n_draws=50 if inp.quick else 200, seed=seed)
                                  for r in ratios if n_kept(d, r) <= d // 2}
    inp.timings["second_store_s"] = time.perf_counter() - t0
    return res


# ---- surface baselines and the claims ----------------------------------------------------------


@dataclass
class SurfaceBaselines:
    """The surface baselines' AUCs (or why not), the probe vs bag-of-tokens test, and the claims."""

    surface: dict
    surface_reasons: dict
    probe_vs_surface: dict | None
    claims: list[tuple]  # (claim, evidence, verdict): summary and report


def surface_baselines(inp: ValueStageInputs, fit: LayerFit, found: TargetsFound) -> SurfaceBaselines:
    """Step 5: hook_embed and bag-of-tokens baselines; the claims and their verdicts."""
    store, embed, best_hook, best_key = inp.store, inp.embed, fit.best_hook, fit.best_key
    surface = {"hook_embed": fit.auc_test.get(embed) if embed else None, "bag_of_tokens": None}
    surface_reasons = {}
    if not embed:
        surface_reasons["hook_embed"] = ("the store has no 'hook_embed'" if EMBED_HOOK not in store.hook_names
                                         else "hook_embed was requested as a layer or has another width")
    td0_vs_mc = found.targets.vs_reference["monte_carlo"][best_hook]
    claims = [(f"V(s_0) predicts the reward above chance at the best layer ({best_key}, chosen on validation)",
               f"AUC {fit.auc_ci[best_hook]}", verdict(fit.auc_ci[best_hook], expected_sign=1, null=0.5)),
              (f"TD(0) target beats the Monte-Carlo target at the best layer ({best_key})",
               f"AUC difference {td0_vs_mc.difference}", td0_vs_mc.verdict)]
    res = SurfaceBaselines(surface, surface_reasons, None, claims)
    if inp.request.prompt_tokens is None:
        surface_reasons["bag_of_tokens"] = "no prompt token ids were given"
    else:
        res.probe_vs_surface = _bag_of_tokens(inp, fit, res)
    return res


def _bag_of_tokens(inp: ValueStageInputs, fit: LayerFit, res: SurfaceBaselines) -> dict:
    """The bag-of-tokens baseline on the prompts; the probe at the best layer against it, paired."""
    store, prompt_tokens, vocab_size, sp, seed = inp.store, inp.request.prompt_tokens, inp.request.vocab_size, inp.splits, inp.seed
    best_hook = fit.best_hook
    ids = store.rollout_ids
    absent = [i for i in ids if i not in prompt_tokens]
    if absent:
        raise KeyError(f"prompt_tokens lacks {len(absent)} of the store's rollout ids, e.g. {absent[:3]}.")
    toks = [list(prompt_tokens[i]) for i in ids]
    vs = vocab_size if vocab_size is not None else 1 + max((max(t) for t in toks if t), default=0)
    bot = bag_of_tokens_baseline(toks, np.asarray(store.rewards), sp.train_all, sp.test, vs, seed=seed,
                                 groups=sp.groups)  # CV folds by prompt
    res.surface["bag_of_tokens"] = bot.auc
    res.surface_reasons["bag_of_tokens_C"] = bot.C
    diff, p_surf = paired_bootstrap_auc_diff(fit.test_labels, fit.test_values[fit.probe_hooks.index(best_hook)],
                                             bot.test_scores, n_boot=inp.stage.n_boot, seed=seed,
                                             groups=fit.test_groups)  # same test rollouts
    probe_vs_surface = {"hook": best_hook, "probe_minus_bag_of_tokens": diff.to_dict(), "p_value": p_surf,
                        "verdict": verdict(diff, expected_sign=1)}
    res.claims.append((f"the probe at the best layer ({fit.best_key}) beats the bag-of-tokens surface baseline",
                       f"AUC difference {diff}, p = {p_surf:.3g}", probe_vs_surface["verdict"]))
    return probe_vs_surface


# ---- robustness --------------------------------------------------------------------------------


@dataclass
class Robustness:
    """Probe architectures x seeds at the best layer, the rotation check, and the same-data/other-seed IoU."""

    variants: dict
    arch: dict
    rot: dict
    iou_seed_curve: dict | None


def robustness(inp: ValueStageInputs, fit: LayerFit) -> Robustness:
    """Step 6: architecture robustness of the 99%-pruned sets and the rotation check."""
    store, cfg, stage, seed, quick, sp = inp.store, inp.cfg, inp.stage, inp.seed, inp.quick, inp.splits
    probe, best_hook = fit.probe, fit.best_hook
    t0 = time.perf_counter()
    variants = architecture_variants(cfg, hiddens=(16, 64) if quick else stage.robustness_widths,
                                     activations=("relu", "tanh"),
                                     seeds=tuple(seed + k for k in range(2 if quick else stage.robustness_seeds)))
    arch = architecture_robustness(store, best_hook, sp.fit, sp.test, cfg, 0.99, variants, verbose=inp.verbose)
    inp.timings["architecture_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    rot = rotation_check(store, best_hook, sp.fit, sp.test, cfg, seed=seed, probe=probe, verbose=inp.verbose)
    inp.timings["rotation_s"] = time.perf_counter() - t0
    arch_scores = arch.pop("scores", None)
    seed_names = [n for n, c in variants.items() if c.hidden == cfg.hidden and c.activation == cfg.activation and c.seed != cfg.seed]
    iou_seed_curve = None
    if arch_scores and seed_names:
        iou_seed_curve = iou_from_scores(probe.input_weight_norms(best_hook), np.asarray(arch_scores[seed_names[0]]),
                                         inp.ratios)
    return Robustness(variants=variants, arch=arch, rot=rot, iou_seed_curve=iou_seed_curve)


# ---- one probe pooled over both tasks ----------------------------------------------------------


@dataclass
class PooledProbe:
    """One probe trained on both tasks' training splits (or why there is none)."""

    pooled: Any  # a PooledProbeResult, or None
    reason: str | None


def pooled_probe(inp: ValueStageInputs, fit: LayerFit) -> PooledProbe:
    """Step 7: with a second store, one probe pooled over both tasks, its AUC per task and layer."""
    store, second_store, stage, quick, sp = inp.store, inp.second_store, inp.stage, inp.quick, inp.splits
    t0 = time.perf_counter()
    pooled, pooled_reason = None, ("pooled_probe=False" if not stage.pooled_probe else "no second store (another dataset) was given")
    if stage.pooled_probe and second_store is not None:
        pooled_hooks = shared_hooks([store, second_store], inp.hooks)
        pooled_reason = None if pooled_hooks else "the second store shares none of the layers' hooks (with one width)"
    if pooled_reason is None:
        names = [str((s.meta if isinstance(getattr(s, "meta", None), dict) else {}).get("task") or n)
                 for s, n in ((store, "primary"), (second_store, "second"))]
        names = names if names[0] != names[1] else ["primary", "second"]
        pooled = pooled_value_probe(
            {names[0]: store, names[1]: second_store}, {names[0]: sp.primary, names[1]: sp.second},
            pooled_hooks, inp.cfg, n_boot=stage.n_boot, seed=inp.seed, verbose=inp.verbose,
            floor_Cs=(1e-3, 1e-2, 1e-1, 1.0) if quick else (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0),
            reference_scores={h: fit.test_values[j] for j, h in enumerate(fit.probe_hooks)},
            groups=({names[0]: sp.groups, names[1]: sp.groups2} if sp.groups is not None and sp.groups2 is not None else None))
    inp.timings["pooled_probe_s"] = time.perf_counter() - t0
    return PooledProbe(pooled, pooled_reason)


@dataclass
class ValueFindings:
    """Everything the steps after the layer fit found; :mod:`.value_report` renders it."""

    sets: ValueNeuronSets
    targets: TargetsFound
    across: AcrossTasks
    surface: SurfaceBaselines
    robust: Robustness
    pooled: PooledProbe
    iou_seeds: dict | None = None  # the cross-task IoU at the best layer over probe seed pairs (.value_checks)
    length_control: dict | None = None  # V(s_t) vs the reward on the test rollouts, length-controlled


def run_steps(inp: ValueStageInputs, fit: LayerFit) -> ValueFindings:
    """Steps 2-7, in their order (each fit consumes the seeds and RNG state the one-piece stage did)."""
    sets = prune_and_select(inp, fit)
    targets = compare_value_targets(inp, fit, sets)
    across = across_tasks(inp, fit)
    surface = surface_baselines(inp, fit, targets)
    robust = robustness(inp, fit)
    found = ValueFindings(sets=sets, targets=targets, across=across, surface=surface, robust=robust,
                          pooled=pooled_probe(inp, fit))
    claim_checks(inp, fit, found)
    return found


def claim_checks(inp: ValueStageInputs, fit: LayerFit, found: ValueFindings) -> None:
    """Step 8 (after every other fit): the cross-task IoU over probe seeds and the length control of V(s_t)."""
    t0 = time.perf_counter()
    across, hook = found.across, fit.best_hook
    if across.probe2 is not None and inp.stage.iou_seed_pairs > 0:
        found.iou_seeds = iou_over_probe_seeds((fit.probe, across.probe2), (inp.store, inp.second_store),
                                               (inp.splits.primary, inp.splits.second), hook, inp.cfg,
                                               fit.magnitudes.get(hook), inp.stage.iou_seed_pairs, inp.quick)
    found.length_control = value_length_control(fit.probe, inp.store, hook, inp.splits.test, seed=inp.seed,
                                                n_boot=500 if inp.quick else 1000)
    inp.timings["claim_checks_s"] = time.perf_counter() - t0
