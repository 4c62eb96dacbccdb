"""The pre-norm grouped-query decoder that Dream, LLaDA-MoE and LLaDA2 share: config checks, (partial) RoPE,
attention heads, the residual layer and the model around the layers.

Each family module keeps its own config, tensor names and what is its own, passed here explicitly: Dream's biased
q/k/v and its shifted logits (engine-side), LLaDA-MoE's per-head norms, clamp and routed experts, LLaDA2's fused
`query_key_value`, block-causal mask and group-limited routing. The published checkpoints' names are unchanged: a
family names its attention (`self_attn` or `attention`) and its embedding (`embed_tokens` or `word_embeddings`).
LLaDA (engine/models/llada.py) keeps its own OLMo-style block: other names, RoPE in float32, compiled regions.
"""
from __future__ import annotations

from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from engine.models.native import KVWindow, LayerKV, NativeLM, RMSNorm, attend, rope_tables
from engine.models.stacked import StackedLinear, stacked_names

SIZES = ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "vocab_size",
         "max_position_embeddings")  # the config fields every family here names and needs >= 1


def check_config(family: str, c, sizes: tuple[str, ...], rotary_fraction: float, width_splits: bool) -> None:
    """What every family's config must hold, on the field names they share: SIZES and the family's `sizes` >= 1;
    key/value heads grouping the query heads, and query heads splitting hidden_size when the head size is derived
    from it (`width_splits`); RoPE on an even number (>= 2) of each head's dims; rope_theta and rms_norm_eps > 0."""
    for field in SIZES + sizes:
        if getattr(c, field) < 1:
            raise ValueError(f"{family} config: {field}={getattr(c, field)} must be >= 1")
    if (width_splits and c.hidden_size % c.num_attention_heads) or c.num_attention_heads % c.num_key_value_heads:
        raise ValueError(f"{family} config: hidden_size={c.hidden_size}, num_attention_heads={c.num_attention_heads}"
                         f", num_key_value_heads={c.num_key_value_heads}: kv heads must divide heads"
                         + (" and heads the width" if width_splits else ""))
    rotary = int(c.head_dim * rotary_fraction)
    if not 0 < rotary_fraction <= 1 or rotary < 2 or rotary % 2:
        raise ValueError(f"{family} config: partial_rotary_factor={rotary_fraction} must rotate an even number "
                         f"(>= 2) of the {c.head_dim} dims of a head")
    if not (c.rope_theta > 0 and c.rms_norm_eps > 0):
        raise ValueError(f"{family} config: rope_theta={c.rope_theta} and rms_norm_eps={c.rms_norm_eps} must be > 0")


def check_supported(family: str, raw: dict) -> None:
    """config.json values no published checkpoint of these families has, refused before anything is built."""
    if raw.get("hidden_act", "silu") != "silu":
        raise ValueError(f"config.json: hidden_act={raw['hidden_act']!r}, but {family} checkpoints use 'silu'")
    if raw.get("rope_scaling"):
        raise ValueError(f"config.json: rope_scaling={raw['rope_scaling']!r} is not implemented (published {family} "
                         "models have none); remove it or use a folder of the published model")


def missing_key(family: str, err: KeyError) -> ValueError:
    """The error for a config.json that lacks a key the family's config needs."""
    return ValueError(f"config.json lacks {err.args[0]!r}, which a {family} config names; the folder holds another "
                      "model")


def partial_rope(positions: torch.Tensor, head_dim: int, fraction: float, theta: float,
                 dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin (B, 1, L, r) for the first r = int(head_dim * fraction) dims of each head (transformers' default
    RoPE with partial_rotary_factor; 1.0 for Qwen2), computed in float32 and cast to the activations' dtype as the
    three references do."""
    cos, sin = rope_tables(positions, int(head_dim * fraction), theta)
    return cos.to(dtype), sin.to(dtype)


def apply_partial_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the first cos.shape[-1] dims of x (B, H, L, hd) (rotate-half layout); the rest pass unchanged."""
    width = cos.shape[-1]
    head, rest = x[..., :width], x[..., width:]
    half = width // 2
    rotated = torch.cat([-head[..., half:], head[..., :half]], dim=-1)  # rotate_half
    turned = head * cos + rotated * sin
    return turned if rest.shape[-1] == 0 else torch.cat([turned, rest], dim=-1)


def split_heads(x: torch.Tensor, heads: int, head_dim: int) -> torch.Tensor:
    """(B, L, heads * hd) -> (B, heads, L, hd)."""
    batch, length, _ = x.shape
    return x.view(batch, length, heads, head_dim).transpose(1, 2)


def rotary_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                     mask: torch.Tensor | None, kv: LayerKV | None, qk_norms: tuple[nn.Module, nn.Module] | None,
                     clip: float = 0.0) -> torch.Tensor:
    """q (B, H, L, hd), k and v (B, KV, L, hd) -> (B, L, H * hd): per-head norms on q and k when given, then the clamp
    of q, k, v to +-clip when set (the references' order), RoPE, grouped-query SDPA (engine/models/native.py attend,
    through the cache window `kv` when given), heads merged back."""
    if qk_norms is not None:
        q, k = qk_norms[0](q), qk_norms[1](k)
    if clip:
        q, k, v = (t.clamp(-clip, clip) for t in (q, k, v))
    q, k = apply_partial_rope(q, cos, sin), apply_partial_rope(k, cos, sin)
    out = attend(q, k, v, mask, kv)  # (B, H, L, hd)
    return out.transpose(1, 2).flatten(2)


