"""Surface baselines: how much of V(s_0)'s AUC could a reader of the prompt's surface get?

(a) The same :class:`~reward_circuits.probes.ValueProbe` on ``hook_embed`` - the token embeddings
    before any layer. It is just another hook of the store (:func:`embed_hook`). Note that at
    ``s_0`` it only sees the embedding of the prompt's *last* token, which is often the same
    chat-template token for every prompt, so this baseline is usually at chance; the stronger
    surface baseline is (b).
(b) :func:`bag_of_tokens_baseline`: L2-regularised logistic regression on the prompt's token counts
    (scipy sparse), with the inverse regularisation ``C`` chosen by stratified cross-validation
    (AUC) on the training split only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable, Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression

from ..options import options_of
from .probes import binary_auc
from .splits import distinct_groups_per_reward, grouped_stratified_folds

EMBED_HOOK = "hook_embed"


def embed_hook(store) -> str:
    """The surface hook: ``"hook_embed"`` is simply another hook point of the store.

    Train the usual probe on it (``ValueProbe(cfg).fit(store, embed_hook(store), train)``). Raises if
    the store was built without it.
    """
    if EMBED_HOOK not in store.hook_names:
        raise KeyError(
            f"the store has no {EMBED_HOOK!r} (it holds {store.hook_names}); rebuild it with "
            f"{EMBED_HOOK!r} among the hook points to get the embedding baseline."
        )
    return EMBED_HOOK


def token_count_matrix(prompt_token_ids: Sequence[Sequence[int]], vocab_size: int) -> sp.csr_matrix:
    """``[n_prompts, vocab_size]`` sparse matrix of token counts (checks ids are in range)."""
    rows, cols = [], []
    for i, toks in enumerate(prompt_token_ids):
        t = np.asarray(list(toks), dtype=np.int64)
        if t.size and (t.min() < 0 or t.max() >= vocab_size):
            bad = t[(t < 0) | (t >= vocab_size)][:5].tolist()
            raise ValueError(f"prompt #{i}: token ids {bad} outside [0, vocab_size={vocab_size}).")
        rows.append(np.full(t.size, i))
        cols.append(t)
    rows = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    cols = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    m = sp.csr_matrix((np.ones(rows.size, dtype=np.float64), (rows, cols)), shape=(len(prompt_token_ids), vocab_size))
    m.sum_duplicates()
    return m


@dataclass
class BagOfTokensResult:
    auc: float  # held-out AUC
    C: float  # chosen inverse regularisation
    cv_auc: dict[float, float]  # mean CV AUC per C on the training split (empty if CV impossible)
    test_scores: np.ndarray | None = None  # decision function on the test rollouts, in ``test_idx`` order


@dataclass
class BagOfTokensOptions:
    """Settings of :func:`bag_of_tokens_baseline` (by position in this order, keyword, or one
    ``options=``): the classifier's seed, the ``C`` grid, the CV folds and one group per rollout."""

    seed: int = 0
    Cs: Sequence[float] = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0)
    n_folds: int = 5
    groups: Sequence[Hashable] | None = None


def bag_of_tokens_baseline(
    prompt_token_ids: Sequence[Sequence[int]],
    rewards: Sequence[float] | np.ndarray,
    train_idx: Sequence[int],
    test_idx: Sequence[int],
    vocab_size: int,
    *args,
    **options,
) -> BagOfTokensResult:
    """Logistic regression on token counts; ``C`` by stratified k-fold AUC on the train split.

    ``groups[i]`` (one per rollout, e.g. its prompt): the folds keep a prompt's copies together
    (:func:`~reward_circuits.analysis.splits.grouped_stratified_folds`), else a repeated prompt in
    both the fitting and the scoring fold rewards memorising it, and the weakest ``C`` wins.
    ``args``/``options``: the fields of :class:`BagOfTokensOptions` (``seed=0``, ``Cs``, ``n_folds=5``,
    ``groups=None``)."""
    o = options_of(BagOfTokensOptions, args, options, where="bag_of_tokens_baseline")
    seed, Cs, n_folds, groups = o.seed, o.Cs, o.n_folds, o.groups
    rewards = np.asarray(rewards, dtype=np.float64).reshape(-1)
    if len(prompt_token_ids) != rewards.size:
        raise ValueError(f"{len(prompt_token_ids)} prompts but {rewards.size} rewards: give one prompt per rollout.")
    if not np.isin(rewards, (0.0, 1.0)).all():
        raise ValueError("rewards must be binary (0 or 1).")
    train, test = np.asarray(train_idx, dtype=np.int64), np.asarray(test_idx, dtype=np.int64)
    if np.intersect1d(train, test).size:
        raise ValueError("train and test indices overlap.")
    X = token_count_matrix(prompt_token_ids, vocab_size)
    # log(1 + count): long prompts with repeated tokens do not dominate; still sparse
    X.data = np.log1p(X.data)
    y_train = rewards[train]
    if np.unique(y_train).size < 2:
        raise ValueError("the training split has a single reward class: cannot fit a classifier.")

    def make(C: float) -> LogisticRegression:
        return LogisticRegression(C=C, solver="liblinear", max_iter=1000, random_state=seed)

    keys = None if groups is None else list(groups)
    if keys is not None and len(keys) != rewards.size:
        raise ValueError(f"groups has {len(keys)} entries for {rewards.size} rollouts: give one group (e.g. the prompt) per rollout.")
    train_groups = None if keys is None else [keys[i] for i in train]
    folds = min(n_folds, *distinct_groups_per_reward(y_train, train_groups or range(train.size)))
    cv_auc: dict[float, float] = {}
    if folds >= 2:
        cv = grouped_stratified_folds(y_train, train_groups, folds, seed)
        for C in Cs:
            scores = []
            for fit_i, val_i in cv:
                clf = make(C).fit(X[train[fit_i]], y_train[fit_i])
                scores.append(binary_auc(y_train[val_i], clf.decision_function(X[train[val_i]]), what="bag-of-tokens CV score"))
            cv_auc[float(C)] = float(np.mean(scores))
        best_C = max(cv_auc, key=lambda c: (cv_auc[c], -c))  # ties: the stronger regularisation
    else:
        best_C = 1.0
    clf = make(best_C).fit(X[train], y_train)
    scores = clf.decision_function(X[test])
    auc = binary_auc(rewards[test], scores, what="bag-of-tokens score")
    return BagOfTokensResult(auc=auc, C=best_C, cv_auc=cv_auc, test_scores=np.asarray(scores, dtype=np.float64))
