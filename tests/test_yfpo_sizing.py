"""Issue 29 item 5: YFPO sized so a 0.05 accuracy difference vs plain DPO is detectable, with the
seed variance inside the interval (seeds and prompts resampled together)."""

from __future__ import annotations

import numpy as np
import pytest

from reward_circuits.analysis.claims import Evidence, verdict
from reward_circuits.analysis.resampling import paired_mean_test, seeds_by_units_test
from reward_circuits.studies.yfpo.config import PROFILES, YFPOConfig
from reward_circuits.studies.yfpo.experiment import TrainingRun, YFPOResult
from reward_circuits.studies.yfpo.neuron_reward import NeuronReward
from reward_circuits.studies.yfpo.sizing import (
    YFPOTargets,
    family_size,
    prompts_for,
    run_seconds,
    sizing_lines,
    yfpo_mde,
    yfpo_sizing,
)


def planted_diffs(rng, seeds: int, prompts: int, effect: float, seed_sd: float) -> np.ndarray:
    """(seed, prompt) differences of two binary outcomes: a per-seed offset (seed variance) plus the effect."""
    offset = rng.normal(0, seed_sd, (seeds, 1))
    a = (rng.random((seeds, prompts)) < np.clip(0.5 + effect + offset, 0, 1)).astype(float)
    b = (rng.random((seeds, prompts)) < 0.5).astype(float)
    return a - b


def test_planted_seed_variance_widens_the_interval():
    rng = np.random.default_rng(0)
    cells = planted_diffs(rng, 5, 200, 0.0, 0.0)
    offsets = np.array([[-0.3], [-0.15], [0.0], [0.15], [0.3]])  # seeds disagree; the mean is unchanged
    quiet, noisy = seeds_by_units_test(cells), seeds_by_units_test(cells + offsets)
    assert noisy.estimate == pytest.approx(quiet.estimate)
    assert (noisy.high - noisy.low) > 1.5 * (quiet.high - quiet.low)
    # the old interval (prompts only, seed-averaged) does not see the seeds' disagreement at all
    old = paired_mean_test((cells + offsets).mean(0), n_boot=2000)
    assert (old.high - old.low) < 0.5 * (noisy.high - noisy.low)
    assert noisy.df == 4 and "5 seeds × 200 prompts" in noisy.method and noisy.n == 1000
    one = seeds_by_units_test(cells[:1])
    assert "seed variance is not in the interval" in one.method


def test_a_planted_zero_effect_does_not_reproduce_and_a_planted_effect_does():
    rng = np.random.default_rng(1)
    verdicts = []
    for r in range(30):  # zero effect, seed variance present: "reproduces" at most at the test's level
        t = seeds_by_units_test(planted_diffs(rng, 5, 228, 0.0, 0.05), seed=r)
        verdicts.append(verdict([Evidence.from_test("yfpo.beats_dpo", t)])[0].verdict)
    assert verdicts.count("reproduces") <= 2
    t = seeds_by_units_test(planted_diffs(rng, 5, 228, 0.25, 0.02))
    assert verdict([Evidence.from_test("yfpo.beats_dpo", t)])[0].verdict == "reproduces"


def test_the_plan_is_the_variance_the_crossed_bootstrap_reports():
    """Planted seed, prompt and residual components, each a third of the planned variance: the crossed
    bootstrap's variance (what the verdicts use) averages to the plan's se² (a plan without the prompt
    term is off by a third, counting the residual once by a quarter); the same 20 seeds with prompts shared by
    every seed report far more than with the prompt effect removed."""
    from reward_circuits.studies.yfpo.sizing import planned_se

    S, P = 20, 200
    t = YFPOTargets(seed_variance=2e-3, prompt_variance=0.02, residual_variance=0.15)
    rng = np.random.default_rng(5)
    se2, se2_no_prompt = [], []
    for r in range(30):
        seed_eff = rng.normal(0, np.sqrt(t.seed_variance), (S, 1))
        prompt_eff = rng.normal(0, np.sqrt(t.prompt_variance), (1, P))
        resid = rng.normal(0, np.sqrt(t.residual_variance), (S, P))
        se2.append(seeds_by_units_test(seed_eff + prompt_eff + resid, n_boot=2000, seed=r).se ** 2)
        se2_no_prompt.append(seeds_by_units_test(seed_eff + resid, n_boot=2000, seed=r).se ** 2)
    assert np.mean(se2) == pytest.approx(planned_se(S, P, t) ** 2, rel=0.12)
    assert np.mean(se2_no_prompt) == pytest.approx(planned_se(S, P, YFPOTargets(seed_variance=2e-3, prompt_variance=0.0,
                                                                                residual_variance=0.15)) ** 2, rel=0.12)
    assert np.mean(se2) > 1.3 * np.mean(se2_no_prompt)


