"""Per-dimension mean and standard deviation of a probe's training states, in one pass.

Residual-stream dimensions differ in scale by orders of magnitude, so probes standardise their
inputs with the statistics of the *training* states. Sums run in float64 (``E[s²] − E[s]²``
cancels badly in float32 for the massive-activation dimensions, whose mean is far larger than
their spread); the same pass checks that every state is finite.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from ..errors import ProbeError


def _moments(a: Float[Tensor, "n d"], rows: int = 1024) -> tuple[Float[Tensor, " d"], Float[Tensor, " d"]]:
    """Column sums of ``a`` and of ``a²`` in float64, ``rows`` rows at a time through one reused
    float64 buffer (a float64 copy of a whole ``[n, d]`` block, and its square, measured ~10x the
    arithmetic in fresh-page faults), each as a matrix-vector product."""
    n, d = a.shape
    s1 = torch.zeros(d, dtype=torch.float64)
    s2 = torch.zeros(d, dtype=torch.float64)
    buf = torch.empty(min(n, rows), d, dtype=torch.float64)
    ones = torch.ones(1, min(n, rows), dtype=torch.float64)
    for lo in range(0, n, rows):
        chunk = buf[: min(rows, n - lo)]
        chunk.copy_(a[lo : lo + rows])
        s1 += (ones[:, : chunk.shape[0]] @ chunk)[0]
        s2 += (ones[:, : chunk.shape[0]] @ chunk.mul_(chunk))[0]
    return s1, s2


def standardization_stats(
    source, hooks: Sequence[str], indices: np.ndarray, *, batch_states: int = 8192, dtype: torch.dtype = torch.float32,
    store_index: np.ndarray | None = None,
) -> tuple[Float[Tensor, "hook d"], Float[Tensor, "hook d"], int]:
    """``(mean, std, n_states)`` of the states of rollouts ``indices`` of ``source``, per hook.

    ``source`` is a store or an in-memory view; a view holding exactly these rollouts in order
    (:class:`~reward_circuits.data.ArrayRollouts`, e.g. a fit split kept in RAM) is read straight from
    its block, without a gathered copy. Constant dimensions get std 1 (no information; not divided
    by ~0). A non-finite state raises :class:`ProbeError` naming the rollouts at fault, numbered
    through ``store_index`` when the source renumbered them (an in-RAM copy of a split).
    """
    hooks = list(hooks)
    d = int(source.d(hooks[0]))
    s1 = torch.zeros(len(hooks), d, dtype=torch.float64)
    s2 = torch.zeros(len(hooks), d, dtype=torch.float64)
    count = 0
    whole = hasattr(source, "state_block") and np.array_equal(indices, np.arange(len(source)))
    batches = ([None] if whole else
               source.iter_batches(hooks, batch_states=batch_states, indices=indices, dtype=dtype))
    for batch in batches:
        for k, h in enumerate(hooks):
            a = source.state_block(h) if batch is None else batch.acts[h]
            col_sum, col_sq = _moments(a)
            if not torch.isfinite(col_sum).all():
                bad_rows = ~torch.isfinite(a).all(1)
                rollout = source.rollout_of_states() if batch is None else batch.rollout
                bad = rollout[bad_rows].unique()[:5].numpy()
                raise ProbeError(f"hook {h!r}: activations contain NaN or inf (among rollouts "
                                 f"{(bad if store_index is None else store_index[bad]).tolist()}...).")
            s1[k] += col_sum
            s2[k] += col_sq
        count += int(source.state_block(hooks[0]).shape[0]) if batch is None else len(batch)
    if count == 0:
        raise ProbeError("no training states: every rollout needs at least s_0.")
    mean = s1 / count
    std = (s2 / count - mean * mean).clamp_min(0.0).sqrt()
    std = torch.where(std > 1e-6 * std.amax(dim=1, keepdim=True).clamp_min(1e-12), std, torch.ones_like(std))
    return mean, std, count
