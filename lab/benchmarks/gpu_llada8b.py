"""An LLaDA-8B-shaped model (random bf16 weights, made on the GPU, no download): engine overhead and floor.

Model: the native LLaDA class (engine/models/llada.py) built from LLaDA-8B's published config (d 4096, 32 layers,
32 heads with 32 KV heads, MLP 12288, vocabulary 126,464, untied head), bidirectional attention. Prompt 32 tokens +
gen 256 = 288 positions, block 32, batch 1.

Measured: the bare forward (CUDA graph, LM head on the block's 32 rows only), the same eager and with the full
LM head; decoding steps (forward + rule + trace) with credit and fixed steps, trace on and off; the card's two
ceilings (copy bandwidth, bf16 matrix rate, and the rate a 288-row GEMM gets); the floor max(bytes / bandwidth,
FLOPs / rate); a kernel profile of one eager forward grouped into GEMM / attention / other.

Run: python lab/benchmarks/gpu_llada8b.py --out OUT.json [--smoke]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
from gpu_common import ceilings, header, matmul_rate_at, median_ms, random_model, sync, write_json

from engine.decoding import Credit, LowConfidence, generate
from engine.models.base import LoadedModel
from engine.models.cuda_graph import GraphCache, StaticForward
from engine.models.llada import PUBLISHED_CONFIG

LLADA_MASK_ID = PUBLISHED_CONFIG["mask_token_id"]
SMOKE = {"d_model": 64, "n_heads": 4, "n_kv_heads": 4, "n_layers": 2, "mlp_hidden_size": 192,
         "vocab_size": 130000, "embedding_size": 130000}  # toy width, a full-size vocabulary (the head's cost)


def build(device: torch.device, smoke: bool) -> LoadedModel:
    """The native LLaDA class (engine/models/llada.py) at the published size, random weights made on the device."""
    return random_model("llada", {**PUBLISHED_CONFIG, **SMOKE} if smoke else PUBLISHED_CONFIG, device,
                        name="llada-8b-shaped-random")


def floor(model: torch.nn.Module, length: int, block: int, bandwidth_gbs: float, tflops: float) -> dict:
    """The least time one step can take: every weight read once vs every FLOP at the measured matrix rate."""
    config, transformer = model.config, model.model.transformer
    head = transformer.ff_out.weight.numel()
    embed = transformer.wte.weight.numel()
    body = sum(p.numel() for p in model.parameters()) - head - embed  # layers + final norm
    weight_bytes = 2 * (body + head)  # bf16; the embedding table is only gathered (L rows)
    attention = 4 * length * length * config.d_model * config.n_layers  # QK^T and AV
    flops = 2 * body * length + 2 * head * block + attention
    memory_ms, compute_ms = weight_bytes / bandwidth_gbs / 1e6, flops / tflops / 1e9
    return {"weight_bytes": weight_bytes, "flops": flops, "memory_ms": memory_ms, "compute_ms": compute_ms,
            "floor_ms": max(memory_ms, compute_ms), "bound": "memory" if memory_ms > compute_ms else "compute"}


def profile_forward(forward, device: torch.device) -> dict:
    """Kernel time of one eager forward grouped as GEMM / attention / other, and the top kernels."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    forward()
    sync(device)
    with profile(activities=activities) as prof:
        forward()
        sync(device)
    groups = {"gemm": 0.0, "attention": 0.0, "other": 0.0}
    kernels = []
    for event in prof.key_averages():
        us = getattr(event, "self_device_time_total", None)
        if us is None:
            us = getattr(event, "self_cuda_time_total", 0.0)
        if device.type != "cuda" or not us:
            continue
        name = event.key.lower()
        kind = ("gemm" if any(t in name for t in ("gemm", "nvjet", "cutlass", "xmma", "matmul")) else
                "attention" if any(t in name for t in ("flash", "attention", "fmha", "efficient")) else "other")
        groups[kind] += us / 1e3
        kernels.append({"kernel": event.key[:90], "calls": event.count, "ms": us / 1e3, "group": kind})
    kernels.sort(key=lambda k: -k["ms"])
    return {"group_ms": groups, "top_kernels": kernels[:12]}


def step_ms(forward, prompt: torch.Tensor, rule, gen: int, block: int, trace: bool) -> dict:
    generate(forward, prompt, rule(), gen_length=gen, block_length=block, mask_id=LLADA_MASK_ID,
             record_trace=trace)  # warm-up: graph capture, allocator
    result = generate(forward, prompt, rule(), gen_length=gen, block_length=block, mask_id=LLADA_MASK_ID,
                      record_trace=trace)
    return {"nfe": result.nfe, "seconds": result.seconds, "step_ms": 1e3 * result.seconds / result.nfe}


