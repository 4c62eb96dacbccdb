"""The benchmark's one hook into how a cell's model callable is built: `cell_forward(model, key_mask, graphs, cache)`.

Every grid cell decodes through the callable this returns, so a new key/value cache mode joins the benchmark here
and nowhere else: add its name to BENCH_CACHES and build its callable in `cell_forward` (BenchConfig validates
`caches` against BENCH_CACHES, so the CLI refuses an unknown mode before any model loads). Today the engine decodes
without a cache only ("none": every step recomputes the whole canvas).
"""
from __future__ import annotations

import torch

from engine.models.base import LoadedModel
from engine.models.cuda_graph import GraphCache, StaticForward

BENCH_CACHES = ("none",)  # cache modes the benchmark can decode with


def check_cache(cache: str) -> None:
    """ValueError naming the mode and the allowed ones when the benchmark cannot decode with `cache`."""
    if cache not in BENCH_CACHES:
        raise ValueError(f"cache mode {cache!r} is not available in this engine; allowed: {', '.join(BENCH_CACHES)}")


def cell_forward(model: LoadedModel, key_mask: torch.Tensor | None, graphs: GraphCache | None,
                 cache: str) -> StaticForward:
    """The model callable one batch of one cell decodes with (key_mask (B, P): real prompt tokens, None = unpadded)."""
    check_cache(cache)
    return StaticForward(model, key_mask=key_mask, graphs=graphs)
