"""Key/value caches (engine/models/kv_forward.py): a refresh step equals a full forward, the steps between reuse the
refreshed keys and run only the rows their mode allows, every rule decodes with every mode, and refresh=1 decodes
exactly as no cache."""
from pathlib import Path

import pytest
import torch

from engine.decoding import RULES, generate, make_rule
from engine.decoding.cache import CACHE_MODES, CacheConfig
from engine.models.cuda_graph import StaticForward
from engine.models.families import load_native
from engine.models.kv_forward import CachedForward
from engine.models.llama_native import native_model

FIXTURES = Path(__file__).parent / "fixtures" / "models"
PROMPT, GEN, BLOCK = 7, 32, 16


@pytest.fixture(scope="module")
def natives():
    return {name: load_native(name, source=FIXTURES / name, device="cpu") for name in ("llada", "dream", "llada_moe")}


def canvas(vocab_ids: int, mask_id: int, filled: int, batch: int = 2, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab_ids, (batch, PROMPT + GEN), generator=g)
    ids[:, PROMPT + filled:] = mask_id
    return ids


def rows_of(loaded, block: int) -> tuple[int, int, int, int]:
    """(block start, block stop, logit rows start, stop) of answer block `block`."""
    lo = PROMPT + block * BLOCK
    shift = int(loaded.spec.shift)
    return lo, lo + BLOCK, lo - shift, lo + BLOCK - shift


def test_bundled_architecture_runs_natively_with_the_same_logits(tiny_model):
    ids = canvas(200, tiny_model.spec.mask_id, 10)
    native = native_model(tiny_model)
    assert native is native_model(tiny_model)  # converted once
    assert native.model.transformer.wte.weight.data_ptr() == tiny_model.model.model.embed_tokens.weight.data_ptr()
    torch.testing.assert_close(native(input_ids=ids).logits, tiny_model(ids), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["llada", "dream", "llada_moe", "tiny"])
@pytest.mark.parametrize("mode", ["prefix", "dual"])
def test_refresh_step_is_exact_and_later_steps_reuse_it(natives, tiny_model, name, mode):
    loaded = tiny_model if name == "tiny" else natives[name]
    full = StaticForward(loaded)
    cached = CachedForward(loaded, CacheConfig(mode))
    lo, hi, start, stop = rows_of(loaded, 1)
    ids = canvas(100, loaded.spec.mask_id, BLOCK + 3)
    cached.start_block(lo, hi)
    torch.testing.assert_close(cached.block_logits(ids, start, stop), full.block_logits(ids, start, stop),
                               atol=1e-5, rtol=1e-5)  # the refresh: a full forward
    ids[:, lo + 3:lo + 6] = 5  # the step commits three positions of the block
    step = cached.block_logits(ids, start, stop)
    window = {"prefix": PROMPT + GEN - start, "dual": hi - start}[mode]
    assert cached.computed_rows == [PROMPT + GEN, window]  # rows left of the block are not recomputed
    # The cached step equals a forward whose positions outside the window keep their refresh-time keys: change a
    # kept token now and the cached step does not see it, as a full forward would.
    changed = ids.clone()
    changed[:, 1] = 9
    again = CachedForward(loaded, CacheConfig(mode))
    again.start_block(lo, hi)
    again.block_logits(ids, start, stop)
    torch.testing.assert_close(again.block_logits(changed, start, stop), again.block_logits(ids, start, stop))
    assert not torch.allclose(full.block_logits(changed, start, stop), full.block_logits(ids, start, stop))
    assert step.shape == (2, BLOCK, full.block_logits(ids, start, stop).shape[-1])


