"""`python -m engine bench`: task sets x rules x lengths x caches -> bench.json + bench.md (docs/BENCHMARKS.md).

Data-parallel: `accelerate launch --multi_gpu --num_processes N -m engine bench ...` (or `torchrun --nproc_per_node N
-m engine bench ...`) splits the questions over N processes and rank 0 writes the one merged report
(engine/bench/parallel.py)."""
from __future__ import annotations

import argparse
import sys

from engine.bench.config import DEFAULT_RULES, BenchConfig
from engine.bench.decode import BENCH_CACHES
from engine.bench.tasks import TASK_SETS
from engine.models.registry import model_ids

NAME = "bench"


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None


def _names(text: str) -> tuple[str, ...]:
    """Comma-separated names; a "key=value" part belongs to the rule spec before it (credit:alpha=A,beta=B)."""
    names: list[str] = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        if "=" in part and ":" not in part and names and ":" in names[-1]:
            names[-1] += "," + part
        else:
            names.append(part)
    return tuple(names)


def add_parser(subparsers) -> str:
    p = subparsers.add_parser(NAME, help="benchmark decoding rules on held-out task sets")
    p.add_argument("--model", default="bundled", help=f"a registered model: {', '.join(model_ids('dllm'))}")
    p.add_argument("--tasks", type=_names, default=("math", "humaneval", "chat"),
                   help=f"comma-separated task sets from {', '.join(TASK_SETS)}")
    p.add_argument("--n", "--questions", dest="n", type=int, default=20,
                   help="questions per task set (--questions under torchrun, whose own options --n would match)")
    p.add_argument("--rules", type=_names, default=DEFAULT_RULES,
                   help="comma-separated rule specs of the registry: low_confidence, threshold, credit:paper, "
                        "credit:dinfer, credit:parameter_free, credit:alpha=A,beta=B[,gamma=G]")
    p.add_argument("--gen-lengths", type=_ints, default=(64,), help="e.g. 64,128,256")
    p.add_argument("--blocks", type=_ints, default=(32,), help="e.g. 32,64")
    p.add_argument("--caches", type=_names, default=("none",),
                   help=f"comma-separated key/value cache modes from {', '.join(BENCH_CACHES)}")
    p.add_argument("--threshold", type=float, default=0.9, help="tau of threshold and credit rules")
    p.add_argument("--batch", type=int, default=1, help="prompts decoded together")
    p.add_argument("--bucket", type=int, default=0, help="pad prompts to a multiple of this (reuses CUDA graphs)")
    p.add_argument("--cuda-graph", action="store_true", help="replay the forward from CUDA graphs (GPU)")
    p.add_argument("--device", default=None, help="cpu or cuda; default cuda when present")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/bench", help="folder for bench.json and bench.md")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return NAME


def run(args: argparse.Namespace) -> int:
    from engine.bench import parallel
    from engine.bench.report import write_results
    from engine.bench.runner import run_sharded
    from engine.models import load_model, model_entry

    shard = parallel.launched_shard()
    config = BenchConfig(model=model_entry(args.model, "dllm").id, task_sets=args.tasks, n=args.n, rules=args.rules,
                         gen_lengths=args.gen_lengths, block_lengths=args.blocks, caches=args.caches,
                         threshold=args.threshold, batch=args.batch, bucket=args.bucket, cuda_graph=args.cuda_graph,
                         device=args.device, seed=args.seed)
    tag = f"[bench {shard.label}]" if shard.world > 1 else "[bench]"

    def progress(message: str) -> None:
        if not args.quiet:
            print(f"{tag} {message}", file=sys.stderr, flush=True)

    model, cells, samples, speed = run_sharded(lambda device: load_model(config.model, device=device), config,
                                               progress, shard)
    if shard.rank:
        return 0
    write_results(args.out, config, cells, samples, model.device, speed)
    print(f"{len(cells)} cells -> {args.out}/bench.md, {args.out}/bench.json")
    return 0
