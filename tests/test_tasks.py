"""Tests for reward_circuits.tasks: extraction, tasks, generators, registry and loaders (offline)."""

from __future__ import annotations

import json
import os
import re

# Never touch the network: set before `datasets` is imported (lazily, by the loaders).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

import pytest

from reward_circuits import tasks as T
from reward_circuits.tasks import (
    BUILTIN_TASKS,
    DATASET_LOADERS,
    MMLU_STEM_SUBJECTS,
    Example,
    Task,
    arithmetic_task,
    choice_reward,
    extract_choice,
    extract_math_answer,
    extract_number,
    get_task,
    load_arc,
    load_gsm8k,
    load_local_task,
    load_math500,
    load_mmlu_stem,
    math_answers_equal,
    multiple_choice_task,
    normalize_math_answer,
    numbers_equal,
    numeric_reward,
    word_problem_task,
)

# --------------------------------------------------------------------------------------
# extract_number
# --------------------------------------------------------------------------------------

NUMBER_CASES = [
    # boxed
    ("So the total is \\boxed{42}.", "42"),
    ("First 3, then \\boxed{1,234} and 7 more words 9", "1234"),
    ("\\boxed{\\frac{3}{4}}", "3/4"),
    ("\\boxed{-7}", "-7"),
    ("\\boxed{x = 5}", "5"),
    ("We get \\boxed{12} but earlier \\boxed{10}", "10"),  # last boxed wins
    ("\\boxed{} the answer is 4", "4"),  # empty box falls through
    # ####
    ("Step 1: 2+3=5\n#### 5", "5"),
    ("#### 1,234", "1234"),
    ("blah 99 #### 42\nsome trailing text 7", "42"),
    ("#### $-5", "-5"),
    # answer markers
    ("The answer is 12.", "12"),
    ("Answer: 3/4", "3/4"),
    ("So the final answer is $1,200. I double-checked 3 times.", "1200"),
    ("The answer is 5. Let me check the answer: yes it is.", "5"),
    ("answer = 0.750", "0.75"),
    # commas, negatives, unicode minus, decimals, fractions, period, $, %
    ("It costs 1,234 dollars", "1234"),
    ("1,234,567.80 units", "1234567.8"),
    ("The temperature is -7 degrees", "-7"),
    ("The result is − 7", "-7"),
    ("The result is \u22123", "-3"),
    ("That gives 3.50", "3.5"),
    ("That gives 12.0", "12"),
    ("About .5 of it", "0.5"),
    ("She ate 3/4 of the pie", "3/4"),
    ("So it is 12.", "12"),
    ("The price is $1,200", "1200"),
    ("Growth was 45%", "45"),
    ("She lost -$5", "-5"),
    # multiple numbers: last wins; subtraction is not a negative sign
    ("3 apples plus 4 apples make 7", "7"),
    ("12 - 7", "7"),
    ("12 - 7 = 5", "5"),
    ("1, 2, 3", "3"),
    ("12,34", "34"),  # not a thousands group
    ("COVID-19", "19"),
    ("-0.0", "0"),
    # no number
    ("I don't know.", None),
    ("", None),
    (None, None),
]


@pytest.mark.parametrize("text,expected", NUMBER_CASES)
def test_extract_number(text, expected):
    assert extract_number(text) == expected


@pytest.mark.parametrize(
    "pred,gold,expected",
    [
        ("0.75", "3/4", True),
        ("12.0", "12", True),
        ("12", "12.5", False),
        ("-7", "-7", True),
        ("-7", "7", False),
        ("1234", "1,234", True),
        ("\u22123", "-3", True),
        (None, "3", False),
        ("abc", "3", False),
        ("3", "abc", False),
        ("3/0", "3", False),
        ("", "0", False),
    ],
)
def test_numbers_equal(pred, gold, expected):
    assert numbers_equal(pred, gold) is expected


# --------------------------------------------------------------------------------------
# extract_choice
# --------------------------------------------------------------------------------------

