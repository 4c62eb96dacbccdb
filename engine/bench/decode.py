"""The benchmark's one hook into decoding: `decode_batch` decodes one batch of one grid cell, cache mode included.

Every grid cell decodes through this function, so a new key/value cache mode joins the benchmark here and nowhere
else: add its name to BENCH_CACHES and build its decode in `decode_batch` (a cached model callable, or the loop's
own cache argument, whichever the engine offers). BenchConfig validates `caches` against BENCH_CACHES, so the CLI
refuses an unknown mode before any model loads; a mode the model cannot use (dual with a block-causal model) is
refused when the cell starts, before anything decodes.

`Forwards` keeps the callables across a cell's batches: with CUDA graphs, the shared GraphCache of cache `none` and
one CachedForward per (mode, canvas shape), reset for each batch, so graphs are captured in the cell's untimed
warm-up and replayed in its timed batches (a new CachedForward per batch would capture inside the timed wall).
"""
from __future__ import annotations

import torch

from engine.decoding import DecodeResult, Rule, generate
from engine.decoding.cache import CACHE_MODES, CacheConfig
from engine.models.base import LoadedModel
from engine.models.cuda_graph import GraphCache
from engine.models.kv_forward import check_cache as check_model_cache
from engine.models.kv_forward import CachedForward, decode_forward, native_model

BENCH_CACHES = CACHE_MODES  # cache modes the benchmark can decode with (refreshed at each block's first step)


def check_cache(cache: str) -> None:
    """ValueError naming the mode and the allowed ones when the benchmark cannot decode with `cache`."""
    if cache not in BENCH_CACHES:
        raise ValueError(f"cache mode {cache!r} is not available in this engine; allowed: {', '.join(BENCH_CACHES)}")


class Forwards:
    """The model callables of one process's grid (module docstring); `new_cell()` drops the cached forwards of the
    cell before, so at most one cell's key/value stores are held."""

    def __init__(self, model: LoadedModel, cuda_graph: bool) -> None:
        self.model = model
        self.graphs = GraphCache(model.model) if cuda_graph else None
        self.cached: dict[tuple[str, tuple[int, ...]], CachedForward] = {}

    def new_cell(self) -> None:
        self.cached.clear()

    def get(self, config: CacheConfig, ids: torch.Tensor, key_mask: torch.Tensor | None):
        """The callable decoding `ids` (B, P) with `config`: a plain (graphed) forward for cache none, else the cell's
        CachedForward for this shape, reset to these prompts."""
        if config.mode == "none":
            return decode_forward(self.model, config, key_mask=key_mask, graphs=self.graphs)
        key = (config.mode, tuple(ids.shape))
        if key not in self.cached:
            self.cached[key] = decode_forward(self.model, config, key_mask=key_mask, graphs=self.graphs)
        forward = self.cached[key]
        forward.reset(key_mask)
        return forward


def decode_batch(model: LoadedModel, ids: torch.Tensor, key_mask: torch.Tensor | None, rule: Rule, gen_length: int,
                 block_length: int, cache: str, forwards: Forwards) -> DecodeResult:
    """Decode prompts ids (B, P) (key_mask (B, P): real prompt tokens, None = unpadded) with one cell's settings;
    no trace, EOS early stop as the model's spec says."""
    check_cache(cache)
    config = CacheConfig(cache)
    if cache != "none":
        check_model_cache(native_model(model), config, block_length)
    forward = forwards.get(config, ids, key_mask)
    return generate(forward, ids, rule, gen_length=gen_length, block_length=block_length, mask_id=model.spec.mask_id,
                    eos_id=model.spec.eos_id, shift=model.spec.shift, record_trace=False)
