"""Dream (Dream-v0-Instruct-7B, Dream-v0-Base-7B), natively: a Qwen2-style decoder made bidirectional, reading the
official config.json keys and tensor names.

Structure (verified against the reference code's logits, tests/test_native_models.py): `model.embed_tokens`; per
layer RMS-normed attention with biased q/k/v projections, grouped-query heads, RoPE (tables cast to the activations'
dtype, as Qwen2 does), SDPA and an unbiased `o_proj`, then a SwiGLU MLP (gate/up/down); final `model.norm`;
`lm_head` (or the embedding when `tie_word_embeddings`). q/k/v, and the MLP's gate and up, are each stored stacked
and run as one matmul (stacked.StackedLinear); the state dict still has the checkpoint's tensor names.

Dream's logits are shifted: the row at i-1 predicts position i; the model returns them unshifted, as the reference
does, and the engine aligns them (`ModelSpec.shift`). Padding: the reference's generation passes a boolean mask
(real query AND real key) and positions counting real tokens; here a key mask hides padded keys the same way (the
rows of padded queries differ and are never read) and positions count real tokens likewise.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from engine.models.native import (Family, KVWindow, LayerKV, NativeLM, RMSNorm, SpecialIds, apply_rope, attend,
                                  rope_tables, token_id)
from engine.models.stacked import StackedLinear, stacked_names

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
        for field in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                      "num_key_value_heads", "vocab_size", "max_position_embeddings"):
            if getattr(self, field) < 1:
                raise ValueError(f"Dream config: {field}={getattr(self, field)} must be >= 1")
        if self.hidden_size % self.num_attention_heads or self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(f"Dream config: hidden_size={self.hidden_size}, num_attention_heads="
                             f"{self.num_attention_heads}, num_key_value_heads={self.num_key_value_heads}: heads "
                             "must divide the width and kv heads divide heads")
        if self.head_dim % 2:
            raise ValueError(f"Dream config: head size {self.head_dim} must be even for RoPE")
        if not (self.rope_theta > 0 and self.rms_norm_eps > 0):
            raise ValueError(f"Dream config: rope_theta={self.rope_theta} and rms_norm_eps={self.rms_norm_eps} "
                             "must be > 0")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


def read_config(raw: dict) -> DreamConfig:
    """The official config.json (DreamConfig's keys, Qwen2-style) -> DreamConfig."""
    if raw.get("hidden_act", "silu") != "silu":
        raise ValueError(f"config.json: hidden_act={raw['hidden_act']!r}, but Dream checkpoints use 'silu'")
    if raw.get("rope_scaling"):
        raise ValueError(f"config.json: rope_scaling={raw['rope_scaling']!r} is not implemented (published Dream "
                         "models have none); remove it or use a folder of the published model")
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
        raise ValueError(f"config.json lacks {err.args[0]!r}, which a Dream config names; the folder holds "
                         "another model") from None


class DreamAttention(nn.Module):
    def __init__(self, c: DreamConfig) -> None:
        super().__init__()
        self.c = c
        kv_width = c.num_key_value_heads * c.head_dim
        self.qkv = StackedLinear(c.hidden_size, {"q_proj": c.hidden_size, "k_proj": kv_width, "v_proj": kv_width},
                                 bias=True)
        self.o_proj = nn.Linear(c.hidden_size, c.hidden_size, bias=False)
        stacked_names(self)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, cos: torch.Tensor, sin: torch.Tensor,
                cache: LayerKV | None = None) -> torch.Tensor:
        batch, length, _ = x.shape
        heads, kv, hd = self.c.num_attention_heads, self.c.num_key_value_heads, self.c.head_dim
        q, k, v = self.qkv(x)  # (B, L, H * hd), (B, L, KV * hd) twice: views of one product
        q = q.view(batch, length, heads, hd).transpose(1, 2)  # (B, H, L, hd)
        k = k.view(batch, length, kv, hd).transpose(1, 2)  # (B, KV, L, hd)
        v = v.view(batch, length, kv, hd).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        return self.o_proj(attend(q, k, v, mask, cache).transpose(1, 2).reshape(batch, length, self.c.hidden_size))


class DreamMLP(nn.Module):
    def __init__(self, c: DreamConfig) -> None:
        super().__init__()
        self.gate_up = StackedLinear(c.hidden_size, {"gate_proj": c.intermediate_size,
                                                     "up_proj": c.intermediate_size}, bias=False)
        self.down_proj = nn.Linear(c.intermediate_size, c.hidden_size, bias=False)
        stacked_names(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x)  # (B, L, inner) each: views of one product
        return self.down_proj(F.silu(gate) * up)


class DreamLayer(nn.Module):
    def __init__(self, c: DreamConfig) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.self_attn = DreamAttention(c)
        self.post_attention_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.mlp = DreamMLP(c)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, cos: torch.Tensor, sin: torch.Tensor,
                kv: LayerKV | None = None) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), mask, cos, sin, kv)
        return x + self.mlp(self.post_attention_layernorm(x))


class DreamModel(NativeLM):
    """Parameters under `model.*` and `lm_head`, as in the published checkpoints."""

    def __init__(self, c: DreamConfig) -> None:
        super().__init__()
        self.config = c
        self.model = nn.Module()
        self.model.embed_tokens = nn.Embedding(c.vocab_size, c.hidden_size)
        self.model.layers = nn.ModuleList(DreamLayer(c) for _ in range(c.num_hidden_layers))
        self.model.norm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        if not c.tie_word_embeddings:
            self.lm_head = nn.Linear(c.hidden_size, c.vocab_size, bias=False)

    def hidden_states(self, ids: torch.Tensor, mask: torch.Tensor | None, positions: torch.Tensor,
                      kv: KVWindow | None = None) -> torch.Tensor:
        x = self.model.embed_tokens(ids)  # (B, L, D)
        cos, sin = rope_tables(positions, self.config.head_dim, self.config.rope_theta)  # (B, 1, L, hd) float32
        cos, sin = cos.to(x.dtype), sin.to(x.dtype)  # Qwen2 rotates in the activations' dtype
        for i, layer in enumerate(self.model.layers):
            x = layer(x, mask, cos, sin, None if kv is None else kv.layer(i))
        return self.model.norm(x)

    def head(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.config.tie_word_embeddings:
            return F.linear(hidden, self.model.embed_tokens.weight)  # (B, n, V)
        return self.lm_head(hidden)


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
