"""Contrastive (positive, neutral, negative) inputs and the feature activation deltas they produce.

Two constructions read the same triples:

- :func:`activation_deltas` (Marks et al.'s IRM): per triple, the *sentiment activation delta* of
  its positive word is ``+||f(positive) − f(neutral)||_2`` and of its negative word
  ``−||f(negative) − f(neutral)||_2``, where ``f`` is the SAE feature activations at the swapped
  word's tokens, concatenated over the selected layers; the regression input is the sentiment
  word's own ``f``. The sign comes from the slot the word fills (the triple's polarity), never from
  a lexicon *value*: nothing here reads VADER magnitudes.
- :func:`token_deltas` (the supervised "decodability ceiling"): per word, the mean feature
  difference word − neutral, with the word's lexicon value as its target.

A template sentence has one slot, ``"I thought the film was {w}."``; a *triple* fills it with a
positive lexicon word, a neutral word (not in the lexicon) and a negative lexicon word. The
templates and neutral words contain no lexicon word (tested), so the reward difference between
the filled sentences is exactly the swapped word's lexicon value. For every sentiment word we
average, over the templates it was placed in, the *delta* of a feature read-out between the
sentence with the word and the same template with its neutral word; a linear IRM then maps deltas
to lexicon values (:mod:`.irm_model`).

A feature read-out is any :class:`FeatureReader`: ``reader(texts, starts) -> [n_texts, n_features]``
where ``starts[i]`` is the token index of the swapped word in ``texts[i]``.
:class:`SAEFeatureReader` is the default: SAE latents at chosen hook points, averaged over the
swapped word's tokens and every token after it (positions before it are identical across a triple
in a causal model, so they carry no delta).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from jaxtyping import Float

from .reward import WORD_PATTERN, vader_lexicon

TEMPLATES = (
    "I thought the film was {w}.",
    "The acting in this movie was {w}, as expected.",
    "Overall, the story felt {w} to me.",
    "My brother said the ending was {w}.",
    "The soundtrack was {w} and the camera work was {w} too.",
    "In the end, the whole thing seemed {w}.",
    "The main character is {w} in every scene.",
    "It was a {w} evening at the cinema.",
)
NEUTRAL_WORDS = ("blue", "wooden", "square", "green", "tall", "round", "yellow", "metal", "printed", "weekly",
                 "northern", "plastic", "vertical", "daily", "annual", "purple")


class FeatureReader(Protocol):
    def __call__(self, texts: Sequence[str], starts: Sequence[int | str],
                 stops: Sequence[int | str] | None = None) -> Float[np.ndarray, "n features"]: ...


def sentiment_words(n_positive: int, n_negative: int, seed: int = 0, min_abs: float = 0.5) -> list[str]:
    """A seeded sample of single alphabetic lexicon words with ``|value| >= min_abs``."""
    lx = vader_lexicon()
    pool = sorted(w for w, v in lx.items() if WORD_PATTERN.fullmatch(w) and w.isalpha() and abs(v) >= min_abs)
    pos = [w for w in pool if lx[w] > 0]
    neg = [w for w in pool if lx[w] < 0]
    if n_positive > len(pos) or n_negative > len(neg):
        raise ValueError(f"asked for {n_positive}/{n_negative} words but the lexicon has {len(pos)}/{len(neg)} "
                         f"with |value| >= {min_abs}.")
    rng = random.Random(seed)
    return rng.sample(pos, n_positive) + rng.sample(neg, n_negative)


@dataclass(frozen=True)
class ContrastiveTriple:
    template: str
    positive: str
    neutral: str
    negative: str

    def texts(self) -> tuple[str, str, str]:
        return tuple(self.template.replace("{w}", w) for w in (self.positive, self.neutral, self.negative))

    def prefix(self) -> str:
        """Text before the first slot (its tokens are shared by the three sentences)."""
        return self.template.split("{w}")[0].rstrip(" ")

    def through_word(self) -> tuple[str, str, str]:
        """Each sentence's text up to the end of its first swapped word (where its word's tokens stop)."""
        head = self.template.split("{w}")[0]
        return tuple(head + w for w in (self.positive, self.neutral, self.negative))


def build_triples(words: Sequence[str], templates_per_word: int = 3, seed: int = 0,
                  templates: Sequence[str] = TEMPLATES, neutral_words: Sequence[str] = NEUTRAL_WORDS) -> list[ContrastiveTriple]:
    """Pair every positive word with a negative one (seeded), ``templates_per_word`` times in
    different templates, each time with a seeded neutral word. Unpaired words get a partner drawn
    again from the other side."""
    lx = vader_lexicon()
    pos = [w for w in words if lx.get(w, 0) > 0]
    neg = [w for w in words if lx.get(w, 0) < 0]
    if not pos or not neg:
        raise ValueError("need at least one positive and one negative lexicon word.")
    if templates_per_word > len(templates):
        raise ValueError(f"templates_per_word ({templates_per_word}) exceeds the {len(templates)} templates.")
    rng = random.Random(seed)
    n = max(len(pos), len(neg))
    triples = []
    for i in range(n):
        p = pos[i] if i < len(pos) else rng.choice(pos)
        q = neg[i] if i < len(neg) else rng.choice(neg)
        for t in rng.sample(list(templates), templates_per_word):
            triples.append(ContrastiveTriple(t, p, rng.choice(list(neutral_words)), q))
    return triples


@dataclass
class TokenDeltas:
    """Per sentiment word: its lexicon value and its mean feature delta (word − neutral)."""

    words: list[str]
    values: Float[np.ndarray, " n"]
    deltas: Float[np.ndarray, "n features"]
    n_contexts: list[int]


def token_deltas(triples: Sequence[ContrastiveTriple], reader: FeatureReader, batch_size: int = 64) -> TokenDeltas:
    """Feature deltas of every word of ``triples`` against its triple's neutral sentence, averaged
    over the word's triples."""
    texts, starts = [], []
    for tr in triples:
        texts.extend(tr.texts())
        starts.extend([tr.prefix()] * 3)
    feats = []
    for i in range(0, len(texts), batch_size):
        feats.append(np.asarray(reader(texts[i:i + batch_size], starts[i:i + batch_size]), dtype=np.float64))
    f = np.concatenate(feats).reshape(len(triples), 3, -1)
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    for k, tr in enumerate(triples):
        for word, row in ((tr.positive, f[k, 0] - f[k, 1]), (tr.negative, f[k, 2] - f[k, 1])):
            sums[word] = sums.get(word, 0) + row
            counts[word] = counts.get(word, 0) + 1
    lx = vader_lexicon()
    words = list(sums)
    return TokenDeltas(words, np.array([lx[w] for w in words]), np.stack([sums[w] / counts[w] for w in words]),
                       [counts[w] for w in words])


