"""The main job: rollouts → activation store → value probes → interventions → dopamine → report.

Each stage adds its section to ``summary.json`` and ``report.html`` as soon as it finishes, and a
rerun reuses what is on disk (rollouts, stores), so a stopped job resumes. Each stage's sections are
also kept whole in ``sections.json``: a run with ``--stages`` runs those stages on what earlier runs
into the same directory left (the value stage's probe, neuron sets and saved split) and keeps every
other section; a stage whose input is neither computed now nor on disk stops before the model loads.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ...analysis.claims import claims_section, evidence_from_summary, verdict
from ...neurons import NeuronSet
from ...data.capture import build_store, generate_rollouts_and_store
from ...io import remove_atomic_leftovers
from ...data.rollouts import accuracy, generate_rollouts, load_rollouts, save_rollouts
from ...models import GenerationConfig, ModelAdapter, load_model, resid_hooks
from ...models.hook_names import check_layers_exist
from ...models.loading import peek_n_layers, relative_depth
from ...tasks import get_task
from ...tasks.base import FEW_SHOT_STOP
from .config import RunConfig
from .dopamine import DopamineStageConfig, run_dopamine_causal_check, run_dopamine_stage
from .interventions import InterventionInputs, InterventionStageResult, InterventionStudyConfig, run_intervention_stage
from ...report import Report, Section, Table
from ...data.store import read_manifest
from .evaluation import EvaluationPrompts, EvaluationSource, evaluation_examples
from .result import RunResult
from .run_folder import check_cached_rollouts, check_same_model, save_rollout_record, task_slug
from .sizing import run_sizing, sizing_lines
from .stage_meter import StageTimings
from .stage_sections import load_stage_sections, save_stage_sections
from .value import ValueStageConfig, ValueStageResult, run_value_stage


def default_layers(n_layers: int) -> list[int]:
    layers = list(range(0, n_layers, 3))
    if n_layers - 1 not in layers:
        layers.append(n_layers - 1)
    return layers




@dataclass
class _Job:
    """What every stage of one run shares."""

    cfg: RunConfig
    out: Path
    adapter: ModelAdapter
    hooks: list[str]
    gen_cfg: GenerationConfig
    timings: StageTimings
    result: RunResult  # header and sections by stage: what run() returns
    report: Report | None  # the command's report, told of each stage as it finishes (None: none written)
    previous: dict[str, list[Section]]  # what earlier runs into ``out`` wrote, by stage

    def add(self, stage: str, item) -> None:
        """Keep a stage's section(s) in the result and on disk (``sections.json``); tell the report."""
        sections = item.to_sections() if hasattr(item, "to_sections") else [item]
        self.result.stages[stage] = list(sections)
        save_stage_sections(self.out, self.result.stages)
        if self.report is not None:
            self.report.add(item)

    def keep_previous(self, stage: str) -> bool:
        """A stage not run now: keep what an earlier run wrote for it (its sections, whole)."""
        if self.previous.get(stage):
            self.add(stage, _Kept(self.previous[stage]))
            return True
        return False


@dataclass
class _Kept:
    """An earlier run's sections of one stage, carried over whole."""

    sections: list[Section]

    def to_sections(self) -> list[Section]:
        return list(self.sections)


