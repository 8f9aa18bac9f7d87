"""The SAE view of TD learning, end to end: :class:`SAETDConfig` → :func:`run_sae_td` → :class:`SAETDResult`.

For each task: the model plays ``n_experiments`` seeded experiments (random policy for the first
``random_episodes`` episodes, then its own choices), batched in one KV-cached session that also
captures the residual stream at the chosen layers; the same seeds are played by a random policy for
the reward comparison. Q-learning (the paper's α, γ = 0.99) gives a TD error and Q-value per step,
and (α, β) are fitted to the model's choices. Per layer an SAE (sae-lens, :mod:`reward_circuits.sae`)
is trained on the selection experiments' tokens; its latents, the raw dimensions and a ridge probe
are correlated with the TD errors and Q-values, chosen on the selection experiments and scored on
the held-out ones, against a null SAE trained on the same episodes re-read in shuffled order. At the
layer whose best latent tracks the TD error best (on selection data), the top latents are removed
(error term kept) and, separately, as many random live latents matched on mean contribution
E[f]·|W_dec| (:func:`matched_random_latents`); the model replays the same seeds.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from ...analysis.controls import nearest_matched_sets
from ...analysis.stats import bootstrap_ci, paired_bootstrap_diff, pearson_columns, rank_by_score
from ...configs import StudyConfig, apply_at_defaults
from ...interventions.sweep import RowScopedHooks
from ...models import ModelAdapter, RowLabels
from ...models.hook_names import check_layers_exist, layers_at_fractions
from ...sae import (
    SAETrainConfig,
    encode_all,
    evaluate_sae,
    remove_latents,
    save_sae,
    train_sae,
)
from .agent import ContextSession, Experiment, play_many
from .correlation import (
    best_feature,
    paired_abs_corr_diff,
    partial_abs_corr,
    ridge_probe_corr,
)
from .environments import ENVIRONMENTS
from .qlearning import GAMMA, PAPER_ALPHA, QLearningFit, q_learning_trace
from .results import (
    InterventionResult,
    LayerResult,
    SAETDResult,
    TargetCorrelation,
    TaskResult,
)

__all__ = ["SAETDConfig", "matched_random_latents", "run_sae_td", "run_task", "shuffled_episode_ids"]

# --quick: every stage of the study at small n (a smoke run of the whole study)
SAE_TD_DEPTHS = (0.1, 0.1 + 0.7 / 3, 0.1 + 1.4 / 3, 0.8)  # default layers: 4 evenly from 0.1 to 0.8 of n_layers (3, 10, 17, 24 of 30)
QUICK = {"n_experiments": 4, "n_episodes": 3, "random_episodes": 1, "sae_epochs": 3, "n_boot": 200}
PAPER_SCALE = {"n_experiments": 100, "n_episodes": 30, "random_episodes": 7, "sae_architecture": "standard",
               "sae_epochs": 30, "sae_lr": 1e-4, "sae_l1": 1e-5, "sae_batch_size": 256, "sae_normalize": "none"}


@dataclass
class SAETDConfig(StudyConfig):
    """Settings of ``reward-circuits sae-td``. Defaults fit the three tasks in ~10 minutes on 2 cores;
    ``paper_scale=True`` sets the paper's 100 experiments × 30 episodes (7 random) and its SAE (standard
    L1: batch 256, Adam lr 1e-4, L1 1e-5, 30 epochs on raw activations).

    The default SAE differs from the paper's because the default data are ~50× smaller: with ~600
    training tokens per layer the paper's lr 1e-4 gives ~70 Adam steps and a held-out explained
    variance of 0.33 (grid task, layer 10). It was chosen on reconstruction alone (held-out explained
    variance and L0 on random-policy grid episodes of seeds 100-103, which the study never uses),
    never on TD correlations: TopK (k = 32), lr 1e-3, 30 epochs, mean-norm scaling (EV 0.98, L0 32;
    standard L1 1e-5 at lr 1e-3: EV 0.98 but L0 487 of 1152).
    """

    tasks: tuple[str, ...] = field(default=("two_step", "grid", "graph"), metadata={"help": "tasks to run"})
    backend: Literal["transformer_lens", "nnsight"] = field(default="transformer_lens", metadata={"help": "model backend"})
    n_experiments: int = field(default=6, metadata={"help": "seeded experiments per task (paper: 100)"})
    n_episodes: int = field(default=6, metadata={"help": "episodes per experiment (paper: 30)"})
    random_episodes: int = field(default=2, metadata={"help": "initial random-policy episodes (paper: 7)"})
    paper_scale: bool = field(default=False, metadata={"help": "the paper's sizes: 100 x 30 episodes, 7 random, 30 SAE epochs"})
    layers: tuple[int, ...] = field(default=(), metadata={"help": "layers to analyse (default: 4 evenly spaced from 0.1 to 0.8 of the model's layers: 3,10,17,24 on SmolLM2's 30)"})
    policy: Literal["sample", "greedy"] = field(default="sample", metadata={"help": "how the model picks its action"})
    sae_architecture: Literal["standard", "topk"] = field(default="topk", metadata={"help": "SAE type (paper: standard)"})
    sae_k: int = field(default=32, metadata={"help": "active latents per token (topk)"})
    sae_expansion_factor: float = field(default=2.0, metadata={"help": "latents per residual dimension"})
    sae_epochs: int = field(default=30, metadata={"help": "SAE training epochs (paper: 30)"})
    sae_lr: float = field(default=1e-3, metadata={"help": "SAE Adam learning rate (paper: 1e-4)"})
    sae_l1: float = field(default=1e-5, metadata={"help": "SAE L1 coefficient, standard SAEs (paper: 1e-5)"})
    sae_batch_size: int = field(default=256, metadata={"help": "SAE batch size (paper: 256)"})
    sae_normalize: Literal["none", "mean_norm"] = field(default="mean_norm", metadata={
        "help": "scale SAE inputs to mean norm sqrt(d) in training (folded into the saved SAE; paper: none)"})
    top_k_latents: int = field(default=5, metadata={"help": "latents removed in the intervention"})
    interventions: bool = field(default=True, metadata={"help": "run the latent-removal interventions"})
    shuffled_null: bool = field(default=True, metadata={"help": "train the shuffled-episode null SAEs"})
    n_boot: int = field(default=1000, metadata={"help": "bootstrap resamples"})
    quick: bool = field(default=False, metadata={"help": "a smoke run: 4 experiments of 3 episodes, 3 SAE epochs, 200 bootstrap resamples (options given explicitly still win)"})

    def __post_init__(self):
        super().__post_init__()
        self.tasks = tuple(self.tasks)
        self.layers = tuple(int(x) for x in self.layers)
        if self.quick:
            apply_at_defaults(self, QUICK)
        if self.paper_scale:
            for k, v in PAPER_SCALE.items():
                setattr(self, k, v)
        bad = [t for t in self.tasks if t not in ENVIRONMENTS]
        if bad or not self.tasks:
            raise ValueError(f"unknown tasks {bad or '(none given)'}; choose from {sorted(ENVIRONMENTS)}.")
        if self.n_experiments < 4:
            raise ValueError(f"n_experiments must be >= 4 (half select features, half score them), got {self.n_experiments}.")
        if not 0 <= self.random_episodes < self.n_episodes:
            raise ValueError(f"random_episodes must lie in [0, n_episodes={self.n_episodes}) so the model plays some "
                             f"episodes; got {self.random_episodes}.")
        if self.top_k_latents < 1:
            raise ValueError(f"top_k_latents must be >= 1, got {self.top_k_latents}.")
        if self.n_boot < 100:
            raise ValueError(f"n_boot must be >= 100, got {self.n_boot}.")
        self.sae_config()  # validates the SAE settings

    def sae_config(self) -> SAETrainConfig:
        return SAETrainConfig(architecture=self.sae_architecture, k=self.sae_k, expansion_factor=self.sae_expansion_factor,
                              lr=self.sae_lr, l1_coefficient=self.sae_l1, batch_size=self.sae_batch_size,
                              epochs=self.sae_epochs, normalize=self.sae_normalize, seed=self.seed)

    def resolve_layers(self, n_layers: int, model: str | None = None) -> list[int]:
        if self.layers:
            check_layers_exist(self.layers, n_layers, model or self.model, "--layers",
                               default=f"layers {list(layers_at_fractions(n_layers, SAE_TD_DEPTHS))}")
            return list(self.layers)
        return list(layers_at_fractions(n_layers, SAE_TD_DEPTHS))


def shuffled_episode_ids(exp: Experiment, seed: int) -> tuple[list[int], np.ndarray]:
    """The experiment's tokens with its episodes in a random order (intro first; never the original
    order), and the map from old token positions to new ones."""
    rng = np.random.default_rng(seed)
    first = exp.episode_spans[0][0]
    order = rng.permutation(len(exp.episode_spans))
    if len(order) > 1 and (order == np.arange(len(order))).all():
        order = np.roll(order, 1)  # never the original order
    ids = list(exp.token_ids[:first])
    new_pos = np.arange(len(exp.token_ids))
    for k in order:
        a, b = exp.episode_spans[k]
        new_pos[a:b] = np.arange(len(ids), len(ids) + (b - a))
        ids.extend(exp.token_ids[a:b])
    return ids, new_pos


def matched_random_latents(sae, activations: torch.Tensor, top: Sequence[int], seed: int = 0,
                           pool_size: int = 10) -> tuple[list[int], np.ndarray, np.ndarray]:
    """For each latent in ``top``, a random live latent (not in ``top``) among the ``pool_size`` closest to
    it in mean contribution ``E[f_j] · ‖W_dec_j‖`` on ``activations`` (what sets the size of removing it).
    Returns (latents, contributions of ``top``, contributions of the chosen ones)."""
    feats = encode_all(sae, activations)
    size = (feats.mean(0) * sae.W_dec.detach().float().cpu().norm(dim=-1)).numpy().astype(np.float64)
    live = np.flatnonzero((feats > 0).any(0).numpy())
    if len(set(live.tolist()) - set(top)) < len(top):
        raise ValueError(f"only {len(set(live.tolist()) - set(top))} live latents outside the top set: lower top_k_latents.")
    chosen = nearest_matched_sets(top, np.log(size + 1e-12), 1, seed, pool_size, eligible=live)[0]
    return chosen, size[list(top)], size[chosen]


def _mean_model_reward(exp: Experiment) -> float:
    r = exp.episode_rewards("model")
    return float(r.mean()) if r.size else math.nan


def _logodds(lp: Sequence[float], k: int) -> float:
    p = float(np.exp(lp[k]))
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p) - math.log1p(-p)


def _identical_context_logodds_change(base: Experiment, other: Experiment) -> list[float]:
    """|Δ log-odds| of the baseline's chosen action at model decisions whose context is still identical."""
    out = []
    for a, b in zip(base.steps, other.steps):
        if a.policy != "model":
            continue
        if b.decision_pos != a.decision_pos or other.token_ids[:a.decision_pos + 1] != base.token_ids[:a.decision_pos + 1]:
            break
        k = a.legal.index(a.action_name)
        out.append(abs(_logodds(b.logprobs, k) - _logodds(a.logprobs, k)))
    return out


