"""Tasks with verifiable binary rewards.

This module provides everything needed to pose questions to a small chat model
(default: SmolLM2-135M-Instruct) and to score its answers with a reward that is
*exactly* ``0.0`` or ``1.0``:

* answer extraction: :func:`extract_number`, :func:`numbers_equal`,
  :func:`extract_choice`, :func:`extract_math_answer`, :func:`math_answers_equal`;
* the containers :class:`Example` and :class:`Task`;
* seeded, dependency-free generators: :func:`arithmetic_task`,
  :func:`word_problem_task`, :func:`multiple_choice_task`;
* loaders for public benchmarks through :func:`datasets.load_dataset`
  (:func:`load_gsm8k`, :func:`load_math500`, :func:`load_arc`,
  :func:`load_mmlu_stem`), each of which also accepts a local
  ``.jsonl``/``.json``/``.parquet`` file or directory of the same schema;
* :func:`get_task`, which turns a short spec such as ``"arithmetic:2"``,
  ``"gsm8k"`` or ``"data/my.jsonl"`` into a :class:`Task`.

``datasets`` is imported lazily, only by the loaders.
"""

from __future__ import annotations

import dataclasses
import os
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from numbers import Real
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

__all__ = [
    "Example",
    "Task",
    "extract_number",
    "numbers_equal",
    "extract_choice",
    "extract_math_answer",
    "normalize_math_answer",
    "math_answers_equal",
    "numeric_reward",
    "choice_reward",
    "math_reward",
    "format_choices",
    "arithmetic_task",
    "word_problem_task",
    "multiple_choice_task",
    "load_gsm8k",
    "load_math500",
    "load_arc",
    "load_mmlu_stem",
    "load_local_task",
    "get_task",
    "BUILTIN_TASKS",
    "DATASET_LOADERS",
    "MMLU_STEM_SUBJECTS",
    "NUMERIC_INSTRUCTION",
    "CHOICE_INSTRUCTION",
    "MATH_INSTRUCTION",
]

NUMERIC_INSTRUCTION = "Give the final answer after '####'."
CHOICE_INSTRUCTION = "Answer with the letter of the correct option."
MATH_INSTRUCTION = "Put the final answer in \\boxed{}."

# --------------------------------------------------------------------------------------
# Shared text helpers
# --------------------------------------------------------------------------------------

# Characters used as a minus sign: U+2212 minus, U+2013 en dash, small/full-width hyphen-minus.
_MINUS_CHARS = "\u2212\u2013\ufe63\uff0d"
_MINUS_TABLE = str.maketrans({c: "-" for c in _MINUS_CHARS})


def _find_last_command_arg(text: str, commands: Sequence[str]) -> str | None:
    """Content of the last ``\\command{...}`` (balanced braces) among ``commands``.

    ``\\boxed 5`` (no braces) yields the next whitespace-delimited token. Returns
    ``None`` if no such command occurs or its braces are unbalanced.
    """
    best = -1
    best_cmd = ""
    for cmd in commands:
        for m in re.finditer(re.escape(cmd) + r"(?![A-Za-z])", text):
            if m.start() > best:
                best, best_cmd = m.start(), cmd
    if best < 0:
        return None
    i = best + len(best_cmd)
    while i < len(text) and text[i] in " \t":
        i += 1
    if i >= len(text):
        return None
    if text[i] != "{":
        m = re.match(r"[^\s$]+", text[i:])
        return m.group(0) if m else None
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j]
    return None


