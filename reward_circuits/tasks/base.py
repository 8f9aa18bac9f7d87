"""The containers :class:`Example` and :class:`Task` and the binary rewards built on :mod:`.grading`."""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from dataclasses import dataclass, field
from numbers import Real
from typing import Any, Callable, Iterator, Sequence

from ..reprs import short_text
from .grading import NUMERIC_INSTRUCTION, extract_choice, extract_math_answer, extract_number, math_answers_equal, numbers_equal

FEW_SHOT_STOP = "\nQuestion:"
"""Where a few-shot answer ends (:meth:`Task.few_shot_prompt`)."""



def bos_prefix(tokenizer: Any) -> str | None:
    """The BOS token text when ``tokenizer`` puts BOS in front of what it encodes with special
    tokens (what the model was trained to see first), else ``None``. Read from the encoding, not
    ``add_bos_token``: transformers 5 reports ``False`` for Gemma 3, whose post-processor adds it."""
    bos, bos_id = getattr(tokenizer, "bos_token", None), getattr(tokenizer, "bos_token_id", None)
    if not bos:
        return None
    if callable(tokenizer) and bos_id is not None:
        try:
            return bos if list(tokenizer("a")["input_ids"][:1]) == [bos_id] else None
        except Exception:  # an exotic tokenizer: fall back on its flag
            pass
    return bos if getattr(tokenizer, "add_bos_token", True) else None


# --------------------------------------------------------------------------------------
# Examples and tasks
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Example:
    """One question with its gold answer.

    ``answer`` is a normalised string: a number for numeric tasks, a letter for
    multiple-choice tasks, a LaTeX answer for MATH. ``meta`` holds extra information,
    e.g. ``difficulty``, ``choices``, ``letters`` (valid option letters), ``source``.
    """

    id: str
    question: str
    answer: str
    meta: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"Example({self.id!r}, question={short_text(self.question, 80)}, answer={short_text(self.answer, 40)})"


def numeric_reward(response: str, example: Example) -> float:
    """1.0 iff :func:`extract_number` of ``response`` equals ``example.answer`` numerically."""
    return 1.0 if numbers_equal(extract_number(response), example.answer) else 0.0


def choice_reward(response: str, example: Example) -> float:
    """1.0 iff :func:`extract_choice` (with ``example.meta["letters"]``, default ABCD) matches."""
    letters = str(example.meta.get("letters", "ABCD"))
    pred = extract_choice(response, letters)
    return 1.0 if pred is not None and pred == example.answer.strip().upper() else 0.0


def math_reward(response: str, example: Example) -> float:
    """1.0 iff :func:`extract_math_answer` matches ``example.answer`` (see :func:`math_answers_equal`)."""
    return 1.0 if math_answers_equal(extract_math_answer(response), example.answer) else 0.0


