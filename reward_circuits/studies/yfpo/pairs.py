"""Preference pairs from this library's rollouts: a correct and an incorrect answer to the same prompt."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from ...data.rollouts import Rollout


@dataclass(frozen=True)
class PreferencePair:
    """One DPO example: the rendered prompt, a correct (chosen) and an incorrect (rejected) response."""

    example_id: str
    prompt: str
    chosen: str
    rejected: str


def preference_pairs(rollouts: Sequence[Rollout], tokenizer, pairs_per_prompt: int = 2, seed: int = 0) -> list[PreferencePair]:
    """Pair distinct correct and incorrect responses of each prompt (at most ``pairs_per_prompt``,
    each response used at most once, chosen at random with ``seed``). Prompts whose samples are all
    right or all wrong give no pair."""
    if pairs_per_prompt < 1:
        raise ValueError("pairs_per_prompt must be >= 1.")
    by_prompt: dict[str, list[Rollout]] = defaultdict(list)
    for r in rollouts:
        by_prompt[r.example_id].append(r)
    rng = random.Random(seed)
    pairs: list[PreferencePair] = []
    for example_id, rs in by_prompt.items():
        right = list({r.response_text: r for r in rs if r.reward == 1.0 and r.response_text.strip()}.values())
        wrong = list({r.response_text: r for r in rs if r.reward == 0.0 and r.response_text.strip()}.values())
        rng.shuffle(right)
        rng.shuffle(wrong)
        prompt = tokenizer.decode(rs[0].prompt_ids)
        for c, w in list(zip(right, wrong))[:pairs_per_prompt]:
            pairs.append(PreferencePair(example_id, prompt, c.response_text, w.response_text))
    return pairs


def pairs_dataset(pairs: Sequence[PreferencePair]):
    """A ``datasets.Dataset`` with TRL's ``prompt`` / ``chosen`` / ``rejected`` columns (+ ``example_id``)."""
    from datasets import Dataset

    if not pairs:
        raise ValueError("no preference pairs: every prompt's samples were all right or all wrong. "
                         "Raise --samples-per-prompt or --train-prompts, or pick a task the model solves about half the time.")
    return Dataset.from_list([asdict(p) for p in pairs])


def tokenize_pairs(pairs: Sequence[PreferencePair], tokenizer) -> list[dict]:
    """TRL's tokenisation of text pairs (prompt ids; completion = prompt+response+EOS minus the
    prompt), for :class:`trl.trainer.dpo_trainer.DataCollatorForPreference`."""
    out = []
    eos = tokenizer.eos_token
    for p in pairs:
        prompt_ids = tokenizer(p.prompt, add_special_tokens=False)["input_ids"]
        row = {"prompt_ids": prompt_ids}
        for key, text in (("chosen_ids", p.chosen), ("rejected_ids", p.rejected)):
            full = tokenizer(p.prompt + text + eos, add_special_tokens=False)["input_ids"]
            row[key] = full[len(prompt_ids):]
        out.append(row)
    return out
