"""The SAE × TD analysis: planted TD directions are found (SAE latent and raw dim), the null stays low,
the study runs end to end on the tiny model and renders its report section, interventions pair correctly."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_icrl import simulate_q_agent

from reward_circuits.cli import build_parser
from reward_circuits.configs import config_from_args
from reward_circuits.studies.sae_td import (
    SAETDConfig,
    best_feature,
    paired_abs_corr_diff,
    play_many,
    q_learning_trace,
    ridge_probe_corr,
    run_sae_td,
    shuffled_episode_ids,
)
from reward_circuits.report import Report
from reward_circuits.sae import (
    SAETrainConfig,
    encode_all,
    load_sae,
    remove_latents,
    train_sae,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def planted():
    """TD errors of a Q-learner on the two-step task (4 experiments) and activations that carry them."""
    trajs = [simulate_q_agent(0.3, 4.0, 100, seed=s) for s in range(4)]
    td = np.concatenate([q_learning_trace(t, 0.1).td_errors for t in trajs])
    exp = np.repeat(np.arange(4), [len(t) for t in trajs])
    rng = np.random.default_rng(0)
    d = 32
    background = ((rng.random((td.size, 8)) < 0.2) * rng.uniform(0.5, 2, (td.size, 8))) @ rng.normal(size=(8, d))
    return td, exp < 2, exp >= 2, background + 0.1 * rng.normal(size=(td.size, d)), rng


def test_planted_raw_dimension_equal_to_td_error_is_found(planted):
    td, sel, held, x, _ = planted
    x = x.copy()
    x[:, 5] = td + 0.1 * x[:, 5]  # dimension 5 is the TD error (plus a little of the background)
    choice = best_feature(x, td, sel, held, n_boot=200)
    assert choice.index == 5 and choice.heldout.estimate >= 0.8 and choice.heldout.low > 0.6


def test_planted_td_direction_is_found_by_an_sae_latent_not_a_raw_dim(planted):
    """The TD error lives in a non-axis direction (positive and negative parts on two directions, as an
    SAE with non-negative latents would split it): a latent tracks it at |r| >= 0.8 held out."""
    td, sel, held, x, rng = planted
    u_pos, u_neg = rng.normal(size=x.shape[1]), rng.normal(size=x.shape[1])
    x = x + np.outer(np.maximum(td, 0), u_pos) + np.outer(np.maximum(-td, 0), u_neg)
    acts = torch.tensor(x, dtype=torch.float32)
    sae = train_sae(acts, SAETrainConfig(d_sae=64, lr=3e-3, epochs=30, l1_coefficient=0.1, batch_size=64)).sae
    lat = encode_all(sae, acts).numpy()
    latent = best_feature(lat, td, sel, held, n_boot=200)
    raw = best_feature(x, td, sel, held, n_boot=200)
    assert latent.heldout.estimate >= 0.8, latent
    assert raw.heldout.estimate < latent.heldout.estimate
    diff, p = paired_abs_corr_diff(lat[held, latent.index], x[held, raw.index], td[held], n_boot=300)
    assert diff.low > 0 and p < 0.05
    # a target with no relation to the activations gives a low held-out |r| (the test can fail)
    null = best_feature(lat, rng.permutation(td), sel, held, n_boot=200)
    assert null.heldout.estimate < 0.3
    probe, _ = ridge_probe_corr(x, td, sel, held, n_boot=200)
    assert probe.estimate > 0.7


def test_shuffled_episode_ids_moves_whole_episodes(tl_adapter):
    exp = play_many(tl_adapter, "two_step", [0], n_episodes=4, random_episodes=4)[0]
    ids, new_pos = shuffled_episode_ids(exp, seed=1)
    assert sorted(ids) == sorted(exp.token_ids) and ids != exp.token_ids
    assert all(ids[new_pos[i]] == exp.token_ids[i] for i in range(len(ids)))
    first = exp.episode_spans[0][0]
    assert ids[:first] == exp.token_ids[:first]


def test_identity_removal_hook_replays_the_baseline_exactly(tl_adapter):
    hook = "blocks.1.hook_resid_post"
    kw = {"n_episodes": 2, "random_episodes": 1}
    base = play_many(tl_adapter, "two_step", [0, 1], capture=[hook], **kw)
    sae = train_sae(torch.cat([e.activations[hook] for e in base]), SAETrainConfig(expansion_factor=2, epochs=1),
                    hook_name=hook).sae
    same = play_many(tl_adapter, "two_step", [0, 1], fwd_hooks=[(hook, remove_latents(sae, []))], **kw)
    for a, b in zip(base, same):
        assert a.token_ids == b.token_ids
        for x, y in zip(a.steps, b.steps):
            if x.logprobs is not None:
                np.testing.assert_allclose(x.logprobs, y.logprobs, atol=1e-4)


def test_config_validation_and_paper_scale():
    with pytest.raises(ValueError, match="unknown tasks"):
        SAETDConfig(tasks=("maze",))
    with pytest.raises(ValueError, match="n_experiments"):
        SAETDConfig(n_experiments=2)
    with pytest.raises(ValueError, match="random_episodes"):
        SAETDConfig(n_episodes=3, random_episodes=3)
    paper = SAETDConfig(paper_scale=True)
    assert (paper.n_experiments, paper.n_episodes, paper.random_episodes, paper.sae_epochs) == (100, 30, 7, 30)
    assert (paper.sae_architecture, paper.sae_lr, paper.sae_l1, paper.sae_batch_size) == ("standard", 1e-4, 1e-5, 256)
    assert paper.sae_config().normalize == "none"
    assert SAETDConfig().resolve_layers(30) == [3, 10, 17, 24]
    assert SAETDConfig().resolve_layers(18) == [2, 6, 10, 14]
    assert SAETDConfig().resolve_layers(2) == [0, 1]  # distinct layers the model has (once [0, 1, 2])
    with pytest.raises(ValueError, match=r"layers \[31\] do not exist: smol has layers 0\.\.29\. Pass --layers .*default \(layers \[3, 10, 17, 24\]\)"):
        SAETDConfig(layers=(3, 31)).resolve_layers(30, "smol")
    args = build_parser().parse_args(["sae-td", "--out", "x", "--tasks", "grid", "--n-experiments", "4", "--paper-scale"])
    cfg = config_from_args(SAETDConfig, args)
    assert cfg.tasks == ("grid",) and cfg.n_experiments == 100


def test_study_runs_end_to_end_on_tiny_model(tl_adapter, tmp_path):
    cfg = SAETDConfig(tasks=("two_step",), n_experiments=4, n_episodes=2, random_episodes=1, layers=(0, 1),
                      sae_epochs=2, n_boot=100, progress=False, top_k_latents=3, out=str(tmp_path))
    result = run_sae_td(cfg, tl_adapter)
    task = result.tasks[0]
    assert task.n_events == 4 * 2 * 2 and len(task.layers) == 2
    assert task.intervention is not None and len(task.intervention.top_latents) == 3
    assert not set(task.intervention.top_latents) & set(task.intervention.random_latents)
    assert task.intervention.n_decisions >= 4  # the first model decision of every experiment shares its context
    report = Report(tmp_path, {"model": tl_adapter.name})
    report.add(result.to_section(tmp_path))
    summary = json.loads((tmp_path / "summary.json").read_text())["sae_td"]["tasks"]["two_step"]
    assert set(summary) >= {"model_reward", "random_reward", "model_minus_random", "alpha_fit", "layers", "intervention",
                            "verdicts"}
    # intervals resample whole held-out experiments (their 8 events are not independent): n = 2, too few
    # for an interval, so none is given and no verdict on the latents is invented from 2 experiments
    sae_iv = summary["layers"][0]["td_error"]["sae"]
    assert sae_iv["n"] == 2 and sae_iv["low"] is None and sae_iv["estimate"] is not None
    assert all(v == "inconclusive at this n" for k, v in summary["verdicts"].items() if k.startswith("TD latent beats"))
    assert (tmp_path / "sae_td_corr_by_layer.png").exists() and "sae_td_corr_by_layer.png" in (tmp_path / "report.html").read_text()
    saved = load_sae(tmp_path / "saes" / "two_step" / f"blocks.{task.intervention.layer}.hook_resid_post")
    assert saved.cfg.metadata.hook_name == f"blocks.{task.intervention.layer}.hook_resid_post"


def test_partial_correlation_separates_reward_readers_from_td_trackers():
    from reward_circuits.studies.sae_td import partial_abs_corr

    rng = np.random.default_rng(0)
    reward = (rng.random(400) < 0.5).astype(float)
    q = rng.uniform(0, 0.8, 400)
    td = reward - q  # the TD error at the end of an episode
    reads_reward = reward + 0.05 * rng.normal(size=400)
    tracks_td = td + 0.05 * rng.normal(size=400)
    assert abs(np.corrcoef(reads_reward, td)[0, 1]) > 0.7  # the confound: plain r is high for both
    assert partial_abs_corr(reads_reward, td, reward, n_boot=200).estimate < 0.2
    assert partial_abs_corr(tracks_td, td, reward, n_boot=200).estimate > 0.9


def test_matched_random_latents_match_contribution_and_avoid_top(planted):
    from reward_circuits.studies.sae_td import matched_random_latents

    _, _, _, x, _ = planted
    acts = torch.tensor(x, dtype=torch.float32)
    sae = train_sae(acts, SAETrainConfig(d_sae=64, lr=3e-3, epochs=5, l1_coefficient=0.1, batch_size=64)).sae
    feats = encode_all(sae, acts)
    size = (feats.mean(0) * sae.W_dec.detach().norm(dim=-1)).numpy()
    top = [int(j) for j in np.argsort(-size)[:3]]  # the three largest contributors: the hardest to match
    chosen, top_size, chosen_size = matched_random_latents(sae, acts, top, seed=0, pool_size=3)
    assert not set(chosen) & set(top) and len(set(chosen)) == 3
    np.testing.assert_allclose(top_size, size[top], rtol=1e-5)
    unmatched = np.median(size[size > 0])
    assert np.abs(np.log(chosen_size) - np.log(top_size)).mean() < np.abs(np.log(unmatched) - np.log(top_size)).mean()


def test_heldout_intervals_resample_whole_experiments():
    """Events of one experiment share its offset (planted): with ``groups`` the interval counts
    experiments (n = 6 held out) and is wider than the one that treats 300 events as independent; a
    planted tracking feature is still found, a feature of pure noise is not called better than it."""
    rng = np.random.default_rng(0)
    exp = np.repeat(np.arange(12), 50)
    td = rng.normal(size=12)[exp] + rng.normal(size=exp.size)
    x = rng.normal(size=(exp.size, 6))
    x[:, 2] = td + 0.5 * rng.normal(size=exp.size)
    sel, held = exp < 6, exp >= 6
    grouped = best_feature(x, td, sel, held, n_boot=300, groups=exp)
    events = best_feature(x, td, sel, held, n_boot=300)
    assert grouped.index == events.index == 2 and grouped.heldout.n == 6 and events.heldout.n == 300
    assert grouped.heldout.low > 0.6 and grouped.heldout.high - grouped.heldout.low > events.heldout.high - events.heldout.low
    d, p = paired_abs_corr_diff(x[held, 2], x[held, 4], td[held], n_boot=300, groups=exp[held])
    assert d.n == 6 and d.low > 0.5 and p < 0.05
    d, p = paired_abs_corr_diff(x[held, 4], x[held, 2], td[held], n_boot=300, groups=exp[held])
    assert d.high < 0
