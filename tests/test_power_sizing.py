"""Issue 29: ``--profile paper`` sized from the claims' minimum detectable effects, and the paper's
early layers ablated besides the validation-best ones."""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pytest

import reward_circuits.studies.run.main_job as pipeline
from reward_circuits.analysis.claims import ALPHA
from reward_circuits.analysis.resampling import hierarchical_vs_random
from reward_circuits.analysis.stats import bootstrap_auc_ci, hanley_mcneil_se
from reward_circuits.configs import add_config_arguments, config_from_args
from reward_circuits.studies.run import RunConfig, run_and_report
from reward_circuits.studies.run.main_job import ablated_layers, layer_at_depth
from reward_circuits.studies.run.sizing import (SizingTargets, ablation_family_size, ablation_mde, auc_half_width,
                                                paper_sizing, run_sizing, sizing_lines)
from reward_circuits.tasks import distinct_prompts

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_paper_profile_takes_its_sizes_from_the_sizing():
    s, cfg = paper_sizing(), RunConfig(profile="paper")
    assert (cfg.primary_limit, cfg.eval_examples, cfg.random_draws) == (s.primary_limit, s.examples_per_pass, s.random_draws)
    assert cfg.ablation_depths == (0.25,) and RunConfig().ablation_depths == ()
    # the AUC target: n held out is the smallest whose Hanley-McNeil 95% half-width is <= 0.03
    assert s.held_out == round(cfg.primary_limit * cfg.test_fraction) or s.held_out <= cfg.primary_limit * cfg.test_fraction
    assert auc_half_width(s.held_out, 0.65, 0.36) <= 0.03 < auc_half_width(s.held_out - 1, 0.65, 0.36)
    # the ablation target: the MDE at the chosen n is <= 0.10 and one example fewer would not do
    assert ablation_mde(s.examples_per_pass, s.random_draws, s.family_size) <= 0.10
    assert ablation_mde(s.examples_per_pass - 1, s.random_draws, s.family_size) > 0.10
    assert s.family_size == ablation_family_size(2) > ablation_family_size(1)
    # the evaluation prompts stay disjoint from the probe's fit and validation prompts: the primary task holds both
    assert cfg.primary_limit * (1 - cfg.test_fraction) + cfg.eval_examples <= distinct_prompts(cfg.tasks[0])
    # a tighter target needs more: the sizing is computed, not hand-set
    assert paper_sizing(SizingTargets(auc_half_width=0.02)).held_out > s.held_out
    assert paper_sizing(SizingTargets(accuracy_difference=0.05)).examples_per_pass > s.examples_per_pass


def test_hanley_mcneil_matches_the_bootstrap_on_planted_scores():
    """The planning se agrees with the bootstrap interval a run reports (planted AUC ~0.65, 36% positive)."""
    rng = np.random.default_rng(0)
    n = 1500
    y = (rng.random(n) < 0.36).astype(float)
    scores = rng.normal(0, 1, n) + 0.55 * y  # AUC = Phi(0.55 / sqrt 2) ~ 0.65
    iv = bootstrap_auc_ci(y, scores, n_boot=1000, seed=1)
    planned = 1.96 * hanley_mcneil_se(iv.estimate, y.sum(), n - y.sum())
    assert abs((iv.high - iv.low) / 2 - planned) < 0.25 * planned
    with pytest.raises(ValueError, match="auc"):
        hanley_mcneil_se(1.2, 10, 10)


def test_the_sized_ablation_detects_a_planted_difference_and_not_a_null():
    """At the sizing's n and draws, a planted 0.10 drop (worst-case variance: p = 0.5, independent
    conditions) is found at the family's Bonferroni level in >= ~80% of replications; a planted 0 is not."""
    s = paper_sizing()
    n, k, level = s.examples_per_pass, s.random_draws, ALPHA / s.family_size
    rng = np.random.default_rng(5)
    hits, false = 0, 0
    reps = 40
    for r in range(reps):
        controls = (rng.random((k, n)) < 0.5).astype(float)
        hits += hierarchical_vs_random((rng.random(n) < 0.4).astype(float), controls, n_boot=600, seed=r).p_less <= level
        false += hierarchical_vs_random((rng.random(n) < 0.5).astype(float), controls, n_boot=600, seed=r).p_less <= level
    assert hits / reps >= 0.65, hits  # 80% planned; 40 replications leave binomial slack
    assert false <= 2


def test_run_sizing_reports_what_a_configured_job_detects():
    d, p = run_sizing(RunConfig()), run_sizing(RunConfig(profile="paper"))
    assert d["held_out"] == 240 and 0.06 < d["auc_half_width"] < 0.09  # the default job's +-0.068 measured
    assert d["ablation_mde"] > 1 and "no accuracy difference is detectable" in "\n".join(sizing_lines(d))
    assert p["ablation_mde"] <= 0.10 + 1e-9 and p["auc_half_width"] <= 0.03
    assert p["estimated_cpu_s"] > d["estimated_cpu_s"] and p["over_cpu_budget"] and "GPU" in sizing_lines(p)[-1]
    assert run_sizing(RunConfig(profile="paper"), "qwen2.5-0.5b")["estimated_cpu_s"] == pytest.approx(1.7 * p["estimated_cpu_s"])


