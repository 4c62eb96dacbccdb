"""Dream (Dream-v0-Instruct-7B, Dream-v0-Base-7B), natively: a Qwen2-style decoder made bidirectional, reading the
official config.json keys and tensor names.

Structure (verified against the reference code's logits, tests/test_native_models.py): `model.embed_tokens`; per
layer RMS-normed attention with biased q/k/v projections, grouped-query heads, RoPE (tables cast to the activations'
dtype, as Qwen2 does), SDPA and an unbiased `o_proj`, then a SwiGLU MLP (gate/up/down); final `model.norm`;
`lm_head` (or the embedding when `tie_word_embeddings`).

Dream's logits are shifted: the row at i-1 predicts position i; the model returns them unshifted, as the reference
does, and the engine aligns them (`ModelSpec.shift`). Padding: the reference's generation passes a boolean mask
(real query AND real key) and positions counting real tokens; here a key mask hides padded keys the same way (the
rows of padded queries differ and are never read) and positions count real tokens likewise.
"""
from __future__ import annotations

from dataclasses import dataclass

from engine.models.decoder import Attention, Decoder, DecoderLayer, check_config, check_supported, missing_key
from engine.models.moe import SwiGLU
from engine.models.native import Family, SpecialIds, token_id

# Published special ids (Dream-org/Dream-v0-Instruct-7B config.json / generation_config.json: mask 151666,
# eos = pad = <|endoftext|> 151643; the chat template closes a turn with <|im_end|> 151645).
MASK_ID, EOS_ID, IM_END_ID = 151666, 151643, 151645

# The published config.json of Dream-org/Dream-v0-Instruct-7B (Dream-v0-Base-7B has the same shapes and ids): the
# Qwen2.5-7B architecture it was initialised from, whose safetensors index declares total_size 15,231,233,024 bytes
# in bfloat16 = 7,615,616,512 parameters (model card: 7.6B). tests/test_native_sizes.py builds it on meta.
PUBLISHED_CONFIG = {
    "model_type": "Dream", "architectures": ["DreamModel"], "hidden_act": "silu", "hidden_size": 3584,
    "intermediate_size": 18944, "num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4,
    "vocab_size": 152064, "rope_theta": 1000000.0, "rope_scaling": None, "rms_norm_eps": 1e-06,
    "tie_word_embeddings": False, "max_position_embeddings": 131072, "use_sliding_window": False,
    "sliding_window": None, "mask_token_id": 151666, "eos_token_id": 151643, "pad_token_id": 151643,
    "bos_token_id": 151643,
}


@dataclass(frozen=True)
class DreamConfig:
    hidden_size: int  # model width (3584 for the 7B models)
    intermediate_size: int  # SwiGLU inner width (18944)
    num_hidden_layers: int  # decoder layers (28)
    num_attention_heads: int  # query heads (28)
    num_key_value_heads: int  # key/value heads (4: groups of 7 query heads)
    vocab_size: int  # logits width (152064)
    rope_theta: float  # RoPE base (1000000)
    rms_norm_eps: float  # RMSNorm epsilon (1e-6)
    tie_word_embeddings: bool  # LM head shares the embedding (False when published)
    max_position_embeddings: int  # context the positions were trained for (131072 in config.json)

    def __post_init__(self) -> None:
        check_config("Dream", self, ("intermediate_size",), rotary_fraction=1.0, width_splits=True)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


def read_config(raw: dict) -> DreamConfig:
    """The official config.json (DreamConfig's keys, Qwen2-style) -> DreamConfig."""
    check_supported("Dream", raw)
    if raw.get("use_sliding_window"):
        raise ValueError("config.json: use_sliding_window=true is not the published Dream structure")
    try:
        heads = int(raw["num_attention_heads"])
        return DreamConfig(hidden_size=int(raw["hidden_size"]), intermediate_size=int(raw["intermediate_size"]),
                           num_hidden_layers=int(raw["num_hidden_layers"]), num_attention_heads=heads,
                           num_key_value_heads=int(raw.get("num_key_value_heads") or heads),
                           vocab_size=int(raw["vocab_size"]), rope_theta=float(raw.get("rope_theta", 10000.0)),
                           rms_norm_eps=float(raw.get("rms_norm_eps", 1e-6)),
                           tie_word_embeddings=bool(raw.get("tie_word_embeddings", False)),
                           max_position_embeddings=int(raw.get("max_position_embeddings", 32768)))
    except KeyError as err:
        raise missing_key("Dream", err) from None


def dream_layer(c: DreamConfig) -> DecoderLayer:
    """Qwen2's layer: biased q/k/v, unbiased o_proj, no per-head norms; a SwiGLU MLP."""
    attention = Attention(c.hidden_size, c.num_attention_heads, c.num_key_value_heads, qkv_bias=True,
                          out_bias=False, norm_eps=None)
    return DecoderLayer(c, attention, SwiGLU(c.hidden_size, c.intermediate_size))


class DreamModel(Decoder):
    """Parameters under `model.*` and `lm_head`, as in the published checkpoints; RoPE on every dim of a head, in the
    activations' dtype (as Qwen2 rotates)."""

    def __init__(self, c: DreamConfig) -> None:
        super().__init__(c, (dream_layer(c) for _ in range(c.num_hidden_layers)), rotary_fraction=1.0)


def special_ids(raw: dict, tokenizer) -> SpecialIds:
    """Stop and pad on <|endoftext|> (151643: Dream's eos_token_id and pad_token_id; its demos cut the answer at
    tokenizer.eos_token); <|im_end|> (151645 when published) also ends an instruct answer's text."""
    eos = int(raw.get("eos_token_id", EOS_ID))
    im_end = token_id(tokenizer, "<|im_end|>", IM_END_ID)
    return SpecialIds(mask_id=int(raw.get("mask_token_id", MASK_ID)),
                      eos_ids=(eos, im_end) if im_end != eos else (eos,))


DREAM = Family(name="dream", model_types=("Dream",), read_config=read_config, build=DreamModel,
               special_ids=special_ids, shift=True, context_length=lambda c: c.max_position_embeddings,
               published_config=PUBLISHED_CONFIG, bpe_tokenizer="Qwen2Tokenizer")
