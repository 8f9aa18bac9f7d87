"""Value probes: a two-layer MLP per hook point, trained by temporal-difference learning.

This reproduces §2 of "Sparse Reward Subsystem in Large Language Models" (arXiv 2602.00986):
for every layer, a probe ``V(s) = sigmoid(w2 · act(W1ᵀ s + b1) + b2)`` reads the frozen hidden
state ``s`` at one token position and predicts the rollout's final binary reward. It is trained on
the states ``s_0 .. s_T`` of each rollout with TD learning (the value of a state is bootstrapped
from the value of the next one, the last state's target is the reward itself), and judged by the
AUC of ``V(s_0)`` - the value at the prompt's last token, before any answer token - against the
reward on held-out rollouts.

All hook points are trained at once: the probes' weights are stacked along a leading ``probe``
axis (``W1: [probe, d, hidden]``), one pass over the store feeds every probe its own hook's states
and one optimiser step updates them all; batched matmuls run the probes in chunks of
``probe_chunk`` (all at once on an accelerator; on the CPU, big batches go one hook at a time,
its weight-decay candidates in one ``[state, d] @ [d, candidates·hidden]`` matmul).
The probes share nothing but the data pass: the loss is the *sum* of the per-probe losses, so the
gradient of each probe's parameters is exactly the gradient of its own loss, and Adam(W) updates
element by element, hence training N probes stacked equals training each alone (same seed, same
batches) up to floating-point summation order. No gradient clipping is used because a global
norm would couple the probes.

Inputs are standardised per dimension with the mean/std of the *training* states (residual-stream
dimensions differ in scale by orders of magnitude); the statistics are stored in the probe and
applied at prediction time. Consequently the L1 norm of a ``W1`` column (used to rank and prune
input dimensions) measures a dimension's importance in units of its own standard deviation, i.e.
it is ``|W1 column|₁ × 1`` rather than ``|W1 column|₁ × std``; :meth:`ValueProbe.input_weight_norms`
can also return the raw-unit version.

A masked (pruned) input dimension is set to 0 *after* standardisation, i.e. replaced by its
training mean: mean-ablation, no retraining.

Data sources: anything with the read API of :class:`~reward_circuits.data.Store` (the store,
:class:`ArrayRollouts` via :meth:`ValueProbe.fit_arrays`, :class:`~reward_circuits.data.RotatedStore`).
"""

from __future__ import annotations

import json
import math
import os
import warnings
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from jaxtyping import Bool, Float
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from tqdm.auto import trange

from ..io import atomic_path, atomic_write_json
from ..errors import ProbeError, ProbeVersionError, check_format_version
from ..data.store import stratified_split
from ..data.views import ArrayRollouts, check_binary
from ..reprs import short_list
from .standardize import standardization_stats
from .stats import auc_rows, binary_auc
from .probe_config import ACTIVATIONS, ValueProbeConfig
from .splits import resolve_indices  # noqa: F401  (re-exported: analysis.probes.resolve_indices)
from .td import check_batch_structure, monte_carlo_targets, td_targets

PROBE_FORMAT_VERSION = 1
_WEIGHTS_FILE = "value_probe.safetensors"
_CONFIG_FILE = "value_probe.json"

_ACTIVATIONS = {"relu": torch.relu, "gelu": nn.functional.gelu, "tanh": torch.tanh}
assert set(_ACTIVATIONS) == set(ACTIVATIONS)


def _native_dtype(source) -> torch.dtype:
    """Read batches in the store's own dtype (float16 for the default store): the probe casts to
    float32 while gathering hooks, so no intermediate float32 copy is made."""
    return getattr(source, "storage_dtype", torch.float32)


def _probe_generator_seed(seed: int, hook: str) -> int:
    """Init seed of one probe: depends on the config seed and the hook name, not on which other
    hooks are trained alongside (so a stacked probe equals the probe trained alone)."""
    return (int(seed) * 1_000_003 + zlib.crc32(hook.encode())) % (2**63 - 1)


