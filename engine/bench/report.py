"""Results files: raw JSON (settings, environment, every cell and answer) and a Markdown table.

Every results file names the git commit and the device it was measured on. On a machine without the repository's
.git (the GPU machine gets a copy of the working tree), the commit comes from the BENCH_COMMIT variable.
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
from dataclasses import asdict
from pathlib import Path

import torch

from engine.decoding.registry import is_baseline

COMMIT_ENV = "BENCH_COMMIT"  # set by whoever runs the benchmark from a copy without .git


def git_commit() -> str:
    """The commit hash, with "+dirty" when tracked files differ from it; BENCH_COMMIT wins; "unknown" otherwise."""
    if os.environ.get(COMMIT_ENV):
        return os.environ[COMMIT_ENV]
    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    if head.returncode != 0:
        return "unknown"
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    return f"CPU ({cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} threads)"


def environment(device: torch.device) -> dict:
    return {"commit": git_commit(), "device": str(device), "device_name": device_name(device),
            "torch": torch.__version__, "transformers": _version("transformers"), "python": platform.python_version(),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def _setting(c: dict) -> tuple:
    return c["task_set"], c["gen_length"], c["block_length"], c.get("cache", "none")


def credit_vs_fixed(cells: list[dict]) -> list[dict]:
    """Per task set, length, block and cache: each rule's NFE reduction over fixed steps and its accuracy difference."""
    fixed = {_setting(c): c for c in cells if is_baseline(c["rule"])}
    out = []
    for c in cells:
        base = fixed.get(_setting(c))
        if base is None or is_baseline(c["rule"]):
            continue
        out.append({"task_set": c["task_set"], "gen_length": c["gen_length"], "block_length": c["block_length"],
                    "cache": c.get("cache", "none"), "rule": c["rule"],
                    "nfe_reduction": base["mean_nfe"] / max(c["mean_nfe"], 1e-9),
                    "accuracy_delta": c["accuracy"] - base["accuracy"]})
    return out


def cache_vs_none(cells: list[dict], samples: list[dict]) -> list[dict]:
    """Per task set, length, block and rule: each cache mode against no cache with the same rule, as the accuracy
    difference (points) and the share of questions whose answer is identical (%)."""
    answers = {(_setting(s), s["rule"], s["task_id"]): s["answer"] for s in samples}
    plain = {(_setting(c)[:3], c["rule"]): c for c in cells if c.get("cache", "none") == "none"}
    out = []
    for c in cells:
        base = plain.get((_setting(c)[:3], c["rule"]))
        if base is None or c.get("cache", "none") == "none":
            continue
        mine = [s for s in samples if (_setting(s), s["rule"]) == (_setting(c), c["rule"])]
        same = [answers.get((_setting(c)[:3] + ("none",), c["rule"], s["task_id"])) == s["answer"] for s in mine]
        out.append({"task_set": c["task_set"], "gen_length": c["gen_length"], "block_length": c["block_length"],
                    "rule": c["rule"], "cache": c["cache"], "accuracy_delta": c["accuracy"] - base["accuracy"],
                    "identical_answers": 100.0 * sum(same) / max(len(same), 1),
                    "nfe_ratio": c["mean_nfe"] / max(base["mean_nfe"], 1e-9)})
    return out


def _rate(value: float) -> str:
    return f"{value:.1f}" if value >= 1 else f"{value:.3f}"  # CPU rates can be well under one token per second


def _parallel_line(par: dict) -> str:
    per = ", ".join(f"rank {p['rank']} ({p['device']}) {p['questions']} in {p['seconds']:.1f} s = "
                    f"{p['questions_per_s']:.2f}/s" for p in par["per_process"])
    return (f"Data-parallel over {par['processes']} processes: {par['questions']} questions (each once per cell) in "
            f"{par['seconds']:.1f} s (slowest process) = **{par['questions_per_s']:.2f} questions/s**; {per}. "
            "Cell wall s and tokens/s add up the processes' decode time (per-process throughput).")


def markdown(meta: dict, cells: list[dict], cache_rows: list[dict] = ()) -> str:
    env = meta["environment"]
    lines = [f"Model `{meta['config']['model']}`, {env['device_name']}, commit `{env['commit']}`, {env['date']}; "
             f"n = {meta['config']['n']} per task set, batch {meta['config']['batch']}, "
             f"CUDA graphs {'on' if meta['config']['cuda_graph'] else 'off'}.", ""]
    if meta.get("parallel"):
        lines += [_parallel_line(meta["parallel"]), ""]
    lines += ["| task set | rule | gen | block | cache | n | accuracy % | mean NFE | NFE vs fixed steps | tokens/s "
              "| wall s | EOS % | degenerate % |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    ratios = {_setting(r) + (r["rule"],): r["nfe_reduction"] for r in credit_vs_fixed(cells)}
    for c in cells:
        ratio = ratios.get(_setting(c) + (c["rule"],))
        versus = "1.00x" if is_baseline(c["rule"]) else "" if ratio is None else f"{ratio:.2f}x"
        lines.append(f"| {c['task_set']} | {c['rule']} | {c['gen_length']} | {c['block_length']} | "
                     f"{c.get('cache', 'none')} | {c['n']} | {c['accuracy']:.1f} | {c['mean_nfe']:.1f} | {versus} | "
                     f"{_rate(c['tokens_per_s'])} | {c['wall_s']:.1f} | {c['eos_rate']:.0f} | "
                     f"{c['degenerate_rate']:.0f} |")
    if cache_rows:
        lines += ["", "Each cache mode against no cache, same rule:", "",
                  "| task set | rule | gen | block | cache | accuracy vs none (points) | identical answers % "
                  "| NFE vs none |", "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['task_set']} | {r['rule']} | {r['gen_length']} | {r['block_length']} | {r['cache']} | "
                  f"{r['accuracy_delta']:+.1f} | {r['identical_answers']:.0f} | {r['nfe_ratio']:.2f}x |"
                  for r in cache_rows]
    return "\n".join(lines) + "\n"


def write_results(out_dir: str | Path, config, cells: list[dict], samples: list, device: torch.device,
                  parallel: dict | None = None) -> dict:
    """Write bench.json and bench.md under `out_dir`; return the JSON object. `parallel`: the data-parallel
    throughput (engine.bench.parallel.throughput) when several processes decoded."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"config": asdict(config), "environment": environment(device), "parallel": parallel}
    rows = [asdict(s) for s in samples]
    cache_rows = cache_vs_none(cells, rows)
    obj = {**meta, "cells": cells, "credit_vs_fixed": credit_vs_fixed(cells), "cache_vs_none": cache_rows,
           "samples": rows}
    (out / "bench.json").write_text(json.dumps(obj, indent=1), encoding="utf-8")
    (out / "bench.md").write_text(markdown(meta, cells, cache_rows), encoding="utf-8")
    return obj