def _fit_alpha(exps: Sequence[Experiment]) -> QLearningFit:
    return QLearningFit().fit([e.trajectory() for e in exps])


@dataclass
class _Events:
    """The study's events over every experiment: the TD error at each outcome token and Q(s, a) at each
    action token, with the experiment of each event and the selection/held-out split (by experiment)."""

    td: np.ndarray
    q: np.ndarray
    exp_of: np.ndarray
    rew: np.ndarray
    sel_exp: list[int]
    held_exp: list[int]
    pos_out: list[np.ndarray]
    pos_act: list[np.ndarray]

    @property
    def sel(self) -> np.ndarray:
        return np.isin(self.exp_of, self.sel_exp)

    @property
    def held(self) -> np.ndarray:
        return np.isin(self.exp_of, self.held_exp)


@dataclass
class _TaskRun:
    """What every step of one task shares: the model, the settings, the baseline experiments and their events."""

    adapter: ModelAdapter
    task: str
    cfg: SAETDConfig
    hooks: list[str]
    seeds: list[int]
    bar: object
    base: list[Experiment] = field(default_factory=list)
    events: _Events | None = None
    shuffled_acts: list | None = None
    new_pos: list | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def play_kw(self) -> dict:
        return {"n_episodes": self.cfg.n_episodes, "random_episodes": self.cfg.random_episodes, "policy": self.cfg.policy}


