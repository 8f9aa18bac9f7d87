"""``reward-circuits applications``: the value signal put to work on one task, end to end.

Rollouts (one greedy answer and ``n_samples`` sampled candidates per prompt) → one activation
store → cross-fitted value traces (or a run directory's probe) → the calibrated scorer against
verbalized confidence and next-token probability, value-guided best-of-N with early abort,
routing, online error detection and data curation, each with n and bootstrap intervals, in the
``applications`` section of ``summary.json`` / ``report.html``.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ...analysis.stats import bootstrap_auc_ci
from ...data.capture import build_store
from ...data.rollouts import Rollout, generate_rollouts, load_rollouts, save_rollouts
from ...analysis.confidence import next_token_confidence, verbalized_confidence
from ...io import nan_to_none
from ...models import Generation, GenerationConfig, ModelAdapter, load_model
from ...report import Section, Table
from ...tasks import get_task
from .calibration import cross_calibrate, plot_reliability, reliability_curve
from .config import ApplicationsConfig
from .curation import CurationColumns, CurationResult, curate
from .decoding import (
    AbortRule,
    BestOfNResult,
    CandidateSet,
    answer_key,
    best_of_n,
    select,
)
from .detection import DetectionResult, FlagRule, detect_errors
from .fitting import ValueSignal, cross_fitted_signal, run_best_hook, run_dir_signal
from .monitoring import ValueSnapshot
from .routing import RoutingOutcomes, RoutingResult, routing_study
from .scorer import ValueScorer


@dataclass
class ConfidenceComparison:
    """AUC and ECE (raw and cross-calibrated) of each confidence signal against greedy correctness."""

    rows: list[dict]
    reliability_figure: str | None
    n_prompts: int

    def to_summary(self) -> dict:
        return {"n_prompts": self.n_prompts, "signals": self.rows}

    def section_parts(self) -> tuple[list[Table], list[str]]:
        table = Table(f"Confidence signals vs correctness of the greedy answer (n={self.n_prompts} prompts; 95% bootstrap)",
                      ["signal", "needs generation", "AUC", "AUC low", "AUC high", "ECE raw", "ECE calibrated",
                       "ECE cal. low", "ECE cal. high", "usable n"],
                      [[r["signal"], r["needs_generation"], r["auc"]["estimate"], r["auc"]["low"], r["auc"]["high"],
                        r["ece_raw"]["estimate"], r["ece_calibrated"]["estimate"], r["ece_calibrated"]["low"],
                        r["ece_calibrated"]["high"], r["n"]] for r in self.rows])
        return [table], ["Calibrated values are out-of-fold (each prompt's calibrator never saw it)."]


@dataclass
class ApplicationsResult:
    config: ApplicationsConfig
    signal_source: str
    hooks_by_fold: list[str]
    value_auc: dict
    full_probe_auc: dict | None
    confidence: ConfidenceComparison
    best_of_n: BestOfNResult
    routing: RoutingResult
    detection: DetectionResult
    curation: CurationResult
    figures: list[str]
    timings: dict[str, float]
    thresholds: dict[str, float]
    accuracy_greedy: float
    accuracy_samples: float
    n_train_only: int = 0
    model: str = ""  # the adapter's name

    def to_dict(self) -> dict:
        """The ``applications`` section of ``summary.json``."""
        return self.section().summary

    def to_section(self, out_dir: str | Path | None = None) -> Section:
        """The ``applications`` report section (its figures were drawn into ``config.out`` by :func:`run_applications`)."""
        return self.section()

    def section(self) -> Section:
        summary = nan_to_none({
            "config": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self.config).items()},
            "value_signal": {"source": self.signal_source, "hooks_by_fold": self.hooks_by_fold, "auc_v_s0": self.value_auc,
                             "auc_v_s0_full_probe": self.full_probe_auc,
                             "train_only_rollouts": self.n_train_only,
                             "scorer_reads": f"value neurons (prune ratio {self.config.prune_ratio})" if self.config.uses_neurons
                             else "the whole probe"},
            "accuracy_greedy": self.accuracy_greedy, "accuracy_samples": self.accuracy_samples,
            "scorer": self.confidence.to_summary(), "best_of_n": self.best_of_n.to_summary(),
            "routing": self.routing.to_summary(), "error_detection": self.detection.to_summary(),
            "curation": self.curation.to_summary(), "timings_s": self.timings,
            "thresholds": {"mode": self.config.thresholds, **self.thresholds},
        })
        tables, notes = [], []
        auc = self.value_auc
        notes.append(f"Value signal: {self.signal_source}, layer(s) {self.hooks_by_fold}. AUC of V(s_0) vs greedy correctness "
                     f"{auc['estimate']:.3f} [{auc['low']:.3f}, {auc['high']:.3f}] (n={auc['n']} prompts)"
                     + (f"; the whole probe (no pruning) {self.full_probe_auc['estimate']:.3f} [{self.full_probe_auc['low']:.3f}, "
                        f"{self.full_probe_auc['high']:.3f}]" if self.full_probe_auc and self.config.uses_neurons else "")
                     + ". Greedy accuracy "
                     f"{self.accuracy_greedy:.3f}, sampled candidates {self.accuracy_samples:.3f}.")
        if self.config.thresholds == "quantile":
            notes.append("Abort, flag and curation thresholds are quantiles of these rollouts' value traces (label-free, "
                         f"fixed in the config, not tuned on rewards): {', '.join(f'{k} {v:.3g}' for k, v in self.thresholds.items())}.")
        for part in (self.confidence.section_parts(), self.best_of_n.section_parts(None), self.routing.section_parts(),
                     self.detection.section_parts(), self.curation.section_parts()):
            tables.extend(part[0])
            notes.extend(part[1])
        return Section("applications", "Applications: the value signal as confidence, decoder, router and monitor",
                       summary, tables, list(self.figures), notes)


# ---------------------------------------------------------------------------------------------
# the steps
# ---------------------------------------------------------------------------------------------
def _training_task(cfg: ApplicationsConfig, task):
    """``cfg.train_prompts`` more prompts of the task (another seed), minus any question that is evaluated."""
    if cfg.train_prompts == 0:
        return None
    import dataclasses

    evaluated = {ex.question for ex in task.examples}
    extra = get_task(cfg.task, n=cfg.train_prompts, seed=cfg.prompt_seed + 1000)
    kept = [dataclasses.replace(ex, id=f"train-{ex.id}") for ex in extra.examples if ex.question not in evaluated]
    return dataclasses.replace(extra, examples=kept, max_new_tokens=cfg.max_new_tokens) if kept else None


def _rollouts(adapter, task, cfg: ApplicationsConfig, out: Path, train_task=None) -> tuple[list[Rollout], list[Rollout], list[Rollout]]:
    base = GenerationConfig(max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size, seed=cfg.seed)
    paths = out / "rollouts" / "greedy", out / "rollouts" / "samples", out / "rollouts" / "train"
    train: list[Rollout] = []
    if train_task is not None:
        if paths[2].exists():
            train = load_rollouts(paths[2])
        else:
            train = generate_rollouts(adapter, train_task, base)
            for r in train:
                r.id = f"train/{r.id}"
            save_rollouts(train, paths[2])
    if paths[0].exists() and paths[1].exists():
        return load_rollouts(paths[0]), load_rollouts(paths[1]), train
    greedy = generate_rollouts(adapter, task, base)
    for r in greedy:
        r.id = f"greedy/{r.id}"
    save_rollouts(greedy, paths[0])
    sampled_cfg = GenerationConfig(**{**base.__dict__, "do_sample": True, "temperature": cfg.temperature, "seed": cfg.seed + 1})
    samples = generate_rollouts(adapter, task, sampled_cfg, samples_per_prompt=cfg.n_samples)
    save_rollouts(samples, paths[1])
    return greedy, samples, train


def _confidence_comparison(adapter, task, examples, greedy: list[Rollout], v_s0: np.ndarray, cfg: ApplicationsConfig,
                           out: Path) -> tuple[ConfidenceComparison, np.ndarray]:
    correct = np.array([r.reward for r in greedy])
    gens = [Generation(r.prompt_ids, r.response_ids, r.response_text) for r in greedy]
    signals = {"value V(s_0) (value neurons)": (v_s0, False),
               "next-token probability": (next_token_confidence(adapter, gens), True)}
    if cfg.verbalized:
        verbal, _ = verbalized_confidence(adapter, task, examples, gens,
                                          GenerationConfig(max_new_tokens=12, batch_size=cfg.batch_size, progress=False))
        signals["verbalized confidence"] = (verbal, True)
    rows, curves, calibrated_value = [], [], None
    groups = [r.example_id for r in greedy]
    for name, (scores, needs_gen) in signals.items():
        ok = np.isfinite(scores)
        usable = ok.sum() >= 4 and np.unique(correct[ok]).size == 2
        cal = cross_calibrate(np.where(ok, scores, np.nan), correct, cfg.calibration, n_folds=cfg.n_folds, seed=cfg.seed,
                              groups=groups) if ok.sum() >= 2 * cfg.n_folds else np.full(correct.size, np.nan)
        if name.startswith("value"):
            calibrated_value = cal
        raw_curve = reliability_curve(f"{name}, raw", scores, correct, n_boot=cfg.n_boot, seed=cfg.seed)
        cal_curve = reliability_curve(f"{name}, calibrated", cal, correct, n_boot=cfg.n_boot, seed=cfg.seed)
        curves += [raw_curve, cal_curve]
        auc = (bootstrap_auc_ci(correct[ok], scores[ok], n_boot=cfg.n_boot, seed=cfg.seed).to_dict() if usable else
               {"estimate": float("nan"), "low": float("nan"), "high": float("nan"), "n": int(ok.sum())})
        rows.append({"signal": name, "needs_generation": "yes" if needs_gen else "no (one forward pass)", "auc": auc,
                     "ece_raw": raw_curve.ece.to_dict(), "ece_calibrated": cal_curve.ece.to_dict(), "n": int(ok.sum()),
                     "parse_rate": float(ok.mean())})
    fig = plot_reliability([c for c in curves if "value" in c.name or "calibrated" in c.name], out / "applications_reliability.png",
                           f"Reliability of confidence signals (n={correct.size} prompts)")
    return ConfidenceComparison(rows, fig, int(correct.size)), calibrated_value


def _candidates(task, examples, greedy, samples, traces_of, values_last) -> CandidateSet:
    by_prompt: dict[str, list[Rollout]] = {}
    for r in samples:
        by_prompt.setdefault(r.example_id, []).append(r)
    ids = [ex.id for ex in examples]
    k = min(len(by_prompt.get(i, [])) for i in ids)
    rows = [sorted(by_prompt[i], key=lambda r: r.id)[:k] for i in ids]
    g = {r.example_id: r for r in greedy}
    return CandidateSet(
        prompt_ids=ids,
        rewards=np.array([[r.reward for r in row] for row in rows]),
        values=np.array([[values_last[r.id] for r in row] for row in rows]),
        answers=[[answer_key(task, r.response_text) for r in row] for row in rows],
        lengths=np.array([[len(r.response_ids) for r in row] for row in rows]),
        traces=[[traces_of[r.id] for r in row] for row in rows],
        greedy_rewards=np.array([g[i].reward for i in ids]), greedy_lengths=np.array([len(g[i].response_ids) for i in ids]))


@dataclass
class _AppRun:
    """What the study's steps share: settings, model, task, rollouts, and (once fitted) the store and value signal."""

    cfg: ApplicationsConfig
    out: Path
    adapter: ModelAdapter
    task: object
    timings: dict[str, float]
    greedy: list[Rollout] = field(default_factory=list)
    samples: list[Rollout] = field(default_factory=list)
    train: list[Rollout] = field(default_factory=list)
    store: object = None
    signal: ValueSignal | None = None
    traces_of: dict = field(default_factory=dict)

    @property
    def examples(self) -> list:
        return list(self.task.examples)

    @property
    def rollouts(self) -> list[Rollout]:
        return self.greedy + self.samples


