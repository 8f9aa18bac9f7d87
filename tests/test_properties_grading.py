"""Property-based tests (hypothesis) of answer extraction and the binary rewards on adversarial text.

Totality (any string, never an exception, a reward of exactly 0.0 or 1.0, and fast), then round
trips: a number written the ways models write it (thousands separators, ``$``, unicode minus,
unicode digits, LaTeX ``\\boxed{}`` and ``\\frac``, ``####``, prose around it) comes back equal.

Bug these found (fixed in ``tasks.grading.to_fraction``): ``\\boxed{1e9999999}`` made the MATH
reward hang for minutes (``Fraction`` expands the power exactly); seen failing here as a deadline
overrun before the fix.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from reward_circuits.tasks import Example, choice_reward, math_reward, numeric_reward
from reward_circuits.tasks.grading import (
    extract_choice,
    extract_math_answer,
    extract_number,
    math_answers_equal,
    normalize_math_answer,
    numbers_equal,
    to_fraction,
)

SETTINGS = settings(max_examples=150, deadline=timedelta(seconds=3), suppress_health_check=[HealthCheck.too_slow])

# pieces models (and adversaries) put in answers
PIECES = ["0", "7", "12", "1,234", "3.50", ".5", "-", "\u2212", "\u2013", "$", "%", ",", ".", "/", "{", "}", " ", "\n",
          "\\boxed{", "\\fbox{", "\\frac{", "\\dfrac", "\\frac34", "}{", "####", "The answer is ", "Answer: ", "answer = ",
          "e", "E+", "9999999", "_", "\u0663", "\uff11\uff12", "\u0968", "(", ")", "A", "b", "(C)", "**D**", "I ",
          "\\text{", "\\left(", "\\right)", "x=", "^\\circ", "\\,", "{,}", "\u00a0", "\x00", "🙂"]
adversarial = st.lists(st.sampled_from(PIECES), max_size=30).map("".join)
any_text = st.one_of(adversarial, st.text(max_size=120))

NUMBER_FORM = r"-?(\d+(\.\d+)?|\d+/\d+)"
EX_NUM = Example("n", "q", "12")
EX_CHOICE = Example("c", "q", "B", {"letters": "ABCD"})
EX_MATH = Example("m", "q", "\\frac{3}{4}")

UNICODE_ZEROS = [0x30, 0x660, 0x6F0, 0x966, 0x9E6, 0xE50, 0xFF10]  # ASCII, Arabic-Indic, Persian, Devanagari, Bengali, Thai, full-width


def _digits_in(zero: int, s: str) -> str:
    return "".join(chr(zero + int(c)) if c.isdigit() else c for c in s)


# ---- totality ---------------------------------------------------------------------------------------


@SETTINGS
@given(any_text)
@example("")
@example("\\boxed{1e9999999}")
@example("The answer is 1E+99_999_999")
@example("\\boxed{\\frac{1}{0}}")
@example("\\boxed{\\boxed{\\boxed{")
def test_extractors_and_rewards_are_total_fast_and_binary(text):
    import re

    n = extract_number(text)
    assert n is None or re.fullmatch(NUMBER_FORM, n), n
    c = extract_choice(text, "ABCD")
    assert c is None or c in "ABCD"
    m = extract_math_answer(text)
    assert m is None or isinstance(m, str)
    normalize_math_answer(text)
    to_fraction(text)
    for reward, ex in ((numeric_reward, EX_NUM), (choice_reward, EX_CHOICE), (math_reward, EX_MATH)):
        r = reward(text, ex)
        assert type(r) is float and r in (0.0, 1.0)


@pytest.mark.parametrize("empty", ["", " ", "\n\n", "\\boxed{}", "####", "The answer is", "answer: ."])
def test_empty_outputs_score_zero(empty):
    assert extract_number(empty) is None
    assert extract_choice(empty) is None
    for reward, ex in ((numeric_reward, EX_NUM), (choice_reward, EX_CHOICE), (math_reward, EX_MATH)):
        assert reward(empty, ex) == 0.0


@SETTINGS
@given(st.integers(1001, 10**12), st.sampled_from(["e", "E", "e+", "e-", "E_"]), st.sampled_from(["1", "2.5", ""]))
def test_huge_exponents_are_refused_quickly(exp, e, mantissa):
    s = f"{mantissa}{e}{exp}"
    assert to_fraction(s) is None or abs(to_fraction(s)) < 10**1001
    assert math_reward(f"\\boxed{{{s}}}", EX_MATH) == 0.0


# ---- round trips -------------------------------------------------------------------------------------

FORMS = {
    "plain": "{}",
    "answer_is": "Let me think: 3 apples and 4 pears. The answer is {}.",
    "hashes": "Step 1: 10 + 2 = 12.\n#### {}",
    "boxed": "so we get $\\boxed{{{}}}$ at the end; 99 was wrong",
    "dollars": "It costs ${} in total.",
    "answer_colon": "Answer: {}\nThat is all.",
}


@SETTINGS
@given(st.integers(-10**12, 10**12), st.sampled_from(sorted(FORMS)), st.booleans(), st.sampled_from(["-", "\u2212", "\u2013"]),
       st.sampled_from(UNICODE_ZEROS))
def test_integers_round_trip(n, form, thousands, minus, zero):
    body = f"{abs(n):,}" if thousands else str(abs(n))
    body = _digits_in(zero, body)
    if form == "dollars" and n < 0:
        written = FORMS[form].replace("${}", f"{minus}${body}")
    else:
        written = FORMS[form].format((minus if n < 0 else "") + body)
    got = extract_number(written)
    assert numbers_equal(got, str(n)), (written, got)
    assert numeric_reward(written, Example("x", "q", str(n))) == 1.0
    assert numeric_reward(written, Example("x", "q", str(n + 1))) == 0.0


@SETTINGS
@given(st.integers(-10**6, 10**6), st.integers(1, 10**6), st.sampled_from(["\\frac{{{}}}{{{}}}", "\\dfrac{{{}}}{{{}}}", "{}/{}"]),
       st.booleans())
def test_fractions_round_trip(p, q, template, boxed):
    s = ("-" if p < 0 else "") + template.format(abs(p), q)
    text = f"The result is \\boxed{{{s}}}" if boxed else f"The answer is {s}"
    want = Fraction(p, q)
    assert to_fraction(extract_number(text)) == want, (text, extract_number(text))
    assert numeric_reward(text, Example("x", "q", f"{p}/{q}")) == 1.0
    if boxed:
        assert math_reward(text, Example("x", "q", f"\\frac{{{p}}}{{{q}}}")) == 1.0


@SETTINGS
@given(st.decimals(min_value=Decimal("-1e9"), max_value=Decimal("1e9"), places=4, allow_nan=False, allow_infinity=False),
       st.sampled_from(sorted(FORMS)))
def test_decimals_round_trip(d, form):
    s = format(d, "f")
    if form == "dollars" and s.startswith("-"):
        text = f"It costs -${s[1:]} in total."
    else:
        text = FORMS[form].format(s)
    assert to_fraction(extract_number(text)) == Fraction(d), (text, extract_number(text))


@SETTINGS
@given(st.integers(-9999, 9999))
def test_math_answers_equal_is_reflexive_on_boxed_numbers(n):
    s = f"\\boxed{{{n:,}}}"
    assert math_answers_equal(extract_math_answer(f"so {s}."), str(n))


@SETTINGS
@given(st.sampled_from("ABCD"), st.sampled_from(["{}", "({})", "**{}**", "The answer is {}.", "Answer: {}", "\\boxed{{{}}}",
                                                  "I choose {}", "{} is correct", "the correct option is ({})"]),
       st.sampled_from(["", "A train leaves at 3 pm. ", "I think about it. ", "Options: (A) 1 (B) 2 (C) 3 (D) 4.\n"]),
       st.booleans())
def test_choice_letters_round_trip(letter, form, prefix, lower):
    # lower case counts only in an explicit statement or as the whole response (documented rule)
    lower_ok = form in ("Answer: {}", "The answer is {}.") or (form == "{}" and not prefix)
    l = letter.lower() if lower and lower_ok else letter
    text = prefix + form.format(l)
    assert extract_choice(text, "ABCD") == letter, text
    assert choice_reward(text, Example("c", "q", letter)) == 1.0