def run(cfg: RunConfig, adapter: ModelAdapter | None = None, report: Report | None = None) -> RunResult:
    """Run the main job → :class:`RunResult` (header and every stage's sections).

    Writes its artefacts under ``cfg.out`` (rollouts, stores, probes, neuron sets, figures,
    ``sections.json``); ``report`` (the command's :class:`~reward_circuits.report.Report`, see
    :func:`~reward_circuits.studies.run.commands.run_and_report`) gets each stage's sections as the stage
    finishes, so a stopped job leaves a valid report of what it finished. Stages not in ``cfg.stages``
    keep what an earlier run into ``cfg.out`` wrote; a stage whose input is neither computed now nor on
    disk raises :class:`StageInputError` (before the model loads).
    """
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    for p in remove_atomic_leftovers(out):  # a killed run's half-written files never count as results
        print(f"[resume] removed {p.relative_to(out)}, left by an interrupted write")
    previous = load_stage_sections(out)  # before the first stage rewrites summary.json
    check_stage_inputs(cfg, out)
    check_tasks(cfg.tasks)
    check_cached_rollouts(cfg, out, _rollout_task)
    sizing = run_sizing(cfg, adapter.name if adapter is not None else cfg.model)
    print("\n".join(sizing_lines(sizing)))  # what this n can detect, and its cost, before anything runs
    if adapter is None and cfg.layers:  # said before the model loads, where its config tells the depth
        check_layers(cfg.layers, peek_n_layers(cfg.model), cfg.model)
    t_start = time.perf_counter()
    timings = StageTimings()  # {stage: seconds}; also records each stage's peak RSS in timings.peak_rss_mb
    t0 = time.perf_counter()
    if adapter is None:
        adapter = load_model(cfg.model, backend=cfg.backend, device=cfg.device)
    timings["load_model_s"] = time.perf_counter() - t0
    check_same_model(out, adapter.name, cfg.tasks)
    result = RunResult(out, header={**_header(cfg, adapter), "sizing": sizing})
    if report is not None:
        report.header.update(result.header)
    job = _Job(cfg, out, adapter, _store_hooks(cfg, adapter), _generation_config(cfg, adapter), timings, result,
               report, previous)
    rollouts, stores = _rollouts_stage(job)
    value = _value_stage(job, rollouts, stores)
    if "interventions" in cfg.stages:
        t0 = time.perf_counter()
        interventions = _intervention_stage(job, value, rollouts, stores)
        for section in interventions.to_sections():
            _relative_figures(section, out, out / "interventions")
        job.add("interventions", interventions)
        timings["interventions_s"] = time.perf_counter() - t0
    else:
        job.keep_previous("interventions")
    if "dopamine" in cfg.stages:
        t0 = time.perf_counter()
        job.add("dopamine", _dopamine_stage(job, value, rollouts, stores))
        timings["dopamine_s"] = time.perf_counter() - t0
    else:
        job.keep_previous("dopamine")
    # the result (and the report) opens with every registered claim the run measured (kept stages included)
    claims = claims_section(verdict(evidence_from_summary(result.to_dict())))
    result.stages = {"claims": [claims], **{k: v for k, v in result.stages.items() if k != "claims"}}
    if report is not None:
        report.add(claims, first=True)
    timings["total_s"] = time.perf_counter() - t_start
    timings.note("process_cpu_s", time.process_time())  # CPU time of every thread since start: not a stage
    result.header.update(timings=timings, wall_time_s=timings["total_s"], peak_rss_mb=timings.peak_rss_mb)
    return result


class StageInputError(ValueError):
    """A stage was asked for whose input no earlier stage wrote (says which stage to run first)."""


def check_stage_inputs(cfg: RunConfig, out: Path) -> None:
    """The interventions and dopamine stages need the value stage's results: computed in this run or
    left in ``out/value`` by an earlier one. Said before the model loads, never skipped silently."""
    needs_value = [s for s in ("interventions", "dopamine") if s in cfg.stages]
    if needs_value and "value" not in cfg.stages and not (out / "value" / "value_probe").exists():
        raise StageInputError(
            f"--stages {','.join(cfg.stages)}: the {' and '.join(needs_value)} stage{'s' if len(needs_value) > 1 else ''} "
            f"need{'' if len(needs_value) > 1 else 's'} the value stage's probe and neuron sets, and {out / 'value'} has "
            f"none. Add value to --stages (e.g. --stages value,{','.join(needs_value)}), or point --out at a run "
            "whose value stage finished.")


def check_tasks(specs) -> None:
    """Every task spec resolves (a typo is said before the model loads, not after 10-15 s)."""
    for spec in specs:
        get_task(spec, n=1, seed=0)


def check_layers(layers, n_layers: int | None, model: str) -> None:
    if n_layers is not None:
        check_layers_exist(layers, n_layers, model, "--layers", default=f"every 3rd layer and the last: {default_layers(n_layers)}")


def _store_hooks(cfg: RunConfig, adapter: ModelAdapter) -> list[str]:
    layers = list(cfg.layers) if cfg.layers else default_layers(adapter.n_layers)
    check_layers(layers, adapter.n_layers, adapter.name)
    return ["hook_embed"] + [h for h in resid_hooks(adapter.n_layers) if int(h.split(".")[1]) in layers]