@dataclass
class _Scored:
    """The scorer's step: correctness and V(s_0) of each greedy answer, their AUC, the confidence comparison."""

    correct: np.ndarray
    v_s0: np.ndarray
    value_auc: dict
    full_auc: dict | None
    confidence: ConfidenceComparison
    calibrated: np.ndarray


def _prepare(cfg: ApplicationsConfig, adapter, task, train_task) -> tuple[_AppRun, object]:
    """The model (loaded unless given), the evaluated task and the probe-only training task."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if adapter is None:
        adapter = load_model(cfg.model, backend=cfg.backend, device=cfg.device)
    timings = {"load_model_s": time.perf_counter() - t0}
    if not cfg.from_run:  # the layers this model has, before any rollout
        cfg = copy.copy(cfg)
        cfg.layers = cfg.resolve_layers(adapter.n_layers, adapter.name)
    if task is None:
        task = get_task(cfg.task, n=cfg.n_prompts, seed=cfg.prompt_seed)
        if train_task is None and not cfg.from_run:
            train_task = _training_task(cfg, task)
    task.max_new_tokens = cfg.max_new_tokens
    return _AppRun(cfg, out, adapter, task, timings), train_task


def _value_signal(run: _AppRun) -> None:
    """One store over every rollout, then cross-fitted value traces (or a run directory's probe)."""
    cfg, t0 = run.cfg, time.perf_counter()
    rollouts = run.rollouts + run.train
    hooks = [run_best_hook(cfg.from_run)] if cfg.from_run else [f"blocks.{layer}.hook_resid_post" for layer in cfg.layers]
    store = run.store = build_store(run.adapter, rollouts, hooks, run.out / "store", meta={"task": cfg.task}, progress=False)
    run.timings["store_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    prompt_of = {r.id: r.example_id for r in rollouts}
    groups = [prompt_of[i] for i in store.rollout_ids]
    if cfg.from_run:
        run.signal = run_dir_signal(cfg.from_run, store, cfg.prune_ratio)
    else:
        run.signal = cross_fitted_signal(store, groups, cfg.layers, prune_ratio=cfg.prune_ratio, n_folds=cfg.n_folds,
                                         epochs=cfg.probe_epochs, seed=cfg.seed, model=run.adapter.name,
                                         train_only=[i.startswith("train/") for i in store.rollout_ids])
    run.traces_of = {rid: t for rid, t in zip(store.rollout_ids, run.signal.traces) if t is not None}
    run.timings["value_signal_s"] = time.perf_counter() - t0


def _nan_auc(n: int) -> dict:
    return {"estimate": float("nan"), "low": float("nan"), "high": float("nan"), "n": n}


def _scorer(run: _AppRun) -> _Scored:
    """V(s_0) per prompt (identical for every rollout of a prompt) as a confidence: its AUC, the comparison
    with the other signals, and the saved scorer (``value/``) and snapshot."""
    cfg, out, signal, greedy, t0 = run.cfg, run.out, run.signal, run.greedy, time.perf_counter()
    correct = np.array([r.reward for r in greedy])
    v_s0 = np.array([run.traces_of[r.id][0] for r in greedy])
    value_auc = (bootstrap_auc_ci(correct, v_s0, n_boot=cfg.n_boot, seed=cfg.seed).to_dict() if np.unique(correct).size == 2
                 else _nan_auc(int(correct.size)))
    full_auc = None
    if signal.full_probe_initial_values is not None and np.unique(correct).size == 2:
        index = {rid: i for i, rid in enumerate(run.store.rollout_ids)}
        v_full = np.array([signal.full_probe_initial_values[index[r.id]] for r in greedy])
        full_auc = bootstrap_auc_ci(correct, v_full, n_boot=cfg.n_boot, seed=cfg.seed).to_dict()
    confidence, calibrated = _confidence_comparison(run.adapter, run.task, run.examples, greedy, v_s0, cfg, out)
    scorer = ValueScorer(signal.final_probe, signal.final_hook, signal.scorer_neurons, run.adapter, cfg.calibration)
    scorer.fit_from_values(v_s0, correct)
    signal.final_probe.save(out / "value" / "value_probe")
    if signal.scorer_neurons is not None:
        signal.scorer_neurons.save(out / "value" / "value_neurons.json")
    ValueSnapshot(str(out), run.adapter.name, signal.final_hook, signal.neuron_sets, [r.example_id for r in greedy],
                  correct, v_s0).save(out)
    run.timings["scorer_s"] = time.perf_counter() - t0
    return _Scored(correct, v_s0, value_auc, full_auc, confidence, calibrated)


def _routing(run: _AppRun, cands: CandidateSet, scored: _Scored) -> RoutingResult:
    """Answer now / sample N by the calibrated confidence (V(s_0) where uncalibrated) vs uniform sampling."""
    cfg, n = run.cfg, cands.n_samples
    sampled, sampled_tok = select(cands, cfg.routing_selector, n)
    uniform = {1: (cands.greedy_rewards, cands.greedy_lengths)}
    for k in sorted({min(2 ** i, n) for i in range(1, int(np.log2(n)) + 1)} | {n}):
        uniform[k] = select(cands, cfg.routing_selector, k)
    outcomes = RoutingOutcomes(cands.greedy_rewards, sampled, {k: v[0] for k, v in uniform.items()}, cands.greedy_lengths,
                               sampled_tok, {k: v[1] for k, v in uniform.items()}, n)
    routing_conf = np.where(np.isfinite(scored.calibrated), scored.calibrated, scored.v_s0)
    return routing_study(routing_conf, outcomes, selector=cfg.routing_selector, headline_fraction=cfg.routing_fraction,
                         escalate_fraction=cfg.escalate_fraction, n_boot=cfg.n_boot, seed=cfg.seed)


def _detection_and_curation(run: _AppRun, thresholds: dict, values_last: dict) -> tuple[DetectionResult, CurationResult]:
    """Flag rollouts whose value or TD error drops; export the confident-but-wrong and unconfident-but-right ones."""
    cfg, rollouts, traces_of = run.cfg, run.rollouts, run.traces_of
    rule = FlagRule(value_threshold=thresholds["flag_value"], td_threshold=thresholds["flag_td"],
                    gamma=run.signal.final_probe.cfg.gamma)
    detection = detect_errors([traces_of[r.id] for r in rollouts], [r.reward for r in rollouts], rule,
                              groups=[r.example_id for r in rollouts], n_boot=cfg.n_boot, seed=cfg.seed)
    prompt_text = {ex.id: run.task.user_message(ex) for ex in run.examples}
    columns = CurationColumns([r.id for r in rollouts], [r.example_id for r in rollouts],
                              [prompt_text[r.example_id] for r in rollouts], [r.response_text for r in rollouts],
                              [r.gold for r in rollouts], [r.reward for r in rollouts], [values_last[r.id] for r in rollouts])
    curation = curate(columns, run.out / "curated", thresholds["confident"], thresholds["unconfident"])
    return detection, curation


def run_applications(cfg: ApplicationsConfig, adapter: ModelAdapter | None = None, task=None,
                     train_task=None) -> ApplicationsResult:
    """Run every application on ``cfg.task`` (or a given :class:`~reward_circuits.tasks.Task`) → :class:`ApplicationsResult`.

    Writes only its artefacts to ``cfg.out``: the rollouts, the store, the scorer (``value/``), the
    curated dataset and the figures; ``result.to_section(out)`` is its ``applications`` report section
    (the command, :func:`~reward_circuits.studies.applications.commands.write_applications_report`, writes the report)."""
    t_start = time.perf_counter()
    steps = tqdm(total=6, desc="applications", leave=False, disable=not cfg.progress)
    run, train_task = _prepare(cfg, adapter, task, train_task)
    cfg = run.cfg  # with the layers resolved for this model: the summary records the layers probed
    t0 = time.perf_counter()
    run.greedy, run.samples, run.train = _rollouts(run.adapter, run.task, cfg, run.out, train_task)
    run.timings["rollouts_s"] = time.perf_counter() - t0
    steps.update()
    _value_signal(run)
    steps.update(2)
    scored = _scorer(run)
    steps.update()
    # ---- decoding, routing, detection, curation (no model calls) ------------------------------
    t0 = time.perf_counter()
    values_last = {rid: float(t[-1]) for rid, t in run.traces_of.items()}
    cands = _candidates(run.task, run.examples, run.greedy, run.samples, run.traces_of, values_last)
    thresholds = cfg.resolved_thresholds([run.traces_of[r.id] for r in run.rollouts])
    bon = best_of_n(cands, abort=AbortRule(drop=thresholds["abort_drop"]), n_boot=cfg.n_boot, seed=cfg.seed)
    figures = [scored.confidence.reliability_figure, bon.plot(run.out / "applications_best_of_n.png")]
    routing = _routing(run, cands, scored)
    figures.append(routing.plot(run.out / "applications_routing.png"))
    steps.update()
    detection, curation = _detection_and_curation(run, thresholds, values_last)
    figures.append(detection.plot(run.out / "applications_detection.png"))
    run.timings["analyses_s"] = time.perf_counter() - t0
    steps.update()
    steps.close()
    run.timings["total_s"] = time.perf_counter() - t_start
    return ApplicationsResult(cfg, run.signal.source, run.signal.hooks_by_fold, scored.value_auc, scored.full_auc,
                              scored.confidence, bon, routing, detection, curation, [f for f in figures if f], run.timings,
                              thresholds, float(scored.correct.mean()), float(np.mean([r.reward for r in run.samples])),
                              len(run.train), model=run.adapter.name)


def model_snapshot(model: str, cfg: ApplicationsConfig, adapter: ModelAdapter | None = None, task=None) -> ValueSnapshot:
    """A :class:`ValueSnapshot` of a model given by name (no run directory): greedy rollouts on
    ``cfg.n_prompts`` prompts of ``cfg.task`` (``cfg.prompt_seed``: the same prompts for every
    model, so the AUC shift is paired), a store at ``cfg.layers`` and cross-fitted ``V(s_0)``;
    written to ``cfg.out`` (resumable)."""
    out = Path(cfg.out)
    adapter = adapter or load_model(model, backend=cfg.backend, device=cfg.device)
    cfg = copy.copy(cfg)
    cfg.layers = cfg.resolve_layers(adapter.n_layers, adapter.name)
    task = task or get_task(cfg.task, n=cfg.n_prompts, seed=cfg.prompt_seed)
    task.max_new_tokens = cfg.max_new_tokens
    path = out / "rollouts" / "greedy"
    if path.exists():
        greedy = load_rollouts(path)
    else:
        greedy = generate_rollouts(adapter, task, GenerationConfig(max_new_tokens=cfg.max_new_tokens,
                                                                   batch_size=cfg.batch_size, seed=cfg.seed))
        save_rollouts(greedy, path)
    hooks = [f"blocks.{layer}.hook_resid_post" for layer in cfg.layers]
    store = build_store(adapter, greedy, hooks, out / "store", meta={"task": cfg.task}, progress=False)
    prompt_of = {r.id: r.example_id for r in greedy}
    signal = cross_fitted_signal(store, [prompt_of[i] for i in store.rollout_ids], cfg.layers, prune_ratio=cfg.prune_ratio,
                                 n_folds=cfg.n_folds, epochs=cfg.probe_epochs, seed=cfg.seed, model=adapter.name)
    index = {rid: i for i, rid in enumerate(store.rollout_ids)}
    snap = ValueSnapshot(f"{model} ({cfg.task})", adapter.name, signal.final_hook, signal.neuron_sets,
                         [r.example_id for r in greedy], [r.reward for r in greedy],
                         [signal.traces[index[r.id]][0] for r in greedy])
    snap.save(out)
    return snap