@dataclass
class ActivationDeltas:
    """One row per sentiment word occurrence (a triple's positive or negative slot): the word's
    concatenated SAE feature activations and its sentiment activation delta (signed by the slot)."""

    words: list[str]
    polarity: Float[np.ndarray, " n"]  # +1 positive slot, -1 negative slot
    features: Float[np.ndarray, "n features"]
    deltas: Float[np.ndarray, " n"]
    neutral_features: Float[np.ndarray, "n features"]  # the triple's neutral sentence at its neutral word

    def token_deltas(self) -> TokenDeltas:
        """Per word, the mean feature difference word − neutral (the decodability ceiling's input) with
        its VADER value (read here, for the supervised ceiling only)."""
        lx = vader_lexicon()
        sums: dict[str, list] = {}
        for w, row in zip(self.words, self.features - self.neutral_features):
            sums.setdefault(w, []).append(row)
        words = list(sums)
        return TokenDeltas(words, np.array([lx[w] for w in words]), np.stack([np.mean(sums[w], 0) for w in words]),
                           [len(sums[w]) for w in words])

    def __post_init__(self):
        n = len(self.words)
        if not (self.polarity.shape == (n,) and self.deltas.shape == (n,) and self.features.shape[0] == n):
            raise ValueError(f"ActivationDeltas needs one polarity, feature row and delta per word ({n}).")


def _read_all(texts, starts, stops, reader: FeatureReader, batch_size: int) -> np.ndarray:
    feats = []
    for i in range(0, len(texts), batch_size):
        sl = slice(i, i + batch_size)
        feats.append(np.asarray(reader(texts[sl], starts[sl], stops[sl]), dtype=np.float64))
    return np.concatenate(feats)