CHOICE_CASES = [
    ("The answer is (B)", "ABCD", "B"),
    ("B)", "ABCD", "B"),
    ("**C**", "ABCD", "C"),
    ("Answer: d", "ABCD", "D"),
    ("a", "ABCD", "A"),
    ("(C).", "ABCD", "C"),
    ("A", "ABCD", "A"),
    ("\\boxed{A}", "ABCD", "A"),
    ("\\boxed{\\text{(B)}}", "ABCD", "B"),
    ("The correct option is C because 3 > 2.", "ABCD", "C"),
    ("I choose D.", "ABCD", "D"),
    ("B is correct.", "ABCD", "B"),
    ("A is the correct answer.", "ABCD", "A"),
    ("A train leaves at 3 pm. The answer is C.", "ABCD", "C"),
    ("A train leaves at 3 pm and arrives at 5 pm.", "ABCD", None),  # article only
    ("The answer is a number, namely 12.", "ABCD", None),  # article after marker
    ("The answer is A because 2 + 2 = 4.", "ABCD", "A"),
    ("(A) 12\n(B) 13\nSo it must be B.", "ABCD", "B"),  # last letter wins
    ("Option B looks wrong, so D.", "ABCD", "D"),
    ("The answer is (B). Wait, the answer is (C).", "ABCD", "C"),  # last explicit wins
    ("The answer is E", "ABCD", None),  # letter outside the allowed set
    ("The answer is E", "ABCDE", "E"),
    ("No idea, sorry.", "ABCD", None),
    ("", "ABCD", None),
    ("The answer is B. A quick check confirms it.", "ABCD", "B"),
    ("the answer is correct", "ABCD", None),  # 'c' inside a word
]


@pytest.mark.parametrize("text,letters,expected", CHOICE_CASES)
def test_extract_choice(text, letters, expected):
    assert extract_choice(text, letters) == expected


def test_extraction_table_is_large_enough():
    assert len(NUMBER_CASES) + len(CHOICE_CASES) >= 25


@pytest.mark.parametrize(
    "pred,gold,expected",
    [
        ("\\frac{3}{4}", "0.75", True),
        ("\\boxed{\\dfrac{1}{2}}", "\\frac12", True),
        ("$x = 5$", "5", True),
        ("10^\\circ", "10", True),
        ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})", True),
        ("\\text{Evelyn}", "\\text{Evelyn}", True),
        ("1,000", "1000", True),
        ("\\frac{3}{5}", "\\frac{3}{4}", False),
        (None, "1", False),
    ],
)
def test_math_answers_equal(pred, gold, expected):
    assert math_answers_equal(pred, gold) is expected


def test_extract_math_answer():
    assert extract_math_answer("so $x$ is \\boxed{\\frac{\\sqrt{3}}{2}}.") == "\\frac{\\sqrt{3}}{2}"
    assert extract_math_answer("The final answer is $\\frac{1}{2}$.") == "$\\frac{1}{2}$"
    assert extract_math_answer("it is 7") == "7"
    assert normalize_math_answer("\\frac{\\sqrt{3}}{2}") == "\\sqrt{3}/2"


# --------------------------------------------------------------------------------------
# Task
# --------------------------------------------------------------------------------------


def _ex(i: int, answer: str = "3") -> Example:
    return Example(id=f"e{i}", question=f"What is {i}?", answer=answer, meta={})


class FakeTokenizer:
    """Records the arguments of apply_chat_template and renders a simple ChatML string."""

    chat_template = "chatml"  # a chat model's tokenizer (base models without one are prompted few-shot)

    def __init__(self):
        self.calls = []

    def apply_chat_template(self, messages, tokenize=True, add_generation_prompt=False):
        self.calls.append((messages, tokenize, add_generation_prompt))
        text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
        return text + ("<|im_start|>assistant\n" if add_generation_prompt else "")


def test_format_prompt_and_render():
    task = Task("t", [_ex(1)], numeric_reward, system_prompt="Be brief.", instruction="Say '####'.")
    msgs = task.format_prompt(task.examples[0])
    assert msgs == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 1?\n\nSay '####'."},
    ]
    no_sys = Task("t", [_ex(1)], numeric_reward, instruction="")
    assert no_sys.format_prompt(no_sys.examples[0]) == [{"role": "user", "content": "What is 1?"}]
    tok = FakeTokenizer()
    out = task.render(task.examples[0], tok)
    assert out.endswith("<|im_start|>assistant\n") and "Be brief." in out
    assert tok.calls[0][1:] == (False, True)


