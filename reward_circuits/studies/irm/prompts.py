"""Review prefixes to fine-tune and evaluate on: a seeded generator shipped with the package
(offline) and the IMDb reviews of the paper through ``datasets`` (needs a network once).

The generated openings are built from neutral parts (no word of them is in the VADER lexicon;
checked by a test), so the prompt itself contributes nothing to the reward and any sentiment
in ``prompt + completion`` comes from the completion.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

SUBJECTS = (
    "this movie", "this film", "the sequel", "this documentary", "the director's latest film",
    "this animated feature", "the remake", "this period drama", "the science fiction movie", "this western",
    "the spy film", "this courtroom drama", "the musical", "this indie film", "the family movie",
)
OPENINGS = (
    "I watched {s} last night and",
    "I saw {s} with my brother and",
    "After two hours of {s}, I",
    "My opinion of {s}:",
    "So I finally watched {s}, and",
    "Having seen {s} twice, I",
    "We rented {s} on Friday and",
    "Here is my review of {s}.",
    "I went into {s} knowing nothing, and",
    "The first thing to say about {s} is that",
    "Just got back from {s}. The",
    "Watching {s} on a Sunday afternoon, I",
    "To sum up {s} in a few words,",
    "I have mixed expectations for {s}, but",
    "The cast of {s}",
    "The story of {s}",
)


def review_openings(n: int, seed: int = 0) -> list[str]:
    """``n`` review openings (distinct while ``n`` ≤ 240, the number of combinations), seeded."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}.")
    combos = [o.format(s=s) for o in OPENINGS for s in SUBJECTS]
    rng = random.Random(seed)
    rng.shuffle(combos)
    out = list(combos)
    while len(out) < n:  # repeat (reshuffled) beyond the number of distinct openings
        more = list(combos)
        rng.shuffle(more)
        out.extend(more)
    return out[:n]


def imdb_prefixes(n: int, n_words: int = 8, split: str = "train", seed: int = 0) -> list[str]:
    """The paper's prompts: the first ``n_words`` words of ``n`` IMDb reviews (seeded sample).

    Needs ``datasets`` and a network (or a local HF cache of ``stanfordnlp/imdb``)."""
    if n < 1 or n_words < 1:
        raise ValueError("n and n_words must be >= 1.")
    try:
        from datasets import load_dataset

        ds = load_dataset("stanfordnlp/imdb", split=split)
    except Exception as e:
        raise RuntimeError(
            f"could not load IMDb ({type(e).__name__}: {e}). Offline, use the packaged generator: "
            "--prompts generated (review_openings)."
        ) from e
    idx = random.Random(seed).sample(range(len(ds)), min(n, len(ds)))
    texts = [ds[i]["text"].replace("<br />", " ") for i in idx]
    return [" ".join(t.split()[:n_words]) for t in texts]


def split_prompts(prompts: Sequence[str], fractions: Sequence[float], seed: int = 0) -> list[list[str]]:
    """Disjoint seeded splits (e.g. train / selection / evaluation) of distinct prompts."""
    if abs(sum(fractions) - 1.0) > 1e-9:
        raise ValueError(f"fractions must sum to 1, got {list(fractions)}.")
    items = list(dict.fromkeys(prompts))
    random.Random(seed).shuffle(items)
    out, start = [], 0
    for i, f in enumerate(fractions):
        stop = len(items) if i == len(fractions) - 1 else start + round(f * len(items))
        out.append(items[start:stop])
        start = stop
    return out