def activation_deltas(triples: Sequence[ContrastiveTriple], reader: FeatureReader, batch_size: int = 64) -> ActivationDeltas:
    """Marks et al.'s sentiment activation deltas: ``reader`` gives each sentence's feature
    activations at its swapped word (``starts``: the text before the word, ``stops``: the text through
    it); the positive word's delta is ``+||f_pos − f_neu||``, the negative word's ``−||f_neg − f_neu||``."""
    texts, starts, stops = [], [], []
    for tr in triples:
        texts.extend(tr.texts())
        starts.extend([tr.prefix()] * 3)
        stops.extend(tr.through_word())
    f = _read_all(texts, starts, stops, reader, batch_size).reshape(len(triples), 3, -1)
    pos = np.linalg.norm(f[:, 0] - f[:, 1], axis=1)
    neg = -np.linalg.norm(f[:, 2] - f[:, 1], axis=1)
    words = [w for tr in triples for w in (tr.positive, tr.negative)]
    return ActivationDeltas(words, np.tile([1.0, -1.0], len(triples)), f[:, [0, 2]].reshape(2 * len(triples), -1),
                            np.stack([pos, neg], 1).reshape(-1), np.repeat(f[:, 1], 2, axis=0))


class SAEFeatureReader:
    """SAE latents of ``adapter`` at the SAEs' hook points, mean-pooled from the swapped word on.

    ``saes`` maps a hook name to a sae-lens SAE; ``latents`` optionally keeps a subset of latent
    indices per hook (e.g. the high-similarity features). ``starts`` may be token indices or the
    text before the word (tokenised here: the word must follow a space so BPE keeps the prefix's
    tokens unchanged). ``stops`` (same forms, optional) ends the pooled window after the word's own
    tokens; without it the window runs to the end of the text. ``prefix`` (the model's BOS text, for
    Gemma 3) goes in front of every text and every text start/stop; integer starts/stops shift by its tokens.
    """

    def __init__(self, adapter, saes: Mapping[str, object], latents: Mapping[str, Sequence[int]] | None = None,
                 prefix: str = ""):
        self.adapter = adapter
        self.prefix = prefix
        self.n_prefix = len(adapter.tokenizer(prefix, add_special_tokens=False)["input_ids"]) if prefix else 0
        self.saes = dict(saes)
        adapter.validate_hooks(list(self.saes))
        self.latents = {h: torch.as_tensor(list(latents[h]), dtype=torch.long) for h in self.saes} if latents else None

    @property
    def feature_names(self) -> list[str]:
        out = []
        for h, sae in self.saes.items():
            idx = self.latents[h].tolist() if self.latents else range(int(sae.cfg.d_sae))
            out.extend(f"{h}:{i}" for i in idx)
        return out

    @torch.no_grad()
    def __call__(self, texts: Sequence[str], starts: Sequence[int | str],
                 stops: Sequence[int | str] | None = None) -> Float[np.ndarray, "n features"]:
        batch = self.adapter.tokenize([self.prefix + t for t in texts], padding_side="right")

        def index(s):  # texts are tokenised without special tokens (the adapter's default)
            if isinstance(s, int):
                return s + self.n_prefix
            return len(self.adapter.tokenizer(self.prefix + s, add_special_tokens=False)["input_ids"])

        starts = [index(s) for s in starts]
        lengths = batch.attention_mask.sum(1).tolist()
        stops = lengths if stops is None else [min(index(s), n) for s, n in zip(stops, lengths)]
        acts = self.adapter.capture(batch, list(self.saes))
        pos = torch.arange(batch.input_ids.shape[1], device=batch.input_ids.device)
        keep = torch.stack([(pos >= s) & (pos < e) for s, e in zip(starts, stops)]).float()  # [batch, pos]
        if (keep.sum(1) == 0).any():
            raise ValueError("a swapped word starts after the end of its text: check the starts.")
        out = []
        for h, sae in self.saes.items():
            f = sae.encode(acts[h].to(sae.device, sae.dtype))  # [batch, pos, d_sae]
            if self.latents is not None:
                f = f[..., self.latents[h]]
            pooled = (f * keep[..., None].to(f.device)).sum(1) / keep.sum(1, keepdim=True).to(f.device)
            out.append(pooled.float().cpu().numpy())
        return np.concatenate(out, axis=1)
