"""Key/value caches on the GPU, one run side by side: LLaDA-8B's shape (native LLaDA class, published config, random
bf16 weights built on the GPU, no download) decoding with cache none / prefix / dual, and LLaDA2.0-mini (16B MoE,
random weights) with its exact block cache, each step against its floor.

Decode: prompt 32 random tokens + gen 256, block 32, batch 1, the credit rule with the trace recorded, no early stop
(random weights never pass the threshold, so a step commits one token: NFE = 256, 32 steps a block, one of them a
refresh). Forwards: `none` = engine/models/cuda_graph.py StaticForward replaying a CUDA graph (LM head on the block's
rows); `prefix` / `dual` = engine/models/kv_forward.py CachedForward with CUDA graphs and, for comparison, eagerly.
Every decode runs twice on the same callable (the first captures the graphs); the second is reported. Measured:
1. batch 1, per mode: step time = seconds / NFE, against the floor below; the same decode without the trace (the
   trace's cost in % of a step);
2. batch 8 and 32, per mode (graphs, trace on): tokens per second with the fixed-steps rule at 64 steps (4 tokens a
   step, 8 steps a block), so a batch costs 64 forwards instead of 256;
3. end to end on the 8B shape: credit + dual cache against LLaDA's fixed steps (one token a step) without a cache,
   as step time (their NFE on real weights is the bundled-model accuracy tables' business, docs/BENCHMARKS.md);
4. LLaDA2.0-mini through its exact block cache: step time against the floor of a 32-row step, eagerly and replaying
   CUDA graphs (one per block and one per finished block's prefill), with the two decodes' tokens compared.

Floor of one forward that runs n positions (rows) of a batch of B canvases, its queries attending to K keys:
    weight_bytes = 2 * (P_body + P_head)                  bf16; the embedding table is only gathered
    kv_bytes     = 2 * 2 * B * n_layers * K * (KV heads * d_head)   the cached keys and values read (cached modes)
    flops        = B * (2 * P_body * n + 4 * n * K * (H * d_head) * n_layers + 2 * P_head * block)
    floor        = max((weight_bytes + kv_bytes) / 4.8 TB/s, flops / 790 TFLOP/s)
A decode's floor is the mean of its forwards' floors: `none` runs n = K = L = 288 every step (compute-bound at
batch 1: ~5.2 ms); `prefix` runs n = L - (block start) on 31 steps of 32 and n = L on the refresh; `dual` runs n = 32
on 31 steps of 32 (then bound by the weight read, ~3.2 ms) and n = L on the refresh. P_body: every parameter but the
embedding and the head; 4.8 TB/s: the H200's HBM3e (spec sheet); 790 TFLOP/s: the dense bf16 rate the project plans
with (docs/GPU_NOTES.md measured 4.17 TB/s and 743 TFLOP/s, so floors are ~10% optimistic; `ceilings` re-measures).
LLaDA2's floor is lab/benchmarks/gpu_moe.py's (experts touched by the 32 rows, keys = the canvas).

Run on the GPU machine (~5 minutes on one H200):  python3 lab/benchmarks/gpu_cache.py --out $OUT/cache.json
(`--compile`: every mode again with the blocks compiled, NativeLM.compile_layers, side by side; `--split`: every mode
also with the stacked projections split, one matmul per checkpoint matrix (q, k, v, gate, up) over row slices of the
same weights, the layout before stacked.StackedLinear, compiled when `--compile` (out["modes_compiled_split"] beside
out["modes_compiled"]); `--quick`: batch 1 only, no eager runs, batches or LLaDA2 section.)
CPU check (tests):  python lab/benchmarks/gpu_cache.py --smoke --out /tmp/cache.json  (the reference fixtures' toy
configs, float32, eager, prompt 8 + gen 32, block 16 (LLaDA2: 32), batches 2 and 3)
"""
from __future__ import annotations

import argparse
import gc
import json
import traceback
from pathlib import Path

import torch
from gpu_common import SEED, ceilings, family_config, header, random_model, sync, write_json
from gpu_moe import floor as moe_floor
from gpu_moe import touched_experts

