"""The main job: rollouts → activation store → value probes → interventions → dopamine → report.

Each stage adds its section to ``summary.json`` and ``report.html`` as soon as it finishes, and a
rerun reuses what is on disk (rollouts, stores), so a stopped job resumes.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..data.capture import build_store
from ..models import GenerationConfig, ModelAdapter, layer_of, load_model, resid_hooks
from .report import Report, Section, Table
from ..data.rollouts import accuracy, generate_rollouts, load_rollouts, save_rollouts
from ..tasks import get_task

from .config import RunConfig


def default_layers(n_layers: int) -> list[int]:
    layers = list(range(0, n_layers, 3))
    if n_layers - 1 not in layers:
        layers.append(n_layers - 1)
    return layers


def _task_slug(spec: str) -> str:
    return spec.replace(":", "_").replace("/", "_")


def run(cfg: RunConfig, adapter: ModelAdapter | None = None) -> dict:
    """Run the main job; returns the summary dict (also in ``<out>/summary.json``)."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    if adapter is None:
        adapter = load_model(cfg.model, backend=cfg.backend, device=cfg.device)
    timings["load_model_s"] = time.perf_counter() - t0
    layers = list(cfg.layers) if cfg.layers else default_layers(adapter.n_layers)
    hooks = ["hook_embed"] + [h for h in resid_hooks(adapter.n_layers) if int(h.split(".")[1]) in layers]
    report = Report(out, header={
        "model": adapter.name, "backend": adapter.backend, "n_layers": adapter.n_layers, "d_model": adapter.d_model,
        "seed": cfg.seed, "config": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()},
        "machine": f"{platform.machine()} {platform.system()}",
    })
    gen_cfg = GenerationConfig(max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size, seed=cfg.seed)

    # ---- rollouts + stores -----------------------------------------------------------------------
    tasks, rollouts, stores = {}, {}, {}
    for spec in cfg.tasks:
        slug = _task_slug(spec)
        task = get_task(spec, n=cfg.limit, seed=cfg.seed)
        task.max_new_tokens = cfg.max_new_tokens
        tasks[spec] = task
        rpath = out / "rollouts" / slug
        t0 = time.perf_counter()
        if rpath.exists():
            rollouts[spec] = load_rollouts(rpath)
        else:
            rollouts[spec] = generate_rollouts(adapter, task, gen_cfg)
            save_rollouts(rollouts[spec], rpath)
        timings[f"rollouts_{slug}_s"] = time.perf_counter() - t0
        print(f"[rollouts] {spec}: {len(rollouts[spec])} rollouts, accuracy {accuracy(rollouts[spec]):.3f}")
        if "store" in cfg.stages or "value" in cfg.stages or "dopamine" in cfg.stages:
            t0 = time.perf_counter()
            stores[spec] = build_store(adapter, rollouts[spec], hooks, out / "store" / slug,
                                       batch_size=16, meta={"task": spec})
            timings[f"store_{slug}_s"] = time.perf_counter() - t0
    n_states = sum(len(r.response_ids) + 1 for rs in rollouts.values() for r in rs)
    store_bytes = sum(s.nbytes() for s in stores.values())
    store_secs = sum(v for k, v in timings.items() if k.startswith("store_"))
    report.add(Section(
        key="rollouts", title="Tasks, rollouts and the activation store",
        summary={
            "tasks": list(cfg.tasks),
            "n_rollouts": {s: len(r) for s, r in rollouts.items()},
            "accuracy": {s: accuracy(r) for s, r in rollouts.items()},
            "mean_response_tokens": {s: float(np.mean([len(x.response_ids) for x in r])) for s, r in rollouts.items()},
            "finished_with_eos": {s: float(np.mean([x.finish_reason == "eos" for x in r])) for s, r in rollouts.items()},
            "store_hooks": hooks,
            "store_states": n_states,
            "store_bytes": store_bytes,
            "store_mb": store_bytes / 2**20,
            "capture_states_per_s": n_states / store_secs if store_secs else None,
        },
        tables=[Table("Accuracy of the default model per task", ["task", "rollouts", "accuracy", "mean response tokens"],
                      [[s, len(r), accuracy(r), float(np.mean([len(x.response_ids) for x in r]))] for s, r in rollouts.items()]),
                Table("Example responses", ["task", "response", "gold", "reward"],
                      [[s, x.response_text[:160], x.gold, x.reward] for s, r in rollouts.items() for x in r[:4]])],
    ))

    # ---- value probes --------------------------------------------------------------------------
    primary = cfg.tasks[0]
    value_dir = out / "value"
    probe = value_sets = None
    best_hook = None
    if "value" in cfg.stages:
        from .value import run_value_stage

        t0 = time.perf_counter()
        prompt_tokens = {r.id: r.prompt_ids for r in rollouts[primary]}
        second = stores.get(cfg.tasks[1]) if len(cfg.tasks) > 1 else None
        # hook_embed is the surface baseline the stage computes on its own, not a candidate layer
        section = run_value_stage(stores[primary], value_dir, hooks=[h for h in hooks if h != "hook_embed"],
                                  second_store=second,
                                  prompt_tokens=prompt_tokens, vocab_size=len(adapter.tokenizer),
                                  seed=cfg.seed, quick=cfg.quick, num_threads=1, test_fraction=cfg.test_fraction)
        _relative_figures(section, out, value_dir)
        timings["value_s"] = time.perf_counter() - t0
        report.add(section)
        print(f"[value] best layer {section.summary.get('best_layer')}, auc_by_layer {section.summary.get('auc_by_layer')}")
    if (value_dir / "value_probe").exists():
        from ..analysis.neurons import NeuronSet
        from ..analysis.probes import ValueProbe

        probe = ValueProbe.load(value_dir / "value_probe")
        with open(value_dir / "value_neurons_by_layer.json") as f:
            value_sets = {k: NeuronSet.from_dict(v) for k, v in json.load(f).items()}
        best_hook = NeuronSet.load(value_dir / "value_neurons.json").hook_name

    # ---- interventions -------------------------------------------------------------------------
    if "interventions" in cfg.stages and value_sets:
        t0 = time.perf_counter()
        for section in _intervention_sections(cfg, adapter, tasks[primary], rollouts[primary], stores.get(primary),
                                              probe, best_hook, value_sets, value_dir, out, gen_cfg):
            _relative_figures(section, out, out / "interventions")
            report.add(section)
        timings["interventions_s"] = time.perf_counter() - t0

    # ---- dopamine --------------------------------------------------------------------------------
    if "dopamine" in cfg.stages and probe is not None:
        from .dopamine import run_dopamine_stage
        from ..analysis.neurons import NeuronSet

        t0 = time.perf_counter()
        store = stores[primary]
        by_id = {r.id: r for r in rollouts[primary]}
        tok = adapter.tokenizer
        token_strings = []
        for rid in store.rollout_ids:
            r = by_id[rid]
            token_strings.append([tok.decode([t]) for t in [r.prompt_ids[-1]] + list(r.response_ids)])
        section = run_dopamine_stage(store, probe, best_hook, out / "dopamine",
                                     value_neurons=NeuronSet.load(value_dir / "value_neurons.json"),
                                     seed=cfg.seed, token_strings=token_strings,
                                     n_permutations=200 if cfg.quick else 1000)
        top = section.summary.get("top_neurons") or []
        if top and "interventions" in cfg.stages:
            from .dopamine import run_dopamine_causal_check

            dop_set = NeuronSet(best_hook, top, store.d(best_hook), kind="dopamine",
                                layer=layer_of(best_hook), provenance={"model": adapter.name, "task": primary})
            _, test_idx = store.split(cfg.test_fraction, seed=cfg.seed)
            held = [by_id[store.rollout_ids[i]] for i in test_idx[: cfg.eval_examples]]
            eval_task = _eval_task(cfg)
            causal, table = run_dopamine_causal_check(
                adapter, probe, dop_set, [(r.prompt_ids, r.response_ids) for r in held], eval_task,
                list(eval_task.examples), config=gen_cfg, n_random_draws=cfg.random_draws, seed=cfg.seed)
            section.summary["causal"] = causal
            section.tables.append(table)
        _relative_figures(section, out, out / "dopamine")
        timings["dopamine_s"] = time.perf_counter() - t0
        report.add(section)

    timings["total_s"] = time.perf_counter() - t_start
    report.header["timings"] = timings
    report.header["wall_time_s"] = timings["total_s"]
    report.write()
    print(f"[done] {timings['total_s']:.0f} s; report: {out / 'report.html'}")
    return report.summary


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


