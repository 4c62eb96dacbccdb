"""The package-data readers: real files from the installed packages, seeded maths, the numpy-2 / sympy shim."""
import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest

from engine.data import sources
from engine.data.mathshim import math_modules, seeded


def test_chat_conversations_cover_the_english_corpus() -> None:
    conversations = sources.chat_conversations()
    assert len(conversations) > 2000
    categories = {c["category"] for c in conversations}
    assert {"ai", "trivia", "coding", "tech_support"} <= categories
    assert all(c["turns"] and all(isinstance(t, str) and t for t in c["turns"]) for c in conversations)


def test_chat_conversations_are_copies() -> None:
    first = sources.chat_conversations()
    first[0]["turns"].append("mutated")
    assert sources.chat_conversations()[0]["turns"][-1] != "mutated"


def test_humaneval_problems_in_task_order() -> None:
    problems = sources.humaneval_problems()
    assert len(problems) == 164
    assert [p["task_id"] for p in problems[:3]] == ["HumanEval/0", "HumanEval/1", "HumanEval/2"]
    assert all(p["prompt"] and p["canonical_solution"] and p["entry_point"] in p["prompt"] for p in problems)


def test_math_qa_is_seeded_and_split_specific() -> None:
    first = sources.math_qa("arithmetic__add_or_sub", "train", n=12, seed=5)
    again = sources.math_qa("arithmetic__add_or_sub", "train", n=12, seed=5)
    other = sources.math_qa("arithmetic__add_or_sub", "train", n=12, seed=6)
    held_out = sources.math_qa("arithmetic__add_or_sub", "interpolate", n=12, seed=5)
    assert first == again
    assert first != other
    assert first != held_out
    assert all(p["module"] == "arithmetic__add_or_sub" and p["question"] and p["answer"] for p in first)


def test_math_qa_answers_are_right() -> None:
    # add_or_sub answers are exact decimals: check them against the numbers in the question.
    for pair in sources.math_qa("arithmetic__add_or_sub", "train", n=30, seed=1):
        assert pair["answer"].lstrip("-").replace(".", "").isdigit()


def test_math_qa_leaves_callers_random_streams_alone() -> None:
    random.seed(123)
    np.random.seed(123)
    expected = (random.random(), np.random.rand())
    random.seed(123)
    np.random.seed(123)
    sources.math_qa("numbers__gcd", "train", n=3, seed=0)
    assert (random.random(), np.random.rand()) == expected


def test_math_qa_same_questions_in_another_process() -> None:
    # Composed questions used to depend on PYTHONHASHSEED and memory addresses; the shim canonicalises both.
    code = ("import json; from engine.data.sources import math_qa; "
            "print(json.dumps(math_qa('comparison__closest_composed', 'train', n=6, seed=2)))")
    outputs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                              env={**os.environ, "PYTHONHASHSEED": str(hash_seed)}).stdout for hash_seed in (1, 2)]
    assert json.loads(outputs[0]) == json.loads(outputs[1]) == sources.math_qa("comparison__closest_composed",
                                                                                 "train", n=6, seed=2)


@pytest.mark.parametrize("bad, message", [
    (dict(module="arithmetic__nope"), "arithmetic__add_or_sub"),
    (dict(module="arithmetic__add_or_sub", split="valid"), "interpolate"),
    (dict(module="arithmetic__add_or_sub", difficulty="trivial"), "easy"),
    (dict(module="arithmetic__add_or_sub", n=-1), "n=-1"),
])
def test_math_qa_bad_input_names_the_fix(bad: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        sources.math_qa(**bad)


def test_shim_makes_polynomial_modules_run_on_numpy_2() -> None:
    # polynomials use ndarray.itemset and np.object, both gone in numpy 2; without the shim these raise.
    modules = math_modules()
    with seeded(0):
        tree = modules.train(lambda entropy_range: entropy_range)
        problems = [tree["polynomials"]["expand"](), tree["algebra"]["linear_1d"](), tree["polynomials"]["collect"]()]
    assert all(str(p.question) and str(p.answer) for p in problems)
    assert "object" not in vars(np)  # numpy itself is untouched


def test_module_names_list_the_easy_areas() -> None:
    names = sources.math_module_names("interpolate")
    assert "arithmetic__add_or_sub" in names and "comparison__pair" in names and "numbers__gcd" in names