from engine.decoding import Credit, LowConfidence, generate
from engine.decoding.cache import CACHE_MODES, CacheConfig
from engine.models.base import LoadedModel
from engine.models.cuda_graph import GraphCache, StaticForward
from engine.models.kv_forward import CachedForward
from engine.models.stacked import StackedLinear

HBM_BYTES_PER_S = 4.8e12  # H200 HBM3e
BF16_FLOPS_PER_S = 790e12  # sustained dense bf16 matrix rate on an H200 (large GEMMs)


def sizes(smoke: bool) -> dict:
    return ({"prompt": 8, "gen": 32, "block": 16, "moe_block": 32, "batches": (2, 3), "batch_steps": 8} if smoke else
            {"prompt": 32, "gen": 256, "block": 32, "moe_block": 32, "batches": (8, 32), "batch_steps": 64})


def build(name: str, smoke: bool, device: torch.device) -> LoadedModel:
    return random_model(name, family_config(name, smoke), device)


def forward_for(loaded: LoadedModel, mode: str, graphs: bool, compile_model: bool = False):
    """The decode's callable; compile_model: the blocks compiled (in place, for good) under the graphs."""
    if mode == "none":
        return StaticForward(loaded, graphs=GraphCache(loaded.model, compile_model=compile_model) if graphs else None)
    return CachedForward(loaded, CacheConfig(mode), graphs=graphs, compile_model=compile_model)


def set_stacked(model: torch.nn.Module, stacked: bool) -> None:
    """Every StackedLinear one matmul (stacked) or one per part (split); compiled regions then compile anew (dynamo's
    caches reset), so each layout runs code of its own rather than relying on a guard to notice the flag."""
    for layer in model.modules():
        if isinstance(layer, StackedLinear):
            layer.stacked = stacked
    torch._dynamo.reset()


def dense_floor(model: torch.nn.Module, rows: list[int], keys: int, block: int, batch: int, cached: bool) -> dict:
    """Mean floor (module docstring) over forwards that ran `rows[i]` positions each."""
    c, params = model.config, dict(model.named_parameters())
    embed = params["model.transformer.wte.weight"].numel()
    head = params["model.transformer.ff_out.weight"].numel() if not c.weight_tying else embed
    body = sum(p.numel() for p in params.values()) - embed - (0 if c.weight_tying else head)
    size = next(model.parameters()).element_size()
    kv_bytes = 2 * size * batch * c.n_layers * keys * c.n_kv_heads * c.head_dim if cached else 0
    floors = []
    for n in rows:
        flops = batch * (2 * body * n + 4 * n * keys * c.d_model * c.n_layers + 2 * head * block)
        floors.append(max((size * (body + head) + kv_bytes) / HBM_BYTES_PER_S, flops / BF16_FLOPS_PER_S) * 1e3)
    n_floor = max(floors)  # the full-canvas forward's
    return {"floor_ms": sum(floors) / len(floors), "full_forward_floor_ms": n_floor,
            "weight_read_ms": size * (body + head) / HBM_BYTES_PER_S * 1e3,
            "kv_read_ms": kv_bytes / HBM_BYTES_PER_S * 1e3,
            "mean_rows": sum(rows) / len(rows)}


def decode(fn, prompt: torch.Tensor, rule, kw: dict, device: torch.device, trace: bool = True,
           answers: list | None = None) -> dict:
    """Two decodes on `fn` (the first captures graphs); the second's numbers and the rows its forwards ran (its
    tokens appended to `answers` when given)."""
    generate(fn, prompt, rule(), record_trace=trace, **kw)
    sync(device)
    before = len(getattr(fn, "computed_rows", []))
    result = generate(fn, prompt, rule(), record_trace=trace, **kw)
    rows = getattr(fn, "computed_rows", [])[before:] or [prompt.shape[1] + kw["gen_length"]] * result.nfe
    if answers is not None:
        answers.append(result.tokens.cpu())
    tokens = prompt.shape[0] * kw["gen_length"]
    return {"nfe": result.nfe, "seconds": result.seconds, "step_ms": 1e3 * result.seconds / result.nfe,
            "tokens_per_s": tokens / result.seconds, "rows": rows}


