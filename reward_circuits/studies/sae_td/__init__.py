"""In-context reinforcement learning, a Q-learning model of it, and the SAE view of TD learning.

Reproduces, at this machine's scale, Demircan et al. (ICLR 2025), "Sparse Autoencoders Reveal
Temporal Difference Learning in Large Language Models" (no public code exists for it).

- :mod:`.environments`: text tasks (:class:`TwoStepTask`, :class:`GridWorld`, :class:`GraphTask`),
  seeded, with ``reset`` / ``step`` / ``render_history``; illegal actions raise :class:`IllegalActionError`.
- :mod:`.agent`: the model acts by next-token choice among the legal action tokens
  (:func:`play`, :func:`play_many` batched in one KV-cached :class:`ContextSession`).
- :mod:`.qlearning`: Q-learning TD errors / Q-values (:func:`q_learning_trace`) and the maximum
  likelihood (α, β) fit of the model's choices (:class:`QLearningFit`).
- :mod:`.correlation`: best single feature chosen on some experiments, scored on others.
- :mod:`.study`: :class:`SAETDConfig` and :func:`run_sae_td` (the ``reward-circuits sae-td`` command),
  returning :class:`SAETDResult` whose ``section(out_dir)`` is the report section ``sae_td``.
"""

from .agent import (
                    ActionTokenError,
                    ActionTokens,
                    ContextSession,
                    Experiment,
                    PlaySettings,
                    StepRecord,
                    action_tokens,
                    choice_logprobs,
                    play,
                    play_many,
                    replay_logprobs,
)
from .correlation import (
                    FeatureChoice,
                    best_feature,
                    paired_abs_corr_diff,
                    partial_abs_corr,
                    ridge_probe_corr,
)
from .environments import (
                    ENVIRONMENTS,
                    GraphTask,
                    GridWorld,
                    IllegalActionError,
                    StepResult,
                    TextEnvironment,
                    TwoStepTask,
                    make_environment,
                    word_list,
)
from .qlearning import (
                    GAMMA,
                    PAPER_ALPHA,
                    QLearningFit,
                    QTrace,
                    Trajectory,
                    choice_log_likelihood,
                    q_learning_trace,
)
from .results import (
                    InterventionResult,
                    LayerResult,
                    SAETDResult,
                    TargetCorrelation,
                    TaskResult,
)
from .study import (
                    SAETDConfig,
                    matched_random_latents,
                    run_sae_td,
                    run_task,
                    shuffled_episode_ids,
)

# the shape every study shares: ``Config`` → ``run(config) -> Result`` → ``Result.to_section(out)``
Config, Result, run = SAETDConfig, SAETDResult, run_sae_td

__all__ = [
    "Config", "Result", "run",
    "ENVIRONMENTS", "GAMMA", "PAPER_ALPHA", "ActionTokenError", "ActionTokens", "ContextSession", "Experiment",
    "FeatureChoice", "GraphTask", "GridWorld", "IllegalActionError", "InterventionResult", "LayerResult", "PlaySettings", "QLearningFit",
    "QTrace", "SAETDConfig", "SAETDResult", "StepRecord", "StepResult", "TargetCorrelation", "TaskResult",
    "TextEnvironment", "Trajectory", "TwoStepTask", "action_tokens", "best_feature", "choice_log_likelihood",
    "choice_logprobs", "make_environment", "matched_random_latents", "paired_abs_corr_diff", "partial_abs_corr", "play",
    "play_many", "q_learning_trace", "replay_logprobs", "ridge_probe_corr", "run_sae_td", "run_task",
    "shuffled_episode_ids", "word_list",
]