class ValueProbe(nn.Module):
    """One two-layer MLP value probe per hook point, all stacked and trained together.

    Parameters (after :meth:`fit`)::

        W1 [probe, d, hidden]   b1 [probe, hidden]   W2 [probe, hidden]   b2 [probe]
        mean, std, input_mask [probe, d]   (buffers)

    ``V(s) = sigmoid(W2 · act(W1ᵀ ((s − mean)/std ⊙ input_mask) + b1) + b2)``.

    Loss: binary cross-entropy between ``V(s_t)`` and the (soft) target, averaged over the states
    of a batch and summed over probes. BCE rather than MSE because (i) its gradient with respect to
    the logit is ``V − target``, the TD error itself, so a saturated sigmoid does not stall
    learning as it does under MSE (whose logit-gradient carries an extra ``V(1 − V)`` factor), and
    (ii) it is a proper scoring rule for targets in [0, 1]: its minimiser is the conditional mean
    of the target, the same fixed point as MSE-based TD.

    >>> probe = ValueProbe(ValueProbeConfig(epochs=20)).fit(store, hooks, indices=train)
    >>> probe.score(store, test)          # {hook: AUC of V(s_0) vs reward}
    """

    def __init__(self, cfg: ValueProbeConfig | None = None, **overrides):
        super().__init__()
        cfg = cfg or ValueProbeConfig()
        self.cfg = cfg.replace(**overrides) if overrides else cfg
        self.hook_names: list[str] = []
        self.d_in: int | None = None
        self.history: list[list[float]] = []  # per epoch, mean training loss per probe
        self.validation_history: list[list[float]] = []  # per epoch, validation AUC of V(s_0) per probe
        self.weight_decay_: dict[str, float] = {}
        self.best_epoch_: dict[str, int] = {}
        self.validation_auc_: dict[str, float | None] = {}

    # ---- structure ---------------------------------------------------------------------------
    @property
    def is_fitted(self) -> bool:
        return self.d_in is not None

    def extra_repr(self) -> str:  # nn.Module's repr: ValueProbe(<this>)
        c = self.cfg
        setting = f"mode={c.mode!r}, hidden={c.hidden}"
        if not self.is_fitted:
            return f"not fitted, {setting}"
        return f"{len(self.hook_names)} hooks {short_list(self.hook_names, 2)}, d={self.d_in}, {setting}"

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise ProbeError("this ValueProbe is not fitted yet: call fit(store, hooks) or load(path) first.")

    def probe_index(self, hook: str) -> int:
        self._check_fitted()
        try:
            return self.hook_names.index(hook)
        except ValueError:
            raise KeyError(f"no probe for hook {hook!r}; this probe was trained on {self.hook_names}.") from None

    def _allocate(self, hook_names: list[str], d: int) -> None:
        p, h = len(hook_names), self.cfg.hidden
        dev = torch.device(self.cfg.device)
        w1, b1, w2, b2 = [], [], [], []
        bound1, bound2 = 1.0 / math.sqrt(d), 1.0 / math.sqrt(h)  # nn.Linear's default init range
        for hook in hook_names:
            g = torch.Generator().manual_seed(_probe_generator_seed(self.cfg.seed, hook))
            w1.append((torch.rand(d, h, generator=g) * 2 - 1) * bound1)
            b1.append((torch.rand(h, generator=g) * 2 - 1) * bound1)
            w2.append((torch.rand(h, generator=g) * 2 - 1) * bound2)
            b2.append((torch.rand((), generator=g) * 2 - 1) * bound2)
        self.W1 = nn.Parameter(torch.stack(w1).to(dev))
        self.b1 = nn.Parameter(torch.stack(b1).to(dev))
        self.W2 = nn.Parameter(torch.stack(w2).to(dev))
        self.b2 = nn.Parameter(torch.stack(b2).to(dev))
        self.register_buffer("mean", torch.zeros(p, d, device=dev))
        self.register_buffer("std", torch.ones(p, d, device=dev))
        self.register_buffer("input_mask", torch.ones(p, d, device=dev))
        self.hook_names = list(hook_names)
        self.d_in = d

    # ---- forward -----------------------------------------------------------------------------
    def _folded_first_layer(self, sel) -> tuple[Float[Tensor, "probe d hidden"], Float[Tensor, "probe hidden"]]:
        """``W1``/``b1`` acting on *raw* inputs: standardisation and mask folded into the weights.

        ``W1ᵀ((s − mean)/std ⊙ m) + b1 = (W1 ⊙ (m/std))ᵀ s + (b1 − (W1 ⊙ (m/std))ᵀ mean)``. Folding
        saves two passes over the (large) batch of states; in float32 the cancellation error is
        ~1e-7 × |mean|/std per dimension, negligible for residual-stream activations.
        """
        w_eff = self.W1[sel] * (self.input_mask[sel] / self.std[sel])[:, :, None]
        b_eff = self.b1[sel] - torch.einsum("pd,pdh->ph", self.mean[sel], w_eff)
        return w_eff, b_eff

    def logits(self, x: Float[Tensor, "probe state d"], sel=slice(None)) -> Float[Tensor, "probe state"]:
        """Pre-sigmoid values of probes ``sel`` (all by default), each on its own raw states."""
        self._check_fitted()
        x = x.to(self.W1.device, torch.float32)
        w_eff, b_eff = self._folded_first_layer(sel)
        hidden = _ACTIVATIONS[self.cfg.activation](torch.baddbmm(b_eff[:, None, :], x, w_eff))
        return torch.baddbmm(self.b2[sel][:, None, None], hidden, self.W2[sel][:, :, None])[..., 0]

    def _shared_input_logits(self, x: Float[Tensor, "state d"], sel: slice) -> Float[Tensor, "probe state"]:
        """:meth:`logits` of probes ``sel`` that all read the same states ``x``: one ``[state, d] @
        [d, probe·hidden]`` matmul instead of one per probe (the weight-decay candidates of a hook)."""
        w_eff, b_eff = self._folded_first_layer(sel)
        k, d, h = w_eff.shape
        pre = torch.addmm(b_eff.reshape(1, k * h), x, w_eff.permute(1, 0, 2).reshape(d, k * h))
        # second layer per probe as a multiply-and-sum: a [state, probe·hidden] @ [probe·hidden, probe]
        # block-diagonal matmul is so skinny that it measured 2x slower (forward + backward)
        hidden = _ACTIVATIONS[self.cfg.activation](pre).view(-1, k, h)
        return ((hidden * self.W2[sel][None]).sum(-1) + self.b2[sel]).T

    def forward(self, x: Float[Tensor, "probe state d"] | Float[Tensor, "state d"]) -> Float[Tensor, "probe state"]:
        """Values of every probe: ``x`` is ``[probe, state, d]`` (each probe its own hook's states)
        or ``[state, d]`` (the same states given to every probe)."""
        self._check_fitted()
        if x.ndim == 2:
            x = x[None].expand(len(self.hook_names), *x.shape)
        if x.ndim != 3 or x.shape[0] != len(self.hook_names) or x.shape[-1] != self.d_in:
            raise ProbeError(f"expected states [probe={len(self.hook_names)}, state, d={self.d_in}] or [state, d], got {tuple(x.shape)}.")
        return torch.sigmoid(self.logits(x))

    @torch.no_grad()
    def predict_value(
        self,
        acts: Float[Tensor, "state d"] | Float[Tensor, "probe state d"] | Mapping[str, Float[Tensor, "state d"]],
        hook: str | None = None,
    ) -> Float[Tensor, " state"] | Float[Tensor, "probe state"] | dict[str, Float[Tensor, " state"]]:
        """Values ``V(s)`` in (0, 1).

        * ``acts [state, d]`` and ``hook`` → ``[state]`` from that hook's probe;
        * ``acts [state, d]`` without ``hook`` → ``[probe, state]`` (same states to every probe);
        * ``acts [probe, state, d]`` → ``[probe, state]``;
        * ``{hook: [state, d]}`` → ``{hook: [state]}``.
        """
        self._check_fitted()
        if isinstance(acts, Mapping):
            return {h: self.predict_value(a, hook=h) for h, a in acts.items()}
        acts = torch.as_tensor(acts)
        if not torch.isfinite(acts).all():
            raise ProbeError("activations contain NaN or inf.")
        if hook is not None:
            k = self.probe_index(hook)
            if acts.ndim != 2 or acts.shape[1] != self.d_in:
                raise ProbeError(f"expected states [state, d={self.d_in}] for hook {hook!r}, got {tuple(acts.shape)}.")
            return torch.sigmoid(self.logits(acts[None], sel=slice(k, k + 1)))[0]
        return self.forward(acts)

    # ---- training ----------------------------------------------------------------------------
    def _resolve_hooks(self, store, hook_names) -> list[str]:
        if not all(hasattr(store, a) for a in ("hook_names", "rewards", "d", "iter_batches")):
            raise ProbeError(f"store must be a Store (ActivationStore, ArrayRollouts, ...), got {type(store).__name__}: "
                             "open one with ActivationStore(path), or use fit_arrays(acts, rewards) for in-memory arrays.")
        hooks = [hook_names] if isinstance(hook_names, str) else list(hook_names)
        if not hooks:
            raise ProbeError("hook_names is empty: name at least one hook point to probe.")
        if len(set(hooks)) != len(hooks):
            raise ProbeError(f"hook_names has duplicates: {hooks}.")
        missing = [h for h in hooks if h not in store.hook_names]
        if missing:
            raise KeyError(f"hooks {missing} are not in the store; it holds {store.hook_names}.")
        widths = {h: int(store.d(h)) for h in hooks}
        if len(set(widths.values())) != 1:
            raise ProbeError(
                f"hooks have different widths {widths}: probes trained together must share d. "
                "Fit one ValueProbe per width."
            )
        return hooks

    @torch.no_grad()
    def _fit_standardization(self, source, hooks: list[str], idx: np.ndarray, repeat: int = 1,
                             store_index: np.ndarray | None = None) -> int:
        """Per-dimension mean/std of the training states (:func:`standardization_stats`, which also checks
        they are finite); each hook's stats fill ``repeat`` consecutive probe slots (``standardize=False``:
        they stay 0/1). Returns the number of states."""
        mean, std, count = standardization_stats(source, hooks, idx, batch_states=max(self.cfg.batch_states or 0, 8192),
                                                 dtype=_native_dtype(source), store_index=store_index)
        if self.cfg.standardize:
            self.mean.copy_(mean.repeat_interleave(repeat, 0).to(self.mean))
            self.std.copy_(std.repeat_interleave(repeat, 0).to(self.std))
        return count

    def _validation_split(self, store, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(rollouts to train on, validation rollouts): a stratified ``validation_fraction`` of
        ``idx``, or no validation when it is 0 or cannot hold both rewards."""
        frac = self.cfg.validation_fraction
        if frac == 0:
            return idx, idx[:0]
        all_rewards = np.asarray(store.rewards)
        fit_idx, val_idx = stratified_split(idx, all_rewards, frac, self.cfg.seed)
        if np.unique(all_rewards[val_idx]).size < 2 or np.unique(all_rewards[fit_idx]).size < 2:
            n1 = int((all_rewards[idx] == 1).sum())
            warnings.warn(
                f"a validation split of {idx.size} training rollouts ({n1} with reward 1, {idx.size - n1} with reward 0) "
                f"cannot hold both rewards: training {self.cfg.epochs} epochs on all of them without early stopping, "
                f"with weight_decay={self.cfg.weight_decays[0]} (the first candidate).")
            return idx, idx[:0]
        return fit_idx, val_idx

    @torch.no_grad()
    def _slot_scores(self, x_val: Float[Tensor, "probe n d"], labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(validation AUC of ``V(s_0)``, the selection score: higher is better) of every probe slot
        (``x_val`` already one block per slot)."""
        logits = self.logits(x_val)
        aucs = auc_rows(labels, logits.cpu().numpy())
        if self.cfg.select_by == "auc":
            return aucs, aucs
        target = torch.as_tensor(labels, dtype=logits.dtype, device=logits.device).expand_as(logits)
        loss = nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none").mean(1)
        return aucs, -loss.cpu().numpy()

    def fit(
        self,
        store,
        hook_names: Sequence[str] | str,
        indices: Sequence[int] | None = None,
        *,
        keep_masks: Mapping[str, Bool[Tensor, " d"]] | None = None,
        validation_indices: Sequence[int] | None = None,
        verbose: bool = True,
    ) -> "ValueProbe":
        """Train one probe per hook on rollouts ``indices`` (all by default), in one pass per epoch.

        ``validation_indices`` gives the validation rollouts yourself (disjoint from ``indices``;
        e.g. the split a pipeline already holds out to choose a layer) instead of carving
        ``cfg.validation_fraction`` of ``indices``.

        With a validation split (``cfg.validation_fraction > 0``, the default) a stratified share of
        ``indices`` is held out; each (hook, weight decay) candidate trains in the same stacked pass,
        stops after ``patience`` epochs without a better validation score of ``V(s_0)`` (``cfg.select_by``)
        and keeps its best epoch's weights; per hook the candidate with the best score is kept. Learned:
        ``weight_decay_``, ``best_epoch_``, ``validation_auc_`` (``{hook: ...}``), ``fit_indices_``,
        ``validation_indices_``, ``batch_states_``, and ``history`` / ``validation_history`` (per epoch).

        ``keep_masks`` fixes input masks during training (``{hook: bool[d]}``): a probe that only
        ever sees the kept dimensions, i.e. retraining on a pruned input set.
        """
        hooks = self._resolve_hooks(store, hook_names)
        fit_idx, val_idx = self._fit_splits(store, indices, validation_indices)
        plan = self._training_plan(store, hooks, fit_idx, val_idx)
        self._apply_keep_masks(keep_masks, hooks, plan.n_cand)
        plan.start(self)
        stopping = _EarlyStopping(plan.params, plan.n_slots, self.cfg.patience)
        val = ((np.asarray(store.rewards)[val_idx], self._validation_states(store, hooks, val_idx, plan.n_cand))
               if val_idx.size else None)
        history, val_history = [], []
        self.train()
        for epoch in trange(self.cfg.epochs, disable=not verbose,
                            desc=f"value probes ({len(hooks)} hooks x {plan.n_cand} decays)"):
            history.append(self._train_epoch(plan, epoch, stopping.active))
            if val is None:
                continue
            aucs, score = self._slot_scores(val[1], val[0])
            val_history.append(aucs.tolist())
            if not stopping.update(epoch, aucs, score, plan.params):
                break
        self._keep_best(plan, stopping, val is not None, len(history))
        self.fit_indices_, self.validation_indices_, self.batch_states_ = fit_idx, val_idx, plan.batch_states
        self.history = [[row[k] for k in plan.chosen] for row in history]
        self.validation_history = [[row[k] for k in plan.chosen] for row in val_history]
        self.eval()
        return self

    def _fit_splits(self, store, indices, validation_indices) -> tuple[np.ndarray, np.ndarray]:
        """(training rollouts, validation rollouts), checked: binary rewards, disjoint, both rewards to validate on."""
        idx = resolve_indices(store, indices)
        rewards = np.asarray(store.rewards)[idx]
        check_binary(rewards)
        if np.unique(rewards).size < 2:
            warnings.warn(f"all {idx.size} training rollouts have reward {rewards[0]}: the probe can only learn a constant.")
        if validation_indices is None:
            return self._validation_split(store, idx)
        fit_idx, val_idx = idx, resolve_indices(store, validation_indices)
        if np.intersect1d(fit_idx, val_idx).size:
            raise ProbeError("validation_indices overlap the training indices: give disjoint rollouts.")
        if np.unique(np.asarray(store.rewards)[val_idx]).size < 2:
            raise ProbeError("validation_indices hold one reward only: early stopping needs both.")
        return fit_idx, val_idx

    def _training_plan(self, store, hooks: list[str], fit_idx: np.ndarray, val_idx: np.ndarray) -> "_TrainingPlan":
        """Allocate one slot per (hook, weight-decay candidate), standardise on the fit split and size the batches."""
        cfg = self.cfg
        decays = cfg.weight_decays if val_idx.size else cfg.weight_decays[:1]
        n_cand = len(decays)
        slots = [h for h in hooks for _ in decays]  # slot k: hook k // n_cand, weight decay decays[k % n_cand]
        self._allocate(slots, int(store.d(hooks[0])))
        # the fit split in RAM when it fits the budget: read once, then standardised and trained on from RAM
        source, source_idx, cached = ArrayRollouts.cached_for_epochs(store, hooks, fit_idx, cfg.cache_mb)
        n_states = self._fit_standardization(source, hooks, source_idx, repeat=n_cand, store_index=fit_idx if cached else None)
        batch_states = cfg.batch_states or int(min(4096, max(32, round(n_states / cfg.steps_per_epoch))))
        return _TrainingPlan(hooks, list(decays), slots, source, source_idx, cached, _native_dtype(store), batch_states)

    def _apply_keep_masks(self, keep_masks: Mapping[str, Bool[Tensor, " d"]] | None, hooks: list[str], n_cand: int) -> None:
        """Fix the input masks of the named hooks' slots (``{hook: bool[d]}``) before training."""
        for h, m in (keep_masks or {}).items():
            m = torch.as_tensor(m).to(torch.bool).reshape(-1)
            if m.numel() != self.d_in:
                raise ProbeError(f"keep mask has {m.numel()} entries; hook {h!r} has d={self.d_in}.")
            j = hooks.index(h) if h in hooks else None
            if j is None:
                raise KeyError(f"keep mask for hook {h!r}, which is not among the fitted hooks {hooks}.")
            self.input_mask[j * n_cand:(j + 1) * n_cand] = m.to(self.input_mask)

    def _validation_states(self, store, hooks: list[str], val_idx: np.ndarray, n_cand: int) -> Float[Tensor, "probe n d"]:
        """``s_0`` of the validation rollouts, one block per slot."""
        x_val = torch.stack([store.initial_states(h, val_idx).to(torch.float32) for h in hooks]).to(self.W1.device)
        return x_val.repeat_interleave(n_cand, 0)

    def _train_epoch(self, plan: "_TrainingPlan", epoch: int, active: np.ndarray) -> list[float]:
        """One pass over the fit split (shuffled by ``seed + epoch``); the mean loss of every slot."""
        cfg, dev = self.cfg, self.W1.device
        losses, n_batches = torch.zeros(plan.n_slots), 0
        for batch in plan.source.iter_batches(plan.hooks, batch_states=plan.batch_states, indices=plan.source_idx,
                                              shuffle_seed=cfg.seed + epoch, dtype=plan.cached or plan.read_dtype,
                                              **({"reuse_buffers": True} if plan.cached else {})):
            check_batch_structure(batch.rollout, batch.is_last, batch.step)
            reward, is_last = batch.reward.to(dev), batch.is_last.to(dev)
            plan.opt.zero_grad(set_to_none=True)
            self._accumulate_gradients(plan, batch, (reward, is_last), active, losses)
            if plan.decay.any():  # decoupled weight decay per slot, as AdamW applies it before its step
                with torch.no_grad():
                    for p in plan.params:
                        p.mul_((1.0 - cfg.lr * plan.decay).view(-1, *([1] * (p.ndim - 1))))
            plan.opt.step()
            n_batches += 1
        return (losses / max(n_batches, 1)).tolist()

    def _accumulate_gradients(self, plan: "_TrainingPlan", batch, targets: tuple[Tensor, Tensor], active: np.ndarray,
                              losses: Tensor) -> None:
        """Backward of every active slot's TD (or Monte-Carlo) loss on ``batch``, chunk by chunk; adds to ``losses``."""
        cfg, dev, (reward, is_last) = self.cfg, self.W1.device, targets
        n_slots, n_cand, chunk, slots = plan.n_slots, plan.n_cand, plan.chunk, plan.slots
        for lo in range(0, n_slots, chunk):  # probes are independent: grads accumulate
            if chunk == 1 and lo % n_cand:  # one hook's weight-decay slots share its states: one matmul
                continue
            sel = slice(lo, lo + n_cand) if chunk == 1 else slice(lo, min(lo + chunk, n_slots))
            if not active[sel].any():  # stopped probes: their best weights are restored below
                continue
            if chunk == 1:
                logits = self._shared_input_logits(batch.acts[slots[lo]].to(dev, torch.float32), sel)
            else:
                x = torch.empty(sel.stop - sel.start, len(batch), self.d_in, dtype=torch.float32, device=dev)
                for k in range(sel.start, sel.stop):
                    x[k - sel.start].copy_(batch.acts[slots[k]])  # gather + cast
                # (finiteness of these states was checked in the standardisation pass)
                logits = self.logits(x, sel)
            if cfg.mode == "td":
                target = td_targets(torch.sigmoid(logits), reward, is_last, cfg.gamma, cfg.td_lambda)
            else:
                target = monte_carlo_targets(logits, reward)
            per_probe = nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none").mean(dim=1)
            per_probe.sum().backward()
            losses[sel] += per_probe.detach().cpu()

    def _keep_best(self, plan: "_TrainingPlan", stopping: "_EarlyStopping", validating: bool, n_epochs: int) -> None:
        """Restore each slot's best weights, keep the best weight decay per hook and record what was learned."""
        hooks, n_cand, decays = plan.hooks, plan.n_cand, plan.decays
        if validating:
            stopping.restore(plan.params)
            chosen = [j * n_cand + int(np.argmax(stopping.best_score[j * n_cand:(j + 1) * n_cand])) for j in range(len(hooks))]
        else:
            chosen = [j * n_cand for j in range(len(hooks))]
            stopping.best_epoch[:] = n_epochs
        self._keep_slots(chosen, hooks)
        plan.chosen = chosen
        self.weight_decay_ = {h: decays[k % n_cand] for h, k in zip(hooks, chosen)}
        self.best_epoch_ = {h: int(stopping.best_epoch[k]) for h, k in zip(hooks, chosen)}
        self.validation_auc_ = {h: (float(stopping.best_auc[k]) if validating else None) for h, k in zip(hooks, chosen)}

    @torch.no_grad()
    def _keep_slots(self, chosen: list[int], hooks: list[str]) -> None:
        """Reduce the stacked training slots to one probe per hook (slot ``chosen[j]`` for hook j)."""
        sel = torch.as_tensor(chosen, dtype=torch.long, device=self.W1.device)
        for name in ("W1", "b1", "W2", "b2"):
            setattr(self, name, nn.Parameter(getattr(self, name).detach()[sel].clone()))
        for name in ("mean", "std", "input_mask"):
            self.register_buffer(name, getattr(self, name)[sel].clone())
        self.hook_names = list(hooks)

    def fit_arrays(
        self,
        acts: Mapping[str, Sequence[Float[Tensor, "T d"] | np.ndarray]],
        rewards: Sequence[float] | np.ndarray,
        hook_names: Sequence[str] | str | None = None,
        *,
        ids: Sequence[str] | None = None,
        indices: Sequence[int] | None = None,
        verbose: bool = True,
    ) -> "ValueProbe":
        """:meth:`fit` on in-memory rollouts ``{hook: [states [T+1, d] of rollout i]}`` (checked)."""
        data = ArrayRollouts(acts, rewards, ids)
        return self.fit(data, data.hook_names if hook_names is None else hook_names, indices, verbose=verbose)

    # ---- masks -------------------------------------------------------------------------------
    def set_input_mask(self, hook: str, keep_mask: Bool[Tensor, " d"] | None) -> "ValueProbe":
        """Keep only the ``True`` input dimensions of ``hook``'s probe (``None`` keeps all), in place."""
        k = self.probe_index(hook)
        if keep_mask is None:
            self.input_mask[k] = 1.0
            return self
        keep_mask = torch.as_tensor(keep_mask).to(torch.bool).reshape(-1)
        if keep_mask.numel() != self.d_in:
            raise ProbeError(f"keep mask has {keep_mask.numel()} entries; hook {hook!r} has d={self.d_in}.")
        self.input_mask[k] = keep_mask.to(self.input_mask)
        return self

    def masked(self, hook: str, keep_mask: Bool[Tensor, " d"] | None) -> "ValueProbe":
        """A copy whose ``hook`` probe sees only the kept dimensions (pruning without retraining)."""
        clone = ValueProbe(self.cfg)
        clone.hook_names, clone.d_in, clone.history = list(self.hook_names), self.d_in, [list(h) for h in self.history]
        clone.validation_history = [list(h) for h in self.validation_history]
        clone.weight_decay_, clone.best_epoch_ = dict(self.weight_decay_), dict(self.best_epoch_)
        clone.validation_auc_ = dict(self.validation_auc_)
        for name in ("W1", "b1", "W2", "b2"):
            setattr(clone, name, nn.Parameter(getattr(self, name).detach().clone()))
        for name in ("mean", "std", "input_mask"):
            clone.register_buffer(name, getattr(self, name).clone())
        clone.eval()
        return clone.set_input_mask(hook, keep_mask)

    def input_weight_norms(self, hook: str, *, raw_units: bool = False) -> Float[Tensor, " d"]:
        """L1 norm of each input dimension's ``W1`` column (``Σ_h |W1[d, h]|``), the pruning score.

        Inputs are standardised, so the default score is in units of each dimension's std
        (``|W1 column|₁ × 1``); ``raw_units=True`` divides by the std (the weight a raw activation
        effectively gets). Masked dimensions keep their score; pruning decides what to mask.
        """
        k = self.probe_index(hook)
        norms = self.W1[k].detach().abs().sum(dim=1)
        if raw_units:
            norms = norms / self.std[k]
        return norms.cpu()

    # ---- evaluation --------------------------------------------------------------------------
    def _hooks_or_all(self, hooks) -> list[str]:
        self._check_fitted()
        if hooks is None:
            return list(self.hook_names)
        hooks = [hooks] if isinstance(hooks, str) else list(hooks)
        for h in hooks:
            self.probe_index(h)
        return hooks

    @torch.no_grad()
    def initial_values(self, store, indices: Sequence[int] | None = None, hooks: Sequence[str] | str | None = None) -> Float[np.ndarray, "probe n"]:
        """``V(s_0)`` of each rollout for each probe (rows in ``hooks`` order, default all probes)."""
        hooks = self._hooks_or_all(hooks)
        idx = resolve_indices(store, indices)
        out = np.zeros((len(hooks), idx.size), dtype=np.float64)
        for j, h in enumerate(hooks):
            out[j] = self.predict_value(store.initial_states(h, idx), hook=h).cpu().numpy()
        return out

    @torch.no_grad()
    def value_traces(self, store, hook: str, indices: Sequence[int] | None = None) -> list[Float[np.ndarray, " T"]]:
        """``V(s_0), .., V(s_T)`` of each rollout, from ``hook``'s probe."""
        self.probe_index(hook)
        idx = resolve_indices(store, indices)
        return [self.predict_value(store.get(int(i), hook), hook=hook).cpu().numpy() for i in idx]

    def score(self, store, indices: Sequence[int] | None = None, hooks: Sequence[str] | str | None = None) -> dict[str, float]:
        """Held-out AUC of ``V(s_0)`` against the reward, per hook (``roc_auc_score``)."""
        hooks = self._hooks_or_all(hooks)
        idx = resolve_indices(store, indices)
        values = self.initial_values(store, idx, hooks)
        rewards = np.asarray(store.rewards)[idx]
        return {h: binary_auc(rewards, values[j], what=f"V(s_0) of hook {h!r}") for j, h in enumerate(hooks)}

    # ---- persistence -------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write ``path/value_probe.safetensors`` (weights, stats, masks) and ``path/value_probe.json``."""
        self._check_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        tensors = {n: getattr(self, n).detach().cpu().contiguous() for n in ("W1", "b1", "W2", "b2", "mean", "std", "input_mask")}
        with atomic_path(path / _WEIGHTS_FILE) as tmp:
            save_file(tensors, str(tmp), metadata={"format": "reward_circuits.ValueProbe", "version": str(PROBE_FORMAT_VERSION)})
        atomic_write_json(path / _CONFIG_FILE, {
            "format_version": PROBE_FORMAT_VERSION,
            "config": asdict(self.cfg),
            "hook_names": self.hook_names,
            "d": self.d_in,
            "history": self.history,
            "validation_history": self.validation_history,
            "weight_decay_": self.weight_decay_,
            "best_epoch_": self.best_epoch_,
            "validation_auc_": self.validation_auc_,
        })
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | None = None) -> "ValueProbe":
        path = Path(path)
        if not (path / _CONFIG_FILE).exists() or not (path / _WEIGHTS_FILE).exists():
            raise FileNotFoundError(f"no saved ValueProbe at {path} (expects {_CONFIG_FILE} and {_WEIGHTS_FILE}).")
        meta = json.loads((path / _CONFIG_FILE).read_text())
        check_format_version(path / _CONFIG_FILE, meta.get("format_version"), PROBE_FORMAT_VERSION, "ValueProbe",
                             rewrite="fit and save the probe again with this version", error=ProbeVersionError)
        cfg = ValueProbeConfig(**meta["config"])
        if device is not None:
            cfg = cfg.replace(device=device)
        probe = cls(cfg)
        tensors = load_file(str(path / _WEIGHTS_FILE), device=cfg.device)
        probe.hook_names, probe.d_in, probe.history = list(meta["hook_names"]), int(meta["d"]), meta.get("history", [])
        probe.validation_history = meta.get("validation_history", [])
        probe.weight_decay_ = meta.get("weight_decay_", {})
        probe.best_epoch_ = meta.get("best_epoch_", {})
        probe.validation_auc_ = meta.get("validation_auc_", {})
        for name in ("W1", "b1", "W2", "b2"):
            setattr(probe, name, nn.Parameter(tensors[name]))
        for name in ("mean", "std", "input_mask"):
            probe.register_buffer(name, tensors[name])
        probe.eval()
        return probe


