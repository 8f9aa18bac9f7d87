"""Data: rollouts → captured activations → one activation store, and the views analyses read.

- :mod:`.rollouts`: generate, score, save and load rollouts (``datasets`` on disk).
- :mod:`.capture`: :func:`build_store` runs the model over rollouts and writes the store;
  :func:`generate_rollouts_and_store` takes the states from the generation itself.
- :mod:`.store`: the store (float16 safetensors shards + JSON manifest; atomic, resumable, memory-mapped).
- :mod:`.views`: :class:`ArrayRollouts` (in memory), :class:`RotatedStore` (rotated basis), :class:`ConcatStore` (several stores as one).
- :mod:`.protocol`: :class:`Store`, the read API every analysis accepts (all three satisfy it).
- :mod:`.synthetic`: planted ground truth for tests and examples.
"""

from .capture import CaptureOptions, build_store, generate_rollouts_and_store, state_positions
from .protocol import Store
from .rollouts import Rollout, accuracy, generate_rollouts, load_rollouts, save_rollouts
from .store import (ActivationStore, ActivationStoreWriter, ArrayStoreOptions, IncompleteStoreError, RolloutRecord, StateBatch, StoreError,
                    read_manifest, remove_stale_files, rollout_order,
                    stratified_split, write_store_from_arrays)
from .synthetic import PlantedInfo, PlantedSpec, planted_prompt_tokens, planted_rollouts, planted_value_store
from .views import ArrayRollouts, ConcatStore, RotatedStore, random_orthogonal

__all__ = [
    "ActivationStore", "ActivationStoreWriter", "ArrayRollouts", "ConcatStore", "IncompleteStoreError", "PlantedInfo", "PlantedSpec", "Rollout", "RolloutRecord",
    "RotatedStore", "StateBatch", "Store", "StoreError", "accuracy", "build_store", "generate_rollouts", "generate_rollouts_and_store",
    "load_rollouts", "planted_prompt_tokens", "planted_rollouts", "planted_value_store", "random_orthogonal", "read_manifest", "remove_stale_files",
    "rollout_order", "save_rollouts", "state_positions", "stratified_split", "write_store_from_arrays",
]