def _eval_task(cfg: RunConfig):
    """Examples for the generation studies: a fresh seeded draw of the primary task (another seed
    than the rollouts', so the studies do not re-score the probe's training prompts verbatim)."""
    task = get_task(cfg.tasks[0], n=cfg.eval_examples, seed=cfg.seed + 7)
    task.max_new_tokens = cfg.max_new_tokens
    return task


def _intervention_sections(cfg, adapter, task, rollouts, store, probe, best_hook, value_sets, value_dir, out, gen_cfg):
    from .interventions import run_intervention_stage
    from ..analysis.neurons import NeuronSet

    # layers for the ablation study: the value stage's best layer, then the next ones by validation
    # AUC (the split that chose the best layer; the test split stays for reporting only)
    with open(out / "summary.json") as f:
        value = json.load(f).get("value", {})
    auc = value.get("auc_by_layer_val") or value.get("auc_by_layer", {})
    best = str(value.get("best_layer"))
    ranked = sorted((k for k in auc if k in value_sets and int(k) >= 0), key=lambda k: (k != best, -auc[k]))
    chosen = {int(k): value_sets[k] for k in ranked[: cfg.ablation_layers]}
    mc_path = value_dir / "value_neurons_final_reward.json"
    final_reward_sets = None
    if mc_path.exists():
        mc = NeuronSet.load(mc_path)
        final_reward_sets = {mc.layer: mc}
    eval_task = _eval_task(cfg)
    return run_intervention_stage(
        adapter, eval_task, list(eval_task.examples), chosen, out / "interventions",
        probe=probe, probe_hook=best_hook, final_reward_sets=final_reward_sets,
        n_random_draws=cfg.random_draws, seed=cfg.seed, config=gen_cfg,
        dose_fractions=(0.005, 0.01, 0.02, 0.05, 0.1), dose_modes=("zero", "mean"), dose_random_draws=1,
    )
