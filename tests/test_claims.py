"""The claim registry's verdicts: planted nulls stay below the family-wise rate, planted effects are
found at the rate the minimum detectable effect predicts, signs and length confounds are caught."""

import math

import numpy as np
import pytest
from scipy import stats

from reward_circuits.analysis.claims import (ALPHA, REGISTRY, Evidence, claims_section, claims_summary, holm,
                                             minimum_detectable_effect, verdict)
from reward_circuits.analysis.resampling import (hierarchical_vs_random, length_controlled_correlation,
                                                 paired_mean_test, rank_vs_draws, sign_flip_test)

N_RUNS = 200


def planted_ablation(rng, n=200, k=5, set_sd=0.06, effect=0.0):
    """Per-example correctness of a target set and ``k`` random sets on the same ``n`` examples.
    Every set has its own accuracy shift (SD ``set_sd``, the paper profile's spread between random
    sets); the target is one more random set, shifted by ``effect``. Outcomes of the sets share
    half their randomness per example (paired, as ablations of one model on the same prompts are)."""
    difficulty = rng.uniform(0.2, 0.8, size=n)
    shift = rng.normal(0, set_sd, size=k + 1)
    shift[0] += effect
    shared = rng.random(n)
    draw = np.where(rng.random((k + 1, n)) < 0.5, shared, rng.random((k + 1, n)))
    out = (draw < np.clip(difficulty + shift[:, None], 0, 1)).astype(float)
    return out[0], out[1:]


def old_control_verdict_reproduces(target, controls, rng, n_boot=400):
    """Today's score_controls: controls averaged over draws, only examples resampled (two-sided 95%)."""
    d = target - controls.mean(0)
    boots = d[rng.integers(0, d.size, size=(n_boot, d.size))].mean(1)
    return np.quantile(boots, 0.975) < 0


def null_run(rng, seed):
    """One simulated run of the Sparse Reward family where every claim is null (premises given met)."""
    t, c = planted_ablation(rng)
    t2, c2 = planted_ablation(rng)
    d = rng.normal(0, 1, size=200)
    return [
        Evidence.from_test("srs.value_probe_auc", paired_mean_test(rng.normal(0, 1, 200), n_boot=300, seed=seed)),
        Evidence.from_test("srs.ablation_vs_random", hierarchical_vs_random(t, c, n_boot=500, seed=seed), premise_met=True),
        Evidence.from_test("srs.transfer", hierarchical_vs_random(t2, c2, n_boot=500, seed=seed), premise_met=True),
        Evidence.from_test("srs.dopamine_positive_rpe", rank_vs_draws(rng.normal(), rng.normal(size=39)), premise_met=True),
        Evidence.from_test("srs.confidence_v_s0", sign_flip_test(d[:12], n_resamples=5000, seed=seed)),
    ]


def test_planted_nulls_keep_the_family_wise_rate_of_reproduces_below_5_percent():
    rng = np.random.default_rng(0)
    any_reproduces = old_rate = 0
    for run in range(N_RUNS):
        results = verdict(null_run(rng, run))
        any_reproduces += any(r.verdict == "reproduces" for r in results)
        t, c = planted_ablation(rng)
        old_rate += old_control_verdict_reproduces(t, c, rng)
    fwer = any_reproduces / N_RUNS
    print(f"\nfamily-wise rate of 'reproduces' on planted nulls: {fwer:.3f} over {N_RUNS} runs of 5 claims "
          f"(today's averaged-control verdict on the ablation claim alone: {old_rate / N_RUNS:.3f})")
    assert fwer <= 0.05
    assert old_rate / N_RUNS > 0.05  # the design the registry replaces does invent effects here


