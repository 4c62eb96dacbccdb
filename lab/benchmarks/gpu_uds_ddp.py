"""UDS data-parallel scaling: candidates per second of UDSTrainer on two GPUs against one (docs/UDS_SPEED.md,
section "Two GPUs"; target >= 1.8x).

The configuration of gpu_uds_speed.py's uds_default_graphs arm (random Llama of TinyLlama-1.1B's shape, bfloat16,
LoRA r 8 on all 7 projections, B = 8 candidates and K = 1 kept per process and micro-batch, sequences of 256-512
tokens, scoring forward from CUDA graphs), whose step is FLOP-bound; each process scores its own candidates, the
picks are gathered every micro-batch into the one buffer, gradients are all-reduced by DDP. samples/s counts the
candidates of all processes.

Run (each writes OUT_DIR/ddp_w{processes}.json from the main process), then compare:
    python lab/benchmarks/gpu_uds_ddp.py --out-dir OUT_DIR
    accelerate launch --multi_gpu --num_processes 2 lab/benchmarks/gpu_uds_ddp.py --out-dir OUT_DIR
    python lab/benchmarks/gpu_uds_ddp.py --out-dir OUT_DIR --compare
--smoke: the tiny Llama on CPU processes (gloo; start the two-process run with torchrun --nproc_per_node 2).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from gpu_common import header, write_json
from gpu_uds_speed import LLAMA_1B, LLAMA_TINY, random_llama, run_arm, synthetic_items

TARGET = 1.8


def measure(out_dir: Path, steps: int, warmup: int, smoke: bool) -> None:
    from accelerate import PartialState

    state = PartialState(cpu=smoke)
    device = state.device if not smoke else torch.device("cpu")
    shape, lengths = (LLAMA_TINY, (24, 48)) if smoke else (LLAMA_1B, (256, 512))
    batch = 8
    base = random_llama(shape, device)
    # Every process draws from the same pool; accelerate's sampler hands each its own micro-batches.
    items = synthetic_items(batch * state.num_processes * (steps + warmup) + batch, shape["vocab_size"], lengths)
    row = run_arm("uds_default_graphs", base, items, batch, steps, warmup, device, out_dir / "trainer")
    if state.is_main_process:
        write_json(out_dir / f"ddp_w{state.num_processes}.json",
                   {"environment": header(device), "processes": state.num_processes, "batch": batch, "keep": 1,
                    "lengths": lengths, "model": "tiny llama" if smoke else "llama-1.1b shape, random", **row})
        print(f"{state.num_processes} process(es): {row['samples_per_s']:.1f} samples/s", flush=True)


def compare(out_dir: Path) -> dict:
    one, two = (json.loads((out_dir / f"ddp_w{n}.json").read_text()) for n in (1, 2))
    ratio = two["samples_per_s"] / one["samples_per_s"]
    result = {"one_gpu_samples_per_s": one["samples_per_s"], "two_gpu_samples_per_s": two["samples_per_s"],
              "ratio": ratio, "target": TARGET, "meets_target": ratio >= TARGET}
    write_json(out_dir / "ddp_compare.json", result)
    print(f"two processes / one: {ratio:.2f}x (target >= {TARGET})", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--compare", action="store_true", help="read ddp_w1.json and ddp_w2.json, write the ratio")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    out_dir = Path(args.out_dir)
    if args.compare:
        compare(out_dir)
        return
    steps, warmup = (3, 1) if args.smoke else (args.steps, args.warmup)
    measure(out_dir, steps, warmup, args.smoke)


if __name__ == "__main__":
    main()