def guarded(out: dict, key: str, fn) -> None:
    """out[key] = fn(), or the error (one failing measurement costs only itself); then its graphs and caches are
    freed (a CachedForward and its GraphCache refer to each other, so only the collector frees them)."""
    try:
        out[key] = fn()
    except Exception as err:  # noqa: BLE001 - a GPU run reports every failure and goes on
        out[key] = {"error": f"{type(err).__name__}: {err}", "where": traceback.format_exc(limit=3)[-600:]}
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def dense_section(smoke: bool, device: torch.device, compile_model: bool, quick: bool, split: bool = False) -> dict:
    """Every mode with CUDA graphs (out["modes"]), then with the blocks compiled as well (out["modes_compiled"],
    when compile_model; compiling is in place, so it comes after); split: before that, every mode with the stacked
    projections split (out["modes_compiled_split"], or "modes_split" uncompiled); quick: batch 1 only."""
    s = sizes(smoke)
    loaded = build("llada", smoke, device)
    model, gen, block = loaded.model, s["gen"], s["block"]
    g = torch.Generator().manual_seed(SEED)
    length = s["prompt"] + gen
    prompt = torch.randint(0, 50_000 if not smoke else 100, (1, s["prompt"]), generator=g).to(device)
    kw = dict(gen_length=gen, block_length=block, mask_id=loaded.spec.mask_id, shift=loaded.spec.shift)
    graphs = device.type == "cuda"
    out: dict = {"params": sum(p.numel() for p in model.parameters()), "cuda_graphs": graphs,
                 "shape": {"batch": 1, "prompt": s["prompt"], "gen_length": gen, "block_length": block}, "modes": {}}
    compiled_too = compile_model and graphs
    versions = [("modes", False, True)]  # (out key, blocks compiled, projections stacked)
    if split:
        versions.append(("modes_compiled_split" if compiled_too else "modes_split", compiled_too, False))
    if compiled_too:
        versions.append(("modes_compiled", True, True))
    out["versions"] = {key: {"compiled": compiled, "stacked": stacked} for key, compiled, stacked in versions}
    for key, compiled, stacked in versions:
        set_stacked(model, stacked)
        for mode in CACHE_MODES:
            entry: dict = {}
            out.setdefault(key, {})[mode] = entry

            def batch1(graphed: bool, mode=mode, compiled=compiled) -> dict:
                fn = forward_for(loaded, mode, graphed, compiled and graphed)
                on = decode(fn, prompt, Credit, kw, device)
                off = decode(fn, prompt, Credit, kw, device, trace=False)
                bound = dense_floor(model, on.pop("rows"), length, block, 1, mode != "none")
                off.pop("rows")
                return {"trace_on": on, "trace_off": off, "floor": bound,
                        "step_over_floor": on["step_ms"] / bound["floor_ms"],
                        "trace_cost_pct": 100 * (on["step_ms"] - off["step_ms"]) / off["step_ms"]}

            guarded(entry, "batch1", lambda: batch1(graphs))
            if quick:
                continue
            if mode != "none" and graphs and not compiled:
                guarded(entry, "batch1_eager", lambda: batch1(False))
            for batch in s["batches"]:
                def batched(batch=batch, mode=mode, compiled=compiled) -> dict:
                    prompts = torch.randint(0, 100, (batch, s["prompt"]), generator=g).to(device)
                    fixed = lambda: LowConfidence(steps=s["batch_steps"])  # noqa: E731 - a rule factory
                    result = decode(forward_for(loaded, mode, graphs, compiled), prompts, fixed, kw, device)
                    result["floor"] = dense_floor(model, result.pop("rows"), length, block, batch, mode != "none")
                    return result

                guarded(entry, f"batch{batch}", batched)
    set_stacked(model, True)
    last_stacked = [key for key, _, stacked in versions if stacked][-1]
    guarded(out, "end_to_end", lambda: end_to_end(loaded, prompt, kw, device, out[last_stacked]))
    return out


