"""LLaDA-MoE (inclusionAI/LLaDA-MoE-7B-A1B-Instruct and -Base), natively: the OLMoE-style decoder of the published
modeling_lladamoe.py, bidirectional, reading the official config.json keys and tensor names.

Structure (verified against the reference code's logits, tests/test_moe_models.py): `model.embed_tokens`; per layer
RMS-normed attention (q/k/v/o projections, per-head RMS norms `q_norm` / `k_norm` when `qk_layernorm`, RoPE on the
first `partial_rotary_factor` of each head, SDPA) and a routed-expert MLP: router `mlp.gate` -> softmax over the
experts in float32 (plus `mlp.expert_bias` when `moe_router_enable_expert_bias`) -> top-k, the k probabilities used
as weights *unnormalised* (the reference fixes norm_topk_prob=False whatever config.json says) -> experts; layers
with `moe_layer_freq[i] == 0` have a dense SwiGLU instead, and a `shared_expert` is added when its width is set;
final `model.norm`; `lm_head`.

Options the reference reads from config.json but ignores are ignored here too: `norm_topk_prob`,
`moe_router_score_function`, `routed_scaling_factor`, `router_num_group`, `router_topk_group`.

Padding: the reference sets every attention mask to None (full attention over pad tokens). Here a key padding mask,
when given, hides padded keys; without one the two agree exactly, and a left-padded row with the mask equals the
reference run on that row alone.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from engine.models.decoder import Attention, Decoder, DecoderLayer, check_config, check_supported, missing_key
from engine.models.moe import RoutedExperts, SwiGLU, ling_special_ids
from engine.models.native import Family

# The published structure of inclusionAI/LLaDA-MoE-7B-A1B-Instruct / -Base. Their config.json could not be read
# offline; the values are from the sources below, and tests/test_moe_models.py checks that they give 7,356,880,896
# parameters (= the Base repo's 14.7 GB of bf16 weights) and 1.40B active per token (the paper's "7B" / "1.4B
# activated", arXiv 2509.24389). Sizes, heads, experts, top-k, rope_theta, max_position_embeddings, qk_layernorm,
# moe_layer_freq: the LLaDA-MoE vLLM port's README quoting config.json; vocab_size: the Ling-2.0 tokenizer both
# inclusionAI families use; no expert bias, no shared expert: llama.cpp's LLADA_MOE tensor list has neither;
# partial_rotary_factor 1.0 and rms_norm_eps 1e-5 are assumed (they change no parameter count).
PUBLISHED_CONFIG = {
    "architectures": ["LLaDAMoEModelLM"], "model_type": "llada", "vocab_size": 157184, "hidden_size": 2048,
    "dense_intermediate_size": 8192, "expert_intermediate_size": 1024, "shared_expert_intermediate_size": None,
    "num_hidden_layers": 16, "num_attention_heads": 16, "num_key_value_heads": 16, "hidden_act": "silu",
    "max_position_embeddings": 8192, "rms_norm_eps": 1e-05, "rope_theta": 50000, "partial_rotary_factor": 1.0,
    "rope_scaling": None, "attention_bias": False, "clip_qkv": None, "num_experts": 64, "num_experts_per_tok": 8,
    "norm_topk_prob": False, "qk_layernorm": True, "moe_layer_freq": [1] * 16,
    "moe_router_enable_expert_bias": False, "tie_word_embeddings": False,
}


@dataclass(frozen=True)
class LLaDAMoEConfig:
    hidden_size: int  # model width (2048)
    num_hidden_layers: int  # decoder layers (16)
    num_attention_heads: int  # query heads (16)
    num_key_value_heads: int  # key/value heads (16: no grouping)
    vocab_size: int  # logits width (157184)
    num_experts: int  # routed experts per MoE layer (64)
    num_experts_per_tok: int  # experts each token uses, k (8)
    expert_intermediate_size: int  # SwiGLU width of one expert (1024)
    dense_intermediate_size: int  # SwiGLU width of a dense layer (8192; no dense layer when published)
    shared_expert_intermediate_size: int  # width of the always-on shared expert; 0 = none (published: none)
    moe_layer_freq: tuple[int, ...]  # per layer: 1 = routed experts, 0 = dense MLP (all 1)
    expert_bias: bool  # router adds a learned per-expert bias to the probabilities (published: no)
    qk_layernorm: bool  # per-head RMS norms on queries and keys (yes)
    attention_bias: bool  # biases on q/k/v/o (no)
    clip_qkv: float  # clamp q, k, v to +-clip_qkv; 0 = off (off)
    rope_theta: float  # RoPE base (50000)
    partial_rotary_factor: float  # share of each head that RoPE rotates (1.0)
    rms_norm_eps: float  # RMSNorm epsilon (1e-5)
    tie_word_embeddings: bool  # LM head shares the embedding (no)
    max_position_embeddings: int  # trained context (8192)

    def __post_init__(self) -> None:
        check_config("LLaDA-MoE", self, ("num_experts", "num_experts_per_tok", "expert_intermediate_size"),
                     self.partial_rotary_factor, width_splits=True)
        if self.num_experts_per_tok > self.num_experts:
            raise ValueError(f"LLaDA-MoE config: num_experts_per_tok={self.num_experts_per_tok} must be <= "
                             f"num_experts={self.num_experts}")
        if len(self.moe_layer_freq) != self.num_hidden_layers or set(self.moe_layer_freq) - {0, 1}:
            raise ValueError(f"LLaDA-MoE config: moe_layer_freq={list(self.moe_layer_freq)} must hold one 0 or 1 "
                             f"per layer ({self.num_hidden_layers})")
        if 0 in self.moe_layer_freq and self.dense_intermediate_size < 1:
            raise ValueError(f"LLaDA-MoE config: dense_intermediate_size={self.dense_intermediate_size} must be "
                             ">= 1 when a layer is dense")
        if self.clip_qkv < 0 or self.shared_expert_intermediate_size < 0:
            raise ValueError(f"LLaDA-MoE config: clip_qkv={self.clip_qkv}, shared_expert_intermediate_size="
                             f"{self.shared_expert_intermediate_size} must be >= 0")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


def read_config(raw: dict) -> LLaDAMoEConfig:
    """The official config.json (the Hub's LLaDAConfig keys for LLaDA-MoE) -> LLaDAMoEConfig."""
    check_supported("LLaDA-MoE", raw)
    try:
        heads, layers = int(raw["num_attention_heads"]), int(raw["num_hidden_layers"])
        return LLaDAMoEConfig(
            hidden_size=int(raw["hidden_size"]), num_hidden_layers=layers, num_attention_heads=heads,
            num_key_value_heads=int(raw.get("num_key_value_heads") or heads), vocab_size=int(raw["vocab_size"]),
            num_experts=int(raw["num_experts"]), num_experts_per_tok=int(raw["num_experts_per_tok"]),
            expert_intermediate_size=int(raw["expert_intermediate_size"]),
            dense_intermediate_size=int(raw.get("dense_intermediate_size") or 0),
            shared_expert_intermediate_size=int(raw.get("shared_expert_intermediate_size") or 0),
            moe_layer_freq=tuple(int(f) for f in raw.get("moe_layer_freq") or [1] * layers),
            expert_bias=bool(raw.get("moe_router_enable_expert_bias")), qk_layernorm=bool(raw.get("qk_layernorm")),
            attention_bias=bool(raw.get("attention_bias", False)), clip_qkv=float(raw.get("clip_qkv") or 0.0),
            rope_theta=float(raw["rope_theta"]), partial_rotary_factor=float(raw.get("partial_rotary_factor", 1.0)),
            rms_norm_eps=float(raw.get("rms_norm_eps", 1e-5)),
            tie_word_embeddings=bool(raw.get("tie_word_embeddings", False)),
            max_position_embeddings=int(raw.get("max_position_embeddings", 4096)))
    except KeyError as err:
        raise missing_key("LLaDA-MoE", err) from None


class SparseMoe(nn.Module):
    """Router `gate` (no bias), optional `expert_bias`, and the routed experts under `experts.{j}`."""

    def __init__(self, c: LLaDAMoEConfig) -> None:
        super().__init__()
        self.k = c.num_experts_per_tok
        self.gate = nn.Linear(c.hidden_size, c.num_experts, bias=False)
        if c.expert_bias:
            self.expert_bias = nn.Parameter(torch.zeros(c.num_experts))
        self.experts = RoutedExperts(c.num_experts, c.hidden_size, c.expert_intermediate_size)

    def route(self, flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(T, D) -> chosen experts (T, k) and their weights (T, k) in the activations' dtype."""
        probs = F.softmax(self.gate(flat), dim=-1, dtype=torch.float32)  # (T, E)
        if hasattr(self, "expert_bias"):
            probs = probs + self.expert_bias.float()  # the reference keeps the bias in the weights too
        weights, experts = probs.topk(self.k, dim=-1)  # (T, k): unnormalised, as the reference
        return experts, weights.to(flat.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])  # (T, D)
        experts, weights = self.route(flat)
        return self.experts(flat, experts, weights).view_as(x)


class Layer(DecoderLayer):
    """OLMoE's layer: q/k/v/o (biased when `attention_bias`), per-head `q_norm` / `k_norm` when `qk_layernorm`, the
    clamp when `clip_qkv`; routed experts (or a dense SwiGLU), plus the `shared_expert` on the same normed input."""

    def __init__(self, c: LLaDAMoEConfig, routed: bool) -> None:
        attention = Attention(c.hidden_size, c.num_attention_heads, c.num_key_value_heads, qkv_bias=c.attention_bias,
                              out_bias=c.attention_bias, norm_eps=c.rms_norm_eps if c.qk_layernorm else None,
                              clip=c.clip_qkv)
        super().__init__(c, attention, SparseMoe(c) if routed else SwiGLU(c.hidden_size, c.dense_intermediate_size))
        if routed and c.shared_expert_intermediate_size:
            self.shared_expert = SwiGLU(c.hidden_size, c.shared_expert_intermediate_size)

    def feed_forward(self, normed: torch.Tensor) -> torch.Tensor:
        out = self.mlp(normed)  # (B, L, D)
        return out + self.shared_expert(normed) if hasattr(self, "shared_expert") else out


class LLaDAMoEModel(Decoder):
    """Parameters under `model.*` and `lm_head`, as in the published checkpoints."""

    def __init__(self, c: LLaDAMoEConfig) -> None:
        super().__init__(c, (Layer(c, bool(routed)) for routed in c.moe_layer_freq), c.partial_rotary_factor)


LLADA_MOE = Family(name="llada_moe", model_types=("llada",), read_config=read_config, build=LLaDAMoEModel,
                   special_ids=ling_special_ids, shift=False, context_length=lambda c: c.max_position_embeddings,
                   published_config=PUBLISHED_CONFIG,
                   architectures=("LLaDAMoEModelLM", "LLaDAMoEModel"))
