"""reward_circuits: find, measure and use the reward subsystem inside language models.

Architecture (one module per concept): model adapter (``model``, ``loading``) → activation store
(``rollouts``, ``capture``, ``store``) → analyses (``probes``, ``pruning``, ``neurons``,
``baselines``, ``dopamine``) → interventions (``interventions``) → reports (``report``,
``*_stage``, ``pipeline``, ``cli``).

Three lines from a store to an intervention::

    probe = ValueProbe().fit(store, store.hook_names)
    neurons = value_neurons(probe, "blocks.6.hook_resid_post")          # top 1% at 99% pruning
    model.run_with_hooks(tokens, fwd_hooks=[(neurons.hook_name, zero_ablate(neurons))])
"""

from .capture import build_store
from .model import GenerationConfig, ModelAdapter, from_hf, load_model
from .neurons import NeuronSet, expected_random_iou, iou
from .probes import ValueProbe, ValueProbeConfig
from .pruning import prune_curve, value_neurons
from .report import Report, Section, Table
from .rollouts import Rollout, generate_rollouts, load_rollouts, save_rollouts
from .store import ActivationStore, ActivationStoreWriter, write_store_from_arrays
from .tasks import Example, Task, get_task

from .interventions import add_direction, mean_ablate, patch_from, resample_ablate, scale, zero_ablate

__version__ = "0.1.0"
