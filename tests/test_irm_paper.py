"""Marks et al.'s IRM (sentiment activation deltas → linear regression), the reward-hack guard and the
matched ablation control, on planted signal (issue 28)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

import reward_circuits.studies.irm.contrastive as contrastive
import reward_circuits.studies.irm.irm_model as irm_model
from reward_circuits.studies.irm import build_triples, sentiment_words, vader_lexicon
from reward_circuits.studies.irm.contrastive import SAEFeatureReader, activation_deltas
from reward_circuits.studies.irm.irm_model import fit_delta_irm, normalise_to_lexicon_range, word_means

pytestmark = pytest.mark.usefixtures("one_thread")
N_FEAT = 24


class PlantedReader:
    """Feature activations with a planted sentiment: a template's context vector, plus ``s_w · u``
    for a positive word and ``|s_w| · v`` for a negative one (``s_w`` unrelated to VADER), plus noise."""

    def __init__(self, strengths: dict[str, float], seed: int = 0, noise: float = 0.05):
        rng = np.random.default_rng(seed)
        self.strengths, self.noise, self.rng = strengths, noise, rng
        self.u, self.v = rng.normal(size=N_FEAT), rng.normal(size=N_FEAT)
        self.context: dict[str, np.ndarray] = {}
        self.calls = 0

    def __call__(self, texts, starts, stops=None):
        self.calls += 1
        rows = []
        for start, stop in zip(starts, stops):
            word = stop[len(start):].strip()
            ctx = self.context.setdefault(start, self.rng.normal(size=N_FEAT))
            s = self.strengths.get(word, 0.0)
            row = ctx + (s * self.u if s > 0 else -s * self.v) + self.noise * self.rng.normal(size=N_FEAT)
            rows.append(row)
        return np.array(rows)


@pytest.fixture(scope="module")
def planted():
    lx = vader_lexicon()
    ws = sentiment_words(40, 40, seed=3)
    rng = np.random.default_rng(1)
    # planted magnitudes independent of the lexicon: a random order within each polarity
    strengths = {w: float(np.sign(lx[w]) * rng.uniform(0.5, 4.0)) for w in ws}
    triples = build_triples(ws, templates_per_word=3, seed=0)
    return strengths, triples


def test_deltas_are_signed_distances_to_the_neutral_sentence(planted):
    strengths, triples = planted
    reader = PlantedReader(strengths, noise=0.0)
    d = activation_deltas(triples[:10], reader)
    assert len(d.words) == 20 and d.features.shape == (20, N_FEAT)
    for k, tr in enumerate(triples[:10]):
        assert d.words[2 * k] == tr.positive and d.words[2 * k + 1] == tr.negative
        assert d.deltas[2 * k] == pytest.approx(strengths[tr.positive] * np.linalg.norm(reader.u))
        assert d.deltas[2 * k + 1] == pytest.approx(strengths[tr.negative] * np.linalg.norm(reader.v))
    assert (np.sign(d.deltas) == d.polarity).all()


def test_delta_irm_recovers_the_planted_token_ordering_without_lexicon_values(planted):
    strengths, triples = planted
    d = activation_deltas(triples, PlantedReader(strengths))
    fit = fit_delta_irm(d.features, d.deltas, d.words)
    assert np.abs(fit.reconstructed).max() <= 4.0 + 1e-12 and fit.delta_r2 > 0.9
    planted_values = np.array([strengths[w] for w in fit.words])
    assert stats.kendalltau(fit.reconstructed, planted_values).statistic > 0.8
    neg = planted_values < 0
    assert stats.kendalltau(fit.reconstructed[neg], planted_values[neg]).statistic > 0.7
    # and invents no VADER ranking within a polarity: the planted magnitudes are unrelated to VADER
    lx = vader_lexicon()
    vader = np.array([lx[w] for w in fit.words])
    assert abs(stats.kendalltau(fit.reconstructed[neg], vader[neg]).statistic) < 0.3
    # features that do not respond to the word give no ordering (a known null)
    null = activation_deltas(triples, PlantedReader({w: np.sign(s) * 1e-9 for w, s in strengths.items()}, noise=1.0))
    null_fit = fit_delta_irm(null.features, null.deltas, null.words)
    nv = np.array([strengths[w] for w in null_fit.words])
    assert abs(stats.kendalltau(null_fit.reconstructed[nv < 0], nv[nv < 0]).statistic) < 0.3


def test_the_regression_never_receives_lexicon_values(planted, monkeypatch):
    strengths, _ = planted
    seen = []
    real_fit = irm_model.DeltaIRM.fit

    def spy(self, features, deltas):
        seen.append((np.array(features, copy=True), np.array(deltas, copy=True)))
        return real_fit(self, features, deltas)

    monkeypatch.setattr(irm_model.DeltaIRM, "fit", spy)

    def run():
        ws = sentiment_words(40, 40, seed=3)
        d = activation_deltas(build_triples(ws, templates_per_word=3, seed=0), PlantedReader(strengths))
        fit_delta_irm(d.features, d.deltas, d.words)
        return d

    d = run()
    first = list(seen)
    lx = vader_lexicon()
    vader = {abs(v) for v in lx.values()}
    for x, y in first:
        assert x.shape[1] == N_FEAT  # features only: no column of lexicon values
        assert not np.isin(np.round(np.abs(y), 6), np.round(list(vader), 6)).all()
        assert set(np.round(y, 9)) <= set(np.round(d.deltas, 9))  # the targets are the activation deltas
    # the same run under a lexicon with the same signs but scrambled magnitudes feeds the regression
    # exactly the same inputs: no lexicon magnitude reaches it (the words drawn, |value| >= 0.5, stay)
    rng = np.random.default_rng(7)
    scrambled = {w: float(np.sign(v) * rng.uniform(0.5, 4)) if abs(v) >= 0.5 else v for w, v in lx.items()}
    monkeypatch.setattr(contrastive, "vader_lexicon", lambda: scrambled)
    seen.clear()
    run()
    assert len(seen) == len(first)
    for (x0, y0), (x1, y1) in zip(first, seen):
        np.testing.assert_array_equal(x0, x1)
        np.testing.assert_array_equal(y0, y1)


def test_normalisation_and_word_means():
    v = normalise_to_lexicon_range([2.0, -8.0, 1.0, 0.0])
    np.testing.assert_allclose(v, [1.0, -4.0, 0.5, 0.0])
    names, means = word_means(["a", "b", "a"], [1.0, 5.0, 3.0])
    assert names == ["a", "b"] and means.tolist() == [2.0, 5.0]


def test_sae_reader_pools_the_word_tokens_only(tl_adapter):
    from reward_circuits.sae import SAETrainConfig, train_sae
    from reward_circuits.studies.irm import text_activations

    hook = "blocks.1.hook_mlp_out"
    acts = text_activations(tl_adapter, ["it was great fun and terrible"] * 4, [hook])[hook]
    sae = train_sae(acts, SAETrainConfig(architecture="topk", k=4, d_sae=32, epochs=1, batch_size=64), hook_name=hook).sae
    reader = SAEFeatureReader(tl_adapter, {hook: sae})
    text, start, stop = "I thought the film was great fun.", "I thought the film was", "I thought the film was great"
    got = reader([text], [start], [stop])[0]
    tok = tl_adapter.tokenizer
    a, b = (len(tok(s, add_special_tokens=False)["input_ids"]) for s in (start, stop))
    full = sae.encode(tl_adapter.capture(tl_adapter.tokenize([text]), [hook])[hook][0])
    torch.testing.assert_close(torch.as_tensor(got, dtype=full.dtype), full[a:b].mean(0), atol=1e-5, rtol=1e-4)
    assert not np.allclose(got, reader([text], [start])[0])  # without stops the window runs to the end


# ---- matched ablation control -------------------------------------------------------------------
def _planted_statistics(seed: int = 0):
    from reward_circuits.studies.irm.ablation import LatentStatistics

    rng = np.random.default_rng(seed)
    index = [(h, i) for h in ("blocks.0.hook_mlp_out", "blocks.1.hook_mlp_out") for i in range(400)]
    freq = rng.beta(0.5, 8, size=len(index))  # most latents rarely fire (SAE latents do not)
    mean_act = freq * rng.lognormal(0, 0.5, size=len(index))
    return LatentStatistics(index, freq, mean_act, rng.lognormal(0, 0.2, size=len(index)))


def test_matched_random_features_have_the_selected_activation_frequency_distribution():
    from reward_circuits.studies.irm import random_features_like
    from reward_circuits.studies.irm.ablation import matched_random_features

    st = _planted_statistics()
    # reward features are chosen because they are active: 15 latents per hook drawn with probability
    # proportional to frequency squared (heavily skewed toward the busiest latents)
    rng = np.random.default_rng(1)
    selected = {}
    for h in ("blocks.0.hook_mlp_out", "blocks.1.hook_mlp_out"):
        cols = np.flatnonzero([hh == h for hh, _ in st.index])
        w = st.frequency[cols] ** 2
        selected[h] = sorted(int(st.index[j][1]) for j in rng.choice(cols, 15, replace=False, p=w / w.sum()))
    draws = matched_random_features(selected, st, n_draws=20, seed=0)
    assert len(draws) == 20
    sel_freq = st.of(selected)
    for d in draws:
        assert {h: len(v) for h, v in d.items()} == {h: 15 for h in selected}
        assert all(not set(d[h]) & set(selected[h]) for h in selected)
    matched = np.concatenate([st.of(d) for d in draws])
    assert stats.ks_2samp(sel_freq, matched).pvalue > 0.05
    assert stats.ks_2samp(st.of(selected, "effect"), np.concatenate([st.of(d, "effect") for d in draws])).pvalue > 0.01
    # uniform random latents (the old control) have a very different frequency distribution
    sizes = {h: type("S", (), {"cfg": type("C", (), {"d_sae": 400})()})() for h in selected}
    uniform = np.concatenate([st.of(random_features_like(selected, sizes, s)) for s in range(20)])
    assert stats.ks_2samp(sel_freq, uniform).pvalue < 1e-6
    assert len({tuple(d["blocks.0.hook_mlp_out"]) for d in draws}) > 15  # the draws differ


def test_ablation_rank_p_counts_draws_at_least_as_large():
    from reward_circuits.analysis.stats import Interval
    from reward_circuits.studies.irm import AblationResult

    iv = Interval(0.0, 0.0, 0.0, 3)
    r = AblationResult({}, [], iv, iv, iv, iv, 1.0, iv, 1.0,
                       {"none": [2.0, 2.0], "ablated": [1.0, 1.0], "random": [1.9, 1.9]},
                       draw_drops=[0.1] * 18 + [1.0, 1.5])
    assert r.observed_drop == 1.0 and r.rank_p == pytest.approx(3 / 21)
