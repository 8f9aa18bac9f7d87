"""``--profile paper``: sized so the paper's claims can be resolved (config only; the lead runs it)."""

from __future__ import annotations

import argparse

import pytest

from reward_circuits.configs import add_config_arguments, config_from_args
from reward_circuits.studies.run.config import PROFILES, RunConfig


def test_paper_profile_resolves_the_paper_effects():
    cfg = RunConfig(profile="paper")
    assert cfg.eval_examples >= 200  # sized in .sizing (tests/test_power_sizing.py): a 0.10 difference after Holm
    n_test = round(cfg.limit_of(cfg.tasks[0]) * cfg.test_fraction)
    assert n_test >= 1400  # AUC 0.65 at 36% correct: 95% CI ~ +-0.03 (Hanley-McNeil, written out here independently)
    auc, n1, n2 = 0.65, 0.36 * n_test, 0.64 * n_test
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    se = ((auc * (1 - auc) + (n1 - 1) * (q1 - auc**2) + (n2 - 1) * (q2 - auc**2)) / (n1 * n2)) ** 0.5
    assert 1.96 * se <= 0.0301
    assert RunConfig().limit == 200 and RunConfig().profile == "default"  # the default job is unchanged


def test_explicit_options_win_over_the_profile():
    cfg = RunConfig(profile="paper", limit=60, eval_examples=16)
    assert (cfg.limit, cfg.eval_examples) == (60, 16) and cfg.random_draws == PROFILES["paper"]["random_draws"]
    with pytest.raises(ValueError, match="unknown profile"):
        RunConfig(profile="huge")


def test_profile_is_a_cli_option():
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, RunConfig)
    cfg = config_from_args(RunConfig, parser.parse_args(["--profile", "paper", "--exclude-massive"]))
    assert cfg.profile == "paper" and cfg.eval_examples == PROFILES["paper"]["eval_examples"] and cfg.exclude_massive


def test_paper_profile_primary_task_has_distinct_questions():
    """Copies of a question are not independent evidence: the paper profile's primary task must
    hold at least ``limit`` distinct questions (as every task it runs promises), and runs both dose modes."""
    from reward_circuits.tasks import distinct_prompts, get_task

    cfg = RunConfig(profile="paper")
    task = get_task(cfg.tasks[0], n=cfg.limit_of(cfg.tasks[0]), seed=cfg.seed)
    assert task.distinct_questions == cfg.limit_of(cfg.tasks[0])
    assert all(distinct_prompts(spec) >= cfg.limit_of(spec) for spec in cfg.tasks)
    assert set(cfg.dose_modes) == {"zero", "mean"} and RunConfig().dose_modes == ("zero",)
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, RunConfig)
    assert config_from_args(RunConfig, parser.parse_args(["--dose-modes", "zero,mean"])).dose_modes == ("zero", "mean")
    with pytest.raises(ValueError, match="dose-modes"):
        RunConfig(dose_modes=("max",))


# the studies' evaluation prompts (distinct, none seen by the probe): tests/test_evaluation_prompts.py


def test_default_job_sizing_options():
    """The default job's lighter dose-response and robustness table (10-minute budget); the paper
    profile runs the full ones; both are CLI options."""
    d, p = RunConfig(), RunConfig(profile="paper")
    assert d.dose_fractions == (0.05, 0.1) and p.dose_fractions == (0.01, 0.02, 0.05, 0.1)
    assert (d.robustness_seeds, p.robustness_seeds) == (2, 3)
    assert (d.robustness_widths, p.robustness_widths) == ((16, 64), (16, 64, 256))
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, RunConfig)
    cfg = config_from_args(RunConfig, parser.parse_args(["--dose-fractions", "0.02,0.2", "--robustness-seeds", "4",
                                                              "--robustness-widths", "8,32"]))
    assert cfg.dose_fractions == (0.02, 0.2) and cfg.robustness_seeds == 4 and cfg.robustness_widths == (8, 32)
    with pytest.raises(ValueError, match="dose-fractions"):
        RunConfig(dose_fractions=(1.5,))
    with pytest.raises(ValueError, match="robustness-seeds"):
        RunConfig(robustness_seeds=0)
    with pytest.raises(ValueError, match="robustness-widths"):
        RunConfig(robustness_widths=(16, 0))


def test_the_default_job_sizes_its_headline_to_decide():
    """Power issue: the default job's held-out AUC interval at the chosen layer is at most +-0.08 on the
    default model (word_problems:0 accuracy 0.36 by `reward-circuits calibrate`, an AUC near 0.6), where
    200 rollouts gave 0.616 [0.429, 0.774] on n = 47; the second task and --quick keep --limit."""
    cfg = RunConfig()
    n_test = round(cfg.limit_of(cfg.tasks[0]) * cfg.test_fraction)
    auc, n1 = 0.6, n_test * 0.36
    n2 = n_test - n1
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    se = ((auc * (1 - auc) + (n1 - 1) * (q1 - auc**2) + (n2 - 1) * (q2 - auc**2)) / (n1 * n2)) ** 0.5
    assert 1.96 * se <= 0.08, (n_test, 1.96 * se)
    assert cfg.limit_of(cfg.tasks[1]) == cfg.limit == 200
    assert RunConfig(quick=True).limit_of("word_problems:0") == 40 and RunConfig(quick=True).test_fraction == 0.3
    paper = RunConfig(profile="paper")  # the primary task sized for +-0.03, the second keeps --limit
    assert paper.limit_of("word_problems:0") == PROFILES["paper"]["primary_limit"] > 1000 == paper.limit_of("arithmetic:1")
    with pytest.raises(ValueError, match="primary-limit"):
        RunConfig(primary_limit=2)