def test_the_sized_profile_detects_005_with_at_least_5_seeds():
    s = yfpo_sizing()
    cfg = YFPOConfig(profile="sized")
    assert len(cfg.seeds) == s.seeds >= 5 and cfg.eval_prompts == s.eval_prompts and cfg.select_steps
    assert s.family_size == family_size(cfg.conditions) == 3
    assert yfpo_mde(s.seeds, s.eval_prompts, 3) <= 0.05 < yfpo_mde(s.seeds, s.eval_prompts - 1, 3)
    t = YFPOTargets()  # the cheapest design that reaches 0.05: no other seed count's fewest prompts cost less
    others = [(k, prompts_for(k, 3, t)) for k in range(5, 31) if k != s.seeds]
    assert all(p is None or run_seconds(k, p, t) >= run_seconds(s.seeds, s.eval_prompts, t) for k, p in others)
    assert yfpo_sizing(YFPOTargets(train_seconds=0.0)).seeds > s.seeds  # free training: more seeds, fewer answers
    assert yfpo_sizing(YFPOTargets(eval_seconds_per_prompt=0.0)).seeds == min(k for k, p in others + [(s.seeds, 1)] if p)
    assert YFPOConfig(profile="sized", seeds=(0, 1)).seeds == (0, 1)  # an explicit option wins
    assert YFPOConfig().seeds == (0, 1, 2) and PROFILES["default"] == {}
    # more seed variance needs more: the profile is computed, not hand-set
    assert yfpo_sizing(YFPOTargets(seed_variance=1e-3)).seeds > s.seeds
    old = sizing_lines(3, 48, YFPOConfig().conditions)[0]
    assert "too small" in old and "0.05" in old and "enough" in sizing_lines(s.seeds, s.eval_prompts, cfg.conditions)[0]
    with pytest.raises(ValueError, match="profile"):
        YFPOConfig(profile="huge")


def test_the_result_pairs_by_seed_and_says_so(tmp_path):
    """DPO + value vs DPO: paired by seed and prompt, the summary carries df and method, the claim reads them."""
    from reward_circuits.analysis.claims.study_evidence import yfpo_evidence

    cfg = YFPOConfig(out=str(tmp_path), conditions=("dpo", "value", "random"), seeds=(0, 1, 2, 3, 4))
    rng = np.random.default_rng(2)
    runs = []
    for seed in cfg.seeds:
        shared = rng.random(60)  # a seed moves both conditions together
        for cond in ("dpo", "value", "random"):  # no effect: each condition flips ~10% of the seed's answers at random
            correct = (shared < 0.5 + 0.1 * (seed - 2)) ^ (rng.random(60) < 0.1)
            runs.append(TrainingRun(cond, seed, correct.astype(float).tolist(), [], None, 1.0))
    res = YFPOResult(cfg, "tiny", 20, 0.5, 8, [0.5] * 60, {"value": NeuronReward("value", [(1, 2)])}, {}, None, None, {}, runs)
    row = {s.condition: s for s in res.summaries()}["value"]
    assert abs(row.vs_dpo.estimate) < 0.1 and row.vs_dpo.low < 0 < row.vs_dpo.high and row.vs_dpo_test.df == 4
    summary = res.to_dict()
    assert summary["conditions"]["value"]["vs_dpo_df"] == 4 and "crossed bootstrap" in summary["conditions"]["value"]["vs_dpo_method"]
    assert summary["vs_random"]["value"]["df"] == 4
    evidence = yfpo_evidence({"yfpo": summary})
    assert {e.claim_id for e in evidence} == {"yfpo.beats_dpo", "yfpo.value_neurons_beat_random"}
    assert all(e.df == 4 for e in evidence) and all(r.verdict != "reproduces" for r in verdict(evidence))


