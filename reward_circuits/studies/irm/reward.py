"""The known reward of Marks et al.: the VADER sentiment lexicon summed over a completion's words.

``reward(text) = clip(sum(lexicon[w] for w in words(text)) / 5, -10, 10)``

- Lexicon: ``vader_lexicon.txt`` shipped inside the ``vaderSentiment`` package (7,506 entries,
  values in [-4, 4]), read offline through ``SentimentIntensityAnalyzer().lexicon``.
- Word tokenizer: lower-case the text, then the regular expression :data:`WORD_PATTERN`
  (runs of ASCII letters, optionally with one inner apostrophe: ``don't``). Words not in the
  lexicon score 0. Emoticons and the four multi-word entries (``can't stand``, ``fed up``, ...) are
  not matched. VADER's rules (negation, boosters, capitals) are *not* applied: the paper's reward is
  the plain lexicon sum, which is what an RL policy can learn to maximise token by token.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

WORD_PATTERN = re.compile(r"[a-z]+(?:'[a-z]+)?")
LEXICON_SCALE = 5.0
CLIP = 10.0


@functools.lru_cache(maxsize=1)
def vader_lexicon() -> dict[str, float]:
    """The VADER lexicon ``{token: mean valence}`` from the installed ``vaderSentiment`` package."""
    try:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    except ImportError as e:  # pragma: no cover - a declared dependency
        raise ImportError("the VADER reward needs `pip install vaderSentiment`.") from e
    return dict(SentimentIntensityAnalyzer().lexicon)


def words(text: str) -> list[str]:
    """The word tokens the reward scores (see the module docstring)."""
    return WORD_PATTERN.findall(text.lower())


@dataclass
class VaderReward:
    """Callable reward ``texts -> rewards`` (also usable as a TRL reward function).

    >>> VaderReward()(["a great film", "a terrible, boring film"]).round(2).tolist()
    [0.62, -0.68]
    """

    scale: float = LEXICON_SCALE
    clip: float = CLIP

    def __post_init__(self):
        if self.scale <= 0:
            raise ValueError(f"scale must be > 0, got {self.scale}.")
        if self.clip <= 0:
            raise ValueError(f"clip must be > 0, got {self.clip}.")

    @property
    def lexicon(self) -> dict[str, float]:
        return vader_lexicon()

    def raw_sum(self, text: str) -> float:
        """Sum of the lexicon values of the words of ``text`` (unscaled, unclipped)."""
        lx = self.lexicon
        return float(sum(lx.get(w, 0.0) for w in words(text)))

    def score(self, text: str) -> float:
        return float(np.clip(self.raw_sum(text) / self.scale, -self.clip, self.clip))

    def __call__(self, texts: Sequence[str] | str) -> np.ndarray:
        if isinstance(texts, str):
            texts = [texts]
        return np.array([self.score(t) for t in texts], dtype=np.float64)

    def trl_reward_function(self):
        """This reward with TRL's signature ``f(prompts, completions, **kw) -> list[float]``."""
        from .finetune import as_trl_reward

        return as_trl_reward(self, name="vader_reward")
