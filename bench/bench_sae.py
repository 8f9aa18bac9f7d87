"""Row 5: SAE training throughput, ours (``reward_circuits.sae.train_sae``) vs sae-lens's own ``SAETrainer``.

Both train the same architecture (a standard L1 SAE, ``StandardTrainingSAE``) from the *same initial
weights* on the *same activations*, in the same shuffled mini-batch order, with the same batch size,
learning rate, L1 coefficient and number of epochs. What differs is only the loop around sae-lens'
``training_forward_pass``: ours is a plain Adam loop; ``SAETrainer.fit`` adds its own bookkeeping
(feature-sparsity statistics, an lr scheduler and coefficient schedulers stepped every batch) and
clips the gradient norm to 1.0 every step (ours does not clip). The final reconstruction MSE and L0 of
both, measured with :func:`reward_circuits.sae.evaluate_sae` on the training activations, show that the
two trained the same thing.

Activations are synthetic but SAE-shaped: sparse non-negative codes over a fixed random dictionary
plus a little Gaussian noise and a mean offset, ``[n, 576]`` (SmolLM2's ``d_model``).

    PYTHONPATH=. OMP_NUM_THREADS=1 .venv/bin/python -m bench.bench_sae --n 4000 --epochs 1
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import time

import torch

def planted_activations(n: int, d: int = 576, n_features: int = 2048, active: int = 12, seed: int = 0) -> torch.Tensor:
    """``[n, d]`` float32: ``active`` random non-negative codes per row over a unit-norm dictionary, + noise + offset."""
    g = torch.Generator().manual_seed(seed)
    dictionary = torch.randn(n_features, d, generator=g)
    dictionary /= dictionary.norm(dim=-1, keepdim=True)
    idx = torch.randint(0, n_features, (n, active), generator=g)
    coef = torch.rand(n, active, generator=g) * 4
    x = torch.zeros(n, d)
    for j in range(active):
        x += coef[:, j:j + 1] * dictionary[idx[:, j]]
    x += 0.05 * torch.randn(n, d, generator=g) + torch.randn(d, generator=g)
    return x


def _batches(x: torch.Tensor, epochs: int, batch_size: int, seed: int):
    """The shuffled mini-batches of ``train_sae`` (same generator, same order)."""
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(x.shape[0], generator=gen)
        for start in range(0, x.shape[0], batch_size):
            yield x[order[start:start + batch_size]]


def train_with_sae_lens(x: torch.Tensor, config, hook_name: str = "blocks.0.hook_resid_post"):
    """sae-lens ``SAETrainer.fit`` on ``x`` from the initial weights ``train_sae`` starts from; the inference SAE."""
    from sae_lens import StandardTrainingSAE
    from sae_lens.config import LoggingConfig, SAETrainerConfig
    from sae_lens.training.sae_trainer import SAETrainer

    from reward_circuits.sae import to_inference_sae

    n, d_in = x.shape
    torch.manual_seed(config.seed)  # as in train_sae: the same initial weights
    sae = StandardTrainingSAE(config.sae_lens_config(d_in, hook_name=hook_name))
    if config.init_b_dec_to_mean:
        with torch.no_grad():
            sae.b_dec.copy_(x.mean(0))
    steps_per_epoch = -(-n // config.batch_size)
    trainer_cfg = SAETrainerConfig(
        total_training_samples=n * config.epochs, train_batch_size_samples=config.batch_size, lr=config.lr, lr_end=config.lr,
        device="cpu", dead_feature_window=config.dead_window, feature_sampling_window=max(steps_per_epoch * config.epochs, 1),
        logger=LoggingConfig(log_to_wandb=False))
    trainer = SAETrainer(cfg=trainer_cfg, sae=sae, data_provider=_batches(x, config.epochs, config.batch_size, config.seed))
    with contextlib.redirect_stderr(io.StringIO()):  # its progress bar
        trained = trainer.fit()
    trained.eval()
    return to_inference_sae(trained)


def train_ours(x: torch.Tensor, config, hook_name: str = "blocks.0.hook_resid_post"):
    from reward_circuits.sae import train_sae

    return train_sae(x, config, hook_name=hook_name).sae


def measure(n: int, epochs: int, repeats: int, batch_size: int = 256, lr: float = 1e-4, l1: float = 1e-5,
            expansion: float = 4.0) -> dict:
    """Interleaved repeats of both trainers on the same activations; medians and the final quality of each."""
    from reward_circuits.sae import SAETrainConfig, evaluate_sae

    x = planted_activations(n)
    cfg = SAETrainConfig(architecture="standard", expansion_factor=expansion, l1_coefficient=l1, lr=lr,
                         batch_size=batch_size, epochs=epochs, seed=0)
    warm = SAETrainConfig(architecture="standard", expansion_factor=expansion, l1_coefficient=l1, lr=lr,
                          batch_size=batch_size, epochs=1, seed=0)
    runners = {"ours": train_ours, "sae_lens": train_with_sae_lens}
    for fn in runners.values():  # warm-up: a few batches
        fn(x[: 4 * batch_size], warm)
    times: dict[str, list[float]] = {k: [] for k in runners}
    saes = {}
    for _ in range(repeats):
        for k, fn in runners.items():
            t0 = time.perf_counter()
            saes[k] = fn(x, cfg)
            times[k].append(time.perf_counter() - t0)
    quality = {k: evaluate_sae(s, x) for k, s in saes.items()}
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"n": n, "d_in": x.shape[1], "d_sae": cfg.n_latents(x.shape[1]), "epochs": epochs, "batch_size": batch_size,
            "seconds": med, "acts_per_s": {k: n * epochs / t for k, t in med.items()},
            "mse": {k: q.mse for k, q in quality.items()}, "l0": {k: q.l0 for k, q in quality.items()},
            "explained_variance": {k: q.explained_variance for k, q in quality.items()},
            "max_abs_weight_diff": float((saes["ours"].W_dec - saes["sae_lens"].W_dec).detach().abs().max())}


def bench_sae(args) -> list:
    """Row 5 of ``python -m bench``."""
    from bench.run import Row

    r = measure(args.sae_n, args.sae_epochs, args.sae_repeats)
    rate = r["acts_per_s"]
    what = (f"SAE training: ours vs sae-lens SAETrainer (standard L1, {r['n']}x{r['d_in']} acts -> {r['d_sae']} latents, "
            f"batch {r['batch_size']}, {r['epochs']} epoch{'s' if r['epochs'] > 1 else ''})")
    note = (f"same init, data order, lr, L1; final MSE ours/sae-lens {r['mse']['ours']:.4g}/{r['mse']['sae_lens']:.4g}, "
            f"L0 {r['l0']['ours']:.1f}/{r['l0']['sae_lens']:.1f}, explained variance "
            f"{r['explained_variance']['ours']:.3f}/{r['explained_variance']['sae_lens']:.3f} "
            f"(sae-lens also clips the grad norm to 1; max abs W_dec difference {r['max_abs_weight_diff']:.1g})")
    return [Row("5", what, rate["ours"], rate["sae_lens"], "acts/s", rate["ours"] / rate["sae_lens"], "throughput ours/sae-lens",
                note=note)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4000)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(measure(a.n, a.epochs, a.repeats))


if __name__ == "__main__":
    main()