def _generation_config(cfg: RunConfig, adapter: ModelAdapter) -> GenerationConfig:
    # a base model prompted few-shot goes on to write the next question: stop there (rows leave the batch)
    few_shot = getattr(adapter.tokenizer, "chat_template", None) is None
    return GenerationConfig(max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size, seed=cfg.seed,
                            stop_strings=(FEW_SHOT_STOP,) if few_shot else (), progress=cfg.progress)


def _header(cfg: RunConfig, adapter: ModelAdapter) -> dict:
    return {
        "model": adapter.name, "backend": adapter.backend, "n_layers": adapter.n_layers, "d_model": adapter.d_model,
        "seed": cfg.seed, "config": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()},
        "machine": f"{platform.machine()} {platform.system()}",
    }


def _rollouts_stage(job: _Job) -> tuple[dict, dict]:
    """Rollouts of every task (read back when on disk) and their stores (built, resumed or opened).

    Rollouts generated now take their store's states from the generation itself (capture while
    generating: no second forward; ``rollouts_<task>_s`` is then the time of both, ``store_<task>_s``
    0); rollouts read back get their store from one teacher-forced forward (:func:`build_store`).
    """
    cfg, out, timings = job.cfg, job.out, job.timings
    rollouts, stores, captured = {}, {}, False
    wants_store = any(s in cfg.stages for s in ("store", "value", "dopamine"))
    for spec in cfg.tasks:
        slug = task_slug(spec)
        rpath, spath = out / "rollouts" / slug, out / "store" / slug
        done = _store_complete(spath)
        t0 = time.perf_counter()
        if rpath.exists():
            rollouts[spec] = load_rollouts(rpath)
        elif wants_store and not done:
            rollouts[spec], stores[spec] = generate_rollouts_and_store(
                job.adapter, _rollout_task(cfg, spec), job.hooks, spath, job.gen_cfg, **_store_options(job, spec))
            save_rollouts(rollouts[spec], rpath)
            save_rollout_record(out, spec, cfg, job.adapter.name)
            print(f"[store] {spec}: states captured while generating")
        else:
            rollouts[spec] = generate_rollouts(job.adapter, _rollout_task(cfg, spec), job.gen_cfg)
            save_rollouts(rollouts[spec], rpath)
            save_rollout_record(out, spec, cfg, job.adapter.name)
        timings[f"rollouts_{slug}_s"] = time.perf_counter() - t0
        print(f"[rollouts] {spec}: {len(rollouts[spec])} rollouts, accuracy {accuracy(rollouts[spec]):.3f}")
        if spec in stores:
            timings[f"store_{slug}_s"] = 0.0
        elif done or wants_store:
            t0 = time.perf_counter()
            stores[spec] = build_store(job.adapter, rollouts[spec], job.hooks, spath, **_store_options(job, spec))
            timings[f"store_{slug}_s"] = time.perf_counter() - t0
            captured |= not done
    previous = (job.previous.get("rollouts") or [Section("rollouts", "", {})])[0].summary
    job.add("rollouts", _rollouts_section(job, rollouts, stores, captured, previous))
    return rollouts, stores


def _rollout_task(cfg: RunConfig, spec: str):
    task = get_task(spec, n=cfg.limit_of(spec), seed=cfg.seed)
    task.max_new_tokens = cfg.max_new_tokens
    return task


def _store_options(job: _Job, spec: str) -> dict:
    """The store's settings (the same whichever way its states are taken): 16 rollouts a shard."""
    return dict(batch_size=16, meta={"task": spec}, progress=job.cfg.progress)


def _store_complete(path: Path) -> bool:
    try:
        return bool(read_manifest(path).get("complete"))
    except (FileNotFoundError, ValueError):
        return False


