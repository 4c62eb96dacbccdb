"""Where a decoding step's time goes, per cache mode: torch.profiler over a few steps of a real decode (LLaDA-8B's
shape, random bf16 weights, the setup of lab/benchmarks/gpu_cache.py), with CUDA graphs and then with the blocks
compiled too (NativeLM.compile_layers).

For each (version, mode): a decode captures the graphs, a second is timed (step = seconds / NFE, trace on), and a
third runs under the profiler for `--steps` forwards from step `--first` (mid-block: steps between refreshes) plus
the next block's refresh. Reported per profiled step: wall time, GPU busy time (union of kernel intervals), kernels,
kernel time by class (GEMM, attention, elementwise/other), the idle gaps between kernels (short ones, < 10 us: a
graph's kernel-to-kernel latency; long ones: the GPU waiting for the host) and the top kernels by name. Per mode
also the forward alone, replayed back to back with no host synchronisation in between (CUDA events): a step minus
that is what the rule, the trace and the host's per-step round trip cost. Then the bf16 GEMM rate of
the layer shapes at 32 and 288 rows, alone (d x 3d is stacked q/k/v at LLaDA-8B's size, as d x mlp is; d x 2 mlp
is stacked gate/up), and whether a cached refresh step equals the full forward on the GPU.

Run on the GPU machine:  python3 lab/benchmarks/gpu_cache_profile.py --out $OUT/profile.json
CPU check (tests):  python lab/benchmarks/gpu_cache_profile.py --smoke --out /tmp/profile.json
"""
from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import torch
from gpu_cache import SEED, build, forward_for, guarded, sizes
from gpu_common import header, matmul_rate_at, sync, write_json
from torch.profiler import ProfilerActivity, profile

from engine.decoding import Credit, generate
from engine.decoding.cache import CACHE_MODES


class ProfiledSteps:
    """The decode's model callable, with the profiler on for forwards [first, first + steps) and the one at `refresh`
    (each step runs from its forward to the next forward)."""

    def __init__(self, fn, first: int, steps: int, refresh: int) -> None:
        self.fn, self.calls, self.prof, self.walls, self.profiles = fn, 0, None, [], []
        self.window = set(range(first, first + steps)) | {refresh}
        self._began = None

    def __getattr__(self, name: str):
        return getattr(self.fn, name)  # cache, start_block (when the callable has one), computed_rows

    def block_logits(self, ids: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        if self._began is not None:  # the previous forward was profiled: its step ends here
            sync(ids.device)
            self.walls.append(time.perf_counter() - self._began)
            self.prof.stop()
            self._began = None
        if self.calls in self.window:
            self.prof = profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA])
            sync(ids.device)
            self.prof.start()
            self._began = time.perf_counter()
            self.profiles.append(self.prof)
        self.calls += 1
        return self.fn.block_logits(ids, start, stop)


def kernel_class(name: str) -> str:
    lower = name.lower()
    if any(key in lower for key in ("gemm", "nvjet", "cutlass", "sm90_xmma", "cublas", "splitk")):
        return "gemm"
    if any(key in lower for key in ("flash", "fmha", "attention", "sdpa")):
        return "attention"
    return "other"


def idle_gaps(spans: list[tuple[float, float]], short_us: float = 10.0) -> dict:
    """The idle time between the union of kernel intervals `spans` (start, end in microseconds, sorted by start):
    short gaps (a graph's kernel-to-kernel latency) and long ones (the GPU waiting for the host), in ms."""
    gaps, end = [], None
    for lo, hi in spans:
        if end is not None and lo > end:
            gaps.append(lo - end)
        end = hi if end is None else max(end, hi)
    short = [g for g in gaps if g < short_us]
    return {"short_ms": sum(short) / 1e3, "short_count": len(short), "long_ms": (sum(gaps) - sum(short)) / 1e3,
            "largest_us": sorted(gaps, reverse=True)[:5]}