def test_reward_binary_and_validation():
    task = Task("t", [_ex(1, "12")], numeric_reward)
    ex = task.examples[0]
    assert task.reward("#### 12", ex) == 1.0
    assert task.reward("#### 13", ex) == 0.0
    assert task.reward("nothing", ex) == 0.0
    assert type(task.reward("#### 12", ex)) is float

    for bad in (0.7, 2, -1.0, float("nan"), None, "1"):
        bad_task = Task("bad", [_ex(1)], lambda r, e, v=bad: v)
        with pytest.raises(ValueError, match="exactly 0.0 or 1.0"):
            bad_task.reward("x", bad_task.examples[0])
    ok_task = Task("ok", [_ex(1)], lambda r, e: True)
    assert ok_task.reward("x", ok_task.examples[0]) == 1.0


def test_empty_and_duplicate_tasks_raise():
    with pytest.raises(ValueError, match="Task 'x' has no examples"):
        Task("x", [], numeric_reward)
    with pytest.raises(ValueError, match="duplicate example ids"):
        Task("d", [_ex(1), _ex(1)], numeric_reward)
    with pytest.raises(TypeError):
        Task("t", [_ex(1)], "not callable")  # type: ignore[arg-type]


def test_len_head_subset():
    task = Task("t", [_ex(i) for i in range(10)], numeric_reward)
    assert len(task) == 10
    assert [e.id for e in task.head(3)] == ["e0", "e1", "e2"]
    s1, s2, s3 = task.subset(4, seed=1), task.subset(4, seed=1), task.subset(4, seed=2)
    assert [e.id for e in s1] == [e.id for e in s2]
    assert [e.id for e in s1] != [e.id for e in s3]
    assert len(s1) == 4 and len({e.id for e in s1}) == 4
    assert len(task) == 10  # original untouched
    with pytest.raises(ValueError):
        task.subset(11)
    with pytest.raises(ValueError):
        task.head(0)


# --------------------------------------------------------------------------------------
# Generators
# --------------------------------------------------------------------------------------


def _eval_question(question: str) -> int:
    m = re.fullmatch(r"What is (.+)\?", question.split("\n")[0])
    assert m, question
    expr = m.group(1).replace("×", "*")
    assert re.fullmatch(r"[\d\s+\-*()]+", expr), expr
    return eval(expr)  # noqa: S307 - digits and operators only


@pytest.mark.parametrize("difficulty", [1, 2, 3, 4])
def test_arithmetic_deterministic_and_correct(difficulty):
    a = arithmetic_task(n=60, difficulty=difficulty, seed=3)
    b = arithmetic_task(n=60, difficulty=difficulty, seed=3)
    c = arithmetic_task(n=60, difficulty=difficulty, seed=4)
    assert a.examples == b.examples
    assert [e.question for e in a] != [e.question for e in c]
    assert len(a) == 60 and len({e.id for e in a}) == 60
    for e in a:
        assert int(e.answer) == _eval_question(e.question) == eval(e.meta["expression"])
        assert int(e.answer) >= 0
        assert a.reward(f"So #### {e.answer}", e) == 1.0
        assert a.reward(f"So #### {int(e.answer) + 1}", e) == 0.0


def test_arithmetic_difficulty_shapes():
    d1 = arithmetic_task(n=50, difficulty=1, seed=0)
    assert all(re.fullmatch(r"What is \d [+-] \d\?", e.question) for e in d1)
    d2 = arithmetic_task(n=50, difficulty=2, seed=0)
    assert all(re.fullmatch(r"What is \d\d [+-] \d\d\?", e.question) for e in d2)
    d3 = arithmetic_task(n=50, difficulty=3, seed=0)
    assert all("×" in e.question for e in d3)
    d4 = arithmetic_task(n=50, difficulty=4, seed=0)
    assert all(len(re.findall(r"[+\-×]", e.question)) == 3 for e in d4)
    assert len({e.question for e in d2}) == 50  # distinct while the space allows
    big = arithmetic_task(n=300, difficulty=1, seed=0)  # more than the distinct d1 questions
    assert len(big) == 300
    with pytest.raises(ValueError):
        arithmetic_task(n=5, difficulty=5)
    with pytest.raises(ValueError):
        arithmetic_task(n=0)