def _rollouts_section(job: _Job, rollouts: dict, stores: dict, captured: bool, previous: dict) -> Section:
    hooks, timings = job.hooks, job.timings
    n_states = sum(len(r.response_ids) + 1 for rs in rollouts.values() for r in rs)
    store_bytes = sum(s.nbytes() for s in stores.values())
    # the capture rate (of the second forward) is measured only by a run that captured that way; a
    # resumed one keeps the measured figure; states captured while generating have no time of their own
    second = [s for s in rollouts if timings.get(f"store_{task_slug(s)}_s")]
    store_secs = sum(timings[f"store_{task_slug(s)}_s"] for s in second)
    n_second = sum(len(r.response_ids) + 1 for s in second for r in rollouts[s])
    rate = (n_second / store_secs if store_secs else None) if captured else previous.get("capture_states_per_s")
    # a task's generator may hold fewer distinct questions than `limit` (arithmetic:1: 155): the
    # copies' greedy rollouts are identical, so they are not independent evidence
    distinct = {s: len({tuple(x.prompt_ids) for x in r}) for s, r in rollouts.items()}
    repeats = [f"{s}: {distinct[s]} distinct prompts among {len(r)} rollouts" for s, r in rollouts.items()
               if distinct[s] < len(r)]
    mean_len = {s: float(np.mean([len(x.response_ids) for x in r])) for s, r in rollouts.items()}
    return Section(
        key="rollouts", title="Tasks, rollouts and the activation store",
        notes=([f"Repeated prompts ({'; '.join(repeats)}): splits keep each prompt on one side and the value "
                "stage's AUC intervals resample prompts, so their n counts distinct prompts."] if repeats else []),
        summary={
            "tasks": list(job.cfg.tasks),
            "n_rollouts": {s: len(r) for s, r in rollouts.items()},
            "accuracy": {s: accuracy(r) for s, r in rollouts.items()},
            "mean_response_tokens": mean_len,
            "finished_with_eos": {s: float(np.mean([x.finish_reason == "eos" for x in r])) for s, r in rollouts.items()},
            "distinct_prompts": distinct,
            "store_hooks": hooks,
            "store_states": n_states,
            "store_bytes": store_bytes,
            "store_mb": store_bytes / 2**20,
            "capture_states_per_s": rate,
        },
        tables=[Table("Accuracy of the default model per task", ["task", "rollouts", "accuracy", "mean response tokens"],
                      [[s, len(r), accuracy(r), mean_len[s]] for s, r in rollouts.items()]),
                Table("Example responses", ["task", "response", "gold", "reward"],
                      [[s, x.response_text[:160], x.gold, x.reward] for s, r in rollouts.items() for x in r[:4]])],
    )


def _value_stage(job: _Job, rollouts: dict, stores: dict) -> ValueStageResult | None:
    """Run the value stage, or read back the one an earlier run into ``out`` finished."""
    cfg, out = job.cfg, job.out
    primary, value_dir = cfg.tasks[0], job.out / "value"
    if "value" not in cfg.stages:
        if not (value_dir / "value_probe").exists():
            return None
        job.keep_previous("value")
        summary = next((s.summary for s in job.result.stages.get("value", []) if s.key == "value"), {})
        if not summary:
            raise StageInputError(f"{value_dir} holds a value probe but {out / 'summary.json'} has no value section "
                                  "(the stage was stopped while writing): re-run it with --stages value.")
        # the stage's own files, split included: the only place a stage's results are read back
        return ValueStageResult.load(value_dir, summary, store=stores.get(primary))
    t0 = time.perf_counter()
    # both tasks' prompts: the pooled probe splits the second store by prompt too (ids carry the task)
    prompt_tokens = {r.id: r.prompt_ids for spec in cfg.tasks[:2] for r in rollouts[spec]}
    second = stores.get(cfg.tasks[1]) if len(cfg.tasks) > 1 else None
    # hook_embed is the surface baseline the stage computes on its own, not a candidate layer
    value = run_value_stage(stores[primary], value_dir, hooks=[h for h in job.hooks if h != "hook_embed"],
                            second_store=second, prompt_tokens=prompt_tokens, vocab_size=len(job.adapter.tokenizer),
                            config=ValueStageConfig(seed=cfg.seed, quick=cfg.quick, exclude_massive=cfg.exclude_massive,
                                                    target_variants_all_layers=cfg.target_variants_all_layers,
                                                    robustness_seeds=cfg.robustness_seeds,
                                                    robustness_widths=cfg.robustness_widths,
                                                    test_fraction=cfg.test_fraction, progress=cfg.progress))
    _relative_figures(value.section, out, value_dir)
    job.timings["value_s"] = time.perf_counter() - t0
    job.add("value", value)
    print(value_line(value))
    return value


def value_line(value: ValueStageResult) -> str:
    """The ``[value]`` line: which split chose the layer, which split the AUCs are on, and n."""
    s = value.section.summary
    splits = s.get("splits", {})
    aucs = ", ".join(f"L{k} {v:.3f}" for k, v in (s.get("auc_by_layer") or {}).items() if v is not None)
    grouped = " (split by prompt)" if splits.get("grouped_by_prompt") else ""
    return (f"[value] best layer {value.best_key}, chosen on the validation split (n = {splits.get('val')} rollouts, "
            f"AUC {value.auc_val.get(value.best_hook, float('nan')):.3f}); held-out test AUC of V(s_0) by layer "
            f"(n = {splits.get('test')} rollouts{grouped}): {aucs}")


