"""What keeping a model's cached forwards across decodes (engine/models/forward_pool.py) saves the app: wall time of
one cached decode through the app's path (engine/pipeline.model_fn_for, CUDA graphs, no compile) on a GPU, side by
side in one process, LLaDA-8B's shape (native class, random bf16 weights, prompt 32 + gen 256, block 32, credit with
the trace):
- `fresh`: a new CachedForward for the decode, as every app decode built before the pool (it captures its graphs);
- `first`: the pool's first decode of this cache and canvas shape (captures, then keeps the forward);
- `again`: the next decode of another prompt of the same shape (replays the kept forward's graphs).
The three decode the same tokens for the same prompt (checked: `again` against a fresh decode of its prompt). An
untimed decode first takes the process's one-time costs, so `fresh` pays only its own captures.

Run on the GPU machine (~2 minutes on one H200):  python3 lab/benchmarks/gpu_app_cache.py --out $OUT/app_cache.json
CPU check (tests):  python lab/benchmarks/gpu_app_cache.py --smoke --out /tmp/app_cache.json  (toy LLaDA, no graphs)
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from gpu_cache import build, sizes
from gpu_common import SEED, header, sync, write_json

from engine.decoding import Credit, generate
from engine.decoding.cache import CacheConfig
from engine.models.kv_forward import CachedForward
from engine.pipeline import model_fn_for


def timed_decode(fn, prompt: torch.Tensor, kw: dict, device: torch.device) -> tuple[float, torch.Tensor]:
    """Wall seconds of one decode (captures included) and its tokens."""
    sync(device)
    began = time.perf_counter()
    result = generate(fn, prompt, Credit(), **kw)
    sync(device)
    return time.perf_counter() - began, result.tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="JSON results file")
    parser.add_argument("--smoke", action="store_true", help="CPU, the toy LLaDA config")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    s = sizes(args.smoke)
    loaded = build("llada", args.smoke, device)
    g = torch.Generator().manual_seed(SEED)
    prompts = [torch.randint(0, 50_000 if not args.smoke else 100, (1, s["prompt"]), generator=g).to(device)
               for _ in range(2)]
    kw = dict(gen_length=s["gen"], block_length=s["block"], mask_id=loaded.spec.mask_id, shift=False)
    canvas = (1, s["prompt"] + s["gen"])
    graphs = device.type == "cuda"
    out: dict = {"environment": header(device), "shape": {"batch": 1, "prompt": s["prompt"], "gen_length": s["gen"],
                                                          "block_length": s["block"]}, "modes": {}}
    with torch.no_grad():
        # untimed: the process's one-time costs (CUDA context, cuBLAS handles and workspaces, allocator growth)
        timed_decode(CachedForward(loaded, CacheConfig("prefix"), graphs=graphs), prompts[1], kw, device)
        for mode in ("prefix", "dual"):
            cache = CacheConfig(mode)
            fresh_s, fresh_tokens = timed_decode(CachedForward(loaded, cache, graphs=graphs), prompts[0], kw, device)
            with model_fn_for(loaded, cache, canvas) as first:
                first_s, first_tokens = timed_decode(first, prompts[0], kw, device)
            with model_fn_for(loaded, cache, canvas) as again:
                again_s, again_tokens = timed_decode(again, prompts[1], kw, device)
            _, alone = timed_decode(CachedForward(loaded, cache, graphs=graphs), prompts[1], kw, device)
            out["modes"][mode] = {
                "fresh_s": fresh_s, "first_s": first_s, "again_s": again_s, "fresh_over_again": fresh_s / again_s,
                "reused_forward": again is first,
                "same_tokens": bool(torch.equal(fresh_tokens, first_tokens) and torch.equal(again_tokens, alone))}
            print(json.dumps({mode: out["modes"][mode]}), flush=True)
    write_json(Path(args.out), out)


if __name__ == "__main__":
    main()
