"""Cached example traces (assets/examples): the tab shows a real trace before anyone spends a model call.

Regenerate with `python -m app.examples` (bundled model; a few minutes on a 2-core CPU). Each example is decoded
REPEATS times and the fastest run is kept (the tokens are the same every time; a shared machine's other jobs only slow
some runs down); `--keep-faster` keeps a faster file from an earlier invocation. Each trace records the machine it was decoded on (meta "machine"), and the page prints it beside the
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
           examples: list[tuple[str, str, str, int]] = EXAMPLES, keep_faster: bool = False) -> None:
    """Decode each example `repeats` times on `device`, keep the fastest, and write it with the machine's name and
    how many runs it was the fastest of. keep_faster: a file already there from the same machine stays when it was
    faster (the count adds up), so runs taken whenever a shared machine is quiet only ever improve the examples."""
    from engine.models import load_model
    from engine.pipeline import DecodeRequest, decode

    model = load_model(model_name, device=device)
    where = machine(str(model.device))
    folder.mkdir(parents=True, exist_ok=True)
    for stem, prompt, rule, gen_length in examples:
        request = DecodeRequest(prompt=prompt, rule=rule, gen_length=gen_length, block_length=32)
        best = min((decode(model, request) for _ in range(repeats)), key=lambda o: o.result.seconds).trace
        path, runs = folder / f"{stem}.json.gz", repeats
        previous = load_trace(path) if keep_faster and path.exists() else None
        if previous is not None and previous.meta.get("machine", "").startswith(where):
            runs += int(previous.meta.get("runs", 1))
            best = previous if previous.meta["seconds"] <= best.meta["seconds"] else best
        best.meta.update(runs=runs, machine=where + (f" (fastest of {runs} runs)" if runs > 1 else ""))
        save_trace(best, path)
        print(f"{stem}: NFE {best.meta['nfe']}, {best.meta['seconds']:.2f} s (fastest of {runs})")


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m app.examples", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda (the page names the machine either way)")
    parser.add_argument("--out", default=str(FOLDER), help="where the .json.gz traces go")
    parser.add_argument("--repeats", type=int, default=REPEATS)
    parser.add_argument("--keep-faster", action="store_true", help="keep a file already there when it was faster")
    parser.add_argument("--smoke", action="store_true", help="tiny-random model, the first example once (a check)")
    args = parser.parse_args(argv)
    if args.smoke:
        record("tiny-random", args.device, Path(args.out), 1, EXAMPLES[:1])
    else:
        record("bundled", args.device, Path(args.out), args.repeats, keep_faster=args.keep_faster)


if __name__ == "__main__":
    main()
