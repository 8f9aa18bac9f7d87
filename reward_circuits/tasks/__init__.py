"""Tasks with verifiable binary rewards.

This subpackage provides everything needed to pose questions to a small chat model
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

from .base import Example, Task, choice_reward, format_choices, math_reward, numeric_reward
from .datasets import MMLU_STEM_SUBJECTS, load_arc, load_gsm8k, load_local_task, load_math500, load_mmlu_stem
from .generators import arithmetic_task, multiple_choice_task, word_problem_task
from .grading import (CHOICE_INSTRUCTION, MATH_INSTRUCTION, NUMERIC_INSTRUCTION, extract_choice, extract_math_answer,
                      extract_number, math_answers_equal, normalize_math_answer, numbers_equal)
from .registry import BUILTIN_LEVELS, BUILTIN_TASKS, DATASET_LOADERS, DISTINCT_PROMPTS_FLOOR, distinct_prompts, get_task, task_levels

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
    "distinct_prompts",
    "task_levels",
    "BUILTIN_LEVELS",
    "DISTINCT_PROMPTS_FLOOR",
    "BUILTIN_TASKS",
    "DATASET_LOADERS",
    "MMLU_STEM_SUBJECTS",
    "NUMERIC_INSTRUCTION",
    "CHOICE_INSTRUCTION",
    "MATH_INSTRUCTION",
]