@dataclass
class Task:
    """A named list of examples with a binary reward.

    Attributes:
        name: short identifier, e.g. ``"arithmetic-d2"``.
        examples: non-empty list of :class:`Example` with unique ids.
        reward_fn: ``(response, example) -> float``; must return exactly 0.0 or 1.0.
        system_prompt: optional system message (``None``: no system message, so the chat
            template's default applies).
        instruction: text appended (after a blank line) to every question.
        max_new_tokens: suggested generation budget for this task.
        few_shot: solved examples shown before the question when the tokenizer has no chat
            template (base models such as Gemma 3 270M), see :meth:`few_shot_prompt`.
    """

    name: str
    examples: list[Example]
    reward_fn: Callable[[str, Example], float]
    system_prompt: str | None = None
    instruction: str = NUMERIC_INSTRUCTION
    max_new_tokens: int = 256
    few_shot: int = 3

    def __post_init__(self) -> None:
        self.examples = list(self.examples)
        if not self.examples:
            raise ValueError(
                f"Task '{self.name}' has no examples: pass a non-empty list of Example objects "
                "(for a generator use n >= 1; for a dataset check the path, split and filters)."
            )
        wrong = sorted({type(e).__name__ for e in self.examples if not isinstance(e, Example)})
        if wrong:
            raise TypeError(f"Task '{self.name}': examples must be Example instances, got {wrong}.")
        dups = [i for i, c in Counter(e.id for e in self.examples).items() if c > 1]
        if dups:
            shown = ", ".join(repr(d) for d in dups[:5]) + (" ..." if len(dups) > 5 else "")
            raise ValueError(
                f"Task '{self.name}' has duplicate example ids ({len(dups)}): {shown}. "
                "Give every Example a unique id."
            )
        if not callable(self.reward_fn):
            raise TypeError(f"Task '{self.name}': reward_fn must be callable, got {self.reward_fn!r}.")
        if int(self.max_new_tokens) < 1:
            raise ValueError(f"Task '{self.name}': max_new_tokens must be >= 1, got {self.max_new_tokens}.")

    def __repr__(self) -> str:
        return f"Task({self.name!r}, {len(self.examples)} examples, max_new_tokens={self.max_new_tokens})"

    # -- prompts ---------------------------------------------------------------------
    def user_message(self, example: Example) -> str:
        """The user turn: the question followed by the task instruction."""
        if self.instruction:
            return f"{example.question}\n\n{self.instruction}"
        return example.question

    def format_prompt(self, example: Example) -> list[dict[str, str]]:
        """Chat messages for ``example``: an optional system message and the user turn."""
        messages: list[dict[str, str]] = []
        if self.system_prompt:
            messages.append({"role": "system", "content": self.system_prompt})
        messages.append({"role": "user", "content": self.user_message(example)})
        return messages

    def few_shot_prompt(self, example: Example) -> str:
        """Plain-text prompt for a base model: ``few_shot`` solved examples of this task (never
        ``example`` itself), each ``Question: ...\nAnswer: <answer in the instructed format>``, then
        the question."""
        shots = [e for e in self.examples if e.id != example.id][: self.few_shot]
        blocks = [f"Question: {self.user_message(e)}\nAnswer: {self.demonstration_answer(e)}" for e in shots]
        return "\n\n".join([*blocks, f"Question: {self.user_message(example)}\nAnswer:"])

    def demonstration_answer(self, example: Example) -> str:
        """``example``'s gold answer written the way :attr:`instruction` asks for it, after its worked
        expression when the answer is an integer and ``meta["expression"]`` has one
        (``"7 - 3 = 4. #### 4"``; a multiple-choice letter gets none): Gemma 3 270M copies
        the shots' form, and writing the sum out first lifted its few-shot accuracy (60 questions,
        greedy) from 0.20 to 0.48 on ``arithmetic:1`` and from 0.13 to 0.35 on ``word_problems:0``."""
        expr = (example.meta or {}).get("expression")
        if isinstance(expr, str) and expr and str(example.answer).lstrip("-").isdigit():  # numeric answers only
            work = expr.replace("//", "÷").replace("*", "×")
            return f"{work} = {example.answer}. {self._final_answer(example)}"
        return self._final_answer(example)

    def _final_answer(self, example: Example) -> str:
        if "####" in self.instruction:
            return f"#### {example.answer}"
        if "\\boxed" in self.instruction:
            return f"\\boxed{{{example.answer}}}"
        return f"The answer is {example.answer}."

    def render(self, example: Example, tokenizer: Any) -> str:
        """Prompt string via ``tokenizer.apply_chat_template(..., add_generation_prompt=True)``, or
        :meth:`few_shot_prompt` when the tokenizer has no chat template (a base model), after the
        tokenizer's BOS token when it adds one (prompts are tokenized without special tokens)."""
        if getattr(tokenizer, "chat_template", None) is None:
            # prompts are tokenized without special tokens (a chat template writes its own); a base
            # model that expects BOS (Gemma 3 without it copies the last shot's answer) gets it here
            return (bos_prefix(tokenizer) or "") + self.few_shot_prompt(example)
        out = tokenizer.apply_chat_template(
            self.format_prompt(example), tokenize=False, add_generation_prompt=True
        )
        if not isinstance(out, str):
            raise TypeError(
                f"tokenizer.apply_chat_template(tokenize=False) returned {type(out).__name__}, expected str."
            )
        return out

    # -- reward ----------------------------------------------------------------------
    def reward(self, response: str, example: Example) -> float:
        """Score ``response`` with ``reward_fn``; raises ``ValueError`` unless it is 0.0 or 1.0.

        A base model prompted few-shot goes on to write the next ``Question:``; only the text
        before it is the answer."""
        response = response.split(FEW_SHOT_STOP)[0]
        value = self.reward_fn(response, example)
        try:
            as_float = float(value) if isinstance(value, Real) or hasattr(value, "__float__") else None
        except (TypeError, ValueError):
            as_float = None
        if as_float is None or as_float not in (0.0, 1.0):
            raise ValueError(
                f"Task '{self.name}': reward_fn returned {value!r} for example {example.id!r}; "
                "rewards must be exactly 0.0 or 1.0 (binary, verifiable). Threshold or round "
                "inside reward_fn if it computes a score."
            )
        return as_float

    # -- container -------------------------------------------------------------------
    @property
    def distinct_questions(self) -> int:
        """How many distinct questions the task holds (copies of one question are not independent
        evidence); see :func:`reward_circuits.tasks.distinct_prompts` for a spec's promise."""
        return len({e.question for e in self.examples})

    def __len__(self) -> int:
        return len(self.examples)

    def __iter__(self) -> Iterator[Example]:
        return iter(self.examples)

    def head(self, n: int) -> "Task":
        """A copy of the task with the first ``n`` examples (``n`` >= 1)."""
        if n < 1:
            raise ValueError(f"head(n) needs n >= 1, got {n}.")
        return dataclasses.replace(self, examples=self.examples[:n])

    def subset(self, n: int, seed: int = 0) -> "Task":
        """A copy with ``n`` examples drawn without replacement by ``random.Random(seed)``.

        Raises ``ValueError`` if ``n`` is not in ``1..len(self)``.
        """
        if not 1 <= n <= len(self.examples):
            raise ValueError(f"subset(n) needs 1 <= n <= {len(self.examples)} for task '{self.name}', got {n}.")
        picked = random.Random(seed).sample(self.examples, n)
        return dataclasses.replace(self, examples=picked)


def format_choices(question: str, choices: Sequence[str], letters: str = "ABCD") -> str:
    """``question`` followed by one ``"X) choice"`` line per option."""
    if len(choices) > len(letters):
        raise ValueError(f"{len(choices)} choices but only letters {letters!r}.")
    lines = [f"{letters[i]}) {str(c).strip()}" for i, c in enumerate(choices)]
    return question.rstrip() + "\n\n" + "\n".join(lines)