def _dopamine_stage(job: _Job, value: ValueStageResult, rollouts: dict, stores: dict):
    """Dopamine neurons on the primary store, and their causal check on the value stage's held-out rollouts."""
    cfg, out, adapter = job.cfg, job.out, job.adapter
    primary = cfg.tasks[0]
    store = stores[primary]
    by_id = {r.id: r for r in rollouts[primary]}
    tok = adapter.tokenizer
    token_strings = [[tok.decode([t]) for t in [by_id[rid].prompt_ids[-1]] + list(by_id[rid].response_ids)]
                     for rid in store.rollout_ids]
    dopamine = run_dopamine_stage(store, value.probe, value.best_hook, out / "dopamine",
                                  value_neurons=value.best_neurons, token_strings=token_strings,
                                  config=DopamineStageConfig(seed=cfg.seed, n_permutations=200 if cfg.quick else 1000),
                                  prompt_groups=[tuple(by_id[rid].prompt_ids) for rid in store.rollout_ids])
    if dopamine.top_neurons is not None:
        # the value stage's held-out rollouts, as it saved them (prompt-grouped): the probe never trained on them
        held = [by_id[store.rollout_ids[i]] for i in value.test_indices[: cfg.eval_examples]]
        eval_task = _eval_task(job, value, rollouts, stores).task
        causal, table = run_dopamine_causal_check(
            adapter, value.probe, dopamine.top_neurons, [(r.prompt_ids, r.response_ids) for r in held], eval_task,
            list(eval_task.examples), config=job.gen_cfg, n_random_draws=cfg.random_draws, seed=cfg.seed,
            magnitudes=dopamine.magnitudes)  # magnitude-matched random sets join the same sweep
        dopamine.section.summary["causal"] = causal
        dopamine.section.tables.append(table)
    _relative_figures(dopamine.section, out, out / "dopamine")
    return dopamine


def _relative_figures(section: Section, out: Path, stage_dir: Path) -> None:
    """Make a stage's figure paths relative to the report directory.

    Stages name figures by absolute path, relative to their own directory, or relative to ``out``.
    """
    rel = []
    for f in section.figures:
        p = Path(f)
        if not p.is_absolute():
            p = stage_dir / p if (stage_dir / p).exists() else out / p
        if not p.exists():
            raise FileNotFoundError(f"stage {section.key!r} names figure {f}, which is neither in {stage_dir} nor in {out}.")
        rel.append(str(p.resolve().relative_to(out.resolve())))
    section.figures = rel


def _eval_task(job: _Job, value: ValueStageResult, rollouts: dict, stores: dict) -> EvaluationPrompts:
    """The generation studies' prompts: distinct, and none a prompt the probe trained or validated on
    (:mod:`.evaluation`: fresh prompts first, the probe's held-out test prompts where the task runs short)."""
    cfg = job.cfg
    primary = cfg.tasks[0]
    store = stores[primary]
    by_id = {r.id: r for r in rollouts[primary]}
    rollout_task = get_task(primary, n=cfg.limit_of(primary), seed=cfg.seed)
    source = EvaluationSource(primary, rollout_task, [by_id[rid] for rid in store.rollout_ids],
                              {"fit": value.train_indices, "val": value.val_indices, "test": value.test_indices},
                              draw=lambda n, seed: get_task(primary, n=n, seed=seed))
    ev = evaluation_examples(source, cfg.eval_examples, cfg.seed + 7, job.adapter)
    ev.task.max_new_tokens = cfg.max_new_tokens
    for note in ev.notes:
        print(f"[interventions] {note}")
    return ev