def compiled_version(device: torch.device, args: argparse.Namespace) -> None:
    """The forward and decoding step with the model compiled (inductor) and replayed from a CUDA graph."""
    import time

    loaded = build(device, args.smoke)
    prompt_len, gen, block = (8, 32, 16) if args.smoke else (32, 256, 32)
    prompt = torch.randint(0, 126000, (1, prompt_len), device=device)
    x = torch.cat([prompt, torch.full((1, gen), LLADA_MASK_ID, device=device)], 1)  # (1, L)
    began = time.perf_counter()
    graphs = GraphCache(loaded.model, compile_model=True) if device.type == "cuda" else None
    fast = StaticForward(loaded, graphs=graphs)
    rows = (prompt_len, prompt_len + block)
    out: dict = {"environment": header(device), "forward_ms": {
        "compiled_graph_block_rows": median_ms(lambda: fast.block_logits(x, *rows), device, repeats=30)}}
    out["compile_s"] = time.perf_counter() - began
    write_json(Path(args.out), out)
    out["decode"] = {"credit_trace": step_ms(fast, prompt, Credit, gen, block, True),
                     "credit_no_trace": step_ms(fast, prompt, Credit, gen, block, False)}
    bare = out["forward_ms"]["compiled_graph_block_rows"]
    out["overhead"] = {name: d["step_ms"] / bare - 1.0 for name, d in out["decode"].items()}
    write_json(Path(args.out), out)
    print(f"llada8b compiled: forward {bare:.2f} ms, step {out['decode']['credit_trace']['step_ms']:.2f} ms, "
          f"overhead {100 * out['overhead']['credit_trace']:.1f}% (no trace "
          f"{100 * out['overhead']['credit_no_trace']:.1f}%), compile {out['compile_s']:.0f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--smoke", action="store_true", help="CPU-sized model and buffers")
    parser.add_argument("--compile", action="store_true", help="only the torch.compile + CUDA graph version")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    if args.compile:
        return compiled_version(device, args)
    out: dict = {"environment": header(device), "ceilings": ceilings(device, args.smoke)}
    write_json(Path(args.out), out)
    loaded = build(device, args.smoke)
    prompt_len, gen, block = (8, 32, 16) if args.smoke else (32, 256, 32)
    length = prompt_len + gen
    prompt = torch.randint(0, 126000, (1, prompt_len), device=device, generator=None)
    x = torch.cat([prompt, torch.full((1, gen), LLADA_MASK_ID, device=device)], 1)  # (1, L)
    graphs = GraphCache(loaded.model) if device.type == "cuda" else None
    fast = StaticForward(loaded, graphs=graphs)
    eager = StaticForward(loaded)
    rows = (prompt_len, prompt_len + block)
    out["shape"] = {"batch": 1, "prompt": prompt_len, "gen_length": gen, "block_length": block, "length": length,
                    "params": sum(p.numel() for p in loaded.model.parameters())}
    out["forward_ms"] = {
        "graph_block_rows": median_ms(lambda: fast.block_logits(x, *rows), device, repeats=30),
        "eager_block_rows": median_ms(lambda: eager.block_logits(x, *rows), device, repeats=10),
        "eager_full_logits": median_ms(lambda: loaded(x), device, repeats=10),
    }
    write_json(Path(args.out), out)
    out["decode"] = {
        "credit_trace": step_ms(fast, prompt, Credit, gen, block, True),
        "credit_no_trace": step_ms(fast, prompt, Credit, gen, block, False),
        "fixed_trace": step_ms(fast, prompt, lambda: LowConfidence(steps=gen), gen, block, True),
    }
    bare = out["forward_ms"]["graph_block_rows"]
    out["overhead"] = {name: d["step_ms"] / bare - 1.0 for name, d in out["decode"].items()}
    write_json(Path(args.out), out)
    hidden, inter = loaded.model.config.d_model, loaded.model.config.mlp_hidden_size
    out["gemm_rate_at_decode_shape_tflops"] = {
        f"{length}x{hidden}x{inter}": matmul_rate_at(length, hidden, inter, device),
        f"{length}x{inter}x{hidden}": matmul_rate_at(length, inter, hidden, device),
        f"{length}x{hidden}x{hidden}": matmul_rate_at(length, hidden, hidden, device)}
    c = out["ceilings"]
    out["floor"] = floor(loaded.model, length, block, c["bandwidth_gbs"], c["matmul_tflops"])
    out["step_over_floor"] = out["decode"]["credit_trace"]["step_ms"] / out["floor"]["floor_ms"]
    out["forward_over_floor"] = bare / out["floor"]["floor_ms"]
    write_json(Path(args.out), out)
    out["profile_eager_forward"] = profile_forward(lambda: eager.block_logits(x, *rows), device)
    write_json(Path(args.out), out)
    print(f"llada8b: forward {bare:.2f} ms (graph), step {out['decode']['credit_trace']['step_ms']:.2f} ms, "
          f"overhead {100 * out['overhead']['credit_trace']:.1f}%, floor {out['floor']['floor_ms']:.2f} ms "
          f"({out['floor']['bound']}), step/floor {out['step_over_floor']:.2f}x", flush=True)


if __name__ == "__main__":
    main()