def summarize(prof, wall_s: float) -> dict:
    """Kernel time by class and name, busy time (union of intervals), kernel count, against the step's wall time."""
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    spans = sorted((e.time_range.start, e.time_range.end) for e in kernels)
    busy, end = 0.0, float("-inf")
    for lo, hi in spans:
        busy += max(0.0, hi - max(lo, end))
        end = max(end, hi)
    by_class, by_name = defaultdict(float), defaultdict(lambda: [0.0, 0])
    for e in kernels:
        us = e.time_range.end - e.time_range.start
        by_class[kernel_class(e.name)] += us / 1e3
        by_name[e.name][0] += us / 1e3
        by_name[e.name][1] += 1
    top = sorted(by_name.items(), key=lambda kv: -kv[1][0])[:20]
    return {"wall_ms": wall_s * 1e3, "gpu_busy_ms": busy / 1e3, "kernels": len(kernels),
            "span_ms": (max(hi for _, hi in spans) - spans[0][0]) / 1e3 if spans else 0.0, "gaps": idle_gaps(spans),
            "kernel_ms_by_class": dict(by_class),
            "top_kernels": [{"name": n[:120], "ms": ms, "count": c} for n, (ms, c) in top]}


def profile_mode(loaded, mode: str, compile_model: bool, prompt, kw: dict, first: int, steps: int) -> dict:
    fn = forward_for(loaded, mode, prompt.device.type == "cuda", compile_model)
    generate(fn, prompt, Credit(), **kw)  # captures the graphs (and compiles)
    sync(prompt.device)
    timed = generate(fn, prompt, Credit(), **kw)
    arrays = timed.trace.arrays  # (S, B, Lb[, k]): computed beside the next forward on a GPU (engine/decoding/feed.py)
    trace_check = {"topk_first_is_raw_top1": float((arrays["topk_ids"][..., 0] == arrays["raw_top1_id"]).mean()),
                   "topk_first_prob_vs_raw_prob_max_diff": float(abs(arrays["topk_probs"][..., 0]
                                                                     - arrays["raw_top1_prob"]).max()),
                   "entropy_min": float(arrays["entropy"].min()), "entropy_max": float(arrays["entropy"].max())}
    block = kw["block_length"]
    wrapped = ProfiledSteps(fn, first, steps, refresh=(first // block + 1) * block)
    generate(wrapped, prompt, Credit(), **kw)
    profiled = [summarize(p, w) for p, w in zip(wrapped.profiles, wrapped.walls)]
    return {"step_ms": 1e3 * timed.seconds / timed.nfe, "nfe": timed.nfe, "trace_check": trace_check,
            "forward_back_to_back_ms": back_to_back(fn, mode, prompt, kw), "steps": profiled[:-1],
            "refresh_step": profiled[-1], "eager_forward": eager_forward(loaded, mode, prompt, kw)}


def back_to_back(fn, mode: str, prompt, kw: dict, calls: int = 20) -> float | None:
    """Milliseconds per forward of the decode's callable (a step between refreshes), `calls` launched back to back
    with no synchronisation between them, timed by CUDA events (None on a CPU)."""
    if prompt.device.type != "cuda":
        return None
    ids = torch.cat([prompt, torch.full((1, kw["gen_length"]), kw["mask_id"], device=prompt.device)], 1)
    lo, hi = prompt.shape[1], prompt.shape[1] + kw["block_length"]
    if mode != "none":
        fn.start_block(lo, hi)
        fn.block_logits(ids, lo, hi)  # the block's refresh; the calls below are its steps between refreshes
    fn.block_logits(ids, lo, hi)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    sync(prompt.device)
    start.record()
    for _ in range(calls):
        fn.block_logits(ids, lo, hi)
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / calls


def eager_forward(loaded, mode: str, prompt, kw: dict) -> dict:
    """One step's forward without graphs (the blocks as they are, compiled or not), profiled: every kernel by name
    even where the profiler cannot see inside a graph replay."""
    fn = forward_for(loaded, mode, False)
    ids = torch.cat([prompt, torch.full((1, kw["gen_length"]), kw["mask_id"], device=prompt.device)], 1)
    lo, hi = prompt.shape[1], prompt.shape[1] + kw["block_length"]
    if mode != "none":
        fn.start_block(lo, hi)
    for _ in range(3):  # the refresh, then steps between refreshes (warm)
        fn.block_logits(ids, lo, hi)
    sync(prompt.device)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        began = time.perf_counter()
        fn.block_logits(ids, lo, hi)
        sync(prompt.device)
    return summarize(prof, time.perf_counter() - began)


def equality(loaded, mode: str, compile_model: bool, prompt, kw: dict) -> dict:
    """A cached refresh step against the full forward's block rows (both replayed from graphs)."""
    length, block = prompt.shape[1] + kw["gen_length"], kw["block_length"]
    ids = torch.cat([prompt, torch.full((1, kw["gen_length"]), kw["mask_id"], device=prompt.device)], 1)
    ids[:, prompt.shape[1]:prompt.shape[1] + block + 3] = 7  # one finished block and three committed positions
    lo, hi = prompt.shape[1] + block, prompt.shape[1] + 2 * block
    full = forward_for(loaded, "none", True, compile_model).block_logits(ids, lo, hi)
    cached = forward_for(loaded, mode, True, compile_model)
    cached.start_block(lo, hi)
    step = cached.block_logits(ids, lo, hi)
    assert ids.shape[1] == length
    return {"equal": bool(torch.equal(step, full)), "max_abs_diff": float((step - full).abs().max())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="JSON results file")
    parser.add_argument("--smoke", action="store_true", help="CPU-sized model; the profiler still runs")
    parser.add_argument("--first", type=int, default=40, help="first profiled forward (0-based)")
    parser.add_argument("--steps", type=int, default=3, help="profiled forwards from --first")
    parser.add_argument("--versions", default="graphs,graphs_compiled", help="GPU: which of graphs, graphs_compiled")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    torch.manual_seed(SEED)
    s = sizes(args.smoke)
    loaded = build("llada", args.smoke, device)
    g = torch.Generator().manual_seed(SEED)
    prompt = torch.randint(0, 50_000 if not args.smoke else 100, (1, s["prompt"]), generator=g).to(device)
    kw = dict(gen_length=s["gen"], block_length=s["block"], mask_id=loaded.spec.mask_id, shift=False)
    first = args.first if not args.smoke else 2
    out: dict = {"environment": header(device), "versions": {}}
    versions = ([(name, name == "graphs_compiled") for name in ("graphs", "graphs_compiled")
                 if name in args.versions.split(",")] if device.type == "cuda" else [("eager", False)])
    with torch.no_grad():
        for name, compile_model in versions:  # compiling is in place: the uncompiled version runs first
            entry = out["versions"].setdefault(name, {})
            for mode in CACHE_MODES:
                guarded(entry, mode, lambda mode=mode: profile_mode(loaded, mode, compile_model, prompt, kw, first,
                                                                    args.steps))
                if mode != "none" and device.type == "cuda":
                    guarded(entry, f"{mode}_refresh_equality",
                            lambda mode=mode: equality(loaded, mode, compile_model, prompt, kw))
            write_json(Path(args.out), out)
        d, f = loaded.model.config.d_model, loaded.model.config.mlp_hidden_size
        out["gemm_tflops"] = {f"{m}x{k}x{n}": matmul_rate_at(m, k, n, device, repeats=5 if args.smoke else 20)
                              for m in (32, 288) for k, n in ((d, d), (d, f), (f, d), (d, 2 * f))}
    write_json(Path(args.out), out)
    print(json.dumps({k: v for k, v in out.items() if k != "environment"}, indent=1, default=str)[:20000], flush=True)


if __name__ == "__main__":
    main()
