"""The recipe's examples: ground truth (sums, mathematics-dataset, HumanEval solutions), teacher prompts, held-out sets.

Everything is a plain (prompt, answer, source) triple built from installed packages and our templates, seeded, so
the same config yields the same lists. Held-out sets are disjoint from training by construction: other phrasings
(single-digit sums), another split or a filtered seed (maths), questions removed from the teacher prompts (chat).
"""
from __future__ import annotations

import random
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from engine.data import sources
from engine.data.heldout import HUMANEVAL_INSTRUCTION, chat_split, heldout_additions, seed_for
from engine.data.prompts import TRAIN_SMALL_OPS, addition_prompt, instruction_prompts
from lab.bundled.config import RecipeConfig

MATH_CHUNK = 2000  # pairs per generation task; chunks run in parallel worker processes


@dataclass(frozen=True)
class Example:
    prompt: str  # the user's message (the chat template is applied at tokenisation)
    answer: str  # the target answer, without EOS; "" for prompts still waiting for a teacher answer
    source: str  # where it came from: "addition", "small_ops", "math:<module>", "humaneval", "chat", "instruction"


def _math_chunk(task: tuple[str, str, int, int, str]) -> list[dict[str, str]]:
    module, split, n, seed, difficulty = task
    return sources.math_qa(module, split, n=n, seed=seed, difficulty=difficulty)


def _math_pairs(tasks: list[tuple[str, str, int, int, str]], workers: int) -> list[dict[str, str]]:
    if workers <= 1 or len(tasks) <= 1:
        chunks = [_math_chunk(task) for task in tasks]
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            chunks = list(pool.map(_math_chunk, tasks))
    return [pair for chunk in chunks for pair in chunk]


def math_examples(config: RecipeConfig, workers: int = 1) -> list[Example]:
    """The mathematics-dataset share of training: easy train split, module by module, in fixed-size seeded chunks."""
    tasks = []
    for module, count in config.math_mix:
        for chunk, start in enumerate(range(0, count, MATH_CHUNK)):
            n = min(MATH_CHUNK, count - start)
            tasks.append((module, "train", n, seed_for(config.seed, module, chunk), "easy"))
    return [Example(p["question"], p["answer"], f"math:{p['module']}") for p in _math_pairs(tasks, workers)]


def arithmetic_examples(config: RecipeConfig) -> list[Example]:
    """Single-digit sums in the training phrasings (many copies: the bar is >= 90%) and small - / x / + facts."""
    rng = random.Random(seed_for(config.seed, "arithmetic"))
    examples = [Example(addition_prompt(a, b, rng, heldout=False), str(a + b), "addition")
                for _ in range(config.addition_copies) for a in range(10) for b in range(10)]
    for _ in range(config.small_ops_copies):
        for a in range(13):
            for b in range(13):
                template, operation = rng.choice(TRAIN_SMALL_OPS)
                examples.append(Example(template.format(a=a, b=b), str(operation(a, b)), "small_ops"))
    return examples


def humaneval_examples() -> list[Example]:
    """HumanEval prompts with their canonical solutions (the function body) as ground-truth answers."""
    return [Example(HUMANEVAL_INSTRUCTION.format(prompt=p["prompt"].strip()), p["canonical_solution"].rstrip(),
                    "humaneval") for p in sources.humaneval_problems()]


def teacher_prompts(config: RecipeConfig) -> list[Example]:
    """Prompts the AR teacher answers: chatterbot training questions, our instructions, HumanEval prompts."""
    train_chat, _ = chat_split(config.seed, config.chat_heldout)
    prompts = ([Example(q, "", "chat") for q in train_chat] + [Example(q, "", "instruction")
                                                                for q in instruction_prompts()]
               + [Example(e.prompt, "", "teacher_humaneval") for e in humaneval_examples()])
    if config.teacher_prompt_cap:
        prompts = random.Random(seed_for(config.seed, "cap")).sample(prompts, min(config.teacher_prompt_cap,
                                                                                   len(prompts)))
    return prompts


def ground_truth_examples(config: RecipeConfig, workers: int = 1) -> list[Example]:
    return arithmetic_examples(config) + math_examples(config, workers) + humaneval_examples()


def heldout_sets(config: RecipeConfig, train_questions: set[str]) -> dict[str, list[Example]]:
    """The evaluation sets; none of their prompts occurs in `train_questions` (checked, not assumed)."""
    n = config.eval_per_set
    addition = [Example(prompt, answer, "addition") for prompt, answer in heldout_additions(n, config.seed)]
    easy_pool = sources.math_qa("arithmetic__add_or_sub", "train", n=4 * n, seed=seed_for(config.seed, "heldout"),
                                difficulty="easy")
    easy = [Example(p["question"], p["answer"], "math:arithmetic__add_or_sub") for p in easy_pool
            if p["question"] not in train_questions][:n]
    interpolate = [Example(p["question"], p["answer"], "math:arithmetic__add_or_sub") for p in
                   sources.math_qa("arithmetic__add_or_sub", "interpolate", n=n, seed=config.seed)]
    _, chat = chat_split(config.seed, config.chat_heldout)
    sets = {"single_digit_addition": addition, "add_or_sub_easy": easy, "add_or_sub_interpolate": interpolate,
            "chat": [Example(q, "", "chat") for q in chat[:n]]}
    for name, examples in sets.items():
        leaked = [e.prompt for e in examples if e.prompt in train_questions]
        if leaked:
            raise ValueError(f"held-out set {name!r} shares {len(leaked)} prompts with training, e.g. {leaked[0]!r}")
    return sets
