"""Seeded, dependency-free task generators: arithmetic, word problems, multiple choice."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from .base import Example, Task, format_choices, numeric_reward, choice_reward
from .grading import CHOICE_INSTRUCTION, NUMERIC_INSTRUCTION

# --------------------------------------------------------------------------------------
# Seeded generators
# --------------------------------------------------------------------------------------


def _check_n(n: int, what: str) -> None:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"{what}: n must be a positive int, got {n!r}.")


def _unique_draws(
    n: int,
    draw: Callable[[], tuple[str, Any]],
    tries: int = 50,
    space: Callable[[], list[tuple[str, Any]]] | None = None,
) -> list[tuple[str, Any]]:
    """Call ``draw`` until ``n`` results with distinct keys are collected.

    ``draw`` returns ``(key, payload)``. When ``tries`` draws in a row repeat a key, ``draw``'s space
    is taken as exhausted: the rest come from ``space()`` (a seeded, shuffled list of a wider space
    that contains ``draw``'s), skipping keys already seen, so the first results are the same with or
    without it; once that is exhausted too, duplicates are allowed so that large ``n`` still work.
    """
    seen: set[str] = set()
    out: list[tuple[str, Any]] = []
    wider: Iterator[tuple[str, Any]] | None = None
    while len(out) < n:
        if wider is not None:
            key, payload = next((item for item in wider if item[0] not in seen), None) or draw()
        else:
            for _ in range(tries):
                key, payload = draw()
                if key not in seen:
                    break
            else:
                if space is not None:
                    wider = iter(space())
                    continue
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


_DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_SYMBOLIC_PHRASINGS = ("What is {a} {op} {b}?", "Compute {a} {op} {b}.", "Calculate {a} {op} {b}.", "Find {a} {op} {b}.",
                       "Work out {a} {op} {b}.", "{a} {op} {b} = ?")  # fmt: skip
_VERBAL_PHRASINGS = {
    "+": ("What is {a} plus {b}?", "How much is {a} plus {b}?", "What is the sum of {a} and {b}?",
          "Add {a} and {b}. What do you get?", "What do you get when you add {b} to {a}?"),
    "-": ("What is {a} minus {b}?", "How much is {a} minus {b}?", "What is {a} take away {b}?",
          "Subtract {b} from {a}. What do you get?", "What do you get when you take {b} away from {a}?"),
}  # fmt: skip


def single_digit_phrasings() -> list[tuple[str, int, str]]:
    """Every phrasing of a single-digit ``a + b`` / ``a - b`` (``a >= b``) as ``(question, answer,
    python_expr)``: the six symbolic phrasings with digits (the first is the canonical ``"What is 7 +
    5?"``) and five verbal ones per operation, with digits and with number words ("What is seven plus
    five?"). 155 sums x 16 phrasings = 2,480 distinct questions."""
    out = []
    for op in "+-":
        for a in range(10):
            for b in range(10 if op == "+" else a + 1):
                expr, value = f"{a} {op} {b}", (a + b if op == "+" else a - b)
                out += [(t.format(a=a, op=op, b=b), value, expr) for t in _SYMBOLIC_PHRASINGS]
                out += [(t.format(a=x, b=y), value, expr) for t in _VERBAL_PHRASINGS[op]
                        for x, y in ((a, b), (_DIGIT_WORDS[a], _DIGIT_WORDS[b]))]  # fmt: skip
    return out


ARITHMETIC_LEVELS = (1, 2, 3, 4)
WORD_PROBLEM_LEVELS = (0, 1, 2, 3)


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

    Difficulty 1 has only 155 sums: its first questions are ``"What is a ± b?"`` (in the same seeded
    order as ever); once those are used up the rest are other phrasings of the same sums (``"Compute
    7 - 5."``, ``"What is seven minus five?"``, 2,480 questions in all, see
    :func:`reward_circuits.tasks.distinct_prompts`). Phrasings of one sum share
    ``meta["expression"]``: group by it when paraphrases must not straddle a split.
    """
    def make(rng: random.Random) -> tuple[str, int, str]:
        display, expr, value = _arithmetic_expression(rng, difficulty)
        return f"What is {display}?", value, expr

    def space(rng: random.Random) -> list[tuple[str, int, str]]:
        items = single_digit_phrasings()
        rng.shuffle(items)
        return items

    return _seeded_numeric_task(_Family("arithmetic_task", "arithmetic", ARITHMETIC_LEVELS), make, n, difficulty, seed,
                                space=space if difficulty == 1 else None, system_prompt=system_prompt,
                                instruction=instruction, max_new_tokens=max_new_tokens)  # fmt: skip


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
    level = {0: _one_small_step, 1: _one_step, 2: _two_steps_add_sub}.get(difficulty, _two_steps_mul_div)
    return level(rng.randint, p, q, r, item)


def _one_small_step(ri, p: str, q: str, r: str, item: str) -> tuple[str, int, str]:
    """Difficulty 0: one addition/subtraction of single-digit numbers (the level of arithmetic:1)."""
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


def _one_step(ri, p: str, q: str, r: str, item: str) -> tuple[str, int, str]:
    """Difficulty 1: one addition/subtraction of numbers up to ~150."""
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


def _two_steps_add_sub(ri, p: str, q: str, r: str, item: str) -> tuple[str, int, str]:
    """Difficulty 2: one multiplication, or two or three additions/subtractions."""
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


def _two_steps_mul_div(ri, p: str, q: str, r: str, item: str) -> tuple[str, int, str]:
    """Difficulty 3 (and above): two steps including a multiplication or division."""
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
    return _seeded_numeric_task(_Family("word_problem_task", "word_problems", WORD_PROBLEM_LEVELS),
                                lambda rng: _word_problem(rng, difficulty), n, difficulty, seed,
                                system_prompt=system_prompt, instruction=instruction, max_new_tokens=max_new_tokens)


@dataclass(frozen=True)
class _Family:
    """A seeded generator's name (for errors), its ``source`` (ids, task name) and its levels."""

    caller: str
    source: str
    levels: tuple[int, ...]


def _seeded_numeric_task(
    family: _Family,
    make: Callable[[random.Random], tuple[str, int, str]],
    n: int,
    difficulty: int,
    seed: int,
    space: Callable[[random.Random], list[tuple[str, int, str]]] | None = None,
    **task_kwargs: Any,
) -> Task:
    """A :class:`Task` of ``n`` distinct questions from ``make(rng) -> (question, answer, python_expr)``
    (then from ``space(rng)``, a shuffled wider list, once ``make``'s are used up), seeded, with ids
    ``{source}-d{difficulty}-s{seed}-{i}`` and a numeric reward."""
    caller, source = family.caller, family.source
    _check_n(n, caller)
    if difficulty not in family.levels:
        raise ValueError(f"{caller}: difficulty must be one of {', '.join(map(str, family.levels))}, got {difficulty!r}.")
    rng = random.Random(seed)

    def draw() -> tuple[str, Any]:
        question, value, expr = make(rng)
        return question, (value, expr)

    def wider() -> list[tuple[str, Any]]:
        return [(question, (value, expr)) for question, value, expr in space(rng)]

    examples = [
        Example(
            id=f"{source}-d{difficulty}-s{seed}-{i:05d}",
            question=question,
            answer=str(value),
            meta={"difficulty": difficulty, "expression": expr, "source": source},
        )
        for i, (question, (value, expr)) in enumerate(_unique_draws(n, draw, space=wider if space else None))
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


