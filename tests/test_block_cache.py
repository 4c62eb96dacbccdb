"""LLaDA2's exact block cache: cached block logits equal a full forward's, and a decode with it equals one without."""
from pathlib import Path

import pytest
import torch

from engine.decoding import Credit, Threshold, generate
from engine.models.block_cache import BlockCacheForward
from engine.models.cuda_graph import StaticForward
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
    cached = BlockCacheForward(llada2, key_mask=key_mask)
    full = StaticForward(llada2, key_mask=key_mask)
    for filled in (0, 5, 32, 40, 64):  # blocks 0, 0, 1, 1, 2: the cache extends per block
        ids = canvas(prompt, 96, llada2.spec.mask_id, filled)
        start = 13 + 32 * (filled // 32)
        assert torch.allclose(cached.block_logits(ids, start, start + 32), full.block_logits(ids, start, start + 32),
                              atol=1e-5)
    assert cached.refreshes == 3  # the prompt, then each finished block


@pytest.mark.parametrize("strategy", [Threshold(threshold=0.9), Credit(threshold=0.9, alpha=0.65, beta=0.7,
                                                                       gamma=0.2)])
def test_decode_with_the_cache_equals_decode_without(llada2, strategy):
    prompt = torch.tensor([[5, 17, 33, 2, 90, 41, 8, 77, 3, 64, 12]])
    kw = dict(gen_length=96, block_length=32, mask_id=llada2.spec.mask_id)
    cached = BlockCacheForward(llada2)
    with_cache = generate(cached, prompt, strategy, **kw)
    without = generate(llada2, prompt, strategy, **kw)
    assert torch.equal(with_cache.tokens, without.tokens) and with_cache.nfe == without.nfe
    assert cached.refreshes == 3


def test_cache_refuses_other_blocks_and_other_models(llada2):
    ids = canvas(torch.tensor([[5, 17, 33]]), 64, llada2.spec.mask_id, 0)
    with pytest.raises(ValueError, match="not one 32-token attention block; decode with block_length=32"):
        BlockCacheForward(llada2).block_logits(ids, 3, 19)
    moe = load_native("llada_moe", source=FIXTURES / "llada_moe", device="cpu")
    with pytest.raises(ValueError, match="is not block-causal"):
        BlockCacheForward(moe)