def _intervention_stage(job: _Job, value: ValueStageResult, rollouts: dict, stores: dict) -> InterventionStageResult:
    """The studies on the value stage's best layer and the next ones by validation AUC, on prompts the
    probe never saw (:func:`_eval_task`)."""
    cfg, adapter, out, gen_cfg = job.cfg, job.adapter, job.out, job.gen_cfg
    ranked = [k for k in value.layers_by_validation() if int(k) >= 0]
    keys, controlled = ablated_layers(ranked, cfg.ablation_layers, cfg.ablation_depths, adapter.n_layers)
    chosen = {int(k): value.value_sets[k] for k in keys}
    mc = value.final_reward_neurons
    # transfer across tasks: the second task's value neurons (its own probe, same hook) ablated here
    second = out / "value" / "value_neurons_second_store.json"
    transfer = {f"{cfg.tasks[1]} value set": NeuronSet.load(second)} if len(cfg.tasks) > 1 and second.exists() else {}
    transfer.update(_transfer_from_run(cfg, chosen))
    inputs = InterventionInputs(chosen, probe=value.probe, probe_hook=value.best_hook,
                                final_reward_sets={mc.layer: mc} if mc is not None else None,
                                magnitudes=value.magnitudes, transfer_sets=transfer or None)
    study = InterventionStudyConfig(n_random_draws=cfg.random_draws, seed=cfg.seed,
                                    dose_fractions=cfg.dose_fractions, dose_modes=cfg.dose_modes,
                                    dose_random_draws=1, controlled_layers=controlled)
    ev = _eval_task(job, value, rollouts, stores)
    result = run_intervention_stage(adapter, ev.task, inputs, out / "interventions", study, gen_cfg,
                                    examples=list(ev.task.examples))
    for section in result.to_sections():
        section.summary["evaluation_prompts"] = ev.to_dict()
        section.notes = list(section.notes) + ev.notes
    if cfg.ablation_depths:  # which ablated layers the depths added (the paper's early layers), with controls
        result.ablation.summary["ablated_layers"] = {"validation_best": ranked[: cfg.ablation_layers],
                                                     "at_depths": {str(d): layer_at_depth(d, ranked, adapter.n_layers)
                                                                   for d in cfg.ablation_depths},
                                                     "controlled": keys[:controlled]}
        result.ablation.notes.append(f"Ablated besides the {cfg.ablation_layers} validation-best layers: the stored layers "
                                     f"nearest relative depths {list(cfg.ablation_depths)} (layer / (n_layers - 1)), with "
                                     f"uniform and magnitude-matched controls at layers {keys[:controlled]}.")
    return result


def layer_at_depth(depth: float, layers: list[str], n_layers: int) -> str:
    """The stored layer key nearest to relative depth ``depth`` (:func:`relative_depth`; ties: the earlier)."""
    if not layers:
        raise ValueError("no stored layer to resolve a relative depth to: store at least one block (--layers).")
    return min(layers, key=lambda k: (round(abs(relative_depth(int(k), n_layers) - depth), 9), int(k)))


def ablated_layers(ranked: list[str], n_best: int, depths: tuple[float, ...], n_layers: int) -> tuple[list[str], int]:
    """The ablation study's layers and how many of them (the first) get uniform and matched controls:
    the best by validation, then the layers nearest each relative depth in ``depths`` (the paper's
    early layers, always ablated; one already chosen is not repeated), then the other validation-best ones."""
    best = ranked[:n_best]
    at_depth = list(dict.fromkeys(layer_at_depth(d, ranked, n_layers) for d in depths))
    extra = [k for k in at_depth if k not in best[:1]]
    return best[:1] + extra + [k for k in best[1:] if k not in extra], 1 + len(extra)


def _transfer_from_run(cfg: RunConfig, chosen: dict[int, NeuronSet]) -> dict[str, NeuronSet]:
    """Value sets of another run (``--transfer-from``, e.g. the base model of this fine-tuned one) at
    this run's ablated hooks: transfer across models of the same family."""
    if not cfg.transfer_from:
        return {}
    other = Path(cfg.transfer_from)
    sets = {k: NeuronSet.from_dict(v) for k, v in json.loads((other / "value" / "value_neurons_by_layer.json").read_text()).items()}
    summary = other / "summary.json"
    label = json.loads(summary.read_text()).get("model", other.name) if summary.exists() else other.name
    out = {}
    for layer, ns in chosen.items():
        theirs = sets.get(str(layer))
        if theirs is not None and theirs.hook_name == ns.hook_name and theirs.d == ns.d:
            out[f"{label} value set, layer {layer}"] = theirs
    if not out:
        raise ValueError(f"--transfer-from {other}: none of its value sets sits at this run's ablated hooks "
                         f"{[ns.hook_name for ns in chosen.values()]} with the same width; run both with the same --layers.")
    return out