@pytest.mark.parametrize("fraction", [1.0, 0.5])
def test_a_planted_effect_reproduces_at_the_rate_the_mde_predicts(fraction):
    rng = np.random.default_rng(1)
    n, runs, sd = 200, 400, 1.0
    mde = minimum_detectable_effect(sd / math.sqrt(n))
    effect = fraction * mde
    predicted = float(stats.norm.sf(stats.norm.isf(ALPHA) - effect / (sd / math.sqrt(n))))
    hits, mdes = 0, []
    for run in range(runs):
        ev = Evidence.from_test("ours.error_detection", paired_mean_test(rng.normal(effect, sd, n), n_boot=1000, seed=run))
        (r,) = verdict([ev])
        hits += r.verdict == "reproduces"
        mdes.append(r.mde)
    rate = hits / runs
    print(f"\nplanted effect {effect:.3f} ({fraction:g} x MDE): 'reproduces' in {rate:.3f} of {runs} runs; "
          f"predicted {predicted:.3f}; mean reported MDE {np.mean(mdes):.3f} vs {mde:.3f}")
    assert abs(rate - predicted) <= 0.05
    assert abs(np.mean(mdes) - mde) / mde < 0.05


def test_the_hierarchical_control_test_detects_its_mde_at_80_percent():
    """Value set vs 5 random draws (the main job's design): a planted shift of the reported MDE
    reproduces at the predicted 80% (the draws' own spread is in the test, so the MDE is large)."""
    rng = np.random.default_rng(5)

    def result(effect, seed):
        t, c = planted_ablation(rng, effect=effect)
        ev = Evidence.from_test("srs.ablation_vs_random", hierarchical_vs_random(t, c, n_boot=400, seed=seed),
                                premise_met=True)
        return verdict([ev])[0]

    mde = float(np.mean([result(0.0, s).mde for s in range(30)]))
    runs = 250
    rate = np.mean([result(-mde, s).verdict == "reproduces" for s in range(runs)])
    print(f"\nhierarchical test, 5 draws: MDE {mde:.3f}; planted -MDE reproduces in {rate:.3f} of {runs} (predicted 0.800)")
    assert abs(rate - 0.80) <= 0.05


def test_a_value_set_merely_below_five_random_draws_gets_p_at_least_one_sixth():
    test = rank_vs_draws(0.40, [0.45, 0.47, 0.49, 0.50, 0.52])
    assert test.p_less == pytest.approx(1 / 6)
    ev = Evidence.from_test("srs.ablation_vs_random", test, scope="layer 6", premise_met=True)
    (r,) = verdict([ev])
    assert r.p >= 1 / 6 and r.verdict == "inconclusive"
    assert r.mde == math.inf and "39 draws" in r.notes  # the method cannot reach α; the note says what would


def test_a_negatively_correlated_dopamine_set_does_not_reproduce():
    rng = np.random.default_rng(2)
    n_states, d = 2000, 200
    delta = rng.normal(size=n_states)
    acts = rng.normal(size=(n_states, d))
    candidates = np.arange(10)
    acts[:, candidates] -= 0.3 * delta[:, None]  # opposite to positive RPE coding
    r = np.array([np.corrcoef(acts[:, j], delta)[0, 1] for j in range(d)])
    observed = r[candidates].mean()
    draws = [r[rng.choice(np.arange(10, d), 10, replace=False)].mean() for _ in range(99)]
    abs_draws = [np.abs(r[rng.choice(np.arange(10, d), 10, replace=False)]).mean() for _ in range(99)]
    assert rank_vs_draws(np.abs(r[candidates]).mean(), abs_draws).p_greater <= 0.01  # sign-blind |r| would pass it
    ev = Evidence.from_test("srs.dopamine_positive_rpe", rank_vs_draws(observed, draws), premise_met=True)
    (res,) = verdict([ev])
    assert res.verdict == "does not reproduce" and res.p == 1.0


def planted_rollouts(rng, n_rollouts=120, genuine=0.0):
    """States of rollouts whose reward depends on reply length only (short replies are correct);
    V(s_t) follows the tokens to the end, plus ``genuine`` × the reward."""
    lengths = rng.integers(10, 60, size=n_rollouts)
    reward = (lengths + rng.normal(0, 8, n_rollouts) < 35).astype(float)
    pos = np.concatenate([np.arange(L) for L in lengths])
    to_end = np.concatenate([L - np.arange(L) for L in lengths])
    rollout = np.repeat(np.arange(n_rollouts), lengths)
    value = -0.05 * to_end + genuine * reward[rollout] + rng.normal(0, 0.5, pos.size)
    return value, reward[rollout], pos, to_end, rollout