def _target_corr(name, lat, raw, lat_null, y, ev: _Events, cfg: SAETDConfig, control=None) -> TargetCorrelation:
    """Held-out |r| of the best latent, raw dim, ridge probe (and null latent) with ``y``; the experiment
    of each event (``ev.exp_of``) makes every interval resample whole held-out experiments."""
    n_boot, seed, groups = cfg.n_boot, cfg.seed, ev.exp_of
    sel, held = ev.sel, ev.held
    sae = best_feature(lat, y, sel, held, n_boot, seed, groups)
    rawc = best_feature(raw, y, sel, held, n_boot, seed, groups)
    probe, probe_pred = ridge_probe_corr(raw, y, sel, held, n_boot, seed, groups)
    g_held = np.asarray(groups)[held]
    given = [None, None, None]
    if control is not None and np.std(control[held]) > 0:
        given = [partial_abs_corr(f, y[held], control[held], n_boot, seed, g_held)
                 for f in (lat[held, sae.index], raw[held, rawc.index], probe_pred)]
    d_raw, p_raw = paired_abs_corr_diff(lat[held, sae.index], raw[held, rawc.index], y[held], n_boot, seed, g_held)
    null = d_null = p_null = None
    if lat_null is not None:
        nullc = best_feature(lat_null, y, sel, held, n_boot, seed, groups)
        null = nullc.heldout
        d_null, p_null = paired_abs_corr_diff(lat[held, sae.index], lat_null[held, nullc.index], y[held], n_boot, seed,
                                              g_held)
    max_abs = lambda x: float(np.nanmax(np.abs(np.nan_to_num(pearson_columns(x[sel], y[sel]), nan=0.0))))
    return TargetCorrelation(name, sae.index, sae.heldout, rawc.index, rawc.heldout, null, probe, d_raw, p_raw,
                             d_null, p_null, max_abs(lat), max_abs(raw), *given)


