"""reward_circuits: find, measure and use the reward subsystem inside language models.

The folder tree is the data flow, and each line below imports only from the lines above it
(tests/test_architecture.py holds the order)::

    io.py, errors.py  atomic writes and JSON helpers; the shared error types and format-version check
    configs.py        StudyConfig (fields every study shares); dataclass config → CLI options; apply_at_defaults
    options.py        options_of: a function's settings as one dataclass (old keyword/positional calls still work)
    reprs.py          short reprs for objects a notebook prints (text first, counts, truncated lists)
    report/           what every result renders to: Section, Table, new_figure/save_figure, Report (summary.json + report.html)
    models/           one ModelAdapter over a TransformerLens HookedTransformer or an nnsight LanguageModel
    neurons.py        NeuronSet (the dimensions of one hook point; JSON save/load) and IoU: a leaf beside models/
    interventions/    the engine: hook primitives and position scopes, batched condition sweeps, generation under hooks
    tasks/            verifiable binary-reward tasks: grading, generators, dataset loaders, registry
    data/             rollouts → capture → activation store; the Store protocol, in-memory/rotated views, planted data
    analysis/         td, stats, value probes, pruning/value neurons, baselines, dopamine neurons, controls; and the
                      studies that run the engine: causal (ablation/dose/steering, TD trace under a hook), confidence
    sae/              sparse autoencoders on our activations (sae-lens SAE objects): training, metrics, saving, latent-removal hooks
    studies/          one package per command, each config → run(config) → typed Result → to_section; siblings:
      run/            the main job (``run``, ``probe``, ``architectures``): stages as typed results, cross-architecture comparison
      sae_td/         in-context RL, its Q-learning model and the SAE view of TD learning (``sae-td``)
      irm/            implicit reward models (Marks et al.): RLHF fine-tune, divergent layers, SAE pairs, linear IRM (``irm``)
      yfpo/           neuron-guided preference optimisation, YFPO (``yfpo``)
      applications/   what a practitioner does with value neurons: calibration, best-of-N, routing, detection,
                      monitoring (``applications``, ``compare``)
      calibrate/      a model's accuracy per task level with binomial intervals; the level in the 30-70% band (``calibrate``)
    cli.py            ``reward-circuits`` (one subcommand module per study)

The studies are siblings: none imports another.

Three lines from a store to an intervention::

    probe = ValueProbe().fit(store, store.hook_names)
    neurons = value_neurons(probe, "blocks.6.hook_resid_post")          # top 1% at 99% pruning
    adapter.run_with_hooks(tokens, fwd_hooks=[(neurons.hook_name, zero_ablate(neurons))])
"""

from .analysis import (ValueProbe, ValueProbeConfig, ablation_study, binary_auc, dopamine_metrics, dopamine_neurons,
                       dose_response, prune_curve, steering_study, td_errors, td_targets, value_neurons)
from .data import (ActivationStore, ActivationStoreWriter, ArrayRollouts, Rollout, Store, build_store,
                   generate_rollouts, load_rollouts, save_rollouts, write_store_from_arrays)
from .interventions import (activation_means, add_direction, generate_and_score, mean_ablate, patch_from,
                            resample_ablate, scale, zero_ablate)
from .models import GenerationConfig, ModelAdapter, TokenBatch, from_hf, load_model
from .neurons import NeuronSet, expected_random_iou, iou
from .studies.run import RunConfig, RunResult
from .studies.run import run_and_report as run  # the main job with its report, as `reward-circuits run`
from .report import Report, Section, Table
from .tasks import Example, Task, get_task

__version__ = "0.1.0"

__all__ = [
    "ActivationStore", "ActivationStoreWriter", "ArrayRollouts", "Example", "GenerationConfig", "ModelAdapter",
    "NeuronSet", "Report", "Rollout", "RunConfig", "RunResult", "Section", "Store", "Table", "Task", "TokenBatch", "ValueProbe",
    "ValueProbeConfig", "ablation_study", "activation_means", "add_direction", "binary_auc", "build_store",
    "dopamine_metrics", "dopamine_neurons", "dose_response", "expected_random_iou", "from_hf", "generate_and_score",
    "generate_rollouts", "get_task", "iou", "load_model", "load_rollouts", "mean_ablate", "patch_from",
    "prune_curve", "resample_ablate", "run", "save_rollouts", "scale", "steering_study", "td_errors", "td_targets",
    "value_neurons", "write_store_from_arrays", "zero_ablate",
]