@pytest.mark.parametrize("genuine", [0.0, 0.5])
def test_a_length_only_signal_is_caught_by_the_length_control(genuine):
    rng = np.random.default_rng(3)
    value, reward, pos, to_end, rollout = planted_rollouts(rng, genuine=genuine)
    lc = length_controlled_correlation(value, reward, pos, to_end, rollout, n_boot=300)
    assert lc.raw.p_greater < 0.01  # the raw correlation looks like a value signal either way
    (res,) = verdict([Evidence.from_test("srs.value_survives_length", lc.controlled)])
    assert (res.verdict == "reproduces") == (genuine > 0), (genuine, lc.controlled)


def test_premises_gate_the_neuron_claims_and_leave_the_holm_set():
    rng = np.random.default_rng(4)
    surface = Evidence.from_test("srs.value_probe_beats_surface", paired_mean_test(rng.normal(0, 1, 200), n_boot=300),
                                 scope="layer 3")
    floor = Evidence.from_test("srs.value_probe_floor", paired_mean_test(rng.normal(0, 1, 200), n_boot=300),
                               scope="layer 3")
    t, c = planted_ablation(rng, effect=-0.4)
    strong = Evidence.from_test("srs.ablation_vs_random", hierarchical_vs_random(t, c, n_boot=300), scope="layer 3")
    res = verdict([surface, floor, strong])
    assert [r.verdict for r in res][2] == "premise not met"  # a huge effect, but the probe does not beat the surface
    assert math.isnan(res[2].p_adjusted)
    surface_ok = Evidence.from_test("srs.value_probe_beats_surface",
                                    paired_mean_test(rng.normal(0.5, 1, 200), n_boot=300), scope="layer 3")
    assert verdict([surface_ok, floor, strong])[2].verdict == "reproduces"


def test_holm_matches_statsmodels():
    multipletests = pytest.importorskip("statsmodels.stats.multitest").multipletests
    p = np.random.default_rng(5).uniform(0, 0.2, size=9)
    np.testing.assert_allclose(holm(p), multipletests(p, method="holm")[1])
    assert np.isnan(holm([0.01, np.nan])[1]) and holm([0.01, np.nan])[0] == pytest.approx(0.01)


def test_few_units_get_an_exact_sign_flip_test_not_a_bootstrap():
    test = paired_mean_test([0.3, 0.5, 0.2, 0.4, 0.6, 0.1])  # 6 experiments, all positive
    assert "exact sign-flip" in test.method
    assert test.p_greater == pytest.approx(1 / 64)  # one of 2^6 sign patterns is as extreme
    many = paired_mean_test(np.random.default_rng(6).normal(0.5, 1, 50), n_boot=300)
    assert "bootstrap" in many.method


def test_registry_and_summary_shape():
    assert len(REGISTRY) >= 30 and {c.family for c in REGISTRY.values()} == {"sparse_reward", "sae_td", "irm", "yfpo", "ours"}
    for c in REGISTRY.values():
        assert all(p in REGISTRY for p in c.premise), c.id
        assert c.paper_figure, c.id
    with pytest.raises(KeyError, match="declare it"):
        Evidence("srs.no_such_claim", 0.0, (0.0, 0.0), 1, "x", 0.5, "m")
    ev = Evidence.from_test("irm.kendall_tau", paired_mean_test(np.random.default_rng(7).normal(0.1, 1, 100), n_boot=200))
    summary = claims_summary(verdict([ev]))
    assert set(summary[0]) >= {"id", "estimate", "interval", "n", "p", "p_adjusted", "verdict", "minimum_detectable_effect"}
    section = claims_section(verdict([ev]))
    assert section.key == "claims" and section.tables[0].rows[0][0].startswith("Marks")


