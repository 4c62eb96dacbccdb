"""Every native family at full size (random bf16 weights built on the GPU, no download): one decoding step against
its floor.

For each family in engine.models.families.FAMILIES, the published config (family.published_config) is built on the
GPU in bfloat16 with seeded random weights, wrapped exactly as the app wraps a loaded checkpoint (LoadedModel), and
called through engine/models/cuda_graph.py's StaticForward replaying CUDA graphs, LM head on the block's rows only.
One decode: prompt 32 random tokens + gen 256, block 32, batch 1, the credit rule with the trace recorded, no early
stop (random weights would stop at a random EOS). Reported: the bare forward (graph, block rows), the decoding step
(forward + rule + trace: seconds / NFE, after a warm-up decode that captures the graphs) and both against the floor.

Floor of one step, for the L = 288 positions a step computes (B = 1):
    weight_bytes = 2 * (P_body + P_head)                  bf16; the embedding table is only gathered (L rows)
    flops        = 2 * P_body * L                         every position through every layer's matrices
                 + 4 * L^2 * (H * d_head) * n_layers      attention scores QK^T and AV
                 + 2 * P_head * block                     the LM head on the block's rows only
    floor        = max(weight_bytes / 4.8 TB/s, flops / 790 TFLOP/s)
with P_body all parameters but the embedding and the head, 4.8 TB/s the H200's HBM3e bandwidth (spec sheet) and
790 TFLOP/s the dense bf16 matrix rate the project plans with (docs/GPU_NOTES.md; an H200 measured 4.17 TB/s and
743 TFLOP/s there, so these floors are optimistic by ~10%). A mixture-of-experts module may define
`active_parameters()` (the body parameters one step reads); otherwise P_body counts every parameter.

Run on the GPU machine:  python3 lab/benchmarks/gpu_families.py --out $OUT/families.json
CPU check (tests):       python lab/benchmarks/gpu_families.py --smoke --out /tmp/families.json
--smoke builds each family from its reference fixture's config.json (tests/fixtures/models/<family>/, toy sizes,
the same structure) on the CPU in float32 and decodes prompt 8 + gen 32, block 16, eagerly.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from gpu_common import FIXTURES, SEED, credit_step, family_config, header, random_model, write_json

from engine.models.families import FAMILIES, build_module
from engine.models.moe import RoutedExperts

HBM_BYTES_PER_S = 4.8e12  # H200 HBM3e
BF16_FLOPS_PER_S = 790e12  # sustained dense bf16 matrix rate on an H200 (large GEMMs)


def shapes(smoke: bool) -> tuple[int, int, int]:
    """(prompt, gen, block)."""
    return (8, 32, 16) if smoke else (32, 256, 32)


def floor(model: torch.nn.Module, length: int, block: int) -> dict:
    """The least time one step can take (module docstring): all weights read once vs all FLOPs at the matrix rate."""
    params = dict(model.named_parameters())
    embed_names = [n for n in params if n.endswith(("wte.weight", "embed_tokens.weight", "word_embeddings.weight"))]
    head_names = [n for n in params if n.endswith(("transformer.ff_out.weight", "lm_head.weight"))]
    embed = sum(params[n].numel() for n in embed_names)
    head = sum(params[n].numel() for n in head_names) or embed  # a tied head reads the embedding as its weight
    body = sum(p.numel() for p in params.values()) - embed - sum(params[n].numel() for n in head_names)
    if hasattr(model, "active_parameters"):
        body = model.active_parameters()  # MoE: the experts a step reaches, not all of them
    queries = [t.shape[0] for n, t in model.state_dict().items() if n.endswith("q_proj.weight")]  # (out,) per layer
    attention = 4 * length * length * queries[0] * len(queries)
    weight_bytes = (body + head) * next(model.parameters()).element_size()  # 2 in bf16
    flops = 2 * body * length + attention + 2 * head * block
    memory_ms, compute_ms = weight_bytes / HBM_BYTES_PER_S * 1e3, flops / BF16_FLOPS_PER_S * 1e3
    return {"weight_bytes": weight_bytes, "flops": flops, "memory_ms": memory_ms, "compute_ms": compute_ms,
            "floor_ms": max(memory_ms, compute_ms), "bound": "memory" if memory_ms > compute_ms else "compute"}


def measure(name: str, raw: dict, device: torch.device, smoke: bool) -> dict:
    loaded = random_model(name, raw, device)
    model, dtype = loaded.model, loaded.dtype
    prompt_len, gen, block = shapes(smoke)
    vocab = loaded(torch.zeros(1, 1, dtype=torch.long)).shape[-1]
    generator = torch.Generator().manual_seed(SEED)
    prompt = torch.randint(0, min(vocab, 100_000) // 2, (1, prompt_len), generator=generator).to(device)
    bare_ms, result = credit_step(loaded, prompt, gen, block, device.type == "cuda", repeats=5 if smoke else 30)
    step_ms = 1e3 * result.seconds / result.nfe
    bound = floor(model, prompt_len + gen, block)
    out = {"params": sum(p.numel() for p in model.parameters()), "dtype": str(dtype).removeprefix("torch."),
           "shape": {"batch": 1, "prompt": prompt_len, "gen_length": gen, "block_length": block},
           "forward_ms_graph_block_rows": bare_ms,
           "decode_credit_trace": {"nfe": result.nfe, "seconds": result.seconds, "step_ms": step_ms},
           "floor": bound, "step_over_floor": step_ms / bound["floor_ms"],
           "forward_over_floor": bare_ms / bound["floor_ms"]}
    del loaded, model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="JSON results file")
    parser.add_argument("--smoke", action="store_true", help="CPU, toy configs from the reference fixtures")
    parser.add_argument("--families", default=",".join(FAMILIES), help="comma-separated subset of families")
    args = parser.parse_args()
    names = [n for n in args.families.split(",") if n]
    unknown = [n for n in names if n not in FAMILIES]
    if unknown:
        sys.exit(f"--families: {', '.join(unknown)} unknown; known: {', '.join(FAMILIES)}")
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    torch.manual_seed(SEED)
    out: dict = {"environment": header(device), "assumed": {"hbm_bytes_per_s": HBM_BYTES_PER_S,
                                                            "bf16_flops_per_s": BF16_FLOPS_PER_S},
                 "families": {}}
    for name in names:
        if args.smoke and not (FIXTURES / name / "config.json").is_file():
            out["families"][name] = {"skipped": "no fixture config for --smoke"}
            continue
        raw = family_config(name, args.smoke)
        skeleton = build_module(FAMILIES[name], FAMILIES[name].read_config(raw), "meta", torch.bfloat16)
        if any(isinstance(m, RoutedExperts) for m in skeleton.modules()):
            out["families"][name] = {"skipped": "mixture of experts: lab/benchmarks/gpu_moe.py measures it against a "
                                                "floor that counts the experts a step touches"}
            continue
        with torch.no_grad():
            out["families"][name] = measure(name, raw, device, args.smoke)
        write_json(Path(args.out), out)
    write_json(Path(args.out), out)
    print(json.dumps(out["families"], indent=1), flush=True)


if __name__ == "__main__":
    main()
