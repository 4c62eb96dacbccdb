"""The bundled model's decoding step at batch 1 (~200 positions) and batched decoding throughput.

Step versions (credit, paper preset, gen 128, block 32, trace recorded, no early stop so every step is counted):
  eager_full   - the app's path before this work: LoadedModel, eager forward, full LM head
  eager_block  - StaticForward eager: LM head on the block's rows only
  graph_block  - StaticForward replaying a CUDA graph of the forward
  compiled     - (--compile) torch.compile'd model (inductor, default mode) replayed from a CUDA graph, and the
                 batched throughput again with it
For each: the bare forward (median of replays) and the step = forward + rule + trace (decode wall / NFE).
Batched: B = 1, 8, 32 held-out chat prompts, left-padded to a multiple of 64, credit, gen 128, block 32, EOS early
stop, CUDA graphs, trace off; tokens/s = answer tokens (to EOS) / wall time.

Run: python lab/benchmarks/gpu_bundled.py --out OUT.json [--compile] [--smoke]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from gpu_common import header, median_ms, write_json

from engine.bench.runner import _padded_prompts, row_nfe
from engine.bench.tasks import chat_tasks
from engine.decoding import generate, make_rule
from engine.models import load_model
from engine.models.base import LoadedModel
from engine.models.cuda_graph import GraphCache, StaticForward

GEN, BLOCK = 128, 32


def step_prompt(model: LoadedModel, target_length: int) -> torch.Tensor:
    """A real held-out chat prompt, repeated in the user turn until prompt + GEN is about `target_length`."""
    question = chat_tasks(1)[0].prompt
    text = question
    while model.encode_prompt(text + " " + question).shape[1] + GEN <= target_length:
        text += " " + question
    return model.encode_prompt(text)


def time_version(model: LoadedModel, forward, prompt: torch.Tensor, device: torch.device) -> dict:
    x = torch.cat([prompt, torch.full((1, GEN), model.spec.mask_id, device=device)], 1)  # (1, L)
    start = prompt.shape[1] - 1 if model.spec.shift else prompt.shape[1]
    if hasattr(forward, "block_logits"):
        bare = median_ms(lambda: forward.block_logits(x, start, start + BLOCK), device, repeats=30)
    else:
        bare = median_ms(lambda: forward(x), device, repeats=30)
    decode = {}
    for trace in (True, False):
        runs = []
        for _ in range(2):  # the first also warms up (graph capture of the decode's shapes)
            result = generate(forward, prompt, make_rule("credit", "paper"), gen_length=GEN, block_length=BLOCK,
                              mask_id=model.spec.mask_id, shift=model.spec.shift, record_trace=trace)
            runs.append(1e3 * result.seconds / result.nfe)
        decode["trace" if trace else "no_trace"] = {"nfe": result.nfe, "step_ms": runs[-1]}
    return {"forward_ms": bare, "step_ms": decode["trace"]["step_ms"],
            "step_no_trace_ms": decode["no_trace"]["step_ms"], "nfe": decode["trace"]["nfe"],
            "rule_trace_ms": decode["trace"]["step_ms"] - bare}


def batched(model: LoadedModel, device: torch.device, sizes: tuple[int, ...], graphs: GraphCache | None) -> dict:
    from engine.bench.config import BenchConfig

    tasks = chat_tasks(max(sizes))
    out = {}
    for size in sizes:
        config = BenchConfig(model=model.spec.name, batch=size, bucket=64)
        ids, key_mask = _padded_prompts(model, tasks[:size], config.bucket)
        forward = StaticForward(model, key_mask=key_mask if key_mask is not None else
                                torch.ones_like(ids, dtype=torch.bool), graphs=graphs)
        for _ in range(2):  # the first warms up
            result = generate(forward, ids, make_rule("credit", "paper"), gen_length=GEN, block_length=BLOCK,
                              mask_id=model.spec.mask_id, eos_id=model.spec.eos_id, shift=model.spec.shift,
                              record_trace=False)
        tokens = sum(min(len(model.answer_ids(row)) + 1, GEN) for row in result.tokens.tolist())
        out[str(size)] = {"batch": size, "prompt_width": ids.shape[1], "batch_nfe": result.nfe,
                          "mean_row_nfe": float(row_nfe(result.commit_step).mean()), "answer_tokens": tokens,
                          "seconds": result.seconds, "tokens_per_s": tokens / result.seconds,
                          "step_ms": 1e3 * result.seconds / result.nfe}
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--compile", action="store_true", help="only the torch.compile version")
    parser.add_argument("--smoke", action="store_true", help="tiny-random on the CPU")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    began = time.perf_counter()
    model = load_model("tiny-random" if args.smoke else "bundled", device=str(device))
    out: dict = {"environment": header(device), "model": model.spec.name, "load_s": time.perf_counter() - began}
    prompt = step_prompt(model, 200)
    out["positions"] = prompt.shape[1] + GEN
    versions: dict = {}
    out["versions"] = versions
    cuda = device.type == "cuda"
    if args.compile:
        began = time.perf_counter()
        graphs = GraphCache(model.model, compile_model=True) if cuda else None
        versions["compiled"] = time_version(model, StaticForward(model, graphs=graphs), prompt, device)
        versions["compiled"]["compile_and_measure_s"] = time.perf_counter() - began
        write_json(Path(args.out), out)
        out["batched"] = batched(model, device, (1, 8, 32) if cuda else (1, 2), graphs)
        write_json(Path(args.out), out)
    else:
        versions["eager_full"] = time_version(model, model, prompt, device)
        write_json(Path(args.out), out)
        versions["eager_block"] = time_version(model, StaticForward(model), prompt, device)
        write_json(Path(args.out), out)
        if cuda:
            versions["graph_block"] = time_version(model, StaticForward(model, graphs=GraphCache(model.model)),
                                                   prompt, device)
            write_json(Path(args.out), out)
        out["batched"] = batched(model, device, (1, 8, 32) if cuda else (1, 2),
                                 GraphCache(model.model) if cuda else None)
        write_json(Path(args.out), out)
    for name, v in versions.items():
        print(f"bundled {name}: forward {v['forward_ms']:.2f} ms, step {v['step_ms']:.2f} ms "
              f"(no trace {v['step_no_trace_ms']:.2f}), nfe {v['nfe']}", flush=True)
    for size, b in out.get("batched", {}).items():
        print(f"bundled batch {size}: {b['tokens_per_s']:.0f} tokens/s, step {b['step_ms']:.2f} ms", flush=True)


if __name__ == "__main__":
    main()