def test_relative_depths_resolve_to_the_nearest_stored_layer():
    stored = [str(x) for x in [*range(0, 30, 3), 29]]
    assert layer_at_depth(0.25, stored, 30) == "6"  # 0.25 x 29 = 7.25: 6 is nearer than 9
    assert layer_at_depth(0.6, stored, 30) == "18" and layer_at_depth(1.0, stored, 30) == "29"
    ranked = ["18", "21", "15", "6", "0"]
    assert ablated_layers(ranked, 3, (0.25,), 30) == (["18", "6", "21", "15"], 2)
    assert ablated_layers(ranked, 3, (0.5,), 30) == (["18", "15", "21"], 2)  # 15 moves up to get controls
    assert ablated_layers(ranked, 3, (0.6,), 30) == (["18", "21", "15"], 1)  # the best itself: nothing added
    assert ablated_layers(ranked, 2, (), 30) == (["18", "21"], 1)
    with pytest.raises(ValueError, match="ablation-depths"):
        RunConfig(ablation_depths=(1.5,))
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, RunConfig)
    assert config_from_args(RunConfig, parser.parse_args(["--ablation-depths", "0.25,0.5"])).ablation_depths == (0.25, 0.5)


def test_the_main_job_ablates_the_early_layer_with_controls_and_records_its_sizing(tl_adapter, tmp_path, monkeypatch, capsys):
    from reward_circuits.tasks import Example, Task

    def parity(spec, n, seed):
        examples = [Example(f"{spec}-{seed}-{i}", f"Say something {i}.", "0") for i in range(n)]
        return Task(spec.replace(":", "_"), examples, lambda resp, ex: float(len(resp) % 2 == 0), max_new_tokens=8)

    monkeypatch.setattr(pipeline, "get_task", parity)
    cfg = RunConfig(tasks=("a",), limit=40, out=str(tmp_path / "run"), max_new_tokens=8, batch_size=16, eval_examples=6,
                    ablation_layers=1, ablation_depths=(0.0, 1.0), random_draws=2, quick=True,
                    stages=("rollouts", "store", "value", "interventions"))
    run_and_report(cfg, adapter=tl_adapter)
    assert f"[sizing] held-out rollouts {round(40 * cfg.test_fraction)}:" in capsys.readouterr().out
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["sizing"]["examples_per_pass"] == 6 and summary["sizing"]["family_size"] == ablation_family_size(3)  # planned: 1 + one per depth
    assert set(summary["ablation"]["layers"]) == {"0", "1"}  # the best layer and the other depth, both ablated
    chosen = summary["ablation"]["ablated_layers"]
    assert chosen["at_depths"] == {"0.0": "0", "1.0": "1"} and sorted(chosen["controlled"]) == ["0", "1"]
    scopes = {c["scope"] for c in summary["claims"] if c["id"] == "srs.ablation_vs_random"}
    assert scopes == {f"layer {l}, {kind}" for l in (0, 1) for kind in ("uniform", "magnitude_matched")}
    assert all(math.isfinite(c["estimate"]) for c in summary["claims"] if c["id"] == "srs.ablation_vs_random")


def test_a_measured_variance_factor_shrinks_the_sizing_proportionally():
    """The worst case (factor 1) bounds binary outcomes; the committed job's ~0.35 would need about a third."""
    worst, measured = paper_sizing(), paper_sizing(SizingTargets(variance_factor=0.35))
    assert measured.examples_per_pass < 0.45 * worst.examples_per_pass
    assert ablation_mde(measured.examples_per_pass, measured.random_draws, measured.family_size,
                        variance_factor=0.35) <= 0.10
    assert measured.held_out == worst.held_out  # the AUC target does not depend on it
    with pytest.raises(ValueError, match="SizingTargets"):
        SizingTargets(variance_factor=0.0)


def test_an_over_budget_job_is_told_the_largest_n_that_fits_and_what_it_detects():
    from reward_circuits.studies.run.sizing import TWO_CORE_SPEEDUP, WALL_BUDGET_S

    paper = RunConfig(profile="paper")
    s = run_sizing(paper, "qwen2.5-0.5b")
    fit = s["fits_budget"]
    assert s["over_cpu_budget"] and fit and fit["primary_limit"] < paper.primary_limit and fit["eval_examples"] < paper.eval_examples
    fitted = RunConfig(profile="paper", primary_limit=fit["primary_limit"], eval_examples=fit["eval_examples"])
    cost = run_sizing(fitted, "qwen2.5-0.5b")
    assert cost["estimated_cpu_s"] / TWO_CORE_SPEEDUP <= WALL_BUDGET_S * 1.001 and not cost["over_cpu_budget"]
    assert cost["ablation_mde"] == pytest.approx(fit["ablation_mde"]) and fit["ablation_mde"] > 0.10  # what that n detects
    assert f"--primary-limit {fit['primary_limit']}" in sizing_lines(s)[-1]
    assert run_sizing(RunConfig())["fits_budget"] is None  # the default job fits