@pytest.mark.parametrize("difficulty", [0, 1, 2, 3])
def test_word_problems_deterministic_and_correct(difficulty):
    a = word_problem_task(n=40, difficulty=difficulty, seed=0)
    b = word_problem_task(n=40, difficulty=difficulty, seed=0)
    c = word_problem_task(n=40, difficulty=difficulty, seed=1)
    assert a.examples == b.examples
    assert [e.question for e in a] != [e.question for e in c]
    for e in a:
        assert int(e.answer) == eval(e.meta["expression"]) >= 0
        # every operand of the expression appears in the question text
        for num in re.findall(r"\d+", e.meta["expression"]):
            if num != "7":  # 'weeks' template multiplies by 7 days
                assert re.search(rf"\b{num}\b", e.question), (num, e.question)
        assert a.reward(f"The answer is {e.answer}.", e) == 1.0
        if difficulty == 0:  # single-digit operands, one + or -
            assert all(int(x) <= 9 for x in re.findall(r"\d+", e.meta["expression"]))
            assert len(re.findall(r"[+\-]", e.meta["expression"])) == 1
    with pytest.raises(ValueError):
        word_problem_task(n=3, difficulty=4)
    with pytest.raises(ValueError):
        word_problem_task(n=3, difficulty=-1)


def test_multiple_choice_task():
    a = multiple_choice_task(n=80, seed=0)
    assert a.examples == multiple_choice_task(n=80, seed=0).examples
    assert [e.question for e in a] != [e.question for e in multiple_choice_task(n=80, seed=1)]
    kinds = {e.meta["kind"] for e in a}
    assert kinds == {"arithmetic", "fact"}
    letters_seen = set()
    for e in a:
        choices = e.meta["choices"]
        assert len(choices) == 4 and len(set(choices)) == 4
        idx = "ABCD".index(e.answer)
        letters_seen.add(e.answer)
        assert int(choices[idx]) == e.meta["value"]
        if e.meta["kind"] == "arithmetic":
            assert e.meta["value"] == _eval_question(e.question)
        for letter, choice in zip("ABCD", choices):
            assert f"{letter}) {choice}" in e.question
        assert a.reward(f"The answer is ({e.answer})", e) == 1.0
        wrong = next(x for x in "ABCD" if x != e.answer)
        assert a.reward(f"The answer is {wrong}.", e) == 0.0
    assert letters_seen == set("ABCD")


# --------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------


def test_get_task_specs():
    assert set(BUILTIN_TASKS) == {"arithmetic", "word_problems", "multiple_choice"}
    assert set(DATASET_LOADERS) == {"gsm8k", "math500", "arc", "mmlu_stem"}
    t = get_task("arithmetic", n=5, seed=1)
    assert t.name == "arithmetic-d1" and len(t) == 5
    assert t.examples == arithmetic_task(n=5, difficulty=1, seed=1).examples
    assert get_task("arithmetic:3", n=4, seed=0).examples == arithmetic_task(n=4, difficulty=3).examples
    assert get_task("word_problems:2", n=3, seed=0).name == "word_problems-d2"
    assert get_task("word_problems", n=3, seed=0).name == "word_problems-d1"
    assert len(get_task("multiple_choice", n=7, seed=2)) == 7
    with pytest.raises(ValueError, match="arithmetic"):
        get_task("nonsense", n=3, seed=0)
    with pytest.raises(ValueError):
        get_task("arithmetic:x", n=3, seed=0)
    with pytest.raises(ValueError):
        get_task("arithmetic:9", n=3, seed=0)
    with pytest.raises(ValueError):
        get_task("multiple_choice:2", n=3, seed=0)


def test_get_task_dataset_spec_calls_hub_loader(monkeypatch):
    """Hub ids go to datasets.load_dataset(path, config, split=...); faked here, no network."""
    import datasets

    calls = []

    def fake_load_dataset(path, name=None, split=None, cache_dir=None, **kw):
        calls.append((path, name, split))
        if path == "allenai/ai2_arc":
            return datasets.Dataset.from_list(ARC_ROWS)
        return datasets.Dataset.from_list(
            [{"question": f"q{i}", "answer": f"work\n#### {i},000"} for i in range(10)]
        )

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    t = get_task("gsm8k", n=3, seed=0)
    assert calls == [("openai/gsm8k", "main", "test")]
    assert len(t) == 3 and all(e.answer.endswith("000") and "," not in e.answer for e in t)
    assert [e.id for e in t] == [e.id for e in get_task("gsm8k", n=3, seed=0)]
    assert [e.id for e in t] != [e.id for e in get_task("gsm8k", n=3, seed=1)]
    calls.clear()
    assert [e.answer for e in get_task("arc:easy", n=2, seed=0)] == ["B", "C"]
    assert calls == [("allenai/ai2_arc", "ARC-Easy", "test")]
    calls.clear()
    with pytest.raises(ValueError, match="arc:challenge"):
        get_task("gsm8k:train", n=2, seed=0)


