"""Load test of the served app (issue 16): 8 and 16 concurrent /decode clients, then cancelled and disconnected
decodes, against the app served as app.py serves it (thread settings, queue, job limits), in this process.

Per phase: wall time, peak resident memory of the server process above its level before the phase (sampled every
50 ms), and the checks: every answer's trace carries its own prompt and equals a direct decode of that prompt; every
cancelled or disconnected job ended "cancelled", never "done"; the one-model-job limit held (never two at once); how
long a cancelled decode took to stop, against the length of one of its steps.

Run: .venv/bin/python -m lab.benchmarks.load [--model bundled] [--clients 8,16] [--out DIR] [--smoke]
--smoke (tiny-random, 2 and 4 clients) is what CI runs. Prints a Markdown table and one JSON line; with --out writes
load.json and load.md there.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import socket
import threading
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import httpx  # noqa: E402
from gradio_client import Client  # noqa: E402

from app.main import build_demo, launch  # noqa: E402
from app.session import DECODE_JOBS  # noqa: E402
from engine.decoding import DecodeCancelled, StepObserver  # noqa: E402
from engine.jobs import CancelToken  # noqa: E402
from engine.models import load_model  # noqa: E402
from engine.pipeline import DecodeRequest, decode  # noqa: E402
from engine.threads import configure_threads  # noqa: E402
from lab.benchmarks.cpu_report import write_report  # noqa: E402

SHORT = dict(rule="threshold", gen_length=32, block_length=16)  # the answers checked against direct decodes


class PeakMemory:
    """Samples this process's resident memory every 50 ms while in the `with` block."""

    def __enter__(self) -> "PeakMemory":
        self.start = self.peak = rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, rss_mb())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wait_for(condition, seconds: float = 600) -> float:
    """Seconds until condition() holds (raises after `seconds`)."""
    start = time.perf_counter()
    while not condition():
        if time.perf_counter() - start > seconds:
            raise TimeoutError(f"condition not met within {seconds} s")
        time.sleep(0.02)
    return time.perf_counter() - start


def outcomes_since(before: dict) -> dict:
    return {k: v - before.get(k, 0) for k, v in DECODE_JOBS.outcomes.items() if v != before.get(k, 0)}


def crowd(url: str, model_name: str, clients: int) -> dict:
    """`clients` sessions decode different prompts at once; each answer is checked against a direct decode."""
    prompts = [f"What is {a} + {b}?" for a, b in zip(range(clients), range(3, 3 + clients))]

    def one(prompt: str) -> dict:
        return Client(url, verbose=False).predict(prompt=prompt, model=model_name, api_name="/decode", **SHORT)

    with PeakMemory() as memory, concurrent.futures.ThreadPoolExecutor(clients) as pool:
        start = time.perf_counter()
        payloads = list(pool.map(one, prompts))
        wall = time.perf_counter() - start
    model = load_model(model_name)
    matched = 0
    for prompt, payload in zip(prompts, payloads):
        expected = decode(model, DecodeRequest(prompt=prompt, rule=SHORT["rule"], gen_length=32, block_length=16))
        matched += (payload["trace"]["meta"]["prompt"] == prompt and payload["answer"] == expected.answer
                    and payload["nfe"] == expected.result.nfe)
    return {"phase": f"{clients} clients decode at once", "wall_s": wall, "peak_rss_mb_above_start":
            memory.peak - memory.start, "traces_matching_their_prompt": f"{matched}/{clients}",
            "distinct_answers": len({p["answer"] for p in payloads})}


def cancels(url: str, model_name: str, long: dict, clients: int) -> dict:
    """`clients` sessions start long decodes; all cancel once the first runs; one short decode follows."""
    before = dict(DECODE_JOBS.outcomes)
    with PeakMemory() as memory:
        jobs = [Client(url, verbose=False).submit(prompt=f"Tell a long story number {n}.", model=model_name,
                                                  api_name="/decode", **long) for n in range(clients)]
        wait_for(lambda: DECODE_JOBS.running == 1)
        time.sleep(2.0)  # let it decode a few steps
        cancelled_at = time.perf_counter()
        for job in jobs:
            job.cancel()
        stop_s = wait_for(lambda: DECODE_JOBS.running == 0)
        after = Client(url, verbose=False).predict(prompt="hi", model=model_name, api_name="/decode", **SHORT)
    return {"phase": f"{clients} long decodes ({long['rule']}, gen {long['gen_length']}) cancelled", "wall_s":
            time.perf_counter() - cancelled_at, "stopped_s_after_cancel": stop_s, "peak_rss_mb_above_start":
            memory.peak - memory.start, "outcomes": outcomes_since(before), "short_decode_after": after["nfe"] > 0,
            "most_jobs_at_once": DECODE_JOBS.peak}


