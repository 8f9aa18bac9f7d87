"""Which neurons the auxiliary reward uses: value neurons, AttnLRP neurons, or a random control.

All three return a :class:`~reward_circuits.studies.yfpo.neuron_reward.NeuronReward` over
``blocks.L.mlp.hook_post`` neurons, chosen on training data only.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ...neurons import NeuronSet
from ...analysis.probes import ValueProbe
from ...analysis.pruning import value_neurons
from ...analysis.stats import Interval, bootstrap_auc_ci
from ...data.capture import build_store
from ...data.rollouts import Rollout
from ...models import ModelAdapter
from ...tasks import Task
from .attnlrp import Method, NeuronRelevance, neuron_relevance
from .neuron_reward import NeuronReward


@dataclass
class ValueSelection:
    """Value neurons and how they were found: probe AUC per layer on validation rollouts."""

    reward: NeuronReward
    hook: str
    auc_by_hook: dict[str, float]
    auc: Interval
    n_fit: int
    n_validation: int


def select_value_neurons(adapter: ModelAdapter, rollouts: Sequence[Rollout], layers: Sequence[int], k: int,
                         store_dir: str | os.PathLike, seed: int = 0, progress: bool = True, epochs: int = 30) -> ValueSelection:
    """Fit value probes on ``blocks.L.mlp.hook_post`` (L in ``layers``) of two thirds of the prompts,
    pick the layer with the best AUC of V(s_0) on the other third (every third prompt by mean reward), keep its ``k`` value neurons
    (:func:`~reward_circuits.analysis.pruning.value_neurons`)."""
    hooks = adapter.validate_hooks([f"blocks.{layer}.mlp.hook_post" for layer in layers])
    store = build_store(adapter, rollouts, hooks, store_dir, progress=progress)
    ids = store.rollout_ids
    by_id = {r.id: r.example_id for r in rollouts}
    rewards = np.asarray(store.rewards)
    prompt_reward: dict[str, list[float]] = {}
    for j, i in enumerate(ids):
        prompt_reward.setdefault(by_id[i], []).append(float(rewards[j]))
    # every third prompt in order of mean reward (random tie-break): both splits see easy and hard prompts
    rng = np.random.default_rng(seed)
    prompts = sorted(prompt_reward, key=lambda p: (np.mean(prompt_reward[p]), rng.random()))
    val_prompts = set(prompts[1::3])
    val = np.array([j for j, i in enumerate(ids) if by_id[i] in val_prompts])
    fit = np.array([j for j, i in enumerate(ids) if by_id[i] not in val_prompts])
    if np.unique(rewards[val]).size < 2 or np.unique(rewards[fit]).size < 2:
        raise ValueError("value probe: the fit or validation rollouts have a single reward; use more training prompts.")
    probe = ValueProbe(seed=seed, epochs=epochs).fit(store, hooks, indices=fit, verbose=progress)
    auc = probe.score(store, indices=val)
    best = max(auc, key=auc.get)
    values = probe.initial_values(store, val, hooks=[best])[0]
    interval = bootstrap_auc_ci(rewards[val], values, seed=seed)
    d = store.d(best)
    ns = value_neurons(probe, best, prune_ratio=1.0 - k / d).top(k)
    layer = int(best.split(".")[1])
    reward = NeuronReward("value", [(layer, i) for i in ns.indices],
                          provenance={"hook": best, "score": "L1 norm of the value probe's input weights", "auc_validation": auc[best]})
    return ValueSelection(reward, best, auc, interval, int(fit.size), int(val.size))


def gold_answer_batch(task: Task, tokenizer, n: int, answer_template: str = "#### {answer}"):
    """(input_ids, attention_mask, target_mask): each of the first ``n`` prompts followed by its gold
    answer as the task's format asks for it; the target marks the answer's tokens."""
    seqs, targets = [], []
    for ex in list(task.examples)[:n]:
        prompt = tokenizer(task.render(ex, tokenizer), add_special_tokens=False)["input_ids"]
        lead = tokenizer(answer_template.split("{answer}")[0], add_special_tokens=False)["input_ids"]
        answer = tokenizer(answer_template.format(answer=ex.answer), add_special_tokens=False)["input_ids"]
        seqs.append(prompt + answer)
        targets.append([False] * (len(prompt) + len(lead)) + [True] * (len(answer) - len(lead)))
    width = max(map(len, seqs))
    pad = tokenizer.pad_token_id
    ids = torch.tensor([[pad] * (width - len(s)) + s for s in seqs])
    mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs])
    tmask = torch.tensor([[False] * (width - len(t)) + t for t in targets])
    return ids, mask, tmask


@dataclass
class RelevanceSelection:
    """AttnLRP (or gradient × activation) neurons and the relevance they were ranked by."""

    reward: NeuronReward
    relevance: NeuronRelevance


def select_relevance_neurons(hf_model, tokenizer, task: Task, n_prompts: int, k: int, method: Method = "attnlrp",
                             batch_size: int = 8) -> RelevanceSelection:
    """The ``k`` MLP neurons (any layer) with the highest mean relevance for the gold answer's logits."""
    ids, mask, target = gold_answer_batch(task, tokenizer, n_prompts)
    parts = [neuron_relevance(hf_model, ids[i:i + batch_size], mask[i:i + batch_size], target[i:i + batch_size], method)
             for i in range(0, ids.shape[0], batch_size)]
    rel = NeuronRelevance(method, torch.cat([p.per_prompt for p in parts]), torch.cat([p.embedding_relevance for p in parts]),
                          torch.cat([p.target for p in parts]), torch.cat([p.absorbed for p in parts]), parts[0].layers)
    top = rel.top(k)
    reward = NeuronReward("attnlrp" if method == "attnlrp" else "gradient", top,
                          provenance={"method": method, "prompts": int(ids.shape[0]), "target": "sum of gold-answer token logits"})
    return RelevanceSelection(reward, rel)


def random_neurons_like(reference: NeuronReward, d_mlp: int, seed: int, exclude: Sequence[tuple[int, int]] = ()) -> NeuronReward:
    """As many random neurons per layer as ``reference`` has, avoiding ``exclude`` (a matched control)."""
    per_layer: dict[int, int] = {}
    for layer, _ in reference.neurons:
        per_layer[layer] = per_layer.get(layer, 0) + 1
    taken = set(exclude) | set(reference.neurons)
    neurons = []
    for j, (layer, count) in enumerate(sorted(per_layer.items())):
        avoid = [i for lay, i in taken if lay == layer]
        ns = NeuronSet.random(f"blocks.{layer}.mlp.hook_post", d_mlp, count, seed=seed + 7919 * j, layer=layer, exclude=avoid)
        neurons += [(layer, i) for i in ns.indices]
    return NeuronReward("random", neurons, provenance={"matched_to": reference.kind, "seed": seed})
