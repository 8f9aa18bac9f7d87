"""Implicit reward model (Marks et al.): each defect of the paper's public code is guarded here.

Tiny models and planted ground truth only; the end-to-end run is in test_irm_study.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from reward_circuits.studies.irm import (
    CorrelationExplainer,
    IrmConfig,
    LinearIRM,
    PrecisionError,
    VaderReward,
    ablation_hooks,
    build_triples,
    layer_divergence,
    mmcs,
    paired_kendall,
    random_features_like,
    review_openings,
    sentiment_words,
    shared_features,
    text_activations,
    token_deltas,
    top_features,
    vader_lexicon,
    words,
)
from reward_circuits.studies.irm.contrastive import NEUTRAL_WORDS, TEMPLATES
from reward_circuits.sae import SAETrainConfig, train_sae

pytestmark = pytest.mark.usefixtures("one_thread")

HOOK = "blocks.1.hook_mlp_out"


# ---- the known reward ---------------------------------------------------------------------------
def test_vader_reward_matches_hand_computed_values():
    lx = vader_lexicon()
    assert (lx["great"], lx["terrible"], lx["boring"], lx["love"]) == (3.1, -2.1, -1.3, 3.2)
    r = VaderReward()
    # 3.1 / 5
    assert r("What a great film.")[0] == pytest.approx(0.62)
    # (-2.1 - 1.3) / 5, case-insensitive, punctuation is not part of a word
    assert r("The plot was TERRIBLE, and boring!")[0] == pytest.approx(-0.68)
    # (3.2 + 3.1 - 2.1) / 5; "movie" is not in the lexicon
    assert r("I love this great movie despite the terrible ending")[0] == pytest.approx(0.84)
    # 20 × 3.1 / 5 = 12.4 is clipped to 10; −4 × 20 / 5 clipped to −10 if ever reached
    assert r(" ".join(["great"] * 20))[0] == 10.0
    assert r("")[0] == 0.0
    assert words("Don't stop; it's GREAT :)") == ["don't", "stop", "it's", "great"]


def test_prompts_templates_and_neutral_words_carry_no_reward():
    lx = vader_lexicon()
    assert not {w for p in review_openings(240) for w in words(p) if w in lx}
    assert len(set(review_openings(240))) == 240
    assert review_openings(20, seed=1) == review_openings(20, seed=1) != review_openings(20, seed=2)
    assert not {w for t in TEMPLATES for w in words(t) if w in lx}
    assert not [w for w in NEUTRAL_WORDS if w in lx]


# ---- MMCS ---------------------------------------------------------------------------------------
def test_mmcs_of_a_dictionary_with_itself_is_one_and_with_a_random_one_is_low():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(64, 128, generator=g)
    assert mmcs(a, a) == pytest.approx(1.0, abs=1e-5)
    assert mmcs(a, a, "hungarian") == pytest.approx(1.0, abs=1e-5)
    assert mmcs(a, torch.randn(128, 128, generator=g)) < 0.4
    # scaled copies and a superset give 1 too (cosine, max over the larger dictionary)
    assert mmcs(a, torch.cat([3 * a, torch.randn(32, 128, generator=g)])) == pytest.approx(1.0, abs=1e-5)


def test_mmcs_is_mean_max_not_one_to_one():
    # two features of a share one direction of b: each has max cosine 1 (MMCS 1), but a one-to-one
    # matching must give one of them an orthogonal partner (mean 0.5)
    e = torch.eye(4)
    a = torch.stack([e[0], e[0]])
    b = torch.stack([e[0], e[1]])
    assert mmcs(a, b) == pytest.approx(1.0)
    assert mmcs(a, b, "hungarian") == pytest.approx(0.5)
    assert shared_features(a, b, 0.9).tolist() == [0]
    with pytest.raises(ValueError, match="max"):
        mmcs(a, b, "greedy")


# ---- Kendall tau on paired values ---------------------------------------------------------------
def test_kendall_tau_pairs_values():
    rng = np.random.default_rng(0)
    true = rng.normal(size=400)
    assert paired_kendall(true * 2 + 1, true, n_boot=50).tau == pytest.approx(1.0)
    shuffled = rng.permutation(true)
    ours = paired_kendall(shuffled, true, n_boot=200)
    assert abs(ours.tau) < 0.1 and ours.p_value > 0.01
    assert ours.interval.low < 0 < ours.interval.high and ours.n == 400
    # the public code's mistake: sorting both lists separately makes any pairing look perfect
    mistake = stats.kendalltau(np.sort(shuffled), np.sort(true)).statistic
    assert mistake == pytest.approx(1.0)
    assert ours.tau < mistake - 0.8
    with pytest.raises(ValueError, match="paired"):
        paired_kendall(true[:10], true[:9])


# ---- layer divergence ---------------------------------------------------------------------------
def test_divergence_with_itself_is_zero_and_finds_the_changed_layer(tiny_hf):
    import copy

    hf, _ = tiny_hf
    d = layer_divergence(hf, hf)
    assert d.layers == [0, 1] and d.distance == [0.0, 0.0] and d.outside_layers == 0.0
    tuned = copy.deepcopy(hf)
    with torch.no_grad():
        w = tuned.model.layers[1].mlp.down_proj.weight
        w.add_(torch.full_like(w, 1e-3))
    d = layer_divergence(hf, tuned)
    assert d.distance[0] == 0.0
    assert d.distance[1] == pytest.approx(1e-3 * w.numel() ** 0.5, rel=1e-4)
    assert d.top_layers(1) == [1]
    assert d.top_over_median() == pytest.approx(2.0)  # median of (0, x) is x / 2


def test_divergence_refuses_lower_precision_weights(tiny_hf):
    import copy

    hf, _ = tiny_hf
    low = copy.deepcopy(hf).to(torch.bfloat16)
    with pytest.raises(PrecisionError, match="float32"):
        layer_divergence(hf, low)
    state = {k: v.clone() for k, v in hf.state_dict().items()}
    state["model.layers.0.mlp.down_proj.weight"] = state["model.layers.0.mlp.down_proj.weight"].to(torch.int8)
    with pytest.raises(PrecisionError, match="int8"):
        layer_divergence(hf.state_dict(), state)
    # an int8 round-trip hides a small update that float32 sees
    tuned = {k: v.clone() for k, v in hf.state_dict().items()}
    tuned["model.layers.0.mlp.down_proj.weight"] += 1e-4
    assert layer_divergence(hf.state_dict(), tuned).distance[0] > 0


# ---- SAE data: no padding -----------------------------------------------------------------------
def test_sae_data_contains_no_padding_positions(tl_adapter):
    texts = ["a", "great film indeed", "so so"]
    acts = text_activations(tl_adapter, texts, [HOOK])[HOOK]
    lengths = [len(tl_adapter.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    assert acts.shape[0] == sum(lengths)  # padded batch is 3 × 17 positions
    single = torch.cat([tl_adapter.capture(tl_adapter.tokenize(t), [HOOK])[HOOK][0] for t in texts])
    torch.testing.assert_close(acts, single, atol=1e-4, rtol=1e-4)


# ---- ablation hook ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_sae(tl_adapter):
    texts = [p + " it was great fun and terrible" for p in review_openings(24)]
    acts = text_activations(tl_adapter, texts, [HOOK])[HOOK]
    cfg = SAETrainConfig(architecture="topk", k=4, d_sae=64, epochs=3, lr=3e-3, batch_size=128)
    return train_sae(acts, cfg, hook_name=HOOK).sae, acts


def test_ablation_hook_moves_the_logits_and_removing_nothing_does_not(tl_adapter, tiny_sae):
    sae, acts = tiny_sae
    batch = tl_adapter.tokenize(["it was great fun", "so terrible"])
    clean = tl_adapter.forward(batch)
    same = tl_adapter.forward(batch, fwd_hooks=ablation_hooks({HOOK: sae}, {HOOK: []}))
    torch.testing.assert_close(same, clean, atol=1e-4, rtol=1e-4)
    busiest = sae.encode(acts).gt(0).float().mean(0).argsort(descending=True)[:5].tolist()
    moved = tl_adapter.forward(batch, fwd_hooks=ablation_hooks({HOOK: sae}, {HOOK: busiest}))
    assert (moved - clean).abs().max() > 1e-3
    # the hooks are removed afterwards
    torch.testing.assert_close(tl_adapter.forward(batch), clean)


def test_random_control_matches_counts_and_avoids_selected(tiny_sae):
    sae, _ = tiny_sae
    selected = {HOOK: [1, 2, 3]}
    for seed in range(5):
        draw = random_features_like(selected, {HOOK: sae}, seed)
        assert len(draw[HOOK]) == 3 and not set(draw[HOOK]) & {1, 2, 3}


def test_correlation_explainer_ranks_the_planted_reward_feature_first():
    rng = np.random.default_rng(0)
    reward = rng.normal(size=200)
    feats = rng.normal(size=(200, 30))
    feats[:, 7] = reward + 0.1 * rng.normal(size=200)
    feats[:, 3] = 1.0  # constant: scored -inf, never selected
    scores = CorrelationExplainer().relevance(feats, reward, [])
    index = [("h", i) for i in range(30)]
    assert top_features(scores, index, 1) == {"h": [7]}
    assert 3 not in top_features(scores, index, 29)["h"]


# ---- contrastive triples → linear IRM -----------------------------------------------------------
def test_triples_swap_one_word_and_deltas_recover_lexicon_values():
    lx = vader_lexicon()
    ws = sentiment_words(6, 5, seed=0)
    triples = build_triples(ws, templates_per_word=2, seed=0)
    for t in triples:
        pos, _neu, neg = t.texts()
        assert lx[t.positive] > 0 > lx[t.negative] and t.neutral not in lx
        assert pos.startswith(t.prefix()) and neg.startswith(t.prefix())

    def reward_reader(texts, starts):  # a planted read-out: feature 0 is the text's lexicon sum
        return np.array([[sum(lx.get(w, 0) for w in words(t)), 1.0] for t in texts])

    d = token_deltas(triples, reward_reader)
    assert sorted(d.words) == sorted(ws)
    # the word fills every slot of its templates: delta = value × slots, averaged over its triples
    for w, v, row, n in zip(d.words, d.values, d.deltas, d.n_contexts):
        slots = [t.template.count("{w}") for t in triples if w in (t.positive, t.negative)]
        assert v == lx[w] and row[1] == 0.0 and n == len(slots)
        assert row[0] == pytest.approx(v * np.mean(slots))


def test_linear_irm_recovers_planted_token_values():
    rng = np.random.default_rng(0)
    values = rng.uniform(-3.5, 3.5, 300)
    direction = rng.normal(size=40)
    deltas = np.outer(values, direction) + 0.5 * rng.normal(size=(300, 40))
    deltas *= np.logspace(-2, 2, 40)  # features on very different scales (SAE latents are)
    deltas[:, 5] = 2.0  # a constant feature is ignored
    irm = LinearIRM().fit(deltas[:200], values[:200])
    assert irm is not None and hasattr(irm, "coef_") and irm.coef_[5] == 0.0
    pred = irm.predict(deltas[200:])
    assert np.corrcoef(pred, values[200:])[0, 1] > 0.98
    assert np.abs(pred - values[200:]).mean() < 0.3  # the planted values themselves, not just their order
    assert irm.score(deltas[200:], values[200:]) > 0.9
    # unrelated deltas give a tau near 0 on held-out tokens
    noise = LinearIRM().fit(rng.normal(size=(200, 40)), values[:200])
    assert abs(noise.score(rng.normal(size=(100, 40)), values[200:])) < 0.2


def test_config_validation_names_the_problem():
    with pytest.raises(ValueError, match="sae_sizes"):
        IrmConfig(sae_sizes=(2.0, 1.0))
    with pytest.raises(ValueError, match="240"):
        IrmConfig(n_train_prompts=200, n_select_prompts=40, n_eval_prompts=40)
    with pytest.raises(ValueError, match="num_generations"):
        IrmConfig(completions_per_step=12, num_generations=8)
    with pytest.raises(ValueError, match="irm_test_fraction"):
        IrmConfig(irm_test_fraction=1.0)


def test_finetune_seed_moves_only_the_grpo_run():
    """--finetune-seed reseeds GRPO alone: prompt splits and SAEs keep --seed, so two fine-tune seeds of one
    recipe are judged on the same held-out prompts."""
    from reward_circuits.studies.irm.study import prompt_splits

    base, other = IrmConfig(), IrmConfig(finetune_seed=1)
    assert base.finetune_config().seed == 0 and other.finetune_config().seed == 1
    assert other.sae_config().seed == base.sae_config().seed == 0
    assert prompt_splits(other) == prompt_splits(base)


def test_a_dictionary_pair_does_not_share_its_initialisation():
    """Untrained (lr ~0) small and large SAEs: from one seed the small decoder would be the large one's
    first rows (MMCS 1); from their own seeds MMCS is the random floor."""
    from reward_circuits.studies.irm import train_dictionary_pair

    acts = torch.randn(256, 32, generator=torch.Generator().manual_seed(0))
    cfg = SAETrainConfig(architecture="topk", k=4, epochs=1, lr=1e-12, batch_size=256)
    pair = train_dictionary_pair(acts, HOOK, (32, 64), cfg, "base", threshold=0.7, hungarian=False)
    assert pair.mmcs < 0.8
