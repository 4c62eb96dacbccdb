"""The published full-size configs build (on the meta device: no memory) to the published parameter counts."""
import torch

from engine.models.dream import DREAM
from engine.models.dream import PUBLISHED_CONFIG as DREAM_CONFIG
from engine.models.families import build_module
from engine.models.llada import LLADA
from engine.models.llada import PUBLISHED_CONFIG as LLADA_CONFIG


def _count(family, raw) -> tuple[int, int]:
    model = build_module(family, family.read_config(raw), "meta", torch.bfloat16)
    params = dict(model.named_parameters())
    total = sum(p.numel() for p in params.values())
    embedding_and_head = sum(p.numel() for name, p in params.items()
                             if name.endswith(("wte.weight", "embed_tokens.weight", "transformer.ff_out.weight",
                                               "lm_head.weight")))
    return total, total - embedding_and_head


def test_llada_8b_parameter_count():
    """LLaDA-8B model card: 8.02B parameters, 6.98B without embedding and head (untied); exact from the config."""
    total, body = _count(LLADA, LLADA_CONFIG)
    assert total == 8_015_581_184
    assert round(total / 1e9, 2) == 8.02 and round(body / 1e9, 2) == 6.98


def test_dream_7b_parameter_count():
    """Dream-v0-7B = Qwen2.5-7B's shapes: safetensors index total_size 15,231,233,024 bytes in bf16."""
    total, _ = _count(DREAM, DREAM_CONFIG)
    assert total * 2 == 15_231_233_024
