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


def credit_vs_fixed(cells: list[dict]) -> list[dict]:
    """Per task set, length and block: each rule's NFE reduction over fixed steps and its accuracy difference."""
    fixed = {(c["task_set"], c["gen_length"], c["block_length"]): c for c in cells if is_baseline(c["rule"])}
    out = []
    for c in cells:
        base = fixed.get((c["task_set"], c["gen_length"], c["block_length"]))
        if base is None or is_baseline(c["rule"]):
            continue
        out.append({"task_set": c["task_set"], "gen_length": c["gen_length"], "block_length": c["block_length"],
                    "rule": c["rule"], "nfe_reduction": base["mean_nfe"] / max(c["mean_nfe"], 1e-9),
                    "accuracy_delta": c["accuracy"] - base["accuracy"]})
    return out


def _rate(value: float) -> str:
    return f"{value:.1f}" if value >= 1 else f"{value:.3f}"  # CPU rates can be well under one token per second


def markdown(meta: dict, cells: list[dict]) -> str:
    env = meta["environment"]
    lines = [f"Model `{meta['config']['model']}`, {env['device_name']}, commit `{env['commit']}`, {env['date']}; "
             f"n = {meta['config']['n']} per task set, batch {meta['config']['batch']}, "
             f"CUDA graphs {'on' if meta['config']['cuda_graph'] else 'off'}.", "",
             "| task set | rule | gen | block | n | accuracy % | mean NFE | NFE vs fixed steps | tokens/s | wall s "
             "| EOS % | degenerate % |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    ratios = {(r["task_set"], r["gen_length"], r["block_length"], r["rule"]): r["nfe_reduction"]
              for r in credit_vs_fixed(cells)}
    for c in cells:
        ratio = ratios.get((c["task_set"], c["gen_length"], c["block_length"], c["rule"]))
        versus = "1.00x" if is_baseline(c["rule"]) else "" if ratio is None else f"{ratio:.2f}x"
        lines.append(f"| {c['task_set']} | {c['rule']} | {c['gen_length']} | {c['block_length']} | {c['n']} | "
                     f"{c['accuracy']:.1f} | {c['mean_nfe']:.1f} | {versus} | {_rate(c['tokens_per_s'])} | "
                     f"{c['wall_s']:.1f} | {c['eos_rate']:.0f} | {c['degenerate_rate']:.0f} |")
    return "\n".join(lines) + "\n"


def write_results(out_dir: str | Path, config, cells: list[dict], samples: list, device: torch.device) -> dict:
    """Write bench.json and bench.md under `out_dir`; return the JSON object."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"config": asdict(config), "environment": environment(device)}
    obj = {**meta, "cells": cells, "credit_vs_fixed": credit_vs_fixed(cells),
           "samples": [asdict(s) for s in samples]}
    (out / "bench.json").write_text(json.dumps(obj, indent=1), encoding="utf-8")
    (out / "bench.md").write_text(markdown(meta, cells), encoding="utf-8")
    return obj
