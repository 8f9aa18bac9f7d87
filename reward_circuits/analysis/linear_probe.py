"""The logistic-regression floor: what a linear read-out of ``s_0`` gets, with no TD at all.

Every MLP value probe must reach this floor (minus its interval): a scikit-learn logistic
regression on the same states ``s_0`` (the prompt's last token), standardised with the training
split's statistics, its inverse regularisation ``C`` chosen by stratified k-fold AUC on the training
split only, judged by the held-out AUC with a stratified bootstrap interval over test rollouts.
When the TD probe falls below it, the layer is not empty: a linear read-out of ``s_0`` holds more
than the value function learned from every state of the rollouts recovers (on the paper profile's
store, neither more epochs, weight decay, width, learning rate, a heavier ``s_0`` in the loss nor
refitting on the validation rollouts closed the gap; docs: concepts/value-probes).

With ``groups`` (one key per rollout, e.g. its prompt tokens) repeated prompts stay in one fold
(scikit-learn's ``StratifiedGroupKFold``): copies of a prompt in both the fitting and the scoring
folds would reward memorisation and pick the weakest regularisation. The held-out interval then
resamples groups too.

>>> floor = logistic_floor(store, "blocks.6.hook_resid_post", train, test)
>>> floor.auc            # Interval: estimate [low, high] (n = test rollouts)
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedGroupKFold, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ..options import options_of
from ..errors import ProbeError
from .probes import resolve_indices
from .stats import Interval, bootstrap_auc_ci, group_ids

DEFAULT_CS: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)


@dataclass
class LogisticFloor:
    """Held-out AUC of a cross-validated logistic regression on ``s_0`` at one hook."""

    hook: str
    auc: Interval
    C: float
    cv_auc: dict[float, float] = field(default_factory=dict)
    n_train: int = 0

    def to_dict(self) -> dict:
        return {"hook": self.hook, "auc": self.auc.to_dict(), "C": self.C,
                "cv_auc": {str(c): v for c, v in self.cv_auc.items()}, "n_train": self.n_train}


@dataclass(kw_only=True)
class LogisticFloorOptions:
    """Settings of :func:`logistic_floor`, passed as its keywords (or one ``options=``)."""

    Cs: Sequence[float] = DEFAULT_CS
    n_folds: int = 5
    seed: int = 0
    n_boot: int = 2000
    groups: Sequence | None = None


def logistic_floor(
    store,
    hook: str,
    train_indices: Sequence[int],
    test_indices: Sequence[int],
    **options,
) -> LogisticFloor:
    """Logistic regression on ``s_0`` of ``hook``: ``C`` by ``n_folds``-fold AUC on the train split,
    refit on all of it, AUC (bootstrap 95% interval) on the test split.

    ``groups``: one hashable per rollout of the store (indexed like it); rollouts of one group never
    straddle a fold, and the test interval resamples whole groups.

    ``options``: the fields of :class:`LogisticFloorOptions` as keywords, or one ``options=``.
    """
    o = options_of(LogisticFloorOptions, (), options, where="logistic_floor")
    Cs, n_folds, seed, n_boot, groups = o.Cs, o.n_folds, o.seed, o.n_boot, o.groups
    if hook not in store.hook_names:
        raise KeyError(f"hook {hook!r} is not in the store; it holds {store.hook_names}.")
    train, test = resolve_indices(store, train_indices), resolve_indices(store, test_indices)
    if np.intersect1d(train, test).size:
        raise ProbeError("train and test rollouts overlap: the floor must be judged on held-out rollouts.")
    rewards = np.asarray(store.rewards)
    y_train, y_test = rewards[train].astype(int), rewards[test].astype(int)
    counts = np.bincount(y_train, minlength=2)
    if counts.min() < 2:
        raise ProbeError(f"the training split has {counts[1]} rollouts with reward 1 and {counts[0]} with reward 0: "
                         "a logistic floor needs at least 2 of each.")
    x_train = store.initial_states(hook, train).double().numpy()
    x_test = store.initial_states(hook, test).double().numpy()
    folds = int(min(n_folds, counts.min()))
    fit_groups = test_groups = None
    if groups is not None:
        keys = list(groups)
        if len(keys) != len(store):
            raise ValueError(f"groups has {len(keys)} entries for a store of {len(store)} rollouts; give one per rollout.")
        gid = group_ids(keys)
        fit_groups, test_groups = gid[train], gid[test]
        folds = int(min(folds, np.unique(fit_groups).size))
    cv = (StratifiedGroupKFold(folds, shuffle=True, random_state=seed) if fit_groups is not None
          else StratifiedKFold(folds, shuffle=True, random_state=seed))
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    search = GridSearchCV(model, {"logisticregression__C": list(Cs)}, scoring="roc_auc", cv=cv, refit=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(x_train, y_train, groups=fit_groups)
    cv_auc = {float(c): float(a) for c, a in zip(Cs, search.cv_results_["mean_test_score"])}
    best_c = float(search.best_params_["logisticregression__C"])
    scores = search.decision_function(x_test)
    auc = bootstrap_auc_ci(y_test, scores, n_boot=n_boot, seed=seed,
                           groups=None if test_groups is None else test_groups.tolist())
    return LogisticFloor(hook=hook, auc=auc, C=best_c,
                         cv_auc=cv_auc, n_train=int(train.size))


def logistic_floors(store, hooks: Sequence[str], train_indices: Sequence[int], test_indices: Sequence[int],
                    **kwargs) -> dict[str, LogisticFloor]:
    """:func:`logistic_floor` at every hook (same split, same settings)."""
    return {h: logistic_floor(store, h, train_indices, test_indices, **kwargs) for h in hooks}