def test_clearly_moved_needs_the_drop_and_an_interval_below_ln2():
    from reward_circuits.studies.yfpo.steps import LN2, clearly_moved, split_validation_pairs
    from reward_circuits.studies.yfpo.pairs import PreferencePair

    rng = np.random.default_rng(4)
    groups = [f"q{i // 2}" for i in range(60)]  # two pairs per prompt
    assert not clearly_moved(rng.normal(LN2, 0.05, 60), groups, 0.1)[0]  # not moved
    assert not clearly_moved(rng.normal(LN2 - 0.05, 0.01, 60), groups, 0.1)[0]  # moved, but less than asked
    assert not clearly_moved(rng.normal(LN2 - 0.15, 1.5, 60), groups, 0.1)[0]  # the mean moved, the interval spans ln 2
    moved, (mean, low, high) = clearly_moved(rng.normal(0.5, 0.05, 60), groups, 0.1)
    assert moved and high < LN2 and mean <= LN2 - 0.1
    pairs = [PreferencePair(g, "p", "c", "r") for g in groups]
    train, val = split_validation_pairs(pairs, 0.25, seed=0)
    assert len({p.example_id for p in val}) == round(0.25 * 30) and not {p.example_id for p in train} & {p.example_id for p in val}
    with pytest.raises(ValueError, match="select-steps"):
        split_validation_pairs(pairs[:4], 0.25)


@pytest.mark.parametrize("planted", [True, False])
def test_run_yfpo_chooses_its_steps_on_validation_pairs(tmp_path, capsys, monkeypatch, planted):
    """A pilot run checks the validation auxiliary loss every 2 steps. Planted: the loss the monitor
    reads falls to 0.45 from step 4 on, so the pilot stops there and every compared run takes 4
    steps. Not planted (the tiny model's real validation loss, 0.1 nats asked): it does not clearly
    move, and every run takes the cap. The sizing is printed first."""
    import torch

    import reward_circuits.studies.yfpo.steps as steps
    from reward_circuits.models.tiny import tiny_hf_model
    from reward_circuits.studies.yfpo.experiment import run_yfpo
    from reward_circuits.tasks import Example, Task

    real = steps.validation_losses
    calls = []

    def planted_losses(model, reward, batches):
        out = real(model, reward, batches)  # the real pass on the policy being trained
        calls.append(len(out))
        level = steps.LN2 if len(calls) < 2 else 0.45
        return level + np.random.default_rng(len(calls)).normal(0, 0.01, len(out))

    if planted:
        monkeypatch.setattr(steps, "validation_losses", planted_losses)
    torch.set_num_threads(1)
    hf, tok = tiny_hf_model(seed=0)
    examples = [Example(id=f"q{i}", question=f"{i}+{i}?", answer=str(2 * i)) for i in range(50)]
    task = Task("planted", examples, lambda response, ex: float("7" in response), max_new_tokens=6)
    cfg = YFPOConfig(out=str(tmp_path), train_prompts=44, eval_prompts=6, samples_per_prompt=6, max_new_tokens=6,
                     relevance_prompts=4, probe_layers=(0, 1), n_neurons=4, probe_epochs=2, seeds=(0,), steps=8,
                     batch_pairs=2, lora_r=2, lora_targets=("q_proj", "down_proj"), temperature=1.5,
                     conditions=("dpo", "value"), select_steps=True, step_check_every=2, save_adapters=False)
    res = run_yfpo(cfg, progress=False, hf_model=hf, tokenizer=tok, task=task)
    assert "[yfpo sizing] 1 seeds × 6 held-out prompts" in capsys.readouterr().out
    sel = res.step_selection
    assert sel["n_validation_pairs"] >= 5 and all(int(c[0]) % 2 == 0 for c in sel["checks"])
    if planted:
        assert sel["moved"] and sel["chosen"] == 4 and len(sel["checks"]) == 2  # the pilot stopped at the check
    else:
        assert not sel["moved"] and sel["steps"] == 8 and len(sel["checks"]) == 4 and "did not clearly move" in sel["line"]
    assert res.config.steps == sel["steps"] and all(len(r.curve) == sel["steps"] for r in res.runs)
    assert sel["line"] in res.to_section(None).notes and cfg.steps == 8  # the caller's config is untouched


@pytest.mark.parametrize("command", ["yfpo", "run"])
def test_help_of_the_sized_commands_renders(command, capsys):
    """Help texts with '%' (e.g. "95% interval" on a flag) must not crash argparse's formatting."""
    from reward_circuits.cli import build_parser

    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([command, "--help"])
    assert exit_.value.code == 0 and "--profile" in capsys.readouterr().out
