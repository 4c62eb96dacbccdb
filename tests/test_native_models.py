"""Native LLaDA and Dream match the reference code's logits on the fixture checkpoints, loaded through our loader
(so the official tensor names, the sharded index and the single file are exercised), and work in the engine."""
import shutil
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from engine.decoding import Credit, Threshold, generate
from engine.models.cuda_graph import StaticForward
from engine.models.families import load_native

FIXTURES = Path(__file__).parent / "fixtures" / "models"
FAMILIES = ("llada", "dream")
TOLERANCE = 1e-4


@lru_cache(maxsize=None)
def loaded(family: str):
    return load_native(family, source=FIXTURES / family, device="cpu")


def reference(family: str) -> dict[str, torch.Tensor]:
    return load_file(str(FIXTURES / family / "reference.safetensors"))


@pytest.mark.parametrize("family", FAMILIES)
def test_logits_equal_the_reference_without_mask(family):
    ref = reference(family)
    ours = loaded(family)(ref["input_ids"])  # (B, L, V) float32
    assert ours.shape == ref["logits"].shape
    assert torch.allclose(ours, ref["logits"], atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_padded_rows_equal_each_row_run_alone(family):
    """With the key padding mask, a left-padded row's real positions equal the reference on that row alone."""
    ref = reference(family)
    real = ref["key_mask"].bool()
    assert (~real).any(), "the fixture must hold padding"
    ours = loaded(family).model(input_ids=ref["input_ids"], attention_mask=ref["key_mask"]).logits
    assert torch.allclose(ours[real], ref["logits_alone"][real], atol=TOLERANCE, rtol=0)
    unmasked = loaded(family)(ref["input_ids"])
    assert not torch.allclose(unmasked[real], ref["logits_alone"][real], atol=TOLERANCE, rtol=0)


def test_dream_padding_matches_its_generation_semantics():
    """Dream's generation code passes (real query AND real key) and positions counting real tokens."""
    ref = reference("dream")
    real = ref["key_mask"].bool()
    ours = loaded("dream").model(input_ids=ref["input_ids"], attention_mask=ref["key_mask"]).logits
    assert torch.allclose(ours[real], ref["logits_generation"][real], atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_attention_is_bidirectional(family):
    ids = reference(family)["input_ids"][:1].clone()
    before = loaded(family)(ids)
    ids[0, -1] = ids[0, 1]
    after = loaded(family)(ids)
    assert not torch.allclose(before[0, 0], after[0, 0], atol=1e-6)


@pytest.mark.parametrize("family", FAMILIES)
def test_block_rows_head_equals_the_full_head_rows(family):
    ids = reference(family)["input_ids"]
    model = loaded(family)
    assert torch.allclose(model.block_logits(ids, 3, 8), model(ids)[:, 3:8], atol=1e-6, rtol=0)
    fast = StaticForward(model)
    assert torch.allclose(fast.block_logits(ids, 3, 8), model(ids)[:, 3:8], atol=1e-6, rtol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_graph_free_static_forward_decodes_a_padded_batch_like_each_row_alone(family):
    """The path engine/models/cuda_graph.py takes (4D mask, positions, rows-only head) gives each row's tokens."""
    model = loaded(family)
    prompts = [model.encode_prompt("hi")[0], model.encode_prompt("a longer question here")[0]]
    width = max(len(p) for p in prompts)
    ids = torch.full((2, width), model.spec.eos_id)
    key_mask = torch.zeros((2, width), dtype=torch.bool)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):], key_mask[i, width - len(p):] = p, True
    spec = model.spec
    kw = dict(gen_length=16, block_length=8, mask_id=spec.mask_id, eos_id=spec.eos_id, shift=spec.shift)
    batch = generate(StaticForward(model, key_mask=key_mask), ids, Threshold(0.9), **kw)
    for i, p in enumerate(prompts):
        alone = generate(model, p[None], Threshold(0.9), **kw)
        assert torch.equal(alone.tokens[0], batch.tokens[i])


@pytest.mark.parametrize("family", FAMILIES)
def test_credit_decode_on_the_fixture_model(family):
    model = loaded(family)
    prompt = model.encode_prompt("What is 2 + 2?")
    spec = model.spec
    result = generate(model, prompt, Credit(), gen_length=16, block_length=8, mask_id=spec.mask_id,
                      eos_id=spec.eos_id, shift=spec.shift)
    assert result.tokens.shape == (1, 16) and not (result.tokens == spec.mask_id).any()
    assert 2 <= result.nfe <= 16 and (np.asarray(result.commit_step) >= 0).all()
    assert isinstance(model.decode_answer(result.tokens[0]), str)


def test_special_ids_come_from_the_folder():
    llada, dream = loaded("llada").spec, loaded("dream").spec
    assert (llada.mask_id, llada.eos_ids, llada.shift) == (261, (257, 260), False)  # eos 257, <|eot_id|> 260
    assert (dream.mask_id, dream.eos_ids, dream.shift) == (259, (256, 258), True)  # eos 256, <|im_end|> 258


def test_chat_templates_load_without_remote_code():
    llada_ids = loaded("llada").encode_prompt("Hi")[0].tolist()
    tok = loaded("llada").tokenizer
    assert llada_ids[0] == tok.convert_tokens_to_ids("<|startoftext|>")
    assert tok.convert_tokens_to_ids("<|eot_id|>") in llada_ids
    dream = loaded("dream")
    assert type(dream.tokenizer).__name__ == "Qwen2Tokenizer"  # stock class; the folder names DreamTokenizer
    text = dream.tokenizer.decode(dream.encode_prompt("Hi")[0])
    assert text.endswith("<|im_start|>assistant\n") and "Hi<|im_end|>" in text


def test_folder_without_tokenizer_gives_logits_and_refuses_prompts(tmp_path):
    for name in ("config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                 "model.safetensors.index.json"):
        shutil.copy(FIXTURES / "llada" / name, tmp_path / name)
    model = load_native("llada", source=tmp_path, device="cpu")
    ref = reference("llada")
    assert model.tokenizer is None
    assert torch.allclose(model(ref["input_ids"]), ref["logits"], atol=TOLERANCE, rtol=0)
    assert model.spec.eos_ids == (257, 126348)  # <|eot_id|> falls back to the published id
    with pytest.raises(ValueError, match="without tokenizer files"):
        model.encode_prompt("Hi")