def _last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` / ``\\fbox{...}`` in ``text`` (or ``None``)."""
    return _find_last_command_arg(text, ("\\boxed", "\\fbox"))


def _frac_part(s: str) -> str:
    """Wrap a numerator/denominator in parentheses unless it is a single atom."""
    s = s.strip()
    if re.fullmatch(r"-?[A-Za-z0-9.]+|\\[A-Za-z]+(\{[^{}]*\})?", s):
        return s
    return f"({s})"


def _brace_group(text: str, i: int) -> tuple[str, int] | None:
    """Parse a ``{...}`` group (balanced) or a single non-space character at ``text[i:]``.

    Returns ``(content, index_after)`` or ``None``.
    """
    while i < len(text) and text[i] in " \t":
        i += 1
    if i >= len(text):
        return None
    if text[i] != "{":
        return (text[i], i + 1) if text[i] not in "}\\" else None
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j], j + 1
    return None


def _latex_fracs_to_slash(text: str) -> str:
    """Rewrite ``\\frac{a}{b}``, ``\\dfrac``, ``\\tfrac`` and ``\\frac34`` as ``a/b``.

    Braces may nest (``\\frac{\\sqrt{3}}{2}`` -> ``\\sqrt{3}/2``); nested fractions are
    rewritten innermost first. Composite parts are parenthesised (``(a+b)/2``).
    """
    text = re.sub(r"\\[dt]frac(?![A-Za-z])", r"\\frac", text)
    starts = [m.start() for m in re.finditer(r"\\frac(?![A-Za-z])", text)]
    for start in reversed(starts):  # a nested \frac always starts after its parent
        num = _brace_group(text, start + len("\\frac"))
        den = _brace_group(text, num[1]) if num else None
        if num is None or den is None:
            continue
        text = text[:start] + f"{_frac_part(num[0])}/{_frac_part(den[0])}" + text[den[1] :]
    return text


def _prep_numeric_text(text: str) -> str:
    """Normalise minus signs and common LaTeX so that plain-number regexes apply."""
    text = text.translate(_MINUS_TABLE)
    text = _latex_fracs_to_slash(text)
    text = text.replace("\\$", "$").replace("\\%", "%").replace("{,}", ",")
    text = re.sub(r"(?<=\d)\\,(?=\d{3})", ",", text)  # LaTeX thin-space thousands separator
    return text


# --------------------------------------------------------------------------------------
# Numeric answers (GSM8K style)
# --------------------------------------------------------------------------------------

_NUMBER_RE = re.compile(
    r"""
    (?P<s1>-[^\S\n]?)?            # minus sign, optionally followed by one space ("- 7")
    (?:\$[^\S\n]?)?               # dollar sign ("$1,200", "-$5")
    (?P<s2>-)?                    # "$-5"
    (?P<body>
        (?P<frac>\d+[^\S\n]*/[^\S\n]*\d+)             # 3/4
      | \d{1,3}(?:,\d{3})+(?!\d)(?:\.\d+)?            # 1,234,567.89
      | \d+(?:\.\d+)?                                 # 12, 3.50 (a trailing "." is not eaten)
      | \.\d+                                         # .5
    )
    """,
    re.VERBOSE,
)

_ANSWER_MARKER_RE = re.compile(
    r"\banswer\b[^\S\n]*(?:is|was|=|:|should\s+be|would\s+be|will\s+be|must\s+be)[^\S\n]*:?",
    re.IGNORECASE,
)


def _canonical_decimal(body: str) -> str:
    """``"1,234.50"`` -> ``"1234.5"``; ``"007"`` -> ``"7"``; ``".5"`` -> ``"0.5"``."""
    d = Decimal(body.replace(",", ""))
    if d == 0:
        return "0"
    s = format(d.normalize(), "f")
    return s


def _sign_is_unary(text: str, sign_start: int) -> bool:
    """Whether the ``-`` at ``sign_start`` is a negative sign rather than a binary minus/hyphen.

    It is binary (dropped) when glued to a preceding letter/digit (``x-7``, ``COVID-19``)
    or when, after skipping spaces, it follows a digit or a closing bracket (``12 - 7``).
    """
    if sign_start == 0:
        return True
    prev = text[sign_start - 1]
    if prev.isalnum() or prev == "_":
        return False
    j = sign_start - 1
    while j >= 0 and text[j] in " \t":
        j -= 1
    if j < 0:
        return True
    return not (text[j].isdigit() or text[j] in ")]}%")


def _find_numbers(text: str) -> list[str]:
    """All numbers in ``text`` (already pre-processed), normalised, in order of appearance."""
    out: list[str] = []
    for m in _NUMBER_RE.finditer(text):
        negative = m.group("s2") is not None
        if m.group("s1") is not None and _sign_is_unary(text, m.start("s1")):
            negative = True
        if m.group("frac") is not None:
            num, den = (int(p) for p in re.split(r"\s*/\s*", m.group("frac")))
            value = f"{num}/{den}"
            is_zero = num == 0
        else:
            try:
                value = _canonical_decimal(m.group("body"))
            except InvalidOperation:  # pragma: no cover - regex guarantees a valid literal
                continue
            is_zero = value == "0"
        out.append(f"-{value}" if negative and not is_zero else value)
    return out


def extract_number(text: str | None) -> str | None:
    """Extract the final numeric answer from a model response (GSM8K style).

    Priority (the first rule that yields a number wins):

    1. the last ``\\boxed{...}`` (or ``\\fbox{...}``): the last number inside it;
    2. the text after the last ``####``: the first number in it;
    3. the last "answer is X" / "Answer: X" / "answer = X" marker that is followed,
       on the same line, by a number: that first number;
    4. otherwise the last number anywhere in the text.

    Numbers are normalised: thousands separators removed (``"1,234"`` -> ``"1234"``, only
    for groups of exactly three digits), ``$`` and ``%`` dropped, unicode minus signs
    accepted (``"− 7"`` -> ``"-7"``), decimals canonicalised (``"3.50"`` -> ``"3.5"``,
    ``"12.0"`` -> ``"12"``), fractions kept as ``"a/b"`` (also from ``\\frac{a}{b}``) and
    a sentence-final period ignored (``"is 12."`` -> ``"12"``). A ``-`` that follows a
    digit (``"12 - 7"``) is read as subtraction, not as a negative sign.

    Returns ``None`` when the text contains no number.
    """
    if not text:
        return None
    t = _prep_numeric_text(str(text))

    boxed = _last_boxed(t)
    if boxed is not None:
        nums = _find_numbers(boxed)
        if nums:
            return nums[-1]

    idx = t.rfind("####")
    if idx != -1:
        nums = _find_numbers(t[idx + 4 :])
        if nums:
            return nums[0]

    for m in reversed(list(_ANSWER_MARKER_RE.finditer(t))):
        rest = t[m.end() :].lstrip()
        line = rest.split("\n", 1)[0]
        nums = _find_numbers(line)
        if nums:
            return nums[0]

    nums = _find_numbers(t)
    return nums[-1] if nums else None


def _to_fraction(value: Any) -> Fraction | None:
    """Parse ``value`` as an exact rational, or return ``None``."""
    if value is None:
        return None
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, Fraction)):
        return Fraction(value)
    s = _prep_numeric_text(str(value)).strip()
    s = re.sub(r"[\s,$%]", "", s)
    s = s.rstrip(".")
    if s.startswith("(") and s.endswith(")"):
        s = s[1:-1]
    if not s:
        return None
    try:
        return Fraction(s)
    except (ValueError, ZeroDivisionError, TypeError):
        return None


def numbers_equal(pred: str | None, gold: str) -> bool:
    """Exact numeric equality of two answer strings via :class:`fractions.Fraction`.

    ``"0.75" == "3/4"``, ``"12.0" == "12"``, ``"1,234" == "1234"``. Returns ``False`` when
    ``pred`` is ``None`` or either side cannot be parsed as a number.
    """
    a = _to_fraction(pred)
    b = _to_fraction(gold)
    return a is not None and b is not None and a == b


# --------------------------------------------------------------------------------------
# Multiple-choice answers
# --------------------------------------------------------------------------------------

# Letters that are also ordinary English words when written alone.
_WORD_LETTERS = frozenset({"A", "I"})
# Words that may follow a bare answer letter without making it prose ("A is correct").
_LETTER_CONNECTORS = frozenset(
    {"is", "was", "because", "since", "as", "seems", "looks", "would", "should", "must", "fits", "matches"}
)
_DECOR_BEFORE = "([*\"'`_"
_DECOR_AFTER = ")]*\"'`_:"

_EXPLICIT_CHOICE_RES = (
    # "The answer is (B)", "Answer: d", "final answer: **C**", "answer should be option B"
    re.compile(
        r"(?i:\banswer\b[^\S\n]*(?:(?:is|was|=|:|-|should\s+be|would\s+be|will\s+be|must\s+be)[^\S\n]*)*"
        r"(?:(?:option|choice|letter)[^\S\n]*:?[^\S\n]*)?)"
        r"[(\[*\"'`_]*[^\S\n]*(?P<l>[A-Za-z])(?![A-Za-z0-9'\u2019])"
    ),
    # "the correct option is C", "correct choice: (B)"
    re.compile(
        r"(?i:\bcorrect\s+(?:option|choice|letter)\b[^\S\n]*(?:(?:is|=|:|-)[^\S\n]*)*)"
        r"[(\[*\"'`_]*[^\S\n]*(?P<l>[A-Za-z])(?![A-Za-z0-9'\u2019])"
    ),
    # "I choose B", "I'll go with (C)", "I pick option D"
    re.compile(
        r"(?i:\b(?:choose|pick|select|go\s+with)[^\S\n]+(?:(?:option|choice|letter)[^\S\n]*:?[^\S\n]*)?)"
        r"[(\[*\"'`_]*[^\S\n]*(?P<l>[A-Za-z])(?![A-Za-z0-9'\u2019])"
    ),
    # "B is correct", "(C) is the right answer"  (upper-case letter only)
    re.compile(
        r"(?<![A-Za-z0-9'\u2019])[(\[*]*(?P<l>[A-Z])[)\]*]*[^\S\n]+(?:is|would\s+be|seems)[^\S\n]+"
        r"(?:(?:the|to\s+be)[^\S\n]+)?(?:correct|right|best|answer)\b"
    ),
)

_BARE_LETTER_RE = re.compile(r"(?<![A-Za-z0-9_'\u2019.\\])(?P<l>[A-Z])(?![A-Za-z0-9_'\u2019])")