def _load_gen():
    import importlib.util
    import pathlib
    import sys

    path = pathlib.Path(__file__).resolve().parents[1] / "docs" / "gen_claims.py"
    spec = importlib.util.spec_from_file_location("gen_claims", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gen_claims", module)
    spec.loader.exec_module(module)
    return module


def test_the_claims_page_is_built_from_planted_summaries(tmp_path):
    import json

    gen = _load_gen()
    rng = np.random.default_rng(8)
    t, c = planted_ablation(rng, effect=-0.3)
    evidence = [Evidence.from_test("srs.ablation_vs_random", hierarchical_vs_random(t, c, n_boot=300), scope="layer 9",
                                   premise_met=True),
                Evidence.from_test("irm.kendall_tau", paired_mean_test(rng.normal(0, 1, 60), n_boot=200))]
    results = verdict(evidence)
    for run, model in (("run_a", "tiny-a"), ("run_b", "tiny-b")):
        (tmp_path / run).mkdir()
        (tmp_path / run / "summary.json").write_text(json.dumps({"model": model, "claims": claims_summary(results)}))
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "summary.json").write_text(json.dumps({"model": "x", "value": {}}))  # no claims: skipped
    page = gen.render(tmp_path)
    assert "2 of " in page and "tiny-a (run_a, layer 9" in page and "tiny-b (run_b" in page
    row = next(ln for ln in page.splitlines() if "`srs.ablation_vs_random`)" in ln)  # the family table's row
    assert f"{results[0].estimate:.3g} [" in row and f"n = {results[0].n}" in row and results[0].verdict in row
    assert "75% → 20%" in row  # the paper's figure next to ours
    assert "not measured yet" in next(ln for ln in page.splitlines() if "`srs.cross_task_iou`)" in ln)


def test_the_claims_page_is_built_from_the_committed_summaries():
    """docs/claims.md is a marker the docs hook fills with ``render()`` at build time: never stale."""
    gen = _load_gen()
    text = gen.render()
    assert "| " in text and "reproduces" in text or "inconclusive" in text
    assert "<!-- claims -->" in gen.PAGE.read_text()


def planted_summary(surface_low: float) -> dict:
    """A main-job summary.json as written before the registry: 5 random draws' accuracies only, a
    dopamine set whose signed correlation with δ is below random sets', a confidence Spearman near 0."""
    iv = lambda est, lo, hi, n: {"estimate": est, "low": lo, "high": hi, "n": n, "level": 0.95}  # noqa: E731
    return {
        "model": "planted",
        "value": {"best_layer": "3", "auc_by_layer_ci": {"3": iv(0.70, 0.64, 0.76, 400)},
                  "probe_vs_surface": {"probe_minus_bag_of_tokens": iv(surface_low + 0.05, surface_low, surface_low + 0.1, 400),
                                       "p_value": 1e-4 if surface_low > 0 else 0.3},
                  "logistic_floor_by_layer": {"3": {"auc": iv(0.69, 0.63, 0.75, 400)}},
                  "prune_curve": {"0": 0.70, "0.99": 0.60}, "prune_curve_random": {"0": 0.70, "0.99": 0.55},
                  "prune_curve_random_std": {"0": 0.0, "0.99": 0.02},
                  "iou_across_tasks_by_layer": {"3": {"iou": 0.0, "random": 0.0057}}},
        "ablation": {"controlled_ablation": {"3": {"value_accuracy": iv(0.40, 0.33, 0.47, 200), "controls": {
            "uniform": {"accuracies": [0.45, 0.47, 0.49, 0.50, 0.52]}}}}},
        "confidence": {"value_neurons": {"spearman": 0.008, "n": 200}, "next_token_prob": {"spearman": 0.1}},
        "dopamine": {"status": "ok", "hook": "blocks.3.hook_resid_post", "value_hook": "blocks.3.hook_resid_post",
                     "corr_with_td_error": {"candidates": -0.036, "random": 0.0, "random_std": 0.013},
                     "causal": {"hook": "blocks.3.hook_resid_post", "dopamine": {"td_mean_abs_change": 0.05},
                                "random": [{"td_mean_abs_change": x} for x in np.linspace(0.01, 0.03, 39)]}},
    }


