"""Speed of the Decoding Explorer against its targets (issue 4), through the same handlers the tab calls.

Run: .venv/bin/python -m lab.benchmarks.decoding_tab [--model bundled|tiny-random] [--long 1024] [--repeats 3]
- first frame: click -> first streamed frame (all positions masked) and -> first decoded step, model already loaded
  (the app loads it once per process; the load is reported separately);
- a 128-token credit decode (block 32, paper preset), streamed as the tab does it;
- views from the trace alone (handler + Plotly JSON serialisation, which Gradio does before sending): switching the
  heatmap colour, paging, scrubbing, inspecting a token, and every view at once, on the 128-token trace and on a long
  trace (--long tokens, one step per token at worst: decoded with tiny-random at tau 1.0, so it has as many steps as
  positions whatever the model).
Prints a Markdown table and one JSON line; the numbers go to docs/DECODING_EXPLORER.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from app import decoding_panels as views  # noqa: E402
from app import decoding_runs as handlers  # noqa: E402
from app.session import CancelToken  # noqa: E402
from engine.models.cache import shared_dllm  # noqa: E402

PROMPT = "Explain what a diffusion language model is in one sentence."


def _median(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def first_frames(model: str, repeats: int) -> tuple[float, float]:
    """Median seconds from the click to the all-masked frame and to the first decoded step."""
    masked, stepped = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        frames = handlers.decode_frames(model, handlers.make_request(PROMPT, "credit", 128, 32, 0, 0.9, "paper", 0.65,
                                                                     0.7, 0.2, 0), CancelToken())
        next(frames)
        masked.append(time.perf_counter() - start)
        next(frames)
        stepped.append(time.perf_counter() - start)
        frames.close()  # cancels the rest of the decode
    return statistics.median(masked), statistics.median(stepped)


def streamed_decode(model: str, gen_length: int, tau: float = 0.9):
    """A whole streamed decode as the tab runs it; (seconds, frames shown, outcome)."""
    request = handlers.make_request(PROMPT, "credit", gen_length, 32, 0, tau, "paper", 0.65, 0.7, 0.2, 0)
    start, shown = time.perf_counter(), 0
    for frame in handlers.decode_frames(model, request, CancelToken()):
        shown += 1
    return time.perf_counter() - start, shown, frame.outcome


def view_times(trace, repeats: int) -> dict[str, float]:
    """Median seconds per view action (handler + JSON serialisation)."""
    last = trace.n_steps - 1
    pages = views.render_views(trace, "raw", 0)["pages"]
    return {
        "recolour heatmap (fused)": _median(lambda: views.heatmap(trace, "fused", 1).to_json(), repeats),
        "recolour heatmap (entropy)": _median(lambda: views.heatmap(trace, "entropy", 1).to_json(), repeats),
        f"heatmap last page ({pages})": _median(lambda: views.heatmap(trace, "raw", pages).to_json(), repeats),
        "scrub to a step": _median(lambda: views.scrub(trace, last // 2), repeats),
        "inspect a token": _median(lambda: views.inspect(trace, trace.meta["gen_length"] // 2)[0].to_json(), repeats),
        "all views (after a decode)": _median(lambda: [v.to_json() if hasattr(v, "to_json") else v
                                                       for v in views.render_views(trace, "raw", 0).values()],
                                              repeats),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=handlers.model_choices()[1])
    parser.add_argument("--long", type=int, default=1024, help="length of the long trace for view timings; 0 skips it")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    start = time.perf_counter()
    shared_dllm(args.model)  # the cache the handlers read
    load_seconds = time.perf_counter() - start
    masked, stepped = first_frames(args.model, args.repeats)
    decode_seconds, frames, outcome = streamed_decode(args.model, 128)
    long_trace = handlers.decode_once("tiny-random", handlers.make_request(
        PROMPT, "threshold", args.long, 32, 0, 1.0, "paper", 0.65, 0.7, 0.2, 0)).trace if args.long else None
    result = {
        "model": args.model, "machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "model_load_s": load_seconds,
        "first_frame_masked_s": masked, "first_frame_step_s": stepped,
        "credit_128_s": decode_seconds, "credit_128_nfe": outcome.result.nfe, "credit_128_frames": frames,
        "credit_128_answer": outcome.answer,
        "views_128": view_times(outcome.trace, args.repeats),
        "long_tokens": args.long, "long_steps": long_trace.n_steps if long_trace else 0,
        "views_long": view_times(long_trace, args.repeats) if long_trace else {},
    }
    print(f"| measure ({args.model}, {result['machine']}) | seconds | target |\n|---|---|---|")
    print(f"| model load (once per process) | {load_seconds:.2f} | - |")
    print(f"| click -> first frame (all masked) | {masked:.3f} | 2 |")
    print(f"| click -> first decoded step | {stepped:.3f} | 2 |")
    print(f"| 128-token credit decode, streamed (NFE {outcome.result.nfe}, {frames} frames) | "
          f"{decode_seconds:.2f} | 15 |")
    for label, key in (("128-token trace", "views_128"),
                       (f"{args.long}-token trace, {result['long_steps']} steps", "views_long")):
        for action, seconds in result[key].items():
            print(f"| {action}, {label} | {seconds:.3f} | 0.3 |")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