def test_refreshed_keys_are_the_ones_used(natives):
    loaded = natives["llada"]
    cached = CachedForward(loaded, CacheConfig("dual", refresh=2))
    lo, hi, start, stop = rows_of(loaded, 0)
    ids = canvas(100, loaded.spec.mask_id, 0)
    cached.start_block(lo, hi)
    cached.block_logits(ids, start, stop)  # step 0: refresh
    ids[:, 1] = 9  # a prompt token changes (never in a decode; it shows which keys a step reads)
    stale = cached.block_logits(ids, start, stop)  # step 1: kept keys
    fresh = cached.block_logits(ids, start, stop)  # step 2: refresh every 2 steps
    torch.testing.assert_close(fresh, StaticForward(loaded).block_logits(ids, start, stop), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(stale, fresh, atol=1e-4)
    assert cached.computed_rows == [PROMPT + GEN, BLOCK, PROMPT + GEN]


@pytest.mark.parametrize("mode", CACHE_MODES)
@pytest.mark.parametrize("rule", list(RULES))
def test_every_rule_decodes_with_every_mode(tiny_model, rule, mode):
    entry = RULES[rule]
    strategy = make_rule(rule, None, steps=16, threshold=0.9)
    model_fn = tiny_model if mode == "none" else CachedForward(tiny_model, CacheConfig(mode))
    prompt = torch.tensor([[5, 17, 33, 2, 90, 41, 8]])
    result = generate(model_fn, prompt, strategy, gen_length=GEN, block_length=BLOCK, mask_id=tiny_model.spec.mask_id,
                      shift=True)
    assert not (result.tokens == tiny_model.spec.mask_id).any()
    assert result.trace.meta["cache"] == {"mode": mode, "refresh": None}
    recomputed = result.trace.arrays["step_recomputed"]
    assert recomputed.tolist() == [mode == "none" or k == 0 for k in result.trace.arrays["step_in_block"]]
    if entry.has("step_budget"):
        assert result.nfe == 16


@pytest.mark.parametrize("mode", ["prefix", "dual"])
def test_refresh_every_step_decodes_exactly_as_no_cache(natives, tiny_model, mode):
    for loaded in (tiny_model, natives["dream"], natives["llada_moe"]):
        prompt = torch.tensor([[5, 17, 33, 2, 90, 41, 8], [6, 1, 3, 50, 12, 9, 70]])
        kw = dict(gen_length=GEN, block_length=BLOCK, mask_id=loaded.spec.mask_id, shift=loaded.spec.shift)
        cached = CachedForward(loaded, CacheConfig(mode, refresh=1))
        with_cache = generate(cached, prompt, make_rule("credit", "paper"), **kw)
        without = generate(StaticForward(loaded), prompt, make_rule("credit", "paper"), **kw)
        assert torch.equal(with_cache.tokens, without.tokens) and with_cache.nfe == without.nfe
        assert set(cached.computed_rows) == {PROMPT + GEN}


def test_cache_config_names_bad_values():
    with pytest.raises(ValueError, match="cache='full' is unknown; allowed: none, prefix, dual"):
        CacheConfig("full")
    with pytest.raises(ValueError, match="refresh=0 must be an integer >= 1"):
        CacheConfig("dual", refresh=0)
    with pytest.raises(ValueError, match="needs a cache"):
        CacheConfig("none", refresh=2)


def test_bundled_model_runs_natively_with_the_same_logits_and_caches(bundled_model):
    ids = bundled_model.encode_prompt("What is the capital of France?")
    canvas = torch.cat([ids, torch.full((1, 32), bundled_model.spec.mask_id)], 1)
    native = native_model(bundled_model)
    torch.testing.assert_close(native(input_ids=canvas).logits.float(), bundled_model(canvas), atol=1e-4, rtol=1e-4)
    kw = dict(gen_length=32, block_length=16, mask_id=bundled_model.spec.mask_id, shift=True)
    exact = generate(CachedForward(bundled_model, CacheConfig("dual", refresh=1)), ids, make_rule("credit"), **kw)
    assert torch.equal(exact.tokens, generate(bundled_model, ids, make_rule("credit"), **kw).tokens)


@pytest.mark.parametrize("mode", ["prefix", "dual"])
def test_left_padded_batch_with_refresh_every_step_decodes_as_no_cache(tiny_model, mode):
    from engine.models.kv_forward import decode_forward

    prompts = torch.tensor([[0, 0, 0, 40, 41, 42, 43], [50, 51, 52, 53, 54, 55, 56]])  # row 0 left-padded by 3
    key_mask = torch.tensor([[False] * 3 + [True] * 4, [True] * 7])
    kw = dict(gen_length=GEN, block_length=BLOCK, mask_id=tiny_model.spec.mask_id, shift=True)
    plain = generate(decode_forward(tiny_model, CacheConfig(), key_mask), prompts, make_rule("threshold"), **kw)
    cached = generate(decode_forward(tiny_model, CacheConfig(mode, refresh=1), key_mask), prompts,
                      make_rule("threshold"), **kw)
    assert torch.equal(cached.tokens, plain.tokens)


@pytest.mark.parametrize("mode", ["prefix", "dual"])
def test_a_reset_forward_decodes_other_prompts_as_a_fresh_one(tiny_model, mode):
    """The benchmark keeps one CachedForward per canvas shape across batches (engine/bench/decode.Forwards): after
    reset, a decode of other prompts with another padding equals a fresh forward's, tokens and rows computed."""
    from engine.models.kv_forward import decode_forward

    first = torch.tensor([[60, 61, 62, 63, 64, 65, 66], [0, 0, 70, 71, 72, 73, 74]])
    second = torch.tensor([[0, 0, 0, 40, 41, 42, 43], [50, 51, 52, 53, 54, 55, 56]])
    masks = first != 0, second != 0
    kw = dict(gen_length=GEN, block_length=BLOCK, mask_id=tiny_model.spec.mask_id, shift=True)
    reused = decode_forward(tiny_model, CacheConfig(mode), masks[0])
    generate(reused, first, make_rule("credit"), **kw)
    reused.reset(masks[1])
    again = generate(reused, second, make_rule("credit"), **kw)
    fresh = decode_forward(tiny_model, CacheConfig(mode), masks[1])
    expected = generate(fresh, second, make_rule("credit"), **kw)
    assert torch.equal(again.tokens, expected.tokens) and again.nfe == expected.nfe
    assert reused.computed_rows == fresh.computed_rows  # reset starts the count again
