"""Implicit reward models (Marks et al., "Interpreting Learned Feedback Patterns in Large Language Models").

The folder follows the study's data flow:

- :mod:`.reward`: the known reward, the VADER lexicon sum (:class:`VaderReward`).
- :mod:`.prompts`: review openings (seeded, packaged) and IMDb prefixes.
- :mod:`.finetune`: M_base → M_RLHF with TRL's GRPO + a LoRA (:func:`finetune_grpo`).
- :mod:`.divergence`: per-layer weight distance in full precision (:func:`layer_divergence`).
- :mod:`.dictionaries`: small/large SAE pairs per layer and model, :func:`mmcs`, shared features.
- :mod:`.diagnostics`: distinct-2, KL to the base, base perplexity and the reward-hack guard.
- :mod:`.contrastive`: (positive, neutral, negative) triples, sentiment activation deltas, feature deltas.
- :mod:`.irm_model`: the paper's :class:`DeltaIRM` (:func:`fit_delta_irm`), the decodability
  ceiling :class:`LinearIRM`, and :func:`paired_kendall`.
- :mod:`.implicit_reward`: the IRM scored against VADER per model and the base model as its control.
- :mod:`.ablation`: reward-related features (pluggable :class:`FeatureExplainer`), their ablation and
  random features matched on activation frequency.
- :mod:`.study`: :func:`run_irm`, the whole study → :class:`IrmResult` → the ``irm`` report section.
- :mod:`.commands`: ``reward-circuits irm``; :func:`write_irm_report` writes the report from the result.
"""

from .ablation import (
                       AblationResult,
                       AblationSettings,
                       CorrelationExplainer,
                       FeatureExplainer,
                       LatentStatistics,
                       latent_statistics,
                       matched_random_features,
                       ablation_hooks,
                       completion_features,
                       random_features_like,
                       rewards_per_prompt,
                       run_ablation,
                       top_features,
)
from .config import IrmConfig
from .contrastive import (
                       ActivationDeltas,
                       ContrastiveTriple,
                       activation_deltas,
                       FeatureReader,
                       SAEFeatureReader,
                       TokenDeltas,
                       build_triples,
                       sentiment_words,
                       token_deltas,
)
from .dictionaries import (
                       DictionaryPair,
                       DictionarySet,
                       mmcs,
                       shared_features,
                       text_activations,
                       train_dictionary_pair,
)
from .divergence import (
                       LayerDivergence,
                       PrecisionError,
                       full_precision_state,
                       layer_divergence,
)
from .finetune import FinetuneConfig, FinetuneResult, finetune_grpo
from .diagnostics import (
                       FinetuneDiagnostics,
                       GuardConfig,
                       RewardHackError,
                       check_not_reward_hack,
                       distinct_n,
                       kl_and_base_perplexity,
)
from .implicit_reward import BaseControl, ReconstructedLexicon, compare_to_base, reconstruct_lexicon
from .irm_model import DeltaIRM, DeltaIrmFit, KendallResult, LinearIRM, fit_delta_irm, paired_kendall, reconstruction_table
from .prompts import imdb_prefixes, review_openings, split_prompts
from .reward import VaderReward, vader_lexicon, words
from .commands import write_irm_report
from .study import IrmFit, IrmResult, RewardShift, run_irm

# the shape every study shares: ``Config`` → ``run(config) -> Result`` → ``Result.to_section(out)``
Config, Result, run = IrmConfig, IrmResult, run_irm

__all__ = [
    "Config", "Result", "run",
    "ActivationDeltas", "BaseControl", "DeltaIRM", "DeltaIrmFit", "FinetuneDiagnostics", "GuardConfig", "LatentStatistics",
    "ReconstructedLexicon", "RewardHackError", "activation_deltas", "check_not_reward_hack", "compare_to_base",
    "distinct_n", "fit_delta_irm", "kl_and_base_perplexity", "latent_statistics", "matched_random_features",
    "reconstruct_lexicon",
    "AblationResult", "AblationSettings", "ContrastiveTriple", "CorrelationExplainer", "DictionaryPair", "DictionarySet", "FeatureExplainer",
    "FeatureReader", "FinetuneConfig", "FinetuneResult", "IrmConfig", "IrmFit", "IrmResult", "KendallResult",
    "LayerDivergence", "LinearIRM", "PrecisionError", "RewardShift", "SAEFeatureReader", "TokenDeltas", "VaderReward",
    "ablation_hooks", "build_triples", "completion_features", "finetune_grpo", "full_precision_state", "imdb_prefixes",
    "layer_divergence", "mmcs", "paired_kendall", "random_features_like", "reconstruction_table", "review_openings",
    "rewards_per_prompt", "run_ablation", "run_irm", "sentiment_words", "shared_features", "split_prompts",
    "text_activations", "token_deltas", "top_features", "train_dictionary_pair", "vader_lexicon", "words", "write_irm_report",
]
