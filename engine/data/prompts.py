"""Our own templated instructions and question phrasings (the recipe's third data source besides the packages).

Phrasings of single-digit addition are split in two: the model trains on TRAIN_ADDITION and is scored on
HELDOUT_ADDITION, so the held-out score is not a memorised prompt.
"""
from __future__ import annotations

import random

TRAIN_ADDITION = ("What is {a} + {b}?", "Calculate {a} + {b}.", "{a} + {b} = ?", "Add {a} and {b}.",
                  "What is the sum of {a} and {b}?", "Find {a} + {b}.", "{a}+{b}", "What's {a} + {b}?",
                  "What is {a} plus {b}?", "Compute {a} + {b}.", "Sum {a} and {b}.", "{a} + {b}")
HELDOUT_ADDITION = ("Work out {a} + {b}.", "How much is {a} + {b}?", "Tell me {a} + {b}.",
                    "What do you get when you add {a} and {b}?")
# Small arithmetic the model should also do in one short answer: (phrasing, operation).
TRAIN_SMALL_OPS = (("What is {a} - {b}?", lambda a, b: a - b), ("What is {a} times {b}?", lambda a, b: a * b),
                   ("Calculate {a} * {b}.", lambda a, b: a * b), ("What is {a} + {b}?", lambda a, b: a + b),
                   ("{a} - {b} = ?", lambda a, b: a - b))

_INSTRUCTIONS = {
    "Write one sentence about {x}.": ("the sea", "autumn", "a cat", "trains", "music", "the moon", "coffee",
                                      "mountains", "friendship", "rain", "books", "the city", "a garden",
                                      "winter", "bicycles", "the sun", "birds", "a river", "bread", "computers"),
    "What is the capital of {x}?": ("France", "Germany", "Italy", "Spain", "Japan", "China", "Canada", "Egypt",
                                    "Brazil", "Russia", "India", "Mexico", "Greece", "Portugal", "Sweden",
                                    "Norway", "Poland", "Kenya", "Peru", "Australia", "Ireland", "Turkey"),
    "Give me a synonym for {x}.": ("happy", "big", "fast", "smart", "cold", "angry", "begin", "small", "quiet",
                                   "brave", "tired", "rich", "easy", "strong", "funny"),
    "What is the opposite of {x}?": ("hot", "up", "light", "early", "open", "full", "old", "wet", "loud", "hard",
                                     "win", "inside", "true", "love", "first"),
    "Explain what {x} is in one sentence.": ("a computer", "photosynthesis", "gravity", "an atom", "a planet",
                                             "a volcano", "democracy", "a vaccine", "electricity", "a poem",
                                             "a database", "the internet", "a virus", "an ocean", "a rainbow"),
    "Name three {x}.": ("fruits", "colors", "animals", "countries", "vegetables", "planets", "sports",
                        "musical instruments", "programming languages", "birds", "flowers", "metals"),
    "How do I {x}?": ("make tea", "boil an egg", "learn to code", "stay healthy", "sleep better", "save money",
                      "write a letter", "plant a tree", "read faster", "make friends", "reverse a list in Python",
                      "open a file in Python"),
    "Why is {x}?": ("the sky blue", "the sea salty", "sleep important", "exercise good for you",
                    "water wet", "the sun hot", "grass green", "ice slippery"),
    "Translate '{x}' into French.": ("hello", "thank you", "good morning", "cat", "water", "my friend",
                                     "good night", "yes", "I love you", "see you soon"),
    "What does a {x} do?": ("doctor", "teacher", "pilot", "chef", "farmer", "programmer", "firefighter",
                            "librarian", "nurse", "painter", "judge", "mechanic"),
    "Is {x} a fruit or a vegetable?": ("an apple", "a carrot", "a banana", "broccoli", "a tomato", "a potato",
                                       "a grape", "spinach", "a mango", "an onion"),
    "Write a Python function that {x}.": ("adds two numbers", "returns the maximum of a list",
                                          "reverses a string", "checks if a number is even",
                                          "counts the vowels in a string", "returns the square of a number",
                                          "sums a list of numbers", "returns the length of a list"),
    "Tell me a fun fact about {x}.": ("dolphins", "space", "the ocean", "honey", "octopuses", "the moon",
                                      "elephants", "bees", "penguins", "volcanoes"),
}


def instruction_prompts() -> list[str]:
    """Every filled instruction template, in a fixed order."""
    return [template.format(x=x) for template, fills in _INSTRUCTIONS.items() for x in fills]


def addition_prompt(a: int, b: int, rng: random.Random, heldout: bool) -> str:
    return rng.choice(HELDOUT_ADDITION if heldout else TRAIN_ADDITION).format(a=a, b=b)
