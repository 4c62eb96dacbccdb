"""Cached example traces (assets/examples): the tab shows a real trace before anyone spends a model call.

Regenerate with `python -m app.examples` (bundled model, CPU, about a minute)."""
from __future__ import annotations

import functools
from pathlib import Path

from engine.decoding import Trace, load_trace, save_trace

FOLDER = Path(__file__).resolve().parents[1] / "assets" / "examples"
# (file stem, prompt, rule, gen_length): the same prompt under the three rules, and a longer credit answer.
EXAMPLES = [
    ("capital_credit", "What is the capital of France?", "credit", 64),
    ("capital_threshold", "What is the capital of France?", "threshold", 64),
    ("capital_fixed_steps", "What is the capital of France?", "low_confidence", 64),
    ("sea_poem_credit", "Write a short poem about the sea.", "credit", 128),
]


def example_names() -> list[str]:
    return sorted(path.name.removesuffix(".json.gz") for path in FOLDER.glob("*.json.gz"))


@functools.lru_cache(maxsize=8)
def example_trace(name: str) -> Trace:
    if name not in example_names():
        raise ValueError(f"example {name!r} is unknown; pick one of: {', '.join(example_names())}")
    return load_trace(FOLDER / f"{name}.json.gz")


def main() -> None:
    from engine.models import load_model
    from engine.pipeline import DecodeRequest, decode

    model = load_model("bundled", device="cpu")
    FOLDER.mkdir(parents=True, exist_ok=True)
    for stem, prompt, rule, gen_length in EXAMPLES:
        outcome = decode(model, DecodeRequest(prompt=prompt, rule=rule, gen_length=gen_length, block_length=32))
        save_trace(outcome.trace, FOLDER / f"{stem}.json.gz")
        print(f"{stem}: NFE {outcome.result.nfe}, {outcome.answer!r}")


if __name__ == "__main__":
    main()