def test_a_pre_registry_summary_is_judged_by_the_same_rules():
    from reward_circuits.analysis.claims import evidence_from_summary

    by_id = {r.id: r for r in verdict(evidence_from_summary(planted_summary(surface_low=0.02)))}
    assert by_id["srs.value_probe_auc"].verdict == "reproduces"
    assert by_id["srs.value_probe_beats_surface"].verdict == "reproduces"
    ablation = by_id["srs.ablation_vs_random"]  # below all 5 draws: rank p = 1/6, never "reproduces"
    assert ablation.p == pytest.approx(1 / 6) and ablation.verdict == "inconclusive" and "rank among 5" in ablation.method
    assert by_id["srs.dopamine_positive_rpe"].verdict == "does not reproduce"  # signed: below random sets
    assert by_id["srs.dopamine_positive_rpe"].estimate < 0
    assert by_id["srs.confidence_v_s0"].verdict == "does not reproduce"  # the paper's 0.47 lies outside the interval
    assert by_id["srs.sparsity_vs_random_masks"].estimate == pytest.approx(0.05)
    # above all 39 random draws, but the value probe reads the ablated hook: the trace change is a read-out
    assert by_id["srs.dopamine_causal_trace"].verdict == "premise not met" and by_id["srs.dopamine_causal_trace"].p == 0.025
    # the same run with a probe that does not beat the bag-of-tokens surface: its neurons are not read
    gated = {r.id: r for r in verdict(evidence_from_summary(planted_summary(surface_low=-0.08)))}
    for cid in ("srs.ablation_vs_random", "srs.dopamine_positive_rpe", "srs.sparsity_vs_unpruned", "srs.cross_task_iou"):
        assert gated[cid].verdict == "premise not met", cid
    assert gated["srs.confidence_v_s0"].verdict == "does not reproduce"  # not a neuron claim: judged anyway


def test_study_summaries_with_few_experiments_get_a_t_reference_not_their_bootstrap_p():
    from reward_circuits.analysis.claims import evidence_from_summary

    iv = {"estimate": 0.33, "low": 0.04, "high": 0.62, "n": 6, "level": 0.95}  # a percentile interval on 6 experiments
    task = {"n_experiments": 6, "model_minus_random": iv, "model_minus_random_p": 0.046, "layers": [{"layer": 3}]}
    (ev,) = evidence_from_summary({"sae_td": {"tasks": {"grid": task}}})
    assert ev.claim_id == "sae_td.learns_in_context" and ev.df == 5 and "t reference" in ev.method
    assert ev.p > 0.046 / 2 and ev.interval[0] < 0  # wider than the percentile interval: no longer excludes 0
    (r,) = verdict([ev])
    assert r.verdict == "inconclusive"
    # events of 6 experiments are not 71 independent units: the TD-latent interval is widened to the experiments
    layer = {"layer": 3, "td_error": {"sae_minus_raw": {"estimate": 0.1, "low": 0.02, "high": 0.18, "n": 71}}}
    task_ok = {**task, "model_minus_random": {**iv, "low": 0.3, "high": 0.36}, "layers": [layer]}
    evs = evidence_from_summary({"sae_td": {"tasks": {"grid": task_ok}}})
    td = next(e for e in evs if e.claim_id == "sae_td.latent_td_vs_raw")
    assert td.n == 6 and td.interval[1] - td.interval[0] > 3 * 0.16


def test_a_claim_the_study_could_not_resample_is_inconclusive_and_keeps_its_siblings():
    """6 experiments split in halves leave 3 units: the study writes no interval (low/high None). That
    claim is judged inconclusive (never reproduces, even with its premise met) and the task's other
    claims are still judged (a None used to raise inside the builder and drop every claim of the run)."""
    from reward_circuits.analysis.claims import evidence_from_summary

    learns = {"estimate": 0.5, "low": 0.45, "high": 0.55, "n": 40, "level": 0.95}  # premise clearly met
    no_iv = {"estimate": 0.4, "low": None, "high": None, "n": 3, "level": 0.95}
    layer = {"layer": 3, "td_error": {"sae_minus_raw": no_iv, "sae_minus_null": {**learns, "estimate": 0.2,
                                                                                "low": 0.15, "high": 0.25}}}
    task = {"n_experiments": 40, "model_minus_random": learns, "model_minus_random_p": 0.0, "layers": [layer]}
    results = {r.id: r for r in verdict(evidence_from_summary({"sae_td": {"tasks": {"grid": task}}}))}
    assert results["sae_td.learns_in_context"].verdict == "reproduces"
    assert results["sae_td.latent_td_vs_random"].verdict == "reproduces"
    r = results["sae_td.latent_td_vs_raw"]
    assert r.verdict == "inconclusive" and math.isnan(r.interval[0]) and "no interval" in r.method