def _looks_like_prose(text: str, start: int, end: int) -> bool:
    """Whether the letter at ``text[start:end]`` reads as an ordinary word ("A train leaves").

    Decorated letters (``(A)``, ``A)``, ``**A**``, ``A:``) are never prose. Otherwise the
    letter is prose if it is followed by whitespace and a lower-case word that is not a
    connector such as "is"/"because".
    """
    before = text[start - 1] if start > 0 else ""
    after = text[end] if end < len(text) else ""
    if (before and before in _DECOR_BEFORE) or (after and after in _DECOR_AFTER):
        return False
    m = re.match(r"[ \t]+([A-Za-z]+)", text[end:])
    if not m:
        return False
    word = m.group(1)
    return word[0].islower() and word.lower() not in _LETTER_CONNECTORS


def extract_choice(text: str | None, letters: str = "ABCD") -> str | None:
    """Extract a multiple-choice letter (returned upper-case) from a model response.

    Rules, in priority order:

    1. the whole response is a single letter, possibly decorated (``"b"``, ``"(C)."``,
       ``"**D**"``) -> that letter (case-insensitive);
    2. the last ``\\boxed{...}`` holding a letter (``\\boxed{A}``, ``\\boxed{\\text{(B)}}``);
    3. the *last* explicit statement: "answer is (B)", "Answer: d", "final answer: **C**",
       "the correct option is C", "I choose B", "B is correct". Lower-case letters are
       accepted only here (and in rule 1);
    4. otherwise the *last* standalone upper-case letter among ``letters``
       (``"B)"``, ``"(C)"``, ``"**C**"``, ``"... so D."``).

    Letters that are also English words ("A", "I") are ignored in rules 3-4 when they read
    as prose, i.e. when undecorated and followed by a lower-case word that is not a
    connector ("A train leaves" is prose; "A is correct", "A)" and a lone "A" are answers).
    Letters not in ``letters`` are never returned. Returns ``None`` if nothing matches.
    """
    if not text:
        return None
    letters = "".join(dict.fromkeys(str(letters).upper()))
    if not letters:
        return None
    t = str(text)

    def ok(letter: str) -> bool:
        return letter.upper() in letters

    # 1. lone letter
    core = re.sub(r"\\[A-Za-z]+", "", t)
    core = re.sub(r"[^A-Za-z0-9]", "", core)
    if len(core) == 1 and ok(core):
        return core.upper()

    # 2. boxed
    boxed = _last_boxed(t)
    if boxed is not None:
        inner = re.sub(r"\\[A-Za-z]+", "", boxed)
        m = re.match(r"[^A-Za-z0-9]*([A-Za-z])(?![A-Za-z0-9])", inner)
        if m and ok(m.group(1)):
            return m.group(1).upper()

    # 3. explicit statements: last one wins
    best: tuple[int, str] | None = None
    for rx in _EXPLICIT_CHOICE_RES:
        for m in rx.finditer(t):
            letter = m.group("l")
            if not ok(letter):
                continue
            s, e = m.span("l")
            if (letter.islower() or letter in _WORD_LETTERS) and _looks_like_prose(t, s, e):
                continue
            if best is None or s > best[0]:
                best = (s, letter.upper())
    if best is not None:
        return best[1]

    # 4. last standalone upper-case letter
    for m in reversed(list(_BARE_LETTER_RE.finditer(t))):
        letter = m.group("l")
        if not ok(letter):
            continue
        s, e = m.span("l")
        if letter in _WORD_LETTERS and _looks_like_prose(t, s, e):
            continue
        return letter
    return None


# --------------------------------------------------------------------------------------
# MATH-style (LaTeX) answers
# --------------------------------------------------------------------------------------


def normalize_math_answer(answer: str) -> str:
    """Light LaTeX normalisation for comparing MATH answers.

    Takes the content of a ``\\boxed{}`` if present, rewrites ``\\frac{a}{b}``/``\\dfrac``/
    ``\\tfrac`` as ``a/b``, unwraps ``\\text{...}``, drops ``$``, ``\\left``/``\\right``,
    LaTeX spacing, degree signs, ``%``, all whitespace, a trailing period, a leading
    ``x =``, and thousands commas inside plain numbers; canonicalises plain decimals.
    """
    s = str(answer).strip()
    boxed = _last_boxed(s)
    if boxed is not None:
        s = boxed
    s = s.translate(_MINUS_TABLE)
    s = s.replace("\\$", "").replace("$", "")
    s = re.sub(r"\\(?:text|textbf|textrm|mathrm|mbox|operatorname)\s*\{([^{}]*)\}", r"\1", s)
    s = re.sub(r"\\(?:left|right)(?![A-Za-z])", "", s)
    s = re.sub(r"\^\s*\{?\\circ\}?|°", "", s)
    s = re.sub(r"\\sqrt\s*(\d|[A-Za-z])", r"\\sqrt{\1}", s)
    s = _latex_fracs_to_slash(s)
    s = re.sub(r"\\[,;:! ]", "", s)
    s = s.replace("\\%", "").replace("%", "")
    s = re.sub(r"\s+", "", s)
    s = s.rstrip(".")
    s = re.sub(r"^[A-Za-z]=(?=[^=]+$)", "", s)
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", s):
        s = s.replace(",", "")
    if re.fullmatch(r"-?\d+\.\d+|-?\d+", s):
        neg = s.startswith("-")
        canon = _canonical_decimal(s.lstrip("-"))
        s = f"-{canon}" if neg and canon != "0" else canon
    return s


def extract_math_answer(text: str | None) -> str | None:
    """Extract a (possibly symbolic) final answer: last ``\\boxed{}``, else the rest of the
    line after the last "answer is"/"Answer:", else :func:`extract_number`."""
    if not text:
        return None
    t = str(text)
    boxed = _last_boxed(t)
    if boxed is not None and boxed.strip():
        return boxed.strip()
    for m in reversed(list(_ANSWER_MARKER_RE.finditer(t))):
        line = t[m.end() :].lstrip().split("\n", 1)[0].strip().rstrip(".").strip()
        if line:
            return line
    return extract_number(t)