def end_to_end(loaded: LoadedModel, prompt: torch.Tensor, kw: dict, device: torch.device, modes: dict) -> dict:
    """Credit + dual cache against LLaDA's fixed steps (one token a step) without a cache, step times."""
    fixed = decode(forward_for(loaded, "none", device.type == "cuda"), prompt,
                   lambda: LowConfidence(steps=kw["gen_length"]), kw, device)
    fixed.pop("rows")
    credit_dual = modes["dual"]["batch1"]["trace_on"]
    return {"fixed_steps_no_cache": fixed, "credit_dual_step_ms": credit_dual["step_ms"],
            "step_ratio_fixed_over_credit_dual": fixed["step_ms"] / credit_dual["step_ms"]}


def moe_section(smoke: bool, device: torch.device) -> dict:
    s = sizes(smoke)
    loaded = build("llada2", smoke, device)
    model, block = loaded.model, s["moe_block"]
    gen = s["gen"] if s["gen"] % block == 0 else block
    g = torch.Generator().manual_seed(SEED)
    prompt = torch.randint(0, 50_000 if not smoke else 100, (1, s["prompt"]), generator=g).to(device)
    canvas = torch.cat([prompt, torch.full((1, gen), loaded.spec.mask_id, device=device)], 1)  # (1, L)
    kw = dict(gen_length=gen, block_length=block, mask_id=loaded.spec.mask_id, shift=loaded.spec.shift)
    start = prompt.shape[1]

    def first_block() -> torch.Tensor:
        cached = CachedForward(loaded, CacheConfig("prefix"))
        cached.start_block(start, start + block)
        return cached.block_logits(canvas, start, start + block)

    touched = touched_experts(model, first_block)
    bound = moe_floor(model, block, block, touched, keys=canvas.shape[1])
    out = {"params": sum(p.numel() for p in model.parameters()), "experts_touched_per_moe_layer": touched,
           "floor": bound, "shape": {"batch": 1, "prompt": s["prompt"], "gen_length": gen, "block_length": block}}
    answers: list[torch.Tensor] = []

    def block_cache(graphs: bool) -> dict:
        result = decode(CachedForward(loaded, CacheConfig("prefix"), graphs=graphs), prompt, Credit, kw, device,
                        answers=answers)
        result["extra_forwards"] = len(result.pop("rows")) - result["nfe"]  # the finished blocks' prefills
        result["step_over_floor"] = result["step_ms"] / bound["floor_ms"]
        return result

    guarded(out, "block_cache_eager", lambda: block_cache(False))
    if device.type == "cuda":  # the same decode replaying CUDA graphs (one per block and per prefill)
        guarded(out, "block_cache", lambda: block_cache(True))
        out["graphs_equal_eager_tokens"] = len(answers) == 2 and torch.equal(*answers)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="JSON results file")
    parser.add_argument("--smoke", action="store_true", help="CPU, toy configs from the reference fixtures")
    parser.add_argument("--compile", action="store_true", help="also every mode with the blocks compiled (GPU)")
    parser.add_argument("--split", action="store_true", help="also every mode with the stacked projections split")
    parser.add_argument("--quick", action="store_true", help="batch 1 only: no eager, batches or LLaDA2 section")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    if args.smoke:
        torch.set_num_threads(1)  # toy matrices gain nothing from threads, and a shared CPU makes them stall
    torch.manual_seed(SEED)
    out: dict = {"environment": header(device), "assumed": {"hbm_bytes_per_s": HBM_BYTES_PER_S,
                                                            "bf16_flops_per_s": BF16_FLOPS_PER_S}}
    guarded(out, "ceilings", lambda: ceilings(device, args.smoke))
    with torch.no_grad():
        guarded(out, "llada_8b_shape", lambda: dense_section(args.smoke, device, args.compile, args.quick,
                                                             args.split))
        write_json(Path(args.out), out)
        if not args.quick:
            guarded(out, "llada2_mini", lambda: moe_section(args.smoke, device))
    write_json(Path(args.out), out)
    print(json.dumps({k: v for k, v in out.items() if k != "environment"}, indent=1, default=str), flush=True)


if __name__ == "__main__":
    main()
