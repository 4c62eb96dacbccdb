"""NativeLM.compile_layers (the blocks' regions torch.compiled in place, what GPU decodes capture in CUDA graphs):
on a CPU with torch's "aot_eager" backend (tracing and decompositions, no code generation), a cached refresh step
still equals the full forward exactly, every rule and mode decodes the tokens of the uncompiled model, and one
compiled region serves every layer and every row count."""
from pathlib import Path

import pytest
import torch
from torch._dynamo.utils import counters

from engine.decoding import Credit, generate
from engine.decoding.cache import CacheConfig
from engine.models.cuda_graph import StaticForward
from engine.models.families import load_native
from engine.models.kv_forward import CachedForward

FIXTURES = Path(__file__).parent / "fixtures" / "models"
PROMPT, GEN, BLOCK = 7, 32, 16


@pytest.fixture(scope="module")
def pair():
    """The LLaDA fixture twice: uncompiled, and with its layers compiled (compiling is in place)."""
    plain = load_native("llada", source=FIXTURES / "llada", device="cpu")
    compiled = load_native("llada", source=FIXTURES / "llada", device="cpu")
    torch._dynamo.reset()
    counters.clear()
    compiled.model.compile_layers(backend="aot_eager")
    return plain, compiled


def canvas(mask_id: int) -> torch.Tensor:
    ids = torch.randint(0, 100, (2, PROMPT + GEN), generator=torch.Generator().manual_seed(0))
    ids[:, PROMPT + BLOCK + 3:] = mask_id
    return ids


@pytest.mark.parametrize("mode", ["prefix", "dual"])
def test_compiled_refresh_step_equals_the_full_forward_exactly(pair, mode):
    _, compiled = pair
    ids = canvas(compiled.spec.mask_id)
    lo, hi = PROMPT + BLOCK, PROMPT + 2 * BLOCK
    cached = CachedForward(compiled, CacheConfig(mode))
    cached.start_block(lo, hi)
    assert torch.equal(cached.block_logits(ids, lo, hi), StaticForward(compiled).block_logits(ids, lo, hi))


@pytest.mark.parametrize("mode", ["none", "prefix", "dual"])
def test_compiled_layers_decode_the_same_tokens(pair, mode):
    prompt = torch.randint(0, 100, (2, PROMPT), generator=torch.Generator().manual_seed(1))
    tokens = []
    for loaded in pair:
        fn = StaticForward(loaded) if mode == "none" else CachedForward(loaded, CacheConfig(mode))
        tokens.append(generate(fn, prompt, Credit(), gen_length=GEN, block_length=BLOCK,
                               mask_id=loaded.spec.mask_id).tokens)
    assert torch.equal(tokens[0], tokens[1])


def test_one_compiled_graph_per_region_for_every_layer_and_row_count(pair):
    _, compiled = pair
    before = counters["stats"]["unique_graphs"]
    prompt = torch.randint(0, 100, (1, PROMPT), generator=torch.Generator().manual_seed(2))  # batch 1: new graphs
    for mode in ("none", "prefix", "dual"):  # rows 39, 32 .. 16 and 16 against 39 keys
        fn = StaticForward(compiled) if mode == "none" else CachedForward(compiled, CacheConfig(mode))
        generate(fn, prompt, Credit(), gen_length=GEN, block_length=BLOCK, mask_id=compiled.spec.mask_id)
    assert counters["stats"]["unique_graphs"] - before == len(type(compiled.model.layers()[0]).regions)
    compiled.model.compile_layers(backend="aot_eager")  # idempotent: nothing compiled twice
    assert all(callable(getattr(layer, name)) for layer in compiled.model.layers() for name in ("project", "finish"))


def test_compile_needs_regions_and_graphs(pair):
    dream = load_native("dream", source=FIXTURES / "dream", device="cpu")
    with pytest.raises(ValueError, match="regions"):
        dream.model.compile_layers(backend="aot_eager")
    with pytest.raises(ValueError, match="graphs=True"):
        CachedForward(pair[0], CacheConfig("dual"), compile_model=True)
