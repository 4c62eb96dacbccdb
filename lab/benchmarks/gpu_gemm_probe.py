"""What the step's kernels can reach on this GPU, one kernel class at a time (the design question behind issue 14's
step targets): every LLaDA-8B linear shape at the row counts a step runs (32 = a dual-cache step's block, 288 = the
whole canvas), timed inside a CUDA graph (no launch gaps), through cuBLAS (F.linear, what the engine runs) and
through inductor's max-autotune (Triton templates and cuBLAS, the fastest per shape); SDPA for 32 / 288 queries
over 288 keys with each backend. Bandwidth = bytes of the weight / time; TFLOP/s = 2 M N K / time.

    python3 lab/benchmarks/gpu_gemm_probe.py --out probe.json     # one H200: ~2 minutes
    python3 lab/benchmarks/gpu_gemm_probe.py --smoke              # CPU, tiny shapes, checks the script runs
"""
import argparse
import json

import torch
import torch.nn.functional as F

SHAPES = {"q|k|v|o": (4096, 4096), "qkv stacked": (12288, 4096), "gate|up": (12288, 4096),
          "gate+up stacked": (24576, 4096), "down": (4096, 12288), "head": (126464, 4096)}


def timed(fn, device: torch.device, repeats: int = 20) -> float:
    """Milliseconds per call: on a GPU, `repeats` calls captured in one CUDA graph, median of 5 replays."""
    if device.type != "cuda":
        fn()
        return float("nan")
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(repeats):
            fn()
    times = []
    for _ in range(5):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / repeats)
    return sorted(times)[2]


def linears(device: torch.device, smoke: bool, autotune: bool) -> list[dict]:
    rows_list = [4, 8] if smoke else [32, 288]
    out = []
    for name, (n, k) in SHAPES.items():
        if smoke:
            n, k = n // 256, k // 256
        weight = torch.randn(n, k, device=device, dtype=torch.bfloat16) * 0.02
        for rows in rows_list:
            x = torch.randn(rows, k, device=device, dtype=torch.bfloat16)
            row = {"shape": name, "rows": rows, "n": n, "k": k}
            variants = {"cublas": lambda x=x, w=weight: F.linear(x, w)}
            if autotune and device.type == "cuda":
                torch.compiler.reset()  # one compile per shape: dynamo's recompile limit (8) would fall back to eager
                tuned = torch.compile(lambda x, w: F.linear(x, w), dynamic=False, mode="max-autotune-no-cudagraphs")
                variants["max_autotune"] = (lambda f=tuned, x=x, w=weight: f(x, w))
            for variant, fn in variants.items():
                ms = timed(fn, device)
                row[variant] = {"ms": ms, "tb_s": n * k * 2 / ms / 1e9, "tflop_s": 2 * rows * n * k / ms / 1e9}
            out.append(row)
            print(json.dumps(row), flush=True)
    return out


def attention(device: torch.device, smoke: bool) -> list[dict]:
    from torch.nn.attention import SDPBackend, sdpa_kernel
    heads, dim, keys = (4, 16, 24) if smoke else (32, 128, 288)
    out = []
    for queries in ([8, 24] if smoke else [32, 288]):
        q = torch.randn(1, heads, queries, dim, device=device, dtype=torch.bfloat16)
        k = torch.randn(1, heads, keys, dim, device=device, dtype=torch.bfloat16)
        v = torch.randn_like(k)
        row = {"queries": queries, "keys": keys}
        for backend in ("CUDNN_ATTENTION", "FLASH_ATTENTION", "EFFICIENT_ATTENTION", "MATH"):
            try:
                with sdpa_kernel(getattr(SDPBackend, backend)):
                    row[backend] = timed(lambda: F.scaled_dot_product_attention(q, k, v), device)
            except RuntimeError as error:  # a backend this device / dtype cannot run
                row[backend] = str(error).splitlines()[0][:120]
        out.append(row)
        print(json.dumps(row), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny shapes")
    parser.add_argument("--no-autotune", action="store_true", help="cuBLAS only (skips inductor's max-autotune)")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()
    device = torch.device("cpu" if args.smoke or not torch.cuda.is_available() else "cuda")
    torch.manual_seed(0)
    result = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
              "torch": torch.__version__, "attention": attention(device, args.smoke),
              "linear": linears(device, args.smoke, not args.no_autotune)}
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(result, handle, indent=1)
    print(json.dumps({"done": True, "rows": len(result["linear"])}))


if __name__ == "__main__":
    main()