def test_a_study_report_opens_with_its_claims(tmp_path):
    import json

    from reward_circuits.analysis.claims import open_with_claims
    from reward_circuits.report import Report, Section

    iv = {"estimate": 0.37, "low": 0.25, "high": 0.48, "n": 90, "level": 0.95}
    irm = {"reward_difference": {**iv, "estimate": 9.7, "low": 9.5, "high": 9.9, "n": 48}, "reward_difference_p": 0.0,
           "kendall_tau_interval": iv, "kendall_p": 2.6e-7}
    report = Report(tmp_path, header={"model": "planted", "command": "irm"})
    report.add(Section("irm", "IRM", irm))
    open_with_claims(report)
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert [k for k in on_disk if k in ("claims", "irm")] == ["claims", "irm"]
    by_id = {c["id"]: c for c in on_disk["claims"]}
    assert by_id["irm.finetune_raises_reward"]["verdict"] == "reproduces"
    assert by_id["irm.kendall_tau"]["verdict"] == "reproduces"  # its premise (the fine-tune raised the reward) held
    assert "Claims" in (tmp_path / "report.html").read_text().split("IRM")[0]  # the claims come before the study


def test_the_cross_model_table_has_one_column_per_model_and_says_not_run(tmp_path, capsys):
    """Issue 29: one claim × model table (estimate [interval], n, verdict), layers in relative depth,
    the run with the most evidence per model, "not run" where a model's runs did not measure a claim."""
    import json

    gen = _load_gen()
    rng = np.random.default_rng(3)
    auc = lambda n, scope: Evidence.from_interval("srs.value_probe_auc", 0.70, (0.66, 0.74), n, "prompts",  # noqa: E731
                                                  "bootstrap", scope=scope)
    tau = Evidence.from_test("irm.kendall_tau", paired_mean_test(rng.normal(0.5, 1, 80), n_boot=200))
    runs = {"a_small": ("model-a", 12, [auc(40, "layer 9")]),  # fewer prompts: not the one shown
            "a_paper": ("model-a", 12, [auc(400, "layer 9"), tau]),
            "b_paper": ("model-b", 6, [auc(300, "layer 3")])}
    results = {}
    for run, (model, n_layers, evidence) in runs.items():
        (tmp_path / run).mkdir()
        results[run] = verdict(evidence)
        (tmp_path / run / "summary.json").write_text(json.dumps({"model": model, "n_layers": n_layers,
                                                                 "claims": claims_summary(results[run])}))
    table = gen.render_cross_model(tmp_path)
    lines = table.splitlines()
    assert lines[0] == "| claim | model-a | model-b |"
    auc_row = next(ln for ln in lines if "`srs.value_probe_auc`" in ln).split(" | ")
    assert "L9/12 (0.82): 0.7 [0.66, 0.74], n = 400, **reproduces**" in auc_row[1] and "a_paper" in auc_row[1]
    assert "L3/6 (0.60): 0.7 [0.66, 0.74], n = 300" in auc_row[2] and "b_paper" in auc_row[2]
    tau_row = next(ln for ln in lines if "`irm.kendall_tau`" in ln).split(" | ")
    r = results["a_paper"][1]
    assert f"{r.estimate:.3g} [{r.interval[0]:.3g}, {r.interval[1]:.3g}], n = {r.n}, **{r.verdict}**" in tau_row[1]
    assert tau_row[2].rstrip(" |") == "not run"
    assert not any("`srs.cross_task_iou`" in ln for ln in lines)  # measured by no model: no row
    assert len(lines) == 2 + 2
    assert "## Across models" in gen.render(tmp_path) and table in gen.render(tmp_path)
    gen.main(["--cross-model", "--results", str(tmp_path)])
    assert capsys.readouterr().out.strip() == table
    assert gen.scope_in_depth("layer 18, matched", 30) == "L18/30 (0.62), matched"
    assert gen.scope_in_depth("layer 18", None) == "layer 18"


