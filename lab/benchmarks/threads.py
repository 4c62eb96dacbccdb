"""Torch intra-op thread counts on this CPU (issue 16, item 8): the issue's case, a fixed-steps gen-32 decode of the
bundled model, with each thread count, alone and while the server draws views in another thread (what a page does
while a decode streams). Each count runs in a fresh process: torch fixes its thread pools per process.

Run: .venv/bin/python -m lab.benchmarks.threads [--threads 1,2] [--repeats 5] [--out DIR] [--smoke]
Prints a Markdown table and one JSON line, and writes threads.json / threads.md under --out. engine/threads.py picks
the app's default (usable cores - 1) from these numbers; --smoke (tiny-random, one repeat) is what CI runs.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from lab.benchmarks.cpu_report import write_report

PROMPT = "What is 3 + 4?"


def child(model_name: str, repeats: int) -> dict:
    """In this process (threads already set by DLLM_TORCH_THREADS): decode seconds alone and under view drawing."""
    from app import decoding_panels as views
    from app.examples import example_names, example_trace
    from engine.models import load_model
    from engine.pipeline import DecodeRequest, decode
    from engine.threads import configure_threads

    settings = configure_threads()
    model = load_model(model_name, device="cpu")
    request = DecodeRequest(prompt=PROMPT, rule="low_confidence", gen_length=32, block_length=32)
    trace = example_trace(example_names()[0])

    def draw() -> None:
        for value in views.render_views(trace, "raw", 0).values():
            getattr(value, "to_json", lambda: value)()

    def decodes() -> list[float]:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            decode(model, request)
            times.append(time.perf_counter() - start)
        return times

    decode(model, request)  # warm-up
    alone = decodes()
    start, drawn = time.perf_counter(), 0
    while time.perf_counter() - start < 2.0:
        draw()
        drawn += 1
    views_alone = drawn / (time.perf_counter() - start)
    stop, counted = threading.Event(), [0]

    def server() -> None:
        while not stop.is_set():
            draw()
            counted[0] += 1

    drawer = threading.Thread(target=server, daemon=True)
    start = time.perf_counter()
    drawer.start()
    busy = decodes()
    stop.set()
    drawer.join()
    return {"intra_op": settings.intra_op, "inter_op": settings.inter_op, "decode_s": statistics.median(alone),
            "decode_s_with_views": statistics.median(busy), "views_per_s_alone": views_alone,
            "views_per_s_during_decodes": counted[0] / (time.perf_counter() - start)}


def run(threads: list[int], model_name: str, repeats: int) -> dict:
    rows = []
    for count in threads:
        env = {**os.environ, "DLLM_TORCH_THREADS": str(count)}
        env.pop("OMP_NUM_THREADS", None)
        out = subprocess.run([sys.executable, "-m", "lab.benchmarks.threads", "--child", "--model", model_name,
                              "--repeats", str(repeats)], env=env, capture_output=True, text=True, check=True,
                             cwd=Path(__file__).resolve().parents[2])
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    from engine.threads import usable_cores
    return {"model": model_name, "machine": f"{platform.machine()}, {usable_cores()} usable cores "
            f"(os.cpu_count {os.cpu_count()}), load average {os.getloadavg()[0]:.1f} at the end", "repeats": repeats,
            "rows": rows}


def markdown(result: dict) -> str:
    base = result["rows"][-1]  # the most threads: torch's default when it equals the usable cores
    lines = [f"Fixed-steps gen-32 decode of {result['model']} ({result['machine']}; medians of {result['repeats']}).",
             "", "| intra-op threads | decode s | decode s while views draw | views/s alone | views/s during decodes "
             f"| decode time vs {base['intra_op']} threads (alone / with views) |", "|---|---|---|---|---|---|"]
    for row in result["rows"]:
        lines.append(f"| {row['intra_op']} | {row['decode_s']:.2f} | {row['decode_s_with_views']:.2f} | "
                     f"{row['views_per_s_alone']:.1f} | {row['views_per_s_during_decodes']:.1f} | "
                     f"{row['decode_s'] / base['decode_s']:.2f}x / "
                     f"{row['decode_s_with_views'] / base['decode_s_with_views']:.2f}x |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2", help="comma-separated intra-op thread counts")
    parser.add_argument("--model", default="bundled")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=None, help="folder for threads.json and threads.md")
    parser.add_argument("--smoke", action="store_true", help="tiny-random, one repeat (CI)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    model_name, repeats = ("tiny-random", 1) if args.smoke else (args.model, args.repeats)
    if args.child:
        result = child(model_name, repeats)
        print(json.dumps(result))
        return result
    result = run([int(n) for n in args.threads.split(",")], model_name, repeats)
    write_report(result, markdown(result), args.out, "threads")
    return result


if __name__ == "__main__":
    main()