def _events(base: Sequence[Experiment], task: str, n_sel: int) -> _Events:
    """Q-learning (the paper's α for ``task``) over each baseline experiment: TD errors and Q-values per step."""
    alpha = PAPER_ALPHA[task]
    td, q, exp_of, rew = [], [], [], []
    for i, e in enumerate(base):
        tr = q_learning_trace(e.trajectory(), alpha, GAMMA)
        td.append(tr.td_errors)
        q.append(tr.q_chosen)
        exp_of += [i] * len(e.steps)
        rew += [s.reward for s in e.steps]
    return _Events(np.concatenate(td), np.concatenate(q), np.asarray(exp_of), np.asarray(rew, dtype=np.float64),
                   list(range(n_sel)), list(range(n_sel, len(base))),
                   _event_positions(base, "outcome"), _event_positions(base, "action"))


def _event_positions(base: Sequence[Experiment], kind: str, new_pos=None) -> list[np.ndarray]:
    out = []
    for i, e in enumerate(base):
        pos = np.array([s.outcome_pos if kind == "outcome" else s.action_pos for s in e.steps])
        out.append(new_pos[i][pos] if new_pos is not None else pos)
    return out


def _rows(acts_per_exp, hook: str, positions_per_exp, exps) -> torch.Tensor:
    return torch.cat([acts_per_exp[i][hook][torch.as_tensor(positions_per_exp[i])] for i in exps])


def _shuffled_reread(run: _TaskRun) -> None:
    """The null: every baseline experiment re-read with its episodes in a shuffled order."""
    shuffled = [shuffled_episode_ids(e, run.cfg.seed * 7919 + i) for i, e in enumerate(run.base)]
    with ContextSession(run.adapter, len(run.base), capture=run.hooks) as session:
        session.feed([ids for ids, _ in shuffled])
        run.shuffled_acts = session.activations()
    run.new_pos = [m for _, m in shuffled]


def _layer(run: _TaskRun, layer: int, hook: str) -> tuple[LayerResult, tuple]:
    """Train the layer's SAE (and its shuffled-episode null) on the selection experiments; correlate
    its latents, the raw dims and a probe with the TD errors and Q-values on the held-out ones."""
    cfg, base, ev = run.cfg, run.base, run.events
    # the first token of a context is an attention sink (norm ~50x the median at late layers): left out
    train_x = torch.cat([base[i].activations[hook][1:] for i in ev.sel_exp])
    test_x = torch.cat([base[i].activations[hook][1:] for i in ev.held_exp])
    sae = train_sae(train_x, cfg.sae_config(), hook_name=hook, model_name=run.adapter.name).sae
    quality = evaluate_sae(sae, test_x).to_dict()
    all_exps = list(range(len(base)))
    acts = [e.activations for e in base]
    raw_out, raw_act = _rows(acts, hook, ev.pos_out, all_exps), _rows(acts, hook, ev.pos_act, all_exps)
    lat_out, lat_act = encode_all(sae, raw_out).numpy(), encode_all(sae, raw_act).numpy()
    null_out = null_act = null_quality = None
    if run.shuffled_acts is not None:
        shuffled = run.shuffled_acts
        null_train = torch.cat([shuffled[i][hook][1:] for i in ev.sel_exp])
        null_sae = train_sae(null_train, cfg.sae_config(), hook_name=hook).sae
        null_quality = evaluate_sae(null_sae, torch.cat([shuffled[i][hook][1:] for i in ev.held_exp])).to_dict()
        null_out = encode_all(null_sae, _rows(shuffled, hook, _event_positions(base, "outcome", run.new_pos), all_exps)).numpy()
        null_act = encode_all(null_sae, _rows(shuffled, hook, _event_positions(base, "action", run.new_pos), all_exps)).numpy()
    result = LayerResult(layer, hook, quality, null_quality,
                         _target_corr("td_error", lat_out, raw_out.numpy(), null_out, ev.td, ev, cfg, ev.rew),
                         _target_corr("q_value", lat_act, raw_act.numpy(), null_act, ev.q, ev, cfg, None))
    return result, (sae, train_x)


