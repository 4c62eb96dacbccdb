"""The benchmark grid on the GPU (engine.bench: task sets x rules x gen lengths x blocks) and a credit sensitivity
sweep (alpha x beta) on one task set, inside a time budget: (gen, block) pairs run in priority order and the grid
stops cleanly, writing what it has, when the budget is spent.

Run: python lab/benchmarks/gpu_grid.py --out-dir DIR [--budget-s 240] [--smoke]
Writes DIR/grid.json + DIR/grid.md (as `python -m engine bench` writes them) and DIR/sensitivity.json.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import torch
from gpu_common import header, write_json

from engine.bench.config import DEFAULT_RULES, BenchConfig
from engine.bench.report import credit_vs_fixed, markdown
from engine.bench.runner import run_grid
from engine.models import load_model

PAIRS = ((256, 32), (64, 32), (128, 32), (256, 64), (64, 64), (128, 64))  # (gen, block), most wanted first
SIZES = {"addition": 48, "math": 48, "humaneval": 32, "chat": 32}  # questions per task set
ALPHAS, BETAS = (0.3, 0.65, 1.0, 1.5), (0.5, 0.7, 0.8, 0.9)
SWEEP_SET, SWEEP_GEN, SWEEP_BLOCK = "chat", 128, 32  # chat: many steps per answer, so the knobs can matter


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--budget-s", type=float, default=240.0)
    parser.add_argument("--smoke", action="store_true", help="tiny-random on the CPU, 2 questions, one pair")
    parser.add_argument("--pairs", default="", help="only these gen x block pairs, e.g. 256x64,64x64")
    parser.add_argument("--no-sweep", action="store_true", help="skip the alpha x beta sweep")
    args = parser.parse_args()
    began = time.perf_counter()
    cuda = torch.cuda.is_available() and not args.smoke
    model = load_model("tiny-random" if args.smoke else "bundled", device="cuda" if cuda else "cpu")
    out_dir = Path(args.out_dir)
    base = BenchConfig(model=model.spec.name, batch=16 if cuda else 2, bucket=64 if cuda else 0, cuda_graph=cuda,
                       device=str(model.device))
    sizes = {name: 2 for name in SIZES} if args.smoke else SIZES
    pairs = ((32, 16),) if args.smoke else PAIRS
    if args.pairs:
        pairs = tuple(tuple(int(v) for v in pair.split("x")) for pair in args.pairs.split(","))
    cells, samples, skipped = [], [], []

    def left() -> float:
        return args.budget_s - (time.perf_counter() - began)

    def save() -> None:
        config = replace(base, task_sets=tuple(sizes), gen_lengths=tuple(sorted({c["gen_length"] for c in cells})),
                         block_lengths=tuple(sorted({c["block_length"] for c in cells})), n=max(sizes.values()))
        meta = {"config": {**config.__dict__, "n_per_set": sizes}, "environment": header(model.device)}
        write_json(out_dir / "grid.json", {**meta, "cells": cells, "credit_vs_fixed": credit_vs_fixed(cells),
                                           "skipped": skipped, "samples": [s.__dict__ for s in samples]})
        (out_dir / "grid.md").write_text(markdown(meta, cells), encoding="utf-8")

    def grid(gen: int, block: int) -> None:
        for task_set, n in sizes.items():
            if left() < 20:
                skipped.append({"task_set": task_set, "gen_length": gen, "block_length": block})
                continue
            config = replace(base, task_sets=(task_set,), n=n, rules=DEFAULT_RULES, gen_lengths=(gen,),
                             block_lengths=(block,))
            new_cells, new_samples = run_grid(model, config, lambda m: print(f"[grid] {m}", flush=True))
            cells.extend(new_cells)
            samples.extend(new_samples)
            save()

    grid(*pairs[0])
    sweep = [f"credit:alpha={a},beta={b}" for a in ALPHAS for b in BETAS][:2 if args.smoke else None]
    if left() > 40 and not args.no_sweep:
        gen, block = (SWEEP_GEN, SWEEP_BLOCK) if not args.smoke else pairs[0]
        config = replace(base, task_sets=(SWEEP_SET,), n=sizes[SWEEP_SET], rules=("low_confidence", "threshold", *sweep),
                         gen_lengths=(gen,), block_lengths=(block,))
        sweep_cells, _ = run_grid(model, config, lambda m: print(f"[sweep] {m}", flush=True))
        write_json(out_dir / "sensitivity.json", {"environment": header(model.device), "task_set": SWEEP_SET,
                                                  "gen_length": gen, "block_length": block,
                                                  "alphas": ALPHAS, "betas": BETAS, "cells": sweep_cells})
    for gen, block in pairs[1:]:
        grid(gen, block)
    save()
    print(f"grid: {len(cells)} cells in {time.perf_counter() - began:.0f} s, {len(skipped)} skipped", flush=True)


if __name__ == "__main__":
    main()