def math_answers_equal(pred: str | None, gold: str) -> bool:
    """Compare two MATH answers after :func:`normalize_math_answer` (strings or numerically)."""
    if pred is None:
        return False
    a, b = normalize_math_answer(pred), normalize_math_answer(gold)
    if not a or not b:
        return False
    if a == b:
        return True
    fa, fb = _to_fraction(a), _to_fraction(b)
    return fa is not None and fb is not None and fa == fb


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
    """

    name: str
    examples: list[Example]
    reward_fn: Callable[[str, Example], float]
    system_prompt: str | None = None
    instruction: str = NUMERIC_INSTRUCTION
    max_new_tokens: int = 256

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

    def render(self, example: Example, tokenizer: Any) -> str:
        """Prompt string via ``tokenizer.apply_chat_template(..., add_generation_prompt=True)``."""
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
        """Score ``response`` with ``reward_fn``; raises ``ValueError`` unless it is 0.0 or 1.0."""
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


# --------------------------------------------------------------------------------------
# Seeded generators
# --------------------------------------------------------------------------------------


def _check_n(n: int, what: str) -> None:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"{what}: n must be a positive int, got {n!r}.")


def _unique_draws(n: int, draw: Callable[[], tuple[str, Any]], tries: int = 50) -> list[tuple[str, Any]]:
    """Call ``draw`` until ``n`` results with distinct keys are collected.

    ``draw`` returns ``(key, payload)``. If the space is exhausted (``tries`` misses in a row)
    duplicates are allowed so that small spaces with large ``n`` still work.
    """
    seen: set[str] = set()
    out: list[tuple[str, Any]] = []
    while len(out) < n:
        for _ in range(tries):
            key, payload = draw()
            if key not in seen:
                break
        seen.add(key)
        out.append((key, payload))
    return out


def _arithmetic_expression(rng: random.Random, difficulty: int) -> tuple[str, str, int]:
    """One expression as ``(display, python_expr, value)``; display uses ``×``."""
    while True:
        if difficulty in (1, 2):
            lo, hi = (0, 9) if difficulty == 1 else (10, 99)
            a, b = rng.randint(lo, hi), rng.randint(lo, hi)
            op = rng.choice("+-")
            if op == "-" and a < b:
                a, b = b, a
            expr = f"{a} {op} {b}"
        elif difficulty == 3:
            a, b, c = rng.randint(10, 99), rng.randint(2, 9), rng.randint(2, 9)
            expr = rng.choice(
                [f"{a} * {b}", f"{b} * {a}", f"{a} + {b} * {c}", f"{b} * {c} + {a}", f"{a} - {b} * {c}"]
            )
        elif difficulty == 4:
            a, b = rng.randint(2, 20), rng.randint(2, 20)
            c, d = rng.randint(2, 9), rng.randint(2, 20)
            expr = rng.choice(
                [
                    f"({a} + {b}) * {c} - {d}",
                    f"{a} * {c} + {b} * {rng.randint(2, 9)}",
                    f"{a} + {b} * {c} - {d}",
                    f"({a} - {b}) * {c} + {d}",
                    f"{c} * ({a} + {b}) - {d}",
                    f"{a} * {c} - {b} + {d}",
                ]
            )
        else:  # pragma: no cover - validated by caller
            raise ValueError(difficulty)
        value = _eval_int_expr(expr)
        if value >= 0:
            return expr.replace("*", "×"), expr, value


_INT_EXPR_TOKEN = re.compile(r"\s*(?:(\d+)|(.))")


def _eval_int_expr(expr: str) -> int:
    """Evaluate an integer expression with + - * and parentheses (no ``eval``)."""
    tokens = [(m.group(1), m.group(2)) for m in _INT_EXPR_TOKEN.finditer(expr) if m.group(0).strip()]
    pos = 0

    def peek() -> str | None:
        return tokens[pos][1] if pos < len(tokens) else None

    def atom() -> int:
        nonlocal pos
        num, op = tokens[pos]
        pos += 1
        if num is not None:
            return int(num)
        if op == "(":
            v = add()
            pos += 1  # ")"
            return v
        if op == "-":
            return -atom()
        raise ValueError(f"bad token {op!r} in {expr!r}")

    def mul() -> int:
        nonlocal pos
        v = atom()
        while peek() == "*":
            pos += 1
            v *= atom()
        return v

    def add() -> int:
        nonlocal pos
        v = mul()
        while peek() in ("+", "-"):
            op = peek()
            pos += 1
            v = v + mul() if op == "+" else v - mul()
        return v

    return add()


def arithmetic_task(
    n: int = 200,
    difficulty: int = 1,
    seed: int = 0,
    *,
    system_prompt: str | None = None,
    instruction: str = NUMERIC_INSTRUCTION,
    max_new_tokens: int = 128,
) -> Task:
    """Seeded arithmetic questions ("What is 7 + 5?") with a numeric reward.

    Difficulty: 1 = single-digit ``a + b`` / ``a - b``; 2 = two-digit ``+``/``-``;
    3 = two-digit × one-digit or mixed ``a + b × c``; 4 = three-operation expressions with
    parentheses. Answers are non-negative integers. Questions are distinct while the space
    allows. ``meta`` holds ``difficulty`` and ``expression`` (Python syntax).
    """
    def make(rng: random.Random) -> tuple[str, int, str]:
        display, expr, value = _arithmetic_expression(rng, difficulty)
        return f"What is {display}?", value, expr

    return _seeded_numeric_task("arithmetic_task", "arithmetic", make, n, difficulty, (1, 2, 3, 4), seed,
                                system_prompt=system_prompt, instruction=instruction, max_new_tokens=max_new_tokens)


_NAMES = (
    "Alice", "Ben", "Carla", "David", "Emma", "Farid", "Grace", "Hugo", "Ines", "Jack",
    "Kira", "Liam", "Maya", "Noah", "Olga", "Pedro", "Quinn", "Rosa", "Sam", "Tara",
)  # fmt: skip
_ITEMS = ("apples", "oranges", "marbles", "stickers", "pencils", "cookies", "cards", "shells", "books", "stamps")


def _gets_more(p: str, item: str, a: int, b: int) -> tuple[str, int, str]:
    return f"{p} has {a} {item}. {p} gets {b} more {item}. How many {item} does {p} have now?", a + b, f"{a} + {b}"


def _gives_away(p: str, q: str, item: str, a: int, b: int) -> tuple[str, int, str]:
    return f"{p} has {a} {item} and gives {b} of them to {q}. How many {item} does {p} have left?", a - b, f"{a} - {b}"


def _word_problem(rng: random.Random, difficulty: int) -> tuple[str, int, str]:
    """One templated word problem as ``(question, answer, python_expr)``."""
    p, q, r = rng.sample(_NAMES, 3)
    item = rng.choice(_ITEMS)
    ri = rng.randint
    if difficulty == 0:  # one addition/subtraction of single-digit numbers (the level of arithmetic:1)
        k = ri(0, 3)
        if k == 0:
            return _gets_more(p, item, ri(1, 9), ri(1, 9))
        if k == 1:
            a = ri(2, 9)
            return _gives_away(p, q, item, a, ri(1, a))
        if k == 2:
            a, b = ri(1, 9), ri(1, 9)
            return f"{p} has {a} {item} and {q} has {b} {item}. How many {item} do they have together?", a + b, f"{a} + {b}"
        a = ri(2, 9)
        b = ri(1, a)
        return f"{p} had {a} coins and lost {b} of them. How many coins does {p} have now?", a - b, f"{a} - {b}"
    if difficulty == 1:
        k = ri(0, 4)
        if k == 0:
            return _gets_more(p, item, ri(2, 20), ri(2, 20))
        if k == 1:
            a = ri(5, 20)
            return _gives_away(p, q, item, a, ri(2, a))
        if k == 2:
            a, b = ri(5, 30), ri(5, 30)
            return (
                f"{p} read {a} pages on Monday and {b} pages on Tuesday. How many pages did {p} read in total?",
                a + b,
                f"{a} + {b}",
            )
        if k == 3:
            a = ri(60, 150)
            b = ri(10, a - 5)
            return f"A movie is {a} minutes long. {p} has already watched {b} minutes. How many minutes are left?", a - b, f"{a} - {b}"
        a, b = ri(2, 30), ri(2, 30)
        return f"{p} had {a} coins and found {b} more. How many coins does {p} have now?", a + b, f"{a} + {b}"
    if difficulty == 2:
        k = ri(0, 4)
        if k == 0:
            a, b = ri(2, 9), ri(2, 12)
            return (
                f"{p} buys {a} bags of {item}. Each bag has {b} {item}. How many {item} does {p} buy?",
                a * b,
                f"{a} * {b}",
            )
        if k == 1:
            a, b = ri(10, 50), ri(2, 30)
            c = ri(2, a + b)
            return (
                f"{p} has {a} coins, finds {b} more, and then spends {c}. How many coins does {p} have now?",
                a + b - c,
                f"{a} + {b} - {c}",
            )
        if k == 2:
            a, b = ri(3, 25), ri(2, 9)
            return f"{p} reads {a} pages every day for {b} days. How many pages does {p} read?", a * b, f"{a} * {b}"
        if k == 3:
            a, b, c = ri(10, 45), ri(10, 45), ri(10, 45)
            return (
                f"{p} practices the piano for {a} minutes on Monday, {b} minutes on Tuesday and {c} minutes "
                f"on Wednesday. How many minutes does {p} practice in total?",
                a + b + c,
                f"{a} + {b} + {c}",
            )
        a = ri(10, 40)
        b = ri(2, a // 2)
        c = ri(1, a - b)
        return (
            f"{p} had {a} {item}. {p} gave {b} to {q} and {c} to {r}. How many {item} does {p} have left?",
            a - b - c,
            f"{a} - {b} - {c}",
        )
    # difficulty 3: two steps including a multiplication or division
    k = ri(0, 4)
    if k == 0:
        a, b, c = ri(2, 9), ri(3, 12), ri(2, 30)
        return (
            f"{p} buys {a} packs of {item} with {b} {item} in each pack. {p} already had {c} {item}. "
            f"How many {item} does {p} have now?",
            a * b + c,
            f"{a} * {b} + {c}",
        )
    if k == 1:
        a, b = ri(5, 20), ri(2, 7)
        c = a * b + ri(5, 100)
        return (
            f"A book has {c} pages. {p} reads {a} pages a day for {b} days. How many pages are left to read?",
            c - a * b,
            f"{c} - {a} * {b}",
        )
    if k == 2:
        a, b = ri(3, 15), ri(2, 8)
        c = ri(1, a * b)
        return (
            f"{p} earns {a} coins for every hour of work. {p} works {b} hours and then spends {c} coins. "
            f"How many coins does {p} have left?",
            a * b - c,
            f"{a} * {b} - {c}",
        )
    if k == 3:
        a, b = ri(10, 60), ri(2, 4)
        return (
            f"{p} walks for {a} minutes every day. How many minutes does {p} walk in {b} weeks?",
            a * 7 * b,
            f"{a} * 7 * {b}",
        )
    b, each, c = ri(2, 9), ri(2, 12), ri(1, 10)
    total = b * each
    return (
        f"{p} has {total} {item} and puts them equally into {b} boxes. Then {p} adds {c} more {item} "
        f"to each box. How many {item} are in each box now?",
        each + c,
        f"{total} // {b} + {c}",
    )


def word_problem_task(
    n: int = 200,
    difficulty: int = 1,
    seed: int = 0,
    *,
    system_prompt: str | None = None,
    instruction: str = NUMERIC_INSTRUCTION,
    max_new_tokens: int = 256,
) -> Task:
    """Seeded templated word problems (apples, coins, pages, minutes) with a numeric reward.

    Difficulty: 0 = one addition/subtraction of single-digit numbers; 1 = one addition/subtraction
    (numbers up to 150); 2 = one multiplication or two
    additions/subtractions; 3 = two steps including a multiplication or exact division.
    ``meta["expression"]`` holds the Python expression of the answer.
    """
    return _seeded_numeric_task("word_problem_task", "word_problems", lambda rng: _word_problem(rng, difficulty), n, difficulty,
                                (0, 1, 2, 3), seed, system_prompt=system_prompt, instruction=instruction,
                                max_new_tokens=max_new_tokens)


def _seeded_numeric_task(
    caller: str,
    source: str,
    make: Callable[[random.Random], tuple[str, int, str]],
    n: int,
    difficulty: int,
    levels: tuple[int, ...],
    seed: int,
    **task_kwargs: Any,
) -> Task:
    """A :class:`Task` of ``n`` distinct questions from ``make(rng) -> (question, answer, python_expr)``,
    seeded, with ids ``{source}-d{difficulty}-s{seed}-{i}`` and a numeric reward."""
    _check_n(n, caller)
    if difficulty not in levels:
        raise ValueError(f"{caller}: difficulty must be one of {', '.join(map(str, levels))}, got {difficulty!r}.")
    rng = random.Random(seed)

    def draw() -> tuple[str, Any]:
        question, value, expr = make(rng)
        return question, (value, expr)

    examples = [
        Example(
            id=f"{source}-d{difficulty}-s{seed}-{i:05d}",
            question=question,
            answer=str(value),
            meta={"difficulty": difficulty, "expression": expr, "source": source},
        )
        for i, (question, (value, expr)) in enumerate(_unique_draws(n, draw))
    ]
    return Task(name=f"{source}-d{difficulty}", examples=examples, reward_fn=numeric_reward, **task_kwargs)


# (question, answer) pairs of simple, stable facts with integer answers.
_FACTS: tuple[tuple[str, int], ...] = (
    ("How many days are in a week?", 7),
    ("How many legs does a spider have?", 8),
    ("How many sides does a triangle have?", 3),
    ("How many sides does a square have?", 4),
    ("How many sides does a pentagon have?", 5),
    ("How many sides does a hexagon have?", 6),
    ("How many sides does an octagon have?", 8),
    ("How many hours are in a day?", 24),
    ("How many minutes are in an hour?", 60),
    ("How many seconds are in a minute?", 60),
    ("How many months are in a year?", 12),
    ("How many days are in a leap year?", 366),
    ("How many days are in a non-leap year?", 365),
    ("How many legs does an insect have?", 6),
    ("How many arms does an octopus have?", 8),
    ("How many legs does a dog have?", 4),
    ("How many wheels does a tricycle have?", 3),
    ("How many cents are in a US dollar?", 100),
    ("How many years are in a century?", 100),
    ("How many years are in a decade?", 10),
    ("How many degrees are in a right angle?", 90),
    ("How many degrees are in a full circle?", 360),
    ("At how many degrees Celsius does water freeze at sea level?", 0),
    ("At how many degrees Celsius does water boil at sea level?", 100),
    ("How many planets are in the Solar System?", 8),
    ("How many continents are there on Earth?", 7),
    ("How many days are in September?", 30),
    ("How many strings does a standard guitar have?", 6),
    ("How many players does a soccer team have on the field?", 11),
    ("How many items are in a dozen?", 12),
)


def _near_distractors(rng: random.Random, value: int, k: int = 3) -> list[int]:
    """``k`` distinct wrong options close to ``value`` (same sign as ``value``)."""
    step = max(1, abs(value) // 10)
    candidates = sorted(
        {value + step * o for o in (-3, -2, -1, 1, 2, 3)} - {value},
    )
    if value >= 0:
        candidates = [c for c in candidates if c >= 0]
    return rng.sample(candidates, k)


def multiple_choice_task(
    n: int = 200,
    seed: int = 0,
    *,
    fact_fraction: float = 0.3,
    system_prompt: str | None = None,
    instruction: str = CHOICE_INSTRUCTION,
    max_new_tokens: int = 64,
) -> Task:
    """Seeded four-option (A-D) questions: arithmetic (difficulty 1-3) or simple facts.

    One option is correct and three distractors are near the correct value; the correct
    position is uniform. ``answer`` is the letter; ``meta`` holds ``choices`` (option
    strings in A-D order), ``letters``, ``value`` and ``kind`` ("arithmetic" or "fact").
    """
    _check_n(n, "multiple_choice_task")
    if not 0.0 <= fact_fraction <= 1.0:
        raise ValueError(f"multiple_choice_task: fact_fraction must be in [0, 1], got {fact_fraction!r}.")
    rng = random.Random(seed)
    letters = "ABCD"

    def draw() -> tuple[str, Any]:
        if rng.random() < fact_fraction:
            stem, value = rng.choice(_FACTS)
            kind, expr = "fact", None
        else:
            display, expr, value = _arithmetic_expression(rng, rng.randint(1, 3))
            stem, kind = f"What is {display}?", "arithmetic"
        options = _near_distractors(rng, value)
        pos = rng.randrange(4)
        options.insert(pos, value)
        return stem, (kind, expr, value, [str(o) for o in options], letters[pos])

    examples = []
    for i, (stem, (kind, expr, value, choices, letter)) in enumerate(_unique_draws(n, draw)):
        meta: dict[str, Any] = {"choices": choices, "letters": letters, "value": value, "kind": kind}
        if expr is not None:
            meta["expression"] = expr
        examples.append(
            Example(
                id=f"multiple_choice-s{seed}-{i:05d}",
                question=format_choices(stem, choices, letters),
                answer=letter,
                meta=meta,
            )
        )
    return Task(
        name="multiple_choice",
        examples=examples,
        reward_fn=choice_reward,
        system_prompt=system_prompt,
        instruction=instruction,
        max_new_tokens=max_new_tokens,
    )


# --------------------------------------------------------------------------------------
# Dataset loaders (Hugging Face datasets, or local files of the same schema)
# --------------------------------------------------------------------------------------

MMLU_STEM_SUBJECTS: tuple[str, ...] = (
    "abstract_algebra",
    "astronomy",
    "college_biology",
    "college_chemistry",
    "college_computer_science",
    "college_mathematics",
    "college_physics",
    "computer_security",
    "conceptual_physics",
    "electrical_engineering",
    "elementary_mathematics",
    "high_school_biology",
    "high_school_chemistry",
    "high_school_computer_science",
    "high_school_mathematics",
    "high_school_physics",
    "high_school_statistics",
    "machine_learning",
)
"""The MMLU subjects in the "STEM" category of the original MMLU release."""

_LOCAL_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}

_SCHEMAS = {
    "gsm8k": "fields 'question' and 'answer' (gold after '####', or the whole answer)",
    "math500": "fields 'problem' and 'answer'",
    "arc": "fields 'question', 'choices' {'text': [...], 'label': [...]} and 'answerKey'",
    "mmlu": "fields 'question', 'choices' (list of strings) and 'answer' (int index or letter)",
}


def _is_local_spec(path: str) -> bool:
    """Whether ``path`` names a local file/dir (existing or not) rather than a Hub dataset id."""
    p = str(path)
    if os.path.exists(os.path.expanduser(p)):
        return True
    if Path(p).suffix.lower() in _LOCAL_BUILDERS:
        return True
    return p.startswith(("/", "./", "../", "~", ".\\")) or "\\" in p or p.count("/") > 1


def _pick_split(ds: Any, split: str, source: str) -> Any:
    """Pick ``split`` from a ``DatasetDict`` (or its only split); pass a ``Dataset`` through."""
    if not hasattr(ds, "keys"):
        return ds
    keys = list(ds.keys())
    if split in keys:
        return ds[split]
    if len(keys) == 1:
        return ds[keys[0]]
    raise ValueError(f"Split {split!r} not found in {source!r}; available splits: {keys}.")


def _load_rows(
    path: str,
    *,
    name: str | None,
    split: str,
    expected: str,
    cache_dir: str | os.PathLike | None = None,
) -> Any:
    """Load one split as a ``datasets.Dataset`` from a local file/dir or the Hub.

    * existing local file: ``load_dataset("json"|"parquet", data_files=path)`` (its only split);
    * existing local directory: ``load_dataset(dir)`` (``dir/name`` if that sub-folder exists);
    * a path-like string that does not exist: ``FileNotFoundError``;
    * anything else: ``load_dataset(path, name, split=split)`` from the Hub.
    """
    import datasets  # lazy: heavy import, only needed here

    cache = str(cache_dir) if cache_dir is not None else None
    p = Path(os.path.expanduser(str(path)))
    if p.is_file():
        builder = _LOCAL_BUILDERS.get(p.suffix.lower())
        if builder is None:
            raise ValueError(
                f"Unsupported file type {p.suffix!r} for {str(p)!r}: use one of {sorted(_LOCAL_BUILDERS)} "
                f"with {expected}."
            )
        ds = datasets.load_dataset(builder, data_files=str(p), cache_dir=cache)
        return _pick_split(ds, split, str(p))
    if p.is_dir():
        if name and (p / name).is_dir():
            p = p / name
        ds = datasets.load_dataset(str(p), cache_dir=cache)
        return _pick_split(ds, split, str(p))
    if _is_local_spec(str(path)):
        raise FileNotFoundError(
            f"Local dataset {str(path)!r} not found. Expected an existing .jsonl/.json/.parquet file "
            f"(or a directory of them) with {expected}, or a Hugging Face Hub id."
        )
    return datasets.load_dataset(str(path), name, split=split, cache_dir=cache)


def _take(rows: list[Any], n: int | None, seed: int | None) -> list[Any]:
    """At most ``n`` rows: the first ``n`` (``seed=None``) or a seeded sample kept in order."""
    if n is None or n >= len(rows):
        return list(rows)
    if n < 1:
        raise ValueError(f"n must be >= 1 or None, got {n}.")
    if seed is None:
        return list(rows[:n])
    idx = sorted(random.Random(seed).sample(range(len(rows)), n))
    return [rows[i] for i in idx]


def _gsm8k_gold(answer: Any) -> str:
    """Gold number of a GSM8K answer: text after the last '####', commas stripped."""
    text = str(answer)
    if "####" in text:
        gold = text.rsplit("####", 1)[1].strip()
    else:
        gold = text.strip()
    gold = gold.replace(",", "").replace("$", "").strip().rstrip(".")
    if _to_fraction(gold) is None:
        extracted = extract_number(text)
        if extracted is not None:
            return extracted
    return gold


def _gsm8k_task(ds: Any, split: str, n: int | None, seed: int | None, **task_kwargs: Any) -> Task:
    rows = _take(list(enumerate(ds)), n, seed)
    examples = [
        Example(
            id=f"gsm8k-{split}-{i}",
            question=str(row["question"]),
            answer=_gsm8k_gold(row["answer"]),
            meta={"solution": str(row["answer"]), "source": "gsm8k", "index": i},
        )
        for i, row in rows
    ]
    task_kwargs.setdefault("instruction", "Solve the problem step by step, then give the final answer after '####'.")
    task_kwargs.setdefault("max_new_tokens", 512)
    return Task(name="gsm8k", examples=examples, reward_fn=numeric_reward, **task_kwargs)


def load_gsm8k(
    split: str = "test",
    path: str = "openai/gsm8k",
    n: int | None = None,
    *,
    seed: int | None = None,
    name: str = "main",
    cache_dir: str | os.PathLike | None = None,
    **task_kwargs: Any,
) -> Task:
    """GSM8K (fields ``question``, ``answer``); gold = text after ``####`` with commas stripped.

    ``path`` is a Hub id or a local ``.jsonl``/``.json``/``.parquet`` file or directory.
    ``n`` keeps at most ``n`` examples (first ``n``, or a seeded sample when ``seed`` is
    given). ``task_kwargs`` (``system_prompt``, ``instruction``, ``max_new_tokens``) go to
    :class:`Task`. Reward: :func:`numeric_reward`.
    """
    ds = _load_rows(path, name=name, split=split, expected=_SCHEMAS["gsm8k"], cache_dir=cache_dir)
    return _gsm8k_task(ds, split, n, seed, **task_kwargs)


def _math500_task(ds: Any, split: str, n: int | None, seed: int | None, **task_kwargs: Any) -> Task:
    rows = _take(list(enumerate(ds)), n, seed)
    examples = []
    for i, row in rows:
        meta = {k: row[k] for k in ("subject", "level", "unique_id", "solution") if k in row}
        meta.update(source="math500", index=i)
        examples.append(
            Example(id=f"math500-{split}-{i}", question=str(row["problem"]), answer=str(row["answer"]).strip(), meta=meta)
        )
    task_kwargs.setdefault("instruction", "Solve the problem step by step. " + MATH_INSTRUCTION)
    task_kwargs.setdefault("max_new_tokens", 1024)
    return Task(name="math500", examples=examples, reward_fn=math_reward, **task_kwargs)


def load_math500(
    split: str = "test",
    path: str = "HuggingFaceH4/MATH-500",
    n: int | None = None,
    *,
    seed: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    **task_kwargs: Any,
) -> Task:
    """MATH-500 (fields ``problem``, ``answer``); reward :func:`math_reward` (light LaTeX normalisation).

    ``path``/``n``/``seed``/``task_kwargs`` as in :func:`load_gsm8k`.
    """
    ds = _load_rows(path, name=None, split=split, expected=_SCHEMAS["math500"], cache_dir=cache_dir)
    return _math500_task(ds, split, n, seed, **task_kwargs)


def _mc_example(
    ex_id: str, question: str, choices: Sequence[str], gold_index: int, meta: Mapping[str, Any]
) -> Example:
    letters = "ABCDEFGHIJ"[: len(choices)]
    full_meta = {"choices": [str(c) for c in choices], "letters": letters, **meta}
    return Example(id=ex_id, question=format_choices(question, choices, letters), answer=letters[gold_index], meta=full_meta)


def _arc_task(ds: Any, split: str, n: int | None, seed: int | None, **task_kwargs: Any) -> Task:
    rows = _take(list(enumerate(ds)), n, seed)
    examples = []
    for i, row in rows:
        choices = row["choices"]
        texts, labels = list(choices["text"]), [str(x).strip() for x in choices["label"]]
        key = str(row["answerKey"]).strip()
        if key not in labels:
            raise ValueError(f"ARC row {i}: answerKey {key!r} not among labels {labels}.")
        meta = {"source": "arc", "index": i, "original_labels": labels}
        if "id" in row:
            meta["original_id"] = row["id"]
        examples.append(_mc_example(f"arc-{split}-{i}", str(row["question"]), texts, labels.index(key), meta))
    task_kwargs.setdefault("instruction", CHOICE_INSTRUCTION)
    task_kwargs.setdefault("max_new_tokens", 64)
    return Task(name="arc", examples=examples, reward_fn=choice_reward, **task_kwargs)


def load_arc(
    split: str = "test",
    path: str = "allenai/ai2_arc",
    name: str = "ARC-Challenge",
    n: int | None = None,
    *,
    seed: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    **task_kwargs: Any,
) -> Task:
    """AI2 ARC (``question``, ``choices{text,label}``, ``answerKey``) as multiple choice.

    Options are re-lettered A, B, C, ... in their given order (some ARC rows use numeric
    labels "1".."4" or have 3/5 options); ``meta["letters"]`` records the valid letters.
    ``name`` is the Hub config (``"ARC-Challenge"``/``"ARC-Easy"``); for a local directory
    it selects a sub-folder of that name if one exists. Reward: :func:`choice_reward`.
    """
    ds = _load_rows(path, name=name, split=split, expected=_SCHEMAS["arc"], cache_dir=cache_dir)
    return _arc_task(ds, split, n, seed, **task_kwargs)


def _mmlu_gold_index(answer: Any, n_choices: int) -> int:
    if isinstance(answer, str) and not answer.strip().isdigit():
        idx = "ABCDEFGHIJ".find(answer.strip().upper())
    else:
        idx = int(answer)
    if not 0 <= idx < n_choices:
        raise ValueError(f"MMLU answer {answer!r} out of range for {n_choices} choices.")
    return idx


def _mmlu_task(
    rows_with_subject: list[tuple[str, Any]], split: str, n: int | None, seed: int | None, **task_kwargs: Any
) -> Task:
    rows = _take(list(enumerate(rows_with_subject)), n, seed)
    examples = []
    for i, (subject, row) in rows:
        choices = list(row["choices"])
        gold = _mmlu_gold_index(row["answer"], len(choices))
        meta = {"source": "mmlu", "subject": subject, "index": i}
        examples.append(_mc_example(f"mmlu-{split}-{i}", str(row["question"]), choices, gold, meta))
    task_kwargs.setdefault("instruction", CHOICE_INSTRUCTION)
    task_kwargs.setdefault("max_new_tokens", 64)
    return Task(name="mmlu_stem", examples=examples, reward_fn=choice_reward, **task_kwargs)


def load_mmlu_stem(
    split: str = "test",
    path: str = "cais/mmlu",
    subjects: Sequence[str] | None = MMLU_STEM_SUBJECTS,
    n: int | None = None,
    *,
    seed: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    **task_kwargs: Any,
) -> Task:
    """MMLU STEM subjects (``question``, ``choices`` list, ``answer`` int) as multiple choice.

    From the Hub each subject is loaded as its own config. A local file (or directory) is
    loaded once and, if it has a ``subject`` column, filtered to ``subjects``; a local
    directory with one sub-folder per subject is also accepted. ``subjects=None`` keeps
    everything. Reward: :func:`choice_reward`.
    """
    expected = _SCHEMAS["mmlu"]
    wanted = list(subjects) if subjects is not None else None
    p = Path(os.path.expanduser(str(path)))
    rows: list[tuple[str, Any]] = []
    per_subject_dirs = p.is_dir() and wanted is not None and any((p / s).is_dir() for s in wanted)
    if per_subject_dirs or not _is_local_spec(str(path)):
        if wanted is None:
            wanted = ["all"]
        for subject in wanted:
            if per_subject_dirs and not (p / subject).is_dir():
                continue
            ds = _load_rows(str(p / subject) if per_subject_dirs else path, name=subject, split=split,
                            expected=expected, cache_dir=cache_dir)  # fmt: skip
            rows.extend((str(r.get("subject") or subject), r) for r in ds)
    else:
        ds = _load_rows(path, name=None, split=split, expected=expected, cache_dir=cache_dir)
        has_subject = "subject" in (ds.column_names or [])
        for r in ds:
            subject = str(r["subject"]) if has_subject else "unknown"
            if has_subject and wanted is not None and subject not in wanted:
                continue
            rows.append((subject, r))
    if not rows:
        raise ValueError(
            f"No MMLU rows for subjects {wanted} in {str(path)!r} (split {split!r}); expected {expected} "
            "and, for filtering, a 'subject' column."
        )
    return _mmlu_task(rows, split, n, seed, **task_kwargs)


def load_local_task(
    path: str | os.PathLike,
    n: int | None = None,
    seed: int | None = None,
    *,
    split: str = "test",
    cache_dir: str | os.PathLike | None = None,
    **task_kwargs: Any,
) -> Task:
    """Load a local ``.jsonl``/``.json``/``.parquet`` file (or directory), detecting its schema.

    Schemas, checked in this order: ARC (``choices`` dict + ``answerKey``), MMLU
    (``choices`` list + ``answer``), MATH (``problem`` + ``answer``), GSM8K/plain numeric
    (``question`` + ``answer``). The task is named after the file stem.
    """
    p = str(path)
    if not os.path.exists(os.path.expanduser(p)):
        raise FileNotFoundError(
            f"Local task file {p!r} not found. Expected a .jsonl/.json/.parquet file with one of: "
            + "; ".join(f"{k}: {v}" for k, v in _SCHEMAS.items())
            + "."
        )
    ds = _load_rows(p, name=None, split=split, expected="one of the supported schemas", cache_dir=cache_dir)
    cols = set(ds.column_names or [])
    stem = Path(p).stem or "local"
    if {"question", "choices", "answerKey"} <= cols:
        task = _arc_task(ds, split, n, seed, **task_kwargs)
    elif {"question", "choices", "answer"} <= cols:
        has_subject = "subject" in cols
        task = _mmlu_task([(str(r["subject"]) if has_subject else "unknown", r) for r in ds], split, n, seed,
                          **task_kwargs)  # fmt: skip
    elif {"problem", "answer"} <= cols:
        task = _math500_task(ds, split, n, seed, **task_kwargs)
    elif {"question", "answer"} <= cols:
        task = _gsm8k_task(ds, split, n, seed, **task_kwargs)
    else:
        raise ValueError(
            f"Cannot detect the schema of {p!r} (columns {sorted(cols)}). Expected one of: "
            + "; ".join(f"{k}: {v}" for k, v in _SCHEMAS.items())
            + "."
        )
    return dataclasses.replace(task, name=stem)


# --------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------

BUILTIN_TASKS: dict[str, Callable[..., Task]] = {
    "arithmetic": arithmetic_task,
    "word_problems": word_problem_task,
    "multiple_choice": multiple_choice_task,
}
"""Seeded generators, called as ``fn(n=..., seed=..., [difficulty=...])``."""

DATASET_LOADERS: dict[str, Callable[..., Task]] = {
    "gsm8k": load_gsm8k,
    "math500": load_math500,
    "arc": load_arc,
    "mmlu_stem": load_mmlu_stem,
}
"""Dataset loaders (need the Hub or a local copy), called as ``fn(n=..., seed=...)``."""

_ARC_CONFIGS = {"challenge": "ARC-Challenge", "easy": "ARC-Easy"}


def _valid_specs() -> str:
    return (
        "arithmetic[:1-4], word_problems[:0-3], multiple_choice, gsm8k, math500, arc[:challenge|easy], "
        "mmlu_stem, or a path to a local .jsonl/.json/.parquet file"
    )


def get_task(spec: str, n: int = 100, seed: int = 0, **kwargs: Any) -> Task:
    """Build a task from a short spec.

    * ``"arithmetic"``, ``"arithmetic:3"`` (difficulty 1-4), ``"word_problems"``,
      ``"word_problems:2"`` (0-3), ``"multiple_choice"``: seeded generators with ``n``
      examples;
    * ``"gsm8k"``, ``"math500"``, ``"arc"`` (``"arc:easy"``), ``"mmlu_stem"``: dataset
      loaders; at most ``n`` examples sampled with ``seed``;
    * a path to a local ``.jsonl``/``.json``/``.parquet`` file: :func:`load_local_task`.

    Extra ``kwargs`` are passed to the factory (e.g. ``system_prompt``, ``cache_dir``).
    Raises ``ValueError`` for an unknown spec, listing the valid ones.
    """
    raw = str(spec).strip()
    if os.path.exists(os.path.expanduser(raw)) or _is_local_spec(raw) or "/" in raw:
        return load_local_task(raw, n=n, seed=seed, **kwargs)
    key, _, arg = raw.partition(":")
    key = key.strip().lower().replace("-", "_")
    arg = arg.strip()
    if key in BUILTIN_TASKS:
        if arg:
            if key == "multiple_choice":
                raise ValueError(f"Task spec {spec!r}: multiple_choice takes no ':' argument.")
            try:
                kwargs["difficulty"] = int(arg)
            except ValueError:
                raise ValueError(f"Task spec {spec!r}: difficulty after ':' must be an integer.") from None
        return BUILTIN_TASKS[key](n=n, seed=seed, **kwargs)
    if key in DATASET_LOADERS:
        if arg:
            if key != "arc" or arg.lower() not in _ARC_CONFIGS:
                raise ValueError(f"Task spec {spec!r}: only 'arc:challenge' and 'arc:easy' take an argument.")
            kwargs["name"] = _ARC_CONFIGS[arg.lower()]
        return DATASET_LOADERS[key](n=n, seed=seed, **kwargs)
    raise ValueError(f"Unknown task spec {spec!r}. Valid specs: {_valid_specs()}.")