def _paired_logodds_changes(base, run_top, run_rnd) -> tuple[list[float], list[float], int]:
    """Per experiment, the mean |Δ log-odds| of each condition on the decisions both still share with the baseline."""
    d_top = [_identical_context_logodds_change(b, o) for b, o in zip(base, run_top)]
    d_rnd = [_identical_context_logodds_change(b, o) for b, o in zip(base, run_rnd)]
    m_top, m_rnd = [], []
    for a, b in zip(d_top, d_rnd):
        k = min(len(a), len(b))
        if k:
            m_top.append(float(np.mean(a[:k])))
            m_rnd.append(float(np.mean(b[:k])))
    return m_top, m_rnd, int(sum(min(len(a), len(b)) for a, b in zip(d_top, d_rnd)))


def _intervention(run: _TaskRun, best: LayerResult, sae, train_x, model_r: np.ndarray, fit: QLearningFit) -> InterventionResult:
    """Remove the top TD latents of ``best``'s layer (chosen on selection data) vs as many matched random
    latents; the model replays the same seeds under each."""
    cfg, base, ev, seeds = run.cfg, run.base, run.events, run.seeds
    lat_sel = encode_all(sae, _rows([e.activations for e in base], best.hook, ev.pos_out, ev.sel_exp)).numpy()
    r_sel = np.nan_to_num(pearson_columns(lat_sel, ev.td[ev.sel]), nan=0.0)
    top = [int(j) for j in rank_by_score(np.abs(r_sel))[:cfg.top_k_latents]]
    rnd, top_size, rnd_size = matched_random_latents(sae, train_x, top, seed=cfg.seed + 11)
    run.notes.append(f"random latents matched to the top ones on mean contribution E[f_j]·|W_dec_j| over training "
                     f"tokens: top {np.round(top_size, 3).tolist()}, random {np.round(rnd_size, 3).tolist()}.")
    # both conditions in one batch (the sweeps' row-scoped hooks): rows 0..n-1 lose the top
    # latents, rows n..2n-1 the random ones; the same seeds, so the same agent draws
    labels = RowLabels([0] * len(seeds) + [1] * len(seeds))
    scoped = RowScopedHooks(labels, [(0, remove_latents(sae, top)), (1, remove_latents(sae, rnd))])
    both = play_many(run.adapter, run.task, list(seeds) * 2, fwd_hooks=[(best.hook, scoped)], progress=run.bar, **run.play_kw)
    run_top, run_rnd = both[:len(seeds)], both[len(seeds):]
    m_top, m_rnd, n_decisions = _paired_logodds_changes(base, run_top, run_rnd)
    ci = lambda x: bootstrap_ci(x, n_boot=cfg.n_boot, seed=cfg.seed)
    lo_diff, lo_p = paired_bootstrap_diff(m_top, m_rnd, n_boot=cfg.n_boot, seed=cfg.seed)
    r_top = np.array([_mean_model_reward(e) for e in run_top])
    r_rnd = np.array([_mean_model_reward(e) for e in run_rnd])
    rd, rp = paired_bootstrap_diff(r_top, r_rnd, n_boot=cfg.n_boot, seed=cfg.seed)
    return InterventionResult(best.layer, top, rnd, ci(m_top), ci(m_rnd), lo_diff, lo_p, n_decisions, ci(model_r),
                              ci(r_top), ci(r_rnd), rd, rp, fit.alpha_, _fit_alpha(run_top).alpha_, _fit_alpha(run_rnd).alpha_)