# --------------------------------------------------------------------------------------
# Loaders on local files (no network)
# --------------------------------------------------------------------------------------


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


GSM8K_ROWS = [
    {"question": "Tom has 3 apples and buys 4. How many?", "answer": "3 + 4 = <<3+4=7>>7\n#### 7"},
    {"question": "A car costs $1,200 more than 300. Price?", "answer": "1200 + 300 = 1500\n#### 1,500"},
    {"question": "Debt?", "answer": "It is negative.\n#### -5"},
]


def test_load_gsm8k_local_jsonl(tmp_path):
    f = _write_jsonl(tmp_path / "gsm8k_test.jsonl", GSM8K_ROWS)
    task = load_gsm8k(path=str(f), cache_dir=tmp_path / "cache")
    assert len(task) == 3 and task.name == "gsm8k"
    assert [e.answer for e in task] == ["7", "1500", "-5"]
    assert task.examples[0].question == GSM8K_ROWS[0]["question"]
    assert task.reward("... so #### 1,500", task.examples[1]) == 1.0
    assert task.reward("The answer is 1499.", task.examples[1]) == 0.0
    assert len(load_gsm8k(path=str(f), n=2, cache_dir=tmp_path / "cache")) == 2
    sub = load_gsm8k(path=str(f), n=2, seed=0, cache_dir=tmp_path / "cache")
    assert len(sub) == 2


def test_load_gsm8k_local_parquet_and_directory(tmp_path):
    import datasets

    d = tmp_path / "gsm"
    d.mkdir()
    datasets.Dataset.from_list(GSM8K_ROWS).to_parquet(str(d / "test.parquet"))
    datasets.Dataset.from_list(GSM8K_ROWS[:1]).to_parquet(str(d / "train.parquet"))
    t_file = load_gsm8k(path=str(d / "test.parquet"), cache_dir=tmp_path / "cache")
    assert [e.answer for e in t_file] == ["7", "1500", "-5"]
    t_dir = load_gsm8k(split="train", path=str(d), cache_dir=tmp_path / "cache")
    assert [e.answer for e in t_dir] == ["7"]


def test_load_math500_local(tmp_path):
    rows = [
        {"problem": "Compute 1/2 + 1/4.", "answer": "\\frac{3}{4}", "subject": "Algebra", "level": 1,
         "unique_id": "test/algebra/1.json", "solution": "..."},
        {"problem": "Convert (0,3) to polar.", "answer": "\\left( 3, \\frac{\\pi}{2} \\right)",
         "subject": "Precalculus", "level": 2, "unique_id": "test/precalculus/807.json", "solution": "..."},
    ]  # fmt: skip
    f = _write_jsonl(tmp_path / "math500.jsonl", rows)
    task = load_math500(path=str(f), cache_dir=tmp_path / "cache")
    assert len(task) == 2 and task.examples[0].meta["subject"] == "Algebra"
    assert task.reward("We get $\\boxed{0.75}$.", task.examples[0]) == 1.0
    assert task.reward("We get $\\boxed{\\dfrac{3}{4}}$.", task.examples[0]) == 1.0
    assert task.reward("We get $\\boxed{\\frac{2}{3}}$.", task.examples[0]) == 0.0
    assert task.reward("\\boxed{(3, \\frac{\\pi}{2})}", task.examples[1]) == 1.0


ARC_ROWS = [
    {"id": "Q1", "question": "Which is a mammal?",
     "choices": {"text": ["shark", "whale", "trout", "eel"], "label": ["A", "B", "C", "D"]}, "answerKey": "B"},
    {"id": "Q2", "question": "Which is hot?",
     "choices": {"text": ["ice", "snow", "fire"], "label": ["1", "2", "3"]}, "answerKey": "3"},
]  # fmt: skip