def test_the_cross_model_table_skips_smoke_runs_and_lists_verdict_changes(tmp_path, capsys):
    """A --quick run never speaks for a model, even with more n; a claim that went from inconclusive
    (small n) to reproduces (large n) between two runs of a model is listed by --changes."""
    import json
    import os
    import subprocess

    gen = _load_gen()
    auc = lambda n, half: Evidence.from_interval("srs.value_probe_auc", 0.62, (0.62 - half, 0.62 + half), n,  # noqa: E731
                                                 "prompts", "bootstrap", scope="layer 3")
    runs = [("old", {}, auc(47, 0.17)), ("new", {}, auc(400, 0.05)), ("smoke", {"quick": True}, auc(900, 0.2))]
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    for i, (run, config, ev) in enumerate(runs):  # committed one after the other, a second apart
        (tmp_path / run).mkdir()
        (tmp_path / run / "summary.json").write_text(json.dumps({"model": "m", "n_layers": 6, "config": config,
                                                                 "claims": claims_summary(verdict([ev]))}))
        stamp = {"GIT_AUTHOR_DATE": f"2026-01-01T00:00:0{i}", "GIT_COMMITTER_DATE": f"2026-01-01T00:00:0{i}"}
        subprocess.run(["git", "add", "-A"], cwd=tmp_path, check=True)
        subprocess.run(["git", "commit", "-qm", run], cwd=tmp_path, check=True, env={**env, **stamp})
    row = next(ln for ln in gen.render_cross_model(tmp_path).splitlines() if "`srs.value_probe_auc`" in ln)
    assert "(new, " in row and "n = 400, **reproduces**" in row and "L3/6 (0.60)" in row  # not the smoke run's 900
    changes = gen.verdict_changes(tmp_path)
    assert changes == ["- `srs.value_probe_auc` on m: inconclusive (old, n = 47) → reproduces (new, n = 400)"]
    gen.main(["--changes", "--results", str(tmp_path)])
    assert capsys.readouterr().out.strip() == changes[0]


def test_a_superseded_run_never_speaks_for_its_model(tmp_path):
    """A run folder holding SUPERSEDED (e.g. the IRM on a reward-hacked fine-tune) is history: even with
    more evidence and a "reproduces", the model's cell comes from the run that replaced it."""
    import json

    gen = _load_gen()
    tau = lambda est, n: Evidence.from_interval("irm.kendall_tau", est, (est - 0.05, est + 0.05), n,  # noqa: E731
                                                "words", "bootstrap")
    for run, ev in (("hacked", tau(0.37, 900)), ("current", tau(0.02, 300))):
        (tmp_path / run).mkdir()
        (tmp_path / run / "summary.json").write_text(json.dumps({"model": "m", "claims": claims_summary(verdict([ev]))}))
    (tmp_path / "hacked" / "SUPERSEDED").write_text("superseded by current: reward at the clip\n")
    row = next(ln for ln in gen.render_cross_model(tmp_path).splitlines() if "`irm.kendall_tau`" in ln)
    assert "(current, " in row and "0.37" not in row and "hacked" not in row
    assert any(r["run"] == "hacked (superseded)" for r in gen.claim_rows(tmp_path)["irm.kendall_tau"])


def test_each_scope_of_a_cell_comes_from_the_run_with_most_evidence_for_it(tmp_path):
    """A larger run of one task speaks for that task; an older run still speaks for the tasks only it
    measured (layers aside: "two_step, layer 17" and "two_step, layer 3" are one scope)."""
    import json

    gen = _load_gen()
    learns = lambda task, n, layer: Evidence.from_interval("sae_td.learns_in_context", 0.03, (-0.03, 0.1), n,  # noqa: E731
                                                           "experiments", "bootstrap", scope=f"{task}, layer {layer}")
    for run, evs in (("old", [learns("two_step", 6, 3), learns("grid", 6, 3)]), ("new", [learns("two_step", 30, 17)])):
        (tmp_path / run).mkdir()
        (tmp_path / run / "summary.json").write_text(json.dumps({"model": "m", "claims": claims_summary(verdict(evs))}))
    assert gen.scope_key("two_step, layer 17") == "two_step" and gen.scope_key("layer 18, uniform") == "uniform"
    row = next(ln for ln in gen.render_cross_model(tmp_path).splitlines() if "learns_in_context" in ln)
    assert "two_step, layer 17: 0.03 [-0.03, 0.1], n = 30" in row and "(new, " in row
    assert "grid, layer 3: " in row and "n = 6" in row and "(old, " in row and "two_step, layer 3" not in row
