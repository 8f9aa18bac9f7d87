"""reward_circuits.sae: training from activations (padding excluded), metrics, sae-lens save/load,
the latent-removal hook (error term kept; both backends), decoder cosine similarity."""

from __future__ import annotations

import json

import pytest
import torch

from reward_circuits.interventions import as_fwd_hooks
from reward_circuits.sae import (SAETrainConfig, collect_activations, decoder_cosine_matrix, evaluate_sae, load_sae,
                                 remove_latents, save_sae, train_sae)

pytestmark = pytest.mark.usefixtures("one_thread")

HOOK = "blocks.0.hook_resid_post"


def planted_sparse(n=2048, d=16, n_features=24, active=2, seed=0):
    """x = sparse non-negative codes @ unit dictionary: an SAE can explain it almost fully."""
    g = torch.Generator().manual_seed(seed)
    dictionary = torch.randn(n_features, d, generator=g)
    dictionary /= dictionary.norm(dim=-1, keepdim=True)
    codes = torch.zeros(n, n_features)
    idx = torch.stack([torch.randperm(n_features, generator=g)[:active] for _ in range(n)])
    codes.scatter_(1, idx, torch.rand(n, active, generator=g) * 2 + 0.5)
    return codes @ dictionary, dictionary


@pytest.fixture(scope="module")
def trained():
    x, _ = planted_sparse()
    cfg = SAETrainConfig(d_sae=48, lr=3e-3, epochs=15, l1_coefficient=0.3, batch_size=128)
    return x, train_sae(x, cfg, hook_name=HOOK, model_name="planted")


def test_config_validation_names_the_problem():
    with pytest.raises(ValueError, match="architecture"):
        SAETrainConfig(architecture="gated")
    with pytest.raises(ValueError, match="epochs"):
        SAETrainConfig(epochs=0)
    with pytest.raises(ValueError, match="k=.*exceeds"):
        SAETrainConfig(architecture="topk", k=100, d_sae=10).n_latents(8)
    cfg = SAETrainConfig()
    assert (cfg.batch_size, cfg.lr, cfg.l1_coefficient, cfg.epochs) == (256, 1e-4, 1e-5, 30)


def test_padding_positions_never_reach_the_sae():
    x, _ = planted_sparse(n=60, d=16)
    padded = torch.full((6, 14, 16), 1e6)  # padding filled with a value no real row has
    mask = torch.zeros(6, 14, dtype=torch.long)
    for i in range(6):  # left padding, 10 real tokens per row
        padded[i, 4:] = x[i * 10:(i + 1) * 10]
        mask[i, 4:] = 1
    rows = collect_activations(padded, attention_mask=mask)
    assert rows.shape == (60, 16) and torch.equal(rows, x)
    with pytest.raises(ValueError, match="attention_mask"):
        collect_activations(padded)
    res = train_sae(padded, SAETrainConfig(d_sae=8, epochs=1), attention_mask=mask)
    assert res.n_activations == 60
    assert float(res.sae.b_dec.detach().abs().max()) < 100  # b_dec starts at the mean: no padding leaked in


def test_collect_from_store_matches_rollouts(tmp_path):
    from reward_circuits.data import write_store_from_arrays

    seqs = [torch.randn(t, 8) for t in (3, 5, 2)]
    store = write_store_from_arrays(tmp_path / "s", {HOOK: seqs}, [0, 1, 0], dtype="float32")
    rows = collect_activations(store, HOOK)
    assert torch.allclose(rows, torch.cat(seqs))


def test_training_explains_planted_sparse_data(trained):
    x, res = trained
    q = evaluate_sae(res.sae, x)
    assert q.explained_variance > 0.9, q
    assert q.l0 < 16 and 0 <= q.dead_fraction < 1  # sparse: 2 true features per row, 48 latents
    assert res.loss_curve[-1] < res.loss_curve[0]
    assert type(res.sae).__name__ == "StandardSAE" and res.sae.cfg.metadata.hook_name == HOOK


def test_untrained_sae_is_worse_than_trained(trained):
    x, res = trained
    cfg = SAETrainConfig(d_sae=48, lr=1e-9, epochs=1, init_b_dec_to_mean=False)
    bad = train_sae(x, cfg)
    assert evaluate_sae(bad.sae, x).explained_variance < evaluate_sae(res.sae, x).explained_variance - 0.3


def test_topk_option_and_mean_norm_folding():
    x, _ = planted_sparse(n=1024)
    cfg = SAETrainConfig(architecture="topk", k=3, d_sae=32, lr=3e-3, epochs=8, batch_size=128, normalize="mean_norm")
    big, small = train_sae(x * 50.0, cfg), train_sae(x, cfg)
    assert type(big.sae).__name__ == "TopKSAE"
    q = evaluate_sae(big.sae, x * 50.0)  # raw-scale inputs: the scale was folded into the weights
    assert q.l0 <= 3 + 1e-9 and q.explained_variance > 0.5, q
    assert big.scale_factor == pytest.approx(small.scale_factor / 50.0)
    # same normalised data -> same SAE up to the folded scale: the same latents fire, reconstructions
    # scale by 50 (sae-lens TopK rescales latents by the decoder norm, so their size scales too)
    with torch.no_grad():
        assert torch.equal(big.sae.encode(x[:64] * 50.0) > 0, small.sae.encode(x[:64]) > 0)
        assert torch.allclose(big.sae(x[:64] * 50.0), 50.0 * small.sae(x[:64]), rtol=1e-3, atol=1e-2)