def test_load_arc_local_json_and_config_dir(tmp_path):
    f = tmp_path / "arc.json"
    f.write_text(json.dumps(ARC_ROWS))  # a JSON array, not JSON lines
    task = load_arc(path=str(f), cache_dir=tmp_path / "cache")
    assert [e.answer for e in task] == ["B", "C"]
    assert task.examples[1].meta["letters"] == "ABC"
    assert task.examples[1].meta["choices"] == ["ice", "snow", "fire"]
    assert "C) fire" in task.examples[1].question
    assert task.reward("The answer is (B)", task.examples[0]) == 1.0
    assert task.reward("The answer is D", task.examples[1]) == 0.0  # D not an option here
    # Hub-like layout: <dir>/ARC-Challenge/test.jsonl
    (tmp_path / "ai2_arc" / "ARC-Challenge").mkdir(parents=True)
    _write_jsonl(tmp_path / "ai2_arc" / "ARC-Challenge" / "test.jsonl", ARC_ROWS[:1])
    t_dir = load_arc(path=str(tmp_path / "ai2_arc"), cache_dir=tmp_path / "cache")
    assert [e.answer for e in t_dir] == ["B"]


MMLU_ROWS = [
    {"question": "What is 2+2?", "subject": "elementary_mathematics", "choices": ["3", "4", "5", "6"], "answer": 1},
    {"question": "Derivative of x^2?", "subject": "college_mathematics", "choices": ["x", "2x", "x^2", "2"],
     "answer": 1},
    {"question": "Who wrote Hamlet?", "subject": "high_school_european_history",
     "choices": ["Shakespeare", "Marlowe", "Jonson", "Kyd"], "answer": 0},
    {"question": "Speed of light unit?", "subject": "high_school_physics", "choices": ["m", "s", "m/s", "kg"],
     "answer": 2},
]  # fmt: skip


def test_load_mmlu_stem_local_parquet(tmp_path):
    import datasets

    f = tmp_path / "mmlu.parquet"
    datasets.Dataset.from_list(MMLU_ROWS).to_parquet(str(f))
    task = load_mmlu_stem(path=str(f), cache_dir=tmp_path / "cache")
    assert len(task) == 3  # the history question is filtered out
    assert [e.answer for e in task] == ["B", "B", "C"]
    assert {e.meta["subject"] for e in task} <= set(MMLU_STEM_SUBJECTS)
    assert task.reward("Answer: b", task.examples[0]) == 1.0
    assert task.reward("Answer: a", task.examples[0]) == 0.0
    everything = load_mmlu_stem(path=str(f), subjects=None, cache_dir=tmp_path / "cache")
    assert len(everything) == 4
    only = load_mmlu_stem(path=str(f), subjects=["high_school_physics"], cache_dir=tmp_path / "cache")
    assert [e.answer for e in only] == ["C"]
    with pytest.raises(ValueError, match="No MMLU rows"):
        load_mmlu_stem(path=str(f), subjects=["anatomy"], cache_dir=tmp_path / "cache")


def test_load_mmlu_stem_per_subject_dirs(tmp_path):
    root = tmp_path / "mmlu"
    for row in MMLU_ROWS[:2]:
        (root / row["subject"]).mkdir(parents=True)
        _write_jsonl(root / row["subject"] / "test.jsonl", [{k: v for k, v in row.items() if k != "subject"}])
    task = load_mmlu_stem(path=str(root), cache_dir=tmp_path / "cache")
    assert sorted(e.meta["subject"] for e in task) == ["college_mathematics", "elementary_mathematics"]


def test_missing_local_files_raise_clear_errors(tmp_path):
    missing = str(tmp_path / "nope.jsonl")
    for loader in (load_gsm8k, load_math500, load_arc, load_mmlu_stem):
        with pytest.raises(FileNotFoundError, match="nope.jsonl.*not found.*Expected"):
            loader(path=missing)
    with pytest.raises(FileNotFoundError, match="Expected"):
        get_task(missing, n=3, seed=0)
    bad = tmp_path / "data.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="Unsupported file type"):
        load_gsm8k(path=str(bad))


