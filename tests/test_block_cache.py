"""LLaDA2's exact block cache (CachedForward, cache 'prefix' on a block-causal model): cached block logits equal a full
forward's, a decode with it equals one without, and it refuses what it cannot do exactly."""
from pathlib import Path

import pytest
import torch

from engine.decoding import Credit, Threshold, generate
from engine.decoding.cache import CacheConfig
from engine.models.cuda_graph import StaticForward
from engine.models.kv_forward import CachedForward, cache_modes, check_cache
from engine.models.families import load_native

FIXTURES = Path(__file__).parent / "fixtures" / "models"


@pytest.fixture(scope="module")
def llada2():
    return load_native("llada2", source=FIXTURES / "llada2", device="cpu")


def canvas(prompt: torch.Tensor, gen: int, mask_id: int, filled: int) -> torch.Tensor:
    """Prompt + answer of `gen` masks whose first `filled` positions hold tokens, the same ones however many are
    filled (a decode only ever fills positions in)."""
    g = torch.Generator().manual_seed(0)
    answer = torch.randint(0, 100, (prompt.shape[0], gen), generator=g)
    answer[:, filled:] = mask_id
    return torch.cat([prompt, answer], dim=1)


@pytest.mark.parametrize("pads", [(0,), (0, 3, 9)])
def test_cached_block_logits_equal_the_full_forward(llada2, pads):
    g = torch.Generator().manual_seed(1)
    prompt = torch.randint(0, 100, (len(pads), 13), generator=g)
    key_mask = torch.ones_like(prompt)
    for row, pad in enumerate(pads):
        key_mask[row, :pad] = 0
    cached = CachedForward(llada2, CacheConfig("prefix"), key_mask=key_mask)
    full = StaticForward(llada2, key_mask=key_mask)
    for filled in (0, 5, 32, 40, 64):  # blocks 0, 0, 1, 1, 2: the cache extends per block
        ids = canvas(prompt, 96, llada2.spec.mask_id, filled)
        start = 13 + 32 * (filled // 32)
        if filled % 32 == 0:
            cached.start_block(start, start + 32)
        assert torch.allclose(cached.block_logits(ids, start, start + 32), full.block_logits(ids, start, start + 32),
                              atol=1e-5)
    assert cached.computed_rows == [13, 32, 32, 32, 32, 32, 32, 32]  # prompt, block 0 x2, block 0, block 1 x2, ...


@pytest.mark.parametrize("strategy", [Threshold(threshold=0.9), Credit(threshold=0.9, alpha=0.65, beta=0.7,
                                                                       gamma=0.2)])
def test_decode_with_the_cache_equals_decode_without(llada2, strategy):
    prompt = torch.tensor([[5, 17, 33, 2, 90, 41, 8, 77, 3, 64, 12]])
    kw = dict(gen_length=96, block_length=32, mask_id=llada2.spec.mask_id)
    cached = CachedForward(llada2, CacheConfig("prefix"))
    with_cache = generate(cached, prompt, strategy, **kw)
    without = generate(llada2, prompt, strategy, **kw)
    assert torch.equal(with_cache.tokens, without.tokens) and with_cache.nfe == without.nfe
    assert cached.computed_rows.count(32) == with_cache.nfe + 2  # every step one block; blocks 0 and 1 kept once
    assert with_cache.trace.arrays["step_recomputed"].sum() == 3  # each block's first step extends the cache
    other = torch.tensor([[9, 1, 4, 4, 60, 2, 18, 7, 30, 5, 11]])  # a second decode on the same callable keeps nothing
    assert torch.equal(generate(cached, other, strategy, **kw).tokens, generate(llada2, other, strategy, **kw).tokens)


def test_cache_refuses_what_it_cannot_do_exactly(llada2):
    ids = canvas(torch.tensor([[5, 17, 33]]), 64, llada2.spec.mask_id, 0)
    cached = CachedForward(llada2, CacheConfig("prefix"))
    cached.start_block(3, 19)
    with pytest.raises(ValueError, match="not whole 32-token attention blocks; decode with block_length a multiple"):
        cached.block_logits(ids, 3, 19)
    with pytest.raises(ValueError, match="cache='dual' needs a full-attention model; .* use cache='prefix'"):
        CachedForward(llada2, CacheConfig("dual"))
    with pytest.raises(ValueError, match="prefix cache is exact and never refreshes"):
        CachedForward(llada2, CacheConfig("prefix", refresh=4))
    with pytest.raises(ValueError, match="block_length=16: .* 32-token blocks"):
        check_cache(llada2.model, CacheConfig("prefix"), 16)
    assert cache_modes(llada2, 32) == ["none", "prefix"] and cache_modes(llada2, 16) == ["none"]


def test_a_reset_block_cache_decodes_a_padded_batch_as_without_cache(llada2):
    """The benchmark reuses one CachedForward per canvas shape (engine/bench/decode.Forwards): after reset with another
    key mask, the block cache equals a decode without cache."""
    kw = dict(gen_length=64, block_length=32, mask_id=llada2.spec.mask_id)
    strategy = Threshold(threshold=0.9)
    cached = CachedForward(llada2, CacheConfig("prefix"))
    generate(cached, torch.tensor([[5, 17, 33, 2, 90, 41], [8, 77, 3, 64, 12, 9]]), strategy, **kw)
    padded = torch.tensor([[0, 0, 0, 4, 60, 2], [18, 7, 30, 5, 11, 3]])
    key_mask = padded != 0
    cached.reset(key_mask)
    plain = StaticForward(llada2, key_mask=key_mask)
    assert torch.equal(generate(cached, padded, strategy, **kw).tokens, generate(plain, padded, strategy, **kw).tokens)