class Attention(nn.Module):
    """Separate `q_proj` / `k_proj` / `v_proj` and `o_proj` (Qwen2's and OLMoE's names), optional per-head `q_norm` /
    `k_norm` and clamp, then `rotary_attention`."""

    def __init__(self, hidden: int, heads: int, kv_heads: int, qkv_bias: bool, out_bias: bool, norm_eps: float | None,
                 clip: float = 0.0) -> None:
        super().__init__()
        self.heads, self.kv_heads, self.head_dim, self.clip = heads, kv_heads, hidden // heads, clip
        kv_width = kv_heads * self.head_dim
        self.qkv = StackedLinear(hidden, {"q_proj": hidden, "k_proj": kv_width, "v_proj": kv_width}, bias=qkv_bias)
        self.o_proj = nn.Linear(hidden, hidden, bias=out_bias)
        stacked_names(self)
        if norm_eps is not None:
            self.q_norm = RMSNorm(self.head_dim, norm_eps)
            self.k_norm = RMSNorm(self.head_dim, norm_eps)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, cos: torch.Tensor, sin: torch.Tensor,
                kv: LayerKV | None = None) -> torch.Tensor:
        q, k, v = self.qkv(x)  # (B, L, H * hd), (B, L, KV * hd) twice: views of one product
        q = split_heads(q, self.heads, self.head_dim)  # (B, H, L, hd)
        k = split_heads(k, self.kv_heads, self.head_dim)  # (B, KV, L, hd)
        v = split_heads(v, self.kv_heads, self.head_dim)
        norms = (self.q_norm, self.k_norm) if hasattr(self, "q_norm") else None
        return self.o_proj(rotary_attention(q, k, v, cos, sin, mask, kv, norms, self.clip))


class DecoderLayer(nn.Module):
    """`input_layernorm` -> attention (named `attention_name`) -> residual; `post_attention_layernorm` -> `mlp` ->
    residual."""

    attention_name = "self_attn"  # the checkpoint's name of the attention module

    def __init__(self, c, attention: nn.Module, mlp: nn.Module) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.add_module(self.attention_name, attention)
        self.post_attention_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.mlp = mlp

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, cos: torch.Tensor, sin: torch.Tensor,
                kv: LayerKV | None = None) -> torch.Tensor:
        x = x + getattr(self, self.attention_name)(self.input_layernorm(x), mask, cos, sin, kv)
        return x + self.feed_forward(self.post_attention_layernorm(x))

    def feed_forward(self, normed: torch.Tensor) -> torch.Tensor:
        return self.mlp(normed)  # (B, L, D)


class Decoder(NativeLM):
    """Parameters under `model.<embedding>`, `model.layers`, `model.norm` and `lm_head` (none when tied), as in the
    published checkpoints. RoPE rotates the first `rotary_fraction` of each head, in the activations' dtype."""

    def __init__(self, c, layers: Iterable[nn.Module], rotary_fraction: float, embedding: str = "embed_tokens") -> None:
        super().__init__()
        self.config, self.rotary_fraction, self.embedding_name = c, rotary_fraction, embedding
        self.model = nn.Module()
        self.model.add_module(embedding, nn.Embedding(c.vocab_size, c.hidden_size))
        self.model.layers = nn.ModuleList(layers)
        self.model.norm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        if not c.tie_word_embeddings:
            self.lm_head = nn.Linear(c.hidden_size, c.vocab_size, bias=False)

    def embedding(self) -> nn.Embedding:
        return self.model.get_submodule(self.embedding_name)

    def hidden_states(self, ids: torch.Tensor, mask: torch.Tensor | None, positions: torch.Tensor,
                      kv: KVWindow | None = None) -> torch.Tensor:
        c = self.config
        x = self.embedding()(ids)  # (B, n, D)
        cos, sin = partial_rope(positions, c.head_dim, self.rotary_fraction, c.rope_theta, x.dtype)  # (B, 1, n, r)
        for i, layer in enumerate(self.model.layers):
            x = layer(x, mask, cos, sin, None if kv is None else kv.layer(i))
        return self.model.norm(x)

    def head(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.config.tie_word_embeddings:
            return F.linear(hidden, self.embedding().weight)  # (B, n, V)
        return self.lm_head(hidden)