def test_get_task_local_files_detect_schema(tmp_path):
    cache = tmp_path / "cache"
    g = _write_jsonl(tmp_path / "g.jsonl", GSM8K_ROWS)
    m = _write_jsonl(tmp_path / "m.jsonl", [{"problem": "p", "answer": "\\frac{1}{2}"}])
    a = _write_jsonl(tmp_path / "a.jsonl", ARC_ROWS)
    u = _write_jsonl(tmp_path / "u.jsonl", MMLU_ROWS)
    plain = _write_jsonl(tmp_path / "plain.jsonl", [{"question": "What is 2 + 2?", "answer": "4"}])
    assert get_task(str(g), n=2, seed=0, cache_dir=cache).examples[0].meta["source"] == "gsm8k"
    assert len(get_task(str(g), n=2, seed=0, cache_dir=cache)) == 2
    tm = get_task(str(m), n=5, seed=0, cache_dir=cache)
    assert tm.reward("\\boxed{0.5}", tm.examples[0]) == 1.0
    assert get_task(str(a), n=5, seed=0, cache_dir=cache).examples[0].meta["source"] == "arc"
    tu = get_task(str(u), n=5, seed=0, cache_dir=cache)
    assert len(tu) == 4 and tu.examples[0].meta["source"] == "mmlu" and tu.name == "u"
    tp = load_local_task(plain, cache_dir=cache)
    assert tp.examples[0].answer == "4" and tp.reward("#### 4", tp.examples[0]) == 1.0
    weird = _write_jsonl(tmp_path / "weird.jsonl", [{"x": 1}])
    with pytest.raises(ValueError, match="Cannot detect the schema"):
        get_task(str(weird), n=1, seed=0, cache_dir=cache)


def test_reward_functions_are_module_level():
    # picklable / importable by name for multiprocessing
    ex = Example("i", "q", "B", {"letters": "ABCD"})
    assert choice_reward("B", ex) == 1.0 and T.choice_reward is choice_reward


# --------------------------------------------------------------------------------------
# Distinct prompts per level
# --------------------------------------------------------------------------------------

_WORDS = {w: i for i, w in enumerate(("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"))}


@pytest.mark.parametrize("spec", T.task_levels())
def test_every_level_yields_its_promised_distinct_prompts(spec):
    """Each seeded level holds (for two seeds) the number of distinct questions it promises, at
    least 2,000, and every one is graded by its own expression."""
    promised = T.distinct_prompts(spec)
    assert promised >= 2000
    for seed in (0, 1):
        task = get_task(spec, n=promised, seed=seed)
        assert len(task) == promised and task.distinct_questions == promised
    for e in task.examples[:: max(1, promised // 200)]:
        gold = e.meta["value"] if "choices" in e.meta else int(e.answer)  # multiple choice: the letter's value
        if "expression" in e.meta:
            assert gold == eval(e.meta["expression"])  # noqa: S307 - digits and operators only
        if "choices" in e.meta:
            assert e.meta["choices"]["ABCD".index(e.answer)] == str(gold)


def test_single_digit_arithmetic_keeps_its_questions_then_paraphrases_the_same_sums():
    """arithmetic:1 starts with the old "What is a ± b?" questions in their old order (pinned
    prefix), then other phrasings of the 155 sums; its promise is exact: asking for more repeats."""
    n = T.distinct_prompts("arithmetic:1")
    assert n == 155 * 16
    task = get_task("arithmetic:1", n=n + 40, seed=0)
    questions = [e.question for e in task]
    assert questions[:6] == ["What is 6 + 6?", "What is 8 - 4?", "What is 6 - 4?"] + questions[3:6]
    assert all(re.fullmatch(r"What is \d [+-] \d\?", q) for q in questions[:149])
    assert task.distinct_questions == n < len(task)  # the space is exhausted: no invented questions
    assert len({e.meta["expression"] for e in task}) == 155
    for e in task.examples[:n]:
        a, op, b = e.meta["expression"].split()
        numbers = [int(t) if t.isdigit() else _WORDS[t] for t in re.findall(r"\b(?:\d+|[a-z]+)\b", e.question)
                   if t.isdigit() or t in _WORDS]  # fmt: skip
        assert sorted(numbers) == sorted([int(a), int(b)]), e.question
        assert int(e.answer) == (int(a) + int(b) if op == "+" else int(a) - int(b)) >= 0


def test_distinct_prompts_names_bad_specs_and_skips_datasets():
    assert T.distinct_prompts("gsm8k") is None and T.distinct_prompts("data/x.jsonl") is None
    assert T.distinct_prompts("word_problems") == T.DISTINCT_PROMPTS_FLOOR
    with pytest.raises(ValueError, match="levels are"):
        T.distinct_prompts("arithmetic:9")
    with pytest.raises(ValueError, match="Unknown task spec"):
        T.distinct_prompts("arithmatic:1")
    with pytest.raises(ValueError, match="unknown task families"):
        T.task_levels(("algebra",))
    assert T.task_levels(("multiple_choice", "arithmetic")) == ["arithmetic:1", "arithmetic:2", "arithmetic:3",
                                                                "arithmetic:4", "multiple_choice"]  # fmt: skip
