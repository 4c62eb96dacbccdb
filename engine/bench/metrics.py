"""How answers are scored: exact answer, degenerate repetition, ending with EOS."""
from __future__ import annotations

import re
from fractions import Fraction

NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:/\d+)?")
REPEAT_NGRAM = 3  # word n-gram size of the repetition measure
DEGENERATE_RATIO = 0.3  # an answer is degenerate when more than this share of its word 3-grams are repeats
DEGENERATE_RUN = 4  # ... or when one word appears this many times in a row


def _normalise(text: str) -> str:
    return " ".join(text.strip().rstrip(".").split()).lower()


def _as_number(text: str) -> Fraction | None:
    try:
        return Fraction(text)
    except (ValueError, ZeroDivisionError):
        return None


def answer_correct(answer: str, target: str) -> bool:
    """Exact answer: the whole answer equals the target (case, spaces and a final period aside), or, for a numeric
    target, the answer's last number equals it ("3 + 5 = 8." counts; the AR teacher words its answers)."""
    if _normalise(answer) == _normalise(target):
        return True
    target_value = _as_number(target.strip())
    if target_value is None:
        return False
    numbers = NUMBER.findall(answer)
    return bool(numbers) and _as_number(numbers[-1]) == target_value


def repeated_ngram_ratio(text: str, n: int = REPEAT_NGRAM) -> float:
    """Share of the answer's word n-grams that repeat an earlier n-gram of the same answer (0 for short answers)."""
    words = text.split()
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    return 0.0 if len(grams) < 2 else 1.0 - len(set(grams)) / len(grams)


def longest_word_run(text: str) -> int:
    words, best, run = text.split(), 0, 0
    for i, word in enumerate(words):
        run = run + 1 if i and word == words[i - 1] else 1
        best = max(best, run)
    return best


def is_degenerate(text: str) -> bool:
    """Degenerate repetition: > 30% of word 3-grams are repeats, or one word 4+ times in a row."""
    return repeated_ngram_ratio(text) > DEGENERATE_RATIO or longest_word_run(text) >= DEGENERATE_RUN
