"""Data-parallel benchmark on GPUs: questions per second of engine.bench's runner on one GPU and on several
(`accelerate launch`), for the claim "two GPUs >= 1.9x one GPU" (docs/BENCHMARKS.md).

The model is the native LLaDA class at its published 8B size with seeded random bf16 weights built on each process's
GPU (no download, no bundled GGUF), wrapped as the app wraps a loaded checkpoint; prompts come from the in-memory
byte tokenizer (ids < 260, valid in LLaDA's vocabulary). Its end-of-answer id is set one past the vocabulary, so no
answer stops early: every question decodes the whole canvas, and the two runs do the same work. Grid: the addition
questions (needing no data package), credit (paper preset), gen 128, block 32, batch 1, prompts bucketed to 64
tokens, CUDA graphs. Rate = questions over decode seconds of the slowest process (engine.bench.parallel.throughput;
model builds and the untimed warm-up decode of each cell are outside it).

Run on a two-GPU machine (lab/gpu/plans/bench_dp.plan):
    CUDA_VISIBLE_DEVICES=0 python3 lab/benchmarks/gpu_bench_dp.py --out-dir $OUT/dp1
    accelerate launch --multi_gpu --num_processes 2 lab/benchmarks/gpu_bench_dp.py --out-dir $OUT/dp2
    python3 lab/benchmarks/gpu_bench_dp.py --compare $OUT/dp1/bench.json $OUT/dp2/bench.json --out $OUT/bench_dp.json
CPU check (tests): --smoke builds LLaDA from its reference fixture's config.json (toy size) in float32, 4 questions,
gen 16, block 8, no graphs; it runs under torchrun as well.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from gpu_common import SEED, family_config, random_model, write_json

from engine.bench.config import BenchConfig
from engine.bench.parallel import launched_shard
from engine.bench.report import write_results
from engine.bench.runner import run_sharded
from engine.models.base import LoadedModel
from engine.models.tiny import byte_tokenizer

MODEL = "llada-8b-random"  # the name in the results: published LLaDA-8B config, random weights
SMOKE_CONTEXT = 256  # the fixture's 64-token context is too short for a chat-templated question


def random_llada(device: str | None, smoke: bool) -> LoadedModel:
    """LLaDA at the published size (the fixture's for --smoke) with seeded random weights on `device`."""
    raw = family_config("llada", smoke)
    if smoke:
        raw = {**raw, "max_sequence_length": SMOKE_CONTEXT}
    vocab = raw.get("embedding_size") or raw["vocab_size"]  # rows of the LM head (LLaDA pads its vocabulary)
    return random_model("llada", raw, torch.device(device or "cpu"), byte_tokenizer(), name=MODEL,
                        eos_ids=(vocab,), description="LLaDA-8B shape, random weights")  # (vocab,): never produced


def bench_config(smoke: bool, n: int) -> BenchConfig:
    cuda = torch.cuda.is_available() and not smoke
    return BenchConfig(model=MODEL, task_sets=("addition",), n=4 if smoke else n, rules=("credit:paper",),
                       gen_lengths=(16,) if smoke else (128,), block_lengths=(8,) if smoke else (32,), batch=1,
                       bucket=0 if smoke else 64, cuda_graph=cuda, device="cuda" if cuda else "cpu", seed=SEED)


def compare(one_path: Path, many_path: Path) -> dict:
    """The speed-up of the several-process run over the one-process run, and whether their answers agree."""
    one, many = (json.loads(Path(p).read_text()) for p in (one_path, many_path))
    rate = {name: obj["parallel"]["questions_per_s"] if obj.get("parallel") else
            len(obj["samples"]) / sum(s["seconds"] for s in obj["samples"])
            for name, obj in (("one", one), ("many", many))}  # one process: its questions over its decode seconds
    same = [a["answer"] == b["answer"] and a["nfe"] == b["nfe"] for a, b in zip(one["samples"], many["samples"])]
    processes = many["parallel"]["processes"] if many.get("parallel") else 1
    return {"one_process_questions_per_s": rate["one"], "processes": processes,
            "questions_per_s": rate["many"], "speedup": rate["many"] / rate["one"],
            "identical_answers": f"{sum(same)} of {len(one['samples'])}", "per_process": many.get("parallel"),
            "environment": many["environment"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", help="folder for bench.json and bench.md (rank 0 writes them)")
    parser.add_argument("--n", type=int, default=48, help="addition questions (the same for every run)")
    parser.add_argument("--smoke", action="store_true", help="CPU, LLaDA at the fixture's toy size")
    parser.add_argument("--compare", nargs=2, metavar=("ONE_JSON", "MANY_JSON"), help="ratio of two runs' rates")
    parser.add_argument("--out", help="with --compare: JSON file for the ratio")
    args = parser.parse_args()
    if args.compare:
        result = compare(*map(Path, args.compare))
        if args.out:
            write_json(Path(args.out), result)
        print(f"{result['processes']} processes: {result['questions_per_s']:.2f} questions/s vs one: "
              f"{result['one_process_questions_per_s']:.2f} = {result['speedup']:.2f}x; identical answers "
              f"{result['identical_answers']}", flush=True)
        return
    if not args.out_dir:
        sys.exit("--out-dir is required (or --compare ONE_JSON MANY_JSON)")
    shard = launched_shard()
    config = bench_config(args.smoke, args.n)
    model, cells, samples, speed = run_sharded(lambda device: random_llada(device, args.smoke), config,
                                               lambda m: print(f"[dp {shard.label}] {m}", flush=True), shard)
    if shard.rank == 0:
        write_results(args.out_dir, config, cells, samples, model.device, speed)
        print(f"{len(samples)} questions -> {args.out_dir}/bench.json", flush=True)


if __name__ == "__main__":
    main()