@dataclass
class _TrainingPlan:
    """What one :meth:`ValueProbe.fit` trains: a slot per (hook, weight-decay candidate), the source
    of the fit split, the batch size, and (from :meth:`start`) the optimiser over the stacked weights."""

    hooks: list[str]
    decays: list[float]
    slots: list[str]
    source: Any
    source_idx: np.ndarray
    cached: Any  # the dtype of the fit split held in RAM, or falsy when it is read from the store
    read_dtype: torch.dtype
    batch_states: int
    params: list[nn.Parameter] = field(default_factory=list)
    opt: Any = None
    decay: Tensor | None = None
    chunk: int = 1
    chosen: list[int] = field(default_factory=list)  # the slot kept per hook

    @property
    def n_cand(self) -> int:
        return len(self.decays)

    @property
    def n_slots(self) -> int:
        return len(self.slots)

    def start(self, probe: ValueProbe) -> None:
        """The optimiser over the probe's stacked weights, the per-slot weight decay and the probe chunk size."""
        cfg, dev = probe.cfg, probe.W1.device
        self.params = [probe.W1, probe.b1, probe.W2, probe.b2]
        # fused: one kernel per step, ~10x the per-tensor loop
        self.opt = torch.optim.AdamW(self.params, lr=cfg.lr, weight_decay=0.0, fused=True)
        self.decay = torch.tensor([self.decays[k % self.n_cand] for k in range(self.n_slots)], device=dev)
        # CPU: as many probes per matmul as keep the [probe, state, d] block near 4 MB (one probe of
        # a big batch stays in cache; many small ones amortise per-op overhead)
        self.chunk = cfg.probe_chunk or (self.n_slots if dev.type != "cpu"
                                         else max(1, (1 << 20) // (self.batch_states * probe.d_in)))


class _EarlyStopping:
    """Per slot: the best validation score so far, its epoch, AUC and weights; a slot stops after
    ``patience`` epochs without a better score."""

    def __init__(self, params: list[nn.Parameter], n_slots: int, patience: int):
        self.best = [p.detach().clone() for p in params]
        self.best_auc, self.best_score = np.full(n_slots, -np.inf), np.full(n_slots, -np.inf)
        self.best_epoch = np.zeros(n_slots, dtype=np.int64)
        self.since_best = np.zeros(n_slots, dtype=np.int64)
        self.active = np.ones(n_slots, dtype=bool)
        self.patience = patience

    def update(self, epoch: int, aucs: np.ndarray, score: np.ndarray, params: list[nn.Parameter]) -> bool:
        """Record one epoch's validation; False once every slot has stopped."""
        improved = self.active & (score > self.best_score)
        with torch.no_grad():
            for p, b in zip(params, self.best):
                b[improved] = p.detach()[improved]
        self.best_auc[improved], self.best_score[improved], self.best_epoch[improved] = aucs[improved], score[improved], epoch + 1
        self.since_best = np.where(improved, 0, self.since_best + 1)
        self.active &= self.since_best < self.patience
        return bool(self.active.any())

    @torch.no_grad()
    def restore(self, params: list[nn.Parameter]) -> None:
        for p, b in zip(params, self.best):
            p.copy_(b)
