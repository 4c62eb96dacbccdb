"""SFT samples and the bundled mixture built from installed packages, with a held-out split.

A `Sample` is data only: a prompt, the response the loss is computed on, where it came from, and for exact-answer
items (mathematics-dataset) the reference answer used by the held-out accuracy.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.data.sources import chat_conversations, humaneval_problems, math_qa

# School-maths modules with short exact answers, so a 135M model's greedy answer can be scored by string equality.
BUNDLED_MATH_MODULES = ("arithmetic__add_or_sub", "arithmetic__mul", "arithmetic__add_sub_multiple",
                        "numbers__place_value", "numbers__round_number", "numbers__gcd", "comparison__pair",
                        "algebra__linear_1d")


@dataclass(frozen=True)
class Sample:
    sample_id: str  # unique within a dataset, stable across runs with the same seed
    source: str  # "chatterbot" | "mathematics" | "humaneval" | "upload" | "hub"
    category: str  # chatterbot file stem, maths module, "humaneval", or an upload's category column
    prompt: str  # user turn
    response: str  # assistant turn (the loss is computed on it)
    answer: str = ""  # exact reference answer for scored items (maths), "" otherwise

    @property
    def is_exact(self) -> bool:
        return bool(self.answer)


@dataclass(frozen=True)
class Dataset:
    name: str  # "bundled", an upload's file name, or a Hub id
    train: tuple[Sample, ...]  # the candidate pool the selector draws micro-batches from
    heldout: tuple[Sample, ...]  # never trained on; evaluated at the end
    truncated: int = 0  # samples longer than the cut-off (filled in at tokenisation, see batching.encode_dataset)

    def __post_init__(self) -> None:
        if not self.train:
            raise ValueError(f"dataset {self.name!r} has no training samples; it needs at least one row with a "
                             f"non-empty prompt and response")


def bundled_samples(n_chat: int = 240, n_maths_per_module: int = 30, n_code: int = 32, seed: int = 0) -> list[Sample]:
    """The mixture: chatterbot first-turn -> reply pairs by category, maths Q -> A by module, HumanEval prompt ->
    canonical solution. Deterministic for a seed."""
    rng = np.random.default_rng(seed)
    chats = [c for c in chat_conversations() if len(c["turns"]) >= 2]
    samples = [Sample(sample_id=f"chat-{i}", source="chatterbot", category=chats[i]["category"],
                      prompt=chats[i]["turns"][0], response=chats[i]["turns"][1])
               for i in sorted(rng.choice(len(chats), size=min(n_chat, len(chats)), replace=False).tolist())]
    for module in BUNDLED_MATH_MODULES:
        for j, qa in enumerate(math_qa(module, n=n_maths_per_module, seed=seed)):
            samples.append(Sample(sample_id=f"math-{module}-{j}", source="mathematics", category=module,
                                  prompt=qa["question"], response=qa["answer"], answer=qa["answer"]))
    problems = humaneval_problems()
    for i in sorted(rng.choice(len(problems), size=min(n_code, len(problems)), replace=False).tolist()):
        p = problems[i]
        samples.append(Sample(sample_id=p["task_id"].replace("/", "-"), source="humaneval", category="humaneval",
                              prompt=p["prompt"], response=p["canonical_solution"]))
    return samples


def split_heldout(name: str, samples: list[Sample], heldout_fraction: float = 0.1, seed: int = 0) -> Dataset:
    """Hold out `heldout_fraction` of every source (at least one item of each source with >= 2 items); the held-out
    list interleaves sources round-robin so the first items of any eval budget cover them all."""
    if not 0.0 <= heldout_fraction < 1.0:
        raise ValueError(f"heldout_fraction={heldout_fraction} is out of range; allowed: [0, 1)")
    if not samples:
        raise ValueError(f"dataset {name!r} is empty: no rows with a prompt and a response")
    rng = np.random.default_rng(seed)
    by_source: dict[str, list[Sample]] = {}
    for s in samples:
        by_source.setdefault(s.source, []).append(s)
    train, held_groups = [], []
    for source in sorted(by_source):
        group = by_source[source]
        order = rng.permutation(len(group))
        n_held = 0 if heldout_fraction == 0 else max(int(round(len(group) * heldout_fraction)), int(len(group) >= 2))
        held_groups.append([group[i] for i in order[:n_held].tolist()])  # shuffled: round-robin mixes categories
        train.extend(group[i] for i in sorted(order[n_held:].tolist()))
    heldout = [g[i] for i in range(max(map(len, held_groups), default=0)) for g in held_groups if i < len(g)]
    return Dataset(name=name, train=tuple(train), heldout=tuple(heldout))


def bundled_dataset(seed: int = 0, heldout_fraction: float = 0.1) -> Dataset:
    return split_heldout("bundled", bundled_samples(seed=seed), heldout_fraction, seed)
