"""Cached example traces (assets/examples): the tab shows a real trace before anyone spends a model call.

Regenerate with `python -m app.examples` (bundled model; a few minutes on a 2-core CPU). Each example is decoded
REPEATS times and the fastest run is kept (the tokens are the same every time; a shared machine's other jobs only slow
some runs down). Each trace records the machine it was decoded on (meta "machine"), and the page prints it beside the
seconds: NFE is the number that carries over between machines, the seconds are that machine's."""
from __future__ import annotations

import functools
import os
from pathlib import Path

from engine.decoding import Trace, load_trace, save_trace

REPEATS = 3  # decodes per example; the fastest is kept
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


def machine(device: str) -> str:
    """The machine a decode ran on, in words: the GPU's name, or the CPU's core count."""
    import torch

    if device.startswith("cuda"):
        return f"an {torch.cuda.get_device_name(torch.device(device))} GPU"
    return f"a {len(os.sched_getaffinity(0))}-core CPU"


def record(model_name: str = "bundled", device: str = "cpu", folder: Path = FOLDER, repeats: int = REPEATS,
           examples: list[tuple[str, str, str, int]] = EXAMPLES) -> None:
    """Decode each example `repeats` times on `device`, keep the fastest, and write it with the machine's name."""
    from engine.models import load_model
    from engine.pipeline import DecodeRequest, decode

    model = load_model(model_name, device=device)
    folder.mkdir(parents=True, exist_ok=True)
    for stem, prompt, rule, gen_length in examples:
        request = DecodeRequest(prompt=prompt, rule=rule, gen_length=gen_length, block_length=32)
        outcome = min((decode(model, request) for _ in range(repeats)), key=lambda o: o.result.seconds)
        outcome.trace.meta["machine"] = machine(str(model.device)) + (f" (fastest of {repeats} runs)"
                                                                      if repeats > 1 else "")
        save_trace(outcome.trace, folder / f"{stem}.json.gz")
        print(f"{stem}: NFE {outcome.result.nfe}, {outcome.result.seconds:.2f} s, {outcome.answer!r}")


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m app.examples", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda (the page names the machine either way)")
    parser.add_argument("--out", default=str(FOLDER), help="where the .json.gz traces go")
    parser.add_argument("--repeats", type=int, default=REPEATS)
    parser.add_argument("--smoke", action="store_true", help="tiny-random model, the first example once (a check)")
    args = parser.parse_args(argv)
    if args.smoke:
        record("tiny-random", args.device, Path(args.out), 1, EXAMPLES[:1])
    else:
        record("bundled", args.device, Path(args.out), args.repeats)


if __name__ == "__main__":
    main()
