"""The splits the bundled recipe trains around and the benchmark evaluates on, defined once.

The recipe (lab/bundled/) keeps these prompts out of training; `python -m engine bench` asks exactly these. Both read
this module, so a held-out question cannot drift into training by editing one side only.
"""
from __future__ import annotations

import hashlib
import random

from engine.data import sources
from engine.data.prompts import addition_prompt

SPLIT_SEED = 0  # the recipe's default seed; the benchmark's held-out sets are those of this seed
CHAT_HELDOUT = 100  # chatterbot questions kept out of the recipe's teacher prompts
HUMANEVAL_INSTRUCTION = "Complete this Python function.\n\n{prompt}"  # how HumanEval prompts are phrased


def seed_for(*parts: object) -> int:
    """A stable 31-bit seed from any labels (Python's hash() is salted per process)."""
    return int(hashlib.sha256(repr(parts).encode()).hexdigest()[:8], 16) & 0x7FFFFFFF


def chat_questions() -> list[str]:
    """Distinct first turns of the chatterbot conversations, in corpus order."""
    seen, questions = set(), []
    for conversation in sources.chat_conversations():
        question = conversation["turns"][0]
        if question.lower() not in seen:
            seen.add(question.lower())
            questions.append(question)
    return questions


def chat_split(seed: int = SPLIT_SEED, heldout: int = CHAT_HELDOUT) -> tuple[list[str], list[str]]:
    """(train questions, held-out questions): a seeded shuffle, the first `heldout` kept out."""
    questions = chat_questions()
    random.Random(seed_for(seed, "chat")).shuffle(questions)
    return questions[heldout:], questions[:heldout]


def heldout_additions(n: int, seed: int = SPLIT_SEED) -> list[tuple[str, str]]:
    """(prompt, answer) for `n` of the 100 single-digit sums, in phrasings the recipe never trains on."""
    rng = random.Random(seed_for(seed, "heldout_addition"))
    pairs = [(a, b) for a in range(10) for b in range(10)]
    rng.shuffle(pairs)
    return [(addition_prompt(a, b, rng, heldout=True), str(a + b)) for a, b in pairs[:n]]