def test_save_load_round_trip_and_load_from_disk(trained, tmp_path):
    from sae_lens import SAE

    x, res = trained
    path = save_sae(res.sae, tmp_path / "sae")
    assert (path / "sae_weights.safetensors").exists()
    cfg = json.loads((path / "cfg.json").read_text())
    assert cfg["architecture"] == "standard" and cfg["metadata"]["hook_name"] == HOOK
    for loaded in (load_sae(path), SAE.load_from_disk(path)):
        assert torch.equal(loaded.encode(x[:32]), res.sae.encode(x[:32]))
    save_sae(res.sae, path)  # overwriting an existing directory works
    assert torch.equal(load_sae(path).W_dec, res.sae.W_dec)


def test_from_pretrained_finds_a_locally_saved_sae(trained, tmp_path, monkeypatch):
    """SAE.from_pretrained(repo_id, folder) reads our saved directory from the (offline) hub cache."""
    import huggingface_hub.constants as hf_constants
    from sae_lens import SAE

    x, res = trained
    commit = "0" * 40
    repo_dir = tmp_path / "hub" / "models--me--td-saes"
    save_sae(res.sae, repo_dir / "snapshots" / commit / "layer0")
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(commit)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    loaded = SAE.from_pretrained("me/td-saes", "layer0")
    assert torch.equal(loaded.encode(x[:16]), res.sae.encode(x[:16]))


def test_removal_hook_with_no_latents_is_identity_and_keeps_error(trained):
    x, res = trained
    sae = res.sae
    act = (x[:24] + 0.3 * torch.randn(24, 16)).reshape(2, 12, 16)  # off-dictionary noise: a real error term

    class H:
        name = HOOK

    same = remove_latents(sae, [])(act, hook=H())
    assert torch.allclose(same, act, atol=1e-5)
    assert not torch.allclose(sae.decode(sae.encode(act)), act, atol=1e-2)  # the error term is not small
    j = int(sae.encode(act).reshape(-1, 48).sum(0).argmax())
    out = remove_latents(sae, [j])(act, hook=H())
    expected = act - sae.encode(act)[..., j:j + 1] * sae.W_dec[j]  # exactly latent j's contribution leaves
    assert torch.allclose(out, expected, atol=1e-5)
    assert not torch.allclose(out, act, atol=1e-3)
    # positions: only the chosen positions change
    last = remove_latents(sae, [j], positions=slice(-1, None))(act, hook=H())
    assert torch.equal(last[:, :-1], act[:, :-1]) and torch.allclose(last[:, -1], expected[:, -1], atol=1e-5)


def test_removal_hook_refuses_other_sites_and_bad_latents(trained):
    _, res = trained
    with pytest.raises(ValueError, match=r"latent indices must lie in \[0, 48\)"):
        remove_latents(res.sae, [48])

    class Elsewhere:
        name = "blocks.1.hook_resid_post"

    with pytest.raises(ValueError, match="blocks.1.hook_resid_post"):
        remove_latents(res.sae, [0])(torch.zeros(1, 2, 16), hook=Elsewhere())


@pytest.fixture(scope="module")
def model_sae(tl_adapter):
    """An SAE on the tiny model's blocks.0.hook_resid_post activations."""
    batch = tl_adapter.tokenize(["hello world", "a b c d e f g", "xyz"])
    acts = tl_adapter.capture(batch, [HOOK])[HOOK]
    rows = collect_activations(acts, attention_mask=batch.attention_mask)
    return batch, train_sae(rows, SAETrainConfig(expansion_factor=2, lr=1e-3, epochs=3, batch_size=8), hook_name=HOOK).sae


@pytest.mark.parametrize("backend", ["transformer_lens", "nnsight"])
def test_removal_hook_on_both_backends(tiny_adapters, model_sae, backend):
    adapter = tiny_adapters[backend]
    batch, sae = model_sae
    base = adapter.forward(batch)
    unchanged = adapter.forward(batch, fwd_hooks=as_fwd_hooks(remove_latents(sae, [])))
    assert torch.allclose(unchanged, base, atol=1e-4)
    acts = adapter.capture(batch, [HOOK])[HOOK]
    top = sae.encode(acts).reshape(-1, sae.cfg.d_sae).abs().sum(0).topk(5).indices
    edited = adapter.forward(batch, fwd_hooks=as_fwd_hooks(remove_latents(sae, top)))
    assert not torch.allclose(edited, base, atol=1e-4)
    other = tiny_adapters["nnsight" if backend == "transformer_lens" else "transformer_lens"]
    assert torch.allclose(edited, other.forward(batch, fwd_hooks=as_fwd_hooks(remove_latents(sae, top))), atol=1e-4)


def test_decoder_cosine_matrix(trained):
    _, res = trained
    sae = res.sae
    m = decoder_cosine_matrix(sae, sae)
    assert m.shape == (48, 48) and torch.allclose(m.diagonal(), torch.ones(48), atol=1e-5)
    perm = torch.randperm(48)
    m2 = decoder_cosine_matrix(sae, sae.W_dec[perm] * 3.0)  # scaling does not matter, order does
    assert torch.equal(m2.argmax(dim=1), torch.argsort(perm))
    with pytest.raises(ValueError, match="different spaces"):
        decoder_cosine_matrix(sae, torch.randn(4, 7))
