"""The one read API every analysis accepts: :class:`Store`.

:class:`~reward_circuits.data.store.ActivationStore` (on disk), :class:`~reward_circuits.data.views.ArrayRollouts`
(in memory) and :class:`~reward_circuits.data.views.RotatedStore` (a rotated view) all satisfy it; so
can a user's own class. Analyses type their ``store`` arguments with it.
"""

from __future__ import annotations

from typing import Iterator, Protocol, Sequence, runtime_checkable

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from .store import StateBatch


@runtime_checkable
class Store(Protocol):
    """Rollouts of per-token hidden states ``s_0 .. s_T`` with one binary reward each."""

    @property
    def hook_names(self) -> list[str]: ...

    @property
    def rewards(self) -> np.ndarray: ...

    @property
    def rollout_ids(self) -> list[str]: ...

    def __len__(self) -> int: ...

    def d(self, hook: str) -> int: ...

    def get(self, index: int, hook: str, *, from_s0: bool = True) -> Float[Tensor, "T d"]:
        """Rollout ``index``'s states at ``hook`` (``s_0 .. s_T`` with ``from_s0``)."""

    def initial_states(self, hook: str, indices: Sequence[int] | None = None) -> Float[Tensor, "n d"]:
        """``s_0`` (the prompt's last token) of each rollout."""

    def iter_batches(self, hooks, *, batch_states: int = 8192, indices=None, include_prompt: bool = False,
                     shuffle_seed: int | None = None, dtype: torch.dtype = torch.float32) -> Iterator[StateBatch]:
        """Whole rollouts packed into batches of about ``batch_states`` states."""

    def split(self, test_fraction: float = 0.3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Stratified (train, test) rollout indices."""
