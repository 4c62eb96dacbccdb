"""LLaDA-MoE-7B-A1B and LLaDA2.0-mini (16B) at full size (random bf16 weights built on the GPU, no download): one
decoding step against its floor, with the floor a mixture of experts actually has.

Each family's published config (engine/models/{llada_moe,llada2}.py PUBLISHED_CONFIG) is built on the GPU in
bfloat16 with seeded random weights, wrapped as the app wraps a loaded checkpoint (LoadedModel) and called through
engine/models/cuda_graph.py's StaticForward replaying CUDA graphs, LM head on the block's rows only. One decode:
prompt 32 random tokens + gen 256, block 32 (LLaDA2's attention block), batch 1, the credit rule with the trace
recorded, no early stop. Reported: the bare forward (graph, block rows), the decoding step (seconds / NFE after a
warm-up decode that captures the graphs), a routing census (distinct experts each MoE layer runs in one step) and
the floor. LLaDA2 also decodes through engine/models/kv_forward.py with cache 'prefix' (its exact key/value cache:
a step runs the block's 32 positions against the cached keys of every earlier position; eager), reported with that
step's floor (32 positions attending to the canvas, the experts those 32 tokens touch) and the number of cache
extensions (one forward per finished block and one for the prompt, not counted in NFE).

Floor of one step over the L = 288 positions (B = 1). A routed expert's weights are read once if any of the L tokens
chose it, but each token multiplies only its k experts, so bytes and FLOPs count different parameters:
    weight_bytes = 2 * (P_always + sum over MoE layers of E_touched * P_expert + P_head)       bf16
    flops        = 2 * L * (P_always + n_moe_layers * k * P_expert)      every position through its own experts
                 + 4 * L^2 * (H * d_head) * n_layers                       attention scores QK^T and AV
                 + 2 * P_head * block                                      the LM head on the block's rows only
    floor        = max(weight_bytes / 4.8 TB/s, flops / 790 TFLOP/s)
P_always: every parameter a token always uses (attention, norms, routers, dense and shared-expert MLPs); the
embedding table is only gathered. P_expert = 3 * D * I_expert. E_touched: measured by a census (eager forwards on
the decode's first canvas, all masks, and on the decoded canvas; the floor takes the smaller). With L * k = 2304
choices over 64 or 256 experts, a well-spread router touches nearly every expert, so a step reads nearly all
weights (~14 GB for LLaDA-MoE, ~32 GB for LLaDA2-mini) and is memory-bound by ~5x; `floor_ms_all_experts_read`
gives that case. 4.8 TB/s: the H200's HBM3e (spec sheet); 790 TFLOP/s: the dense bf16 matrix rate the project plans
with (docs/GPU_NOTES.md measured 4.17 TB/s and 743 TFLOP/s on an H200, so the floors are ~10% optimistic).

Run on the GPU machine:  python3 lab/benchmarks/gpu_moe.py --out $OUT/moe.json   (--eager: no CUDA graphs)
CPU check (tests):       python lab/benchmarks/gpu_moe.py --smoke --out /tmp/moe.json
--smoke builds each family from its reference fixture's config.json (tests/fixtures/models/<family>/, toy sizes, the
same structure) on the CPU in float32 and decodes prompt 8 + gen 32, block 32, eagerly.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from gpu_common import SEED, credit_step, family_config, header, random_model, sync, write_json

from engine.decoding import Credit, generate
from engine.models.base import LoadedModel
from engine.decoding.cache import CacheConfig
from engine.models.kv_forward import CachedForward, block_size
from engine.models.moe import RoutedExperts

HBM_BYTES_PER_S = 4.8e12  # H200 HBM3e
BF16_FLOPS_PER_S = 790e12  # sustained dense bf16 matrix rate on an H200 (large GEMMs)
NAMES = ("llada_moe", "llada2")


def shapes(smoke: bool) -> tuple[int, int, int]:
    """(prompt, gen, block)."""
    return (8, 32, 32) if smoke else (32, 256, 32)


@torch.no_grad()
def touched_experts(model: torch.nn.Module, call) -> list[int]:
    """Distinct experts each MoE layer runs in the last forward of `call()` (eager; forward hooks on the experts)."""
    counts: list[int] = []
    experts = [m for m in model.modules() if isinstance(m, RoutedExperts)]
    hooks = [m.register_forward_hook(lambda _m, args, _out: counts.append(int(args[1].unique().numel())))
             for m in experts]
    call()
    for hook in hooks:
        hook.remove()
    return counts[-len(experts):]


def floor(model: torch.nn.Module, length: int, block: int, touched: list[int], keys: int | None = None) -> dict:
    """The least time one step can take (module docstring) when `length` positions go through the model and attend
    to `keys` (default: the same positions)."""
    c, params = model.config, dict(model.named_parameters())
    experts = [m for m in model.modules() if isinstance(m, RoutedExperts)]
    per_expert = experts[0].gate_up[0].numel() + experts[0].down[0].numel()  # 3 * D * I
    embed = sum(p.numel() for n, p in params.items() if n.endswith(("embed_tokens.weight", "word_embeddings.weight")))
    lm_head = params["lm_head.weight"].numel() if "lm_head.weight" in params else 0
    routed = sum(m.gate_up.numel() + m.down.numel() for m in experts)
    always = sum(p.numel() for p in params.values()) - embed - routed - lm_head
    head = lm_head or embed  # a tied head reads the embedding as its weight
    attention = 4 * length * (keys or length) * c.num_attention_heads * c.head_dim * c.num_hidden_layers
    weight_bytes = next(model.parameters()).element_size() * (always + sum(touched) * per_expert + head)
    flops = 2 * length * (always + len(experts) * c.num_experts_per_tok * per_expert) + attention + 2 * head * block
    memory_ms, compute_ms = weight_bytes / HBM_BYTES_PER_S * 1e3, flops / BF16_FLOPS_PER_S * 1e3
    return {"weight_bytes": weight_bytes, "flops": flops, "memory_ms": memory_ms, "compute_ms": compute_ms,
            "floor_ms": max(memory_ms, compute_ms), "bound": "memory" if memory_ms > compute_ms else "compute",
            "params_always": always, "params_per_expert": per_expert, "params_head": head}


def measure(name: str, raw: dict, device: torch.device, smoke: bool, graphs: bool = True) -> dict:
    loaded = random_model(name, raw, device)
    model, spec, dtype, config = loaded.model, loaded.spec, loaded.dtype, loaded.model.config
    prompt_len, gen, block = shapes(smoke)
    generator = torch.Generator().manual_seed(SEED)
    prompt = torch.randint(0, min(config.vocab_size, 100_000) // 2, (1, prompt_len), generator=generator).to(device)
    canvas = torch.cat([prompt, torch.full((1, gen), spec.mask_id, device=device)], 1)  # (1, L)
    first = touched_experts(model, lambda: model(input_ids=canvas))  # all masks: routing concentrates most
    bare_ms, result = credit_step(loaded, prompt, gen, block, device.type == "cuda" and graphs,
                                  repeats=5 if smoke else 30)
    step_ms = 1e3 * result.seconds / result.nfe
    decoded = torch.cat([prompt, result.tokens], 1)
    last = touched_experts(model, lambda: model(input_ids=decoded))
    touched = min(first, last, key=sum)
    bound = floor(model, prompt_len + gen, block, touched)
    every = floor(model, prompt_len + gen, block, [config.num_experts] * len(touched))
    out = {"params": sum(p.numel() for p in model.parameters()), "dtype": str(dtype).removeprefix("torch."),
           "shape": {"batch": 1, "prompt": prompt_len, "gen_length": gen, "block_length": block},
           "experts_touched_per_moe_layer": {"first_canvas": first, "decoded_canvas": last},
           "experts_per_layer": config.num_experts,
           "forward_ms_graph_block_rows": bare_ms,
           "decode_credit_trace": {"nfe": result.nfe, "seconds": result.seconds, "step_ms": step_ms},
           "floor": bound, "step_over_floor": step_ms / bound["floor_ms"],
           "forward_over_floor": bare_ms / bound["floor_ms"], "floor_ms_all_experts_read": every["floor_ms"],
           "step_over_floor_all_experts_read": step_ms / every["floor_ms"]}
    if block_size(model):  # block-causal: the exact block cache computes one block per step
        kw = dict(gen_length=gen, block_length=block, mask_id=spec.mask_id, shift=spec.shift, record_trace=True)
        out["block_cache"] = measure_cache(loaded, prompt, canvas, kw, device)
    del loaded, model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return out


def measure_cache(loaded: LoadedModel, prompt: torch.Tensor, canvas: torch.Tensor, kw: dict,
                  device: torch.device) -> dict:
    """The same decode through engine/models/kv_forward.py's exact block cache (eager), against the floor of one
    block's 32 positions attending to the whole canvas."""
    model, start, block = loaded.model, prompt.shape[1], kw["block_length"]

    def first_block() -> torch.Tensor:
        cached = CachedForward(loaded, CacheConfig("prefix"))
        cached.start_block(start, start + block)
        return cached.block_logits(canvas, start, start + block)

    touched = touched_experts(model, first_block)
    generate(CachedForward(loaded, CacheConfig("prefix")), prompt, Credit(), **kw)  # warm-up
    sync(device)
    cached = CachedForward(loaded, CacheConfig("prefix"))
    result = generate(cached, prompt, Credit(), **kw)
    step_ms = 1e3 * result.seconds / result.nfe
    bound = floor(model, block, block, touched, keys=canvas.shape[1])
    return {"nfe": result.nfe, "refreshes": len(cached.computed_rows) - result.nfe, "seconds": result.seconds, "step_ms": step_ms,
            "experts_touched_per_moe_layer": touched, "floor": bound, "step_over_floor": step_ms / bound["floor_ms"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="JSON results file")
    parser.add_argument("--smoke", action="store_true", help="CPU, toy configs from the reference fixtures")
    parser.add_argument("--eager", action="store_true", help="GPU without CUDA graphs (if a capture fails)")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    if args.smoke:
        torch.set_num_threads(1)  # toy matrices gain nothing from threads, and a shared CPU makes them stall
    torch.manual_seed(SEED)
    out: dict = {"environment": header(device), "cuda_graphs": device.type == "cuda" and not args.eager,
                 "assumed": {"hbm_bytes_per_s": HBM_BYTES_PER_S, "bf16_flops_per_s": BF16_FLOPS_PER_S},
                 "families": {}}
    for name in NAMES:
        with torch.no_grad():
            out["families"][name] = measure(name, family_config(name, args.smoke), device, args.smoke,
                                             graphs=not args.eager)
        write_json(Path(args.out), out)
    print(json.dumps(out["families"], indent=1), flush=True)


if __name__ == "__main__":
    main()
