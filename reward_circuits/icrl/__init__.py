"""In-context reinforcement learning, a Q-learning model of it, and the SAE view of TD learning.

Reproduces, at this machine's scale, Demircan et al. (ICLR 2025), "Sparse Autoencoders Reveal
Temporal Difference Learning in Large Language Models".
"""

from .agent import (
                    ActionTokenError,
                    ActionTokens,
                    ContextSession,
                    Experiment,
                    StepRecord,
                    action_tokens,
                    choice_logprobs,
                    play,
                    play_many,
                    replay_logprobs,
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

__all__ = [
    "ENVIRONMENTS", "GAMMA", "PAPER_ALPHA", "ActionTokenError", "ActionTokens", "ContextSession", "Experiment", "GraphTask",
    "GridWorld", "IllegalActionError", "QLearningFit", "QTrace", "StepRecord", "StepResult", "TextEnvironment", "Trajectory",
    "TwoStepTask", "action_tokens", "choice_log_likelihood", "choice_logprobs", "make_environment", "play", "play_many",
    "q_learning_trace", "replay_logprobs", "word_list",
]
