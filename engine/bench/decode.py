"""The benchmark's one hook into decoding: `decode_batch` decodes one batch of one grid cell, cache mode included.

Every grid cell decodes through this function, so a new key/value cache mode joins the benchmark here and nowhere
else: add its name to BENCH_CACHES and build its decode in `decode_batch` (a cached model callable, or the loop's
own cache argument, whichever the engine offers). BenchConfig validates `caches` against BENCH_CACHES, so the CLI
refuses an unknown mode before any model loads; a mode the model cannot use (dual with a block-causal model) is
refused when the cell starts, before anything decodes.
"""
from __future__ import annotations

import torch

from engine.decoding import DecodeResult, Rule, generate
from engine.decoding.cache import CACHE_MODES, CacheConfig
from engine.models.base import LoadedModel
from engine.models.cuda_graph import GraphCache
from engine.models.kv_forward import check_cache as check_model_cache
from engine.models.kv_forward import decode_forward, native_model

BENCH_CACHES = CACHE_MODES  # cache modes the benchmark can decode with (refreshed at each block's first step)


def check_cache(cache: str) -> None:
    """ValueError naming the mode and the allowed ones when the benchmark cannot decode with `cache`."""
    if cache not in BENCH_CACHES:
        raise ValueError(f"cache mode {cache!r} is not available in this engine; allowed: {', '.join(BENCH_CACHES)}")


def decode_batch(model: LoadedModel, ids: torch.Tensor, key_mask: torch.Tensor | None, rule: Rule, gen_length: int,
                 block_length: int, cache: str, graphs: GraphCache | None) -> DecodeResult:
    """Decode prompts ids (B, P) (key_mask (B, P): real prompt tokens, None = unpadded) with one cell's settings;
    no trace, EOS early stop as the model's spec says."""
    check_cache(cache)
    config = CacheConfig(cache)
    if cache != "none":
        check_model_cache(native_model(model), config, block_length)
    forward = decode_forward(model, config, key_mask=key_mask, graphs=graphs)
    return generate(forward, ids, rule, gen_length=gen_length, block_length=block_length, mask_id=model.spec.mask_id,
                    eos_id=model.spec.eos_id, shift=model.spec.shift, record_trace=False)