def run_task(adapter: ModelAdapter, task: str, config: SAETDConfig, out_dir: str | Path | None = None) -> TaskResult:
    """One task of the study (see module docstring); with ``out_dir`` the intervened layer's SAE is saved there."""
    t0 = time.time()
    cfg = config
    layers = cfg.resolve_layers(adapter.n_layers, adapter.name)
    hooks = [f"blocks.{layer}.hook_resid_post" for layer in layers]
    bar = tqdm(total=cfg.n_experiments * cfg.n_episodes * (3 if cfg.interventions else 1) + cfg.n_experiments * cfg.n_episodes,
               desc=f"sae-td {task} episodes", disable=not cfg.progress)
    run = _TaskRun(adapter, task, cfg, hooks, [cfg.seed * 1000 + i for i in range(cfg.n_experiments)], bar)
    try:
        run.base = play_many(adapter, task, run.seeds, capture=hooks, progress=bar, **run.play_kw)
        rand = play_many(adapter, task, run.seeds, n_episodes=cfg.n_episodes, random_episodes=cfg.n_episodes, progress=bar)
        # ---- behaviour ----------------------------------------------------------------------------
        model_r = np.array([_mean_model_reward(e) for e in run.base])
        rand_r = np.array([float(e.episode_rewards()[cfg.random_episodes:].mean()) for e in rand])
        diff, p_diff = paired_bootstrap_diff(model_r, rand_r, n_boot=cfg.n_boot, seed=cfg.seed)
        fit = _fit_alpha(run.base)
        ev = run.events = _events(run.base, task, cfg.n_experiments // 2)
        if np.std(ev.q[ev.sel]) == 0 or np.std(ev.td[ev.sel]) == 0:
            run.notes.append("TD errors or Q-values are constant on the selection experiments (no reward seen?): "
                             "correlations are undefined there and reported as 0.")
        if cfg.shuffled_null:
            _shuffled_reread(run)
        layer_results, saes = [], {}
        for layer, hook in zip(layers, hooks):
            result, saes[layer] = _layer(run, layer, hook)
            layer_results.append(result)
        intervention = None
        if cfg.interventions:
            best = max(layer_results, key=lambda lr: lr.td_error.sae_in_sample_max)  # chosen on selection data only
            intervention = _intervention(run, best, *saes[best.layer], model_r, fit)
            if out_dir is not None:
                save_sae(saes[best.layer][0], Path(out_dir) / "saes" / task / best.hook)
    finally:
        bar.close()
    n_model_eps = cfg.n_experiments * (cfg.n_episodes - cfg.random_episodes)
    return TaskResult(task, cfg.n_experiments, n_model_eps, int(ev.td.size), bootstrap_ci(model_r, n_boot=cfg.n_boot, seed=cfg.seed),
                      bootstrap_ci(rand_r, n_boot=cfg.n_boot, seed=cfg.seed), diff, p_diff, PAPER_ALPHA[task], fit.to_dict(),
                      layer_results, intervention, time.time() - t0, run.notes)


def run_sae_td(config: SAETDConfig | None = None, adapter: ModelAdapter | None = None, on_task=None, *,
               out_dir: str | Path | None = None) -> SAETDResult:
    """Every task of ``config`` on ``adapter`` (default: ``config.model`` on ``config.backend``) → :class:`SAETDResult`.

    Writes only its artefacts: with ``config.out`` (or ``out_dir``) the intervened layers' SAEs under
    ``out/saes/``. ``on_task(partial_result)`` is called after each task (the command writes the
    report there). The older order ``run_sae_td(adapter, config, out_dir=...)`` still works."""
    if config is not None and not isinstance(config, SAETDConfig):  # run_sae_td(adapter, config, ...)
        config, adapter = adapter, config
    config = config or SAETDConfig()
    if out_dir is not None:
        config = copy.copy(config)
        config.out = str(out_dir)
    if adapter is None:
        from ...models import load_model

        adapter = load_model(config.model, backend=config.backend, device=config.device)
    t0 = time.time()
    result = SAETDResult(asdict(config), adapter.name, [])
    for task in config.tasks:
        result.tasks.append(run_task(adapter, task, config, config.out))
        result.wall_s = time.time() - t0
        if on_task is not None:
            on_task(result)
    return result