def disconnect(url: str, model_name: str, long: dict) -> dict:
    """A raw HTTP client starts a long decode and hangs up once it runs."""
    before = dict(DECODE_JOBS.outcomes)
    knobs = {"prompt": "A client that goes away.", "model": model_name, **long, "steps": 0, "tau": 0.9,
             "preset": "paper", "alpha": 0.65, "beta": 0.7, "gamma": 0.2, "seed": 0, "cache": "none"}
    order = ("prompt", "model", "rule", "gen_length", "block_length", "steps", "tau", "preset", "alpha", "beta",
             "gamma", "seed", "cache")
    with httpx.Client(base_url=url, timeout=600) as http:
        event_id = http.post("gradio_api/call/decode", json={"data": [knobs[k] for k in order]}).json()["event_id"]
        with http.stream("GET", f"gradio_api/call/decode/{event_id}") as stream:
            for line in stream.iter_lines():
                if line.startswith("data:") and "decoding" in line:
                    break
    hung_up = time.perf_counter()
    stop_s = wait_for(lambda: DECODE_JOBS.running == 0)
    return {"phase": "a client disconnects from a long decode", "wall_s": time.perf_counter() - hung_up,
            "stopped_s_after_cancel": stop_s, "outcomes": outcomes_since(before)}


def step_seconds(model_name: str, long: dict) -> float:
    """Median seconds of one step of the long decode, decoded directly (a cancel stops within one step)."""
    request = DecodeRequest(prompt="Tell a long story.", rule="low_confidence", gen_length=long["gen_length"],
                            block_length=long["block_length"], steps=long["gen_length"])
    token, times = CancelToken(), []

    class Timer(StepObserver):
        def step(self, event) -> None:
            times.append(event.seconds)
            if len(times) == 8:
                token.cancel()

    try:
        decode(load_model(model_name), request, observers=[Timer(), token.observer()])
    except DecodeCancelled:  # the cancel is how this measurement ends
        pass
    return sorted(times)[len(times) // 2]


def markdown(result: dict) -> str:
    lines = [f"Load test of the served app: {result['model']}, {result['machine']}, threads {result['threads']}.",
             f"Idle server after model load: {result['idle_rss_mb']:.0f} MB resident. One step of the long decode: "
             f"{result['long_step_s']:.2f} s.", "",
             "| phase | wall s | peak MB above start | checks |", "|---|---|---|---|"]
    for row in result["phases"]:
        checks = {k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()
                  if k not in ("phase", "wall_s", "peak_rss_mb_above_start")}
        peak = row.get("peak_rss_mb_above_start")
        lines.append(f"| {row['phase']} | {row['wall_s']:.1f} | {'-' if peak is None else f'{peak:.0f}'} | "
                     f"{json.dumps(checks)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="bundled")
    parser.add_argument("--clients", default="8,16")
    parser.add_argument("--cancels", type=int, default=3)
    parser.add_argument("--out", default=None)
    parser.add_argument("--smoke", action="store_true", help="tiny-random, 2 and 4 clients (CI)")
    args = parser.parse_args(argv)
    model_name = "tiny-random" if args.smoke else args.model
    clients = [2, 4] if args.smoke else [int(n) for n in args.clients.split(",")]
    long = dict(rule="low_confidence", gen_length=1024 if args.smoke else 256, block_length=64 if args.smoke else 32)
    threads = configure_threads()  # as app.py does at start-up
    load_model(model_name)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    demo = build_demo()
    launch(demo, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        Client(url, verbose=False).predict(prompt="warm up", model=model_name, api_name="/decode", **SHORT)
        result = {"model": model_name, "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, load average "
                  f"{os.getloadavg()[0]:.1f} at the start", "threads": threads.intra_op, "idle_rss_mb": rss_mb(),
                  "long_step_s": step_seconds(model_name, long), "phases": []}
        for n in clients:
            result["phases"].append(crowd(url, model_name, n))
        result["phases"].append(cancels(url, model_name, long, args.cancels))
        result["phases"].append(disconnect(url, model_name, long))
    finally:
        demo.close()
    write_report(result, markdown(result), args.out, "load")
    return result


if __name__ == "__main__":
    main()
