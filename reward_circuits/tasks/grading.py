"""Answer extraction and comparison: numbers (GSM8K style), multiple-choice letters, LaTeX (MATH).

Every function here is pure text → text; the task rewards in :mod:`reward_circuits.tasks.base` are built on them.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any, Sequence

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


_MAX_EXPONENT = 1000  # decimal exponents beyond this are not parsed (exact expansion would hang)


def to_fraction(value: Any) -> Fraction | None:
    """Parse ``value`` as an exact rational, or return ``None``.

    Scientific notation with an exponent beyond ±1000 (``"1e9999999"``) is not parsed: expanding
    it exactly takes minutes, and no task's answer is that large.
    """
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
    exponent = re.search(r"[eE]([+-]?[\d_]+)$", s)  # Fraction also reads "1e9_999_999"
    digits = exponent.group(1).lstrip("+-").replace("_", "") if exponent else ""
    if digits and (len(digits) > 6 or int(digits) > _MAX_EXPONENT):
        return None  # "1e9999999" would take minutes to expand exactly; no answer is that large
    try:
        return Fraction(s)
    except (ValueError, ZeroDivisionError, TypeError):
        return None


def numbers_equal(pred: str | None, gold: str) -> bool:
    """Exact numeric equality of two answer strings via :class:`fractions.Fraction`.

    ``"0.75" == "3/4"``, ``"12.0" == "12"``, ``"1,234" == "1234"``. Returns ``False`` when
    ``pred`` is ``None`` or either side cannot be parsed as a number.
    """
    a = to_fraction(pred)
    b = to_fraction(gold)
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
    fa, fb = to_fraction(a), to_fraction(b)
    return fa is not None and fb is not None and fa == fb


