"""Shared by the lab/benchmarks/gpu_*.py scripts: device timing, the two ceilings of the card, results files, and
native families with seeded random weights (no download) and one decoding step of theirs timed.

Every script runs on a CPU too (`--smoke`: tiny sizes, no CUDA graphs), so it can be checked before a GPU lease.
"""
from __future__ import annotations

import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # the repository root, for `engine`

from engine.bench.report import environment  # noqa: E402
from engine.decoding import Credit, generate  # noqa: E402
from engine.models.base import LoadedModel, ModelSpec  # noqa: E402
from engine.models.cuda_graph import GraphCache, StaticForward  # noqa: E402
from engine.models.families import FAMILIES, build_module  # noqa: E402
from engine.models.native import init_random  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "models"  # <family>/config.json: the reference fixtures' toy configs
SEED = 0  # the random weights' seed


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(fn: Callable[[], object], device: torch.device, repeats: int = 20, warmup: int = 3) -> float:
    """Median wall time of `fn` in milliseconds; CUDA events around each call on a GPU."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            began = time.perf_counter()
            fn()
            times.append((time.perf_counter() - began) * 1e3)
    return statistics.median(times)


def ceilings(device: torch.device, smoke: bool) -> dict:
    """The card's two ceilings, measured: device-to-device copy bandwidth (bytes read + written) and the bf16
    matrix rate on a large random product (never zeros: they run faster than real data)."""
    n_bytes = (1 << 20) if smoke else (2 << 30)
    src = torch.randn(n_bytes // 2, dtype=torch.bfloat16, device=device)
    dst = torch.empty_like(src)
    copy_ms = median_ms(lambda: dst.copy_(src), device, repeats=5 if smoke else 20)
    size = 256 if smoke else 8192
    dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
    sets = [(torch.randn(size, size, dtype=dtype, device=device), torch.randn(size, size, dtype=dtype, device=device))
            for _ in range(3)]  # rotated so repeats do not read one buffer from cache
    turn = iter(range(10**9))

    def matmul() -> torch.Tensor:
        a, b = sets[next(turn) % len(sets)]
        return a @ b

    mm_ms = median_ms(matmul, device, repeats=5 if smoke else 20)
    del src, dst, sets
    return {"copy_bytes": 2 * n_bytes, "copy_ms": copy_ms, "bandwidth_gbs": 2 * n_bytes / copy_ms / 1e6,
            "matmul_size": size, "matmul_ms": mm_ms, "matmul_tflops": 2 * size**3 / mm_ms / 1e9}


def matmul_rate_at(m: int, k: int, n: int, device: torch.device, repeats: int = 20) -> float:
    """TFLOP/s of a bf16 (m x k) @ (k x n) product: the rate a decode-shaped GEMM actually gets."""
    dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
    a = torch.randn(m, k, dtype=dtype, device=device)
    w = [torch.randn(k, n, dtype=dtype, device=device) for _ in range(2)]
    turn = iter(range(10**9))
    ms = median_ms(lambda: a @ w[next(turn) % 2], device, repeats=repeats)
    return 2 * m * k * n / ms / 1e9


def write_json(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1, default=str), encoding="utf-8")


def header(device: torch.device) -> dict:
    return environment(device)


def family_config(name: str, smoke: bool) -> dict:
    """The family's published config.json (its module's PUBLISHED_CONFIG), or for --smoke its reference fixture's
    (toy sizes, the same structure)."""
    if not smoke:
        return FAMILIES[name].published_config
    return json.loads((FIXTURES / name / "config.json").read_text())


def random_model(family_name: str, raw: dict, device: torch.device, tokenizer=None, **spec) -> LoadedModel:
    """The family built from the config.json dict `raw` on `device` (bfloat16 on a GPU, float32 on a CPU) with seeded
    random weights, wrapped as the app wraps a loaded checkpoint. The spec is named "<family_name>-random" and has the
    family's mask, end ids, shift and context; `spec` replaces any of those fields."""
    family = FAMILIES[family_name]
    config = family.read_config(raw)
    dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
    model = init_random(build_module(family, config, device, dtype), seed=SEED)
    ids = family.special_ids(raw, None)
    published = ModelSpec(f"{family_name}-random", mask_id=ids.mask_id, eos_ids=ids.eos_ids, shift=family.shift,
                          max_length=family.context_length(config))
    return LoadedModel(replace(published, **spec), model, tokenizer, device, dtype)


def credit_step(loaded: LoadedModel, prompt: torch.Tensor, gen: int, block: int, graphs: bool,
                repeats: int) -> tuple[float, object]:
    """(ms of the bare forward, the decode's result): the first block's rows of prompt + `gen` masks through
    StaticForward (CUDA graphs when `graphs`), median of `repeats`; then a credit decode with the trace recorded, no
    early stop, timed after a warm-up decode that captures the graphs for this shape."""
    device, spec = loaded.device, loaded.spec
    forward = StaticForward(loaded, graphs=GraphCache(loaded.model) if graphs else None)
    canvas = torch.cat([prompt, torch.full((1, gen), spec.mask_id, device=device)], 1)  # (1, L)
    start = prompt.shape[1]
    bare_ms = median_ms(lambda: forward.block_logits(canvas, start, start + block), device, repeats=repeats)
    kw = dict(gen_length=gen, block_length=block, mask_id=spec.mask_id, shift=spec.shift, record_trace=True)
    generate(forward, prompt, Credit(), **kw)  # warm-up: graph capture for this shape, allocator
    sync(device)
    return bare_ms, generate(forward, prompt, Credit(), **kw)
