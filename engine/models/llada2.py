"""LLaDA2.0 / LLaDA2.1 (inclusionAI/LLaDA2.0-mini, LLaDA2.1-mini), natively: the BailingMoeV2-style block-diffusion
decoder of the published modeling_llada2_moe.py, reading the official config.json keys and tensor names.

Structure (verified against the reference code's logits, tests/test_moe_models.py): `model.word_embeddings`; per
layer RMS-normed attention (one fused `query_key_value` projection split into query, key and value heads, per-head
RMS norms `query_layernorm` / `key_layernorm`, RoPE on the first `partial_rotary_factor` of each head, SDPA, output
projection `dense`) and an MLP: the first `first_k_dense_replace` layers are dense SwiGLUs, the others route: router
`mlp.gate` (float32 logits -> sigmoid scores; `gate.expert_bias` is added for choosing only), group-limited top-k
(experts in `n_group` groups, a group scored by the sum of its two best scores, the best `topk_group` groups kept,
then the best k experts among them), weights = the chosen *unbiased* scores normalised to sum 1 (k > 1) times
`routed_scaling_factor`, combined in float32; plus the `shared_experts` MLP; final `model.norm`; `lm_head`.

Options the reference ignores are ignored here too: `score_function` (always sigmoid), `norm_topk_prob` (always
normalised), `moe_router_enable_expert_bias` (the bias always exists), `norm_head`, `rotary_dim` (the rotated width
is head_dim * partial_rotary_factor), sliding-window keys.

Attention is block-causal: a query sees every key of its own block and of all earlier blocks (the reference takes
that mask from its caller; its generate() builds it for blocks of `block_length`, 32 by default). Blocks here are
`BLOCK_SIZE` long and aligned to the *end* of the input: with a canvas of prompt + answer whose answer is a multiple
of the block size, every answer block of the decoding loop is exactly one attention block, whatever the prompt's
length, and left padding does not move the grid. When the length is a multiple of the block size (every forward the
reference's generate() makes) the grid is the reference's. A key padding mask also hides padded keys; a padded query
still sees itself, so no row is fully masked.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from engine.models.decoder import (Decoder, DecoderLayer, check_config, check_supported, missing_key,
                                   rotary_attention, split_heads)
from engine.models.moe import EOS_ID, RoutedExperts, SwiGLU, ling_special_ids
from engine.models.native import Family, KVWindow, LayerKV, RMSNorm

BLOCK_SIZE = 32  # generate()'s default block_length, the published decoding setting

# The published structure (inclusionAI/LLaDA2.0-mini and LLaDA2.1-mini config.json; tests/test_moe_models.py checks
# 16,255,643,392 parameters, the Hub's "16B", and 1.43B active per token of which 789M outside the embeddings, the
# figures of the Ling-mini-2.0 / BailingMoeV2 architecture it shares).
PUBLISHED_CONFIG = {
    "architectures": ["LLaDA2MoeModelLM"], "model_type": "llada2_moe", "vocab_size": 157184, "hidden_size": 2048,
    "intermediate_size": 5120, "num_hidden_layers": 20, "num_attention_heads": 16, "num_key_value_heads": 4,
    "head_dim": 128, "hidden_act": "silu", "use_qkv_bias": False, "use_qk_norm": True, "use_bias": False,
    "rms_norm_eps": 1e-06, "norm_head": False, "tie_word_embeddings": False, "max_position_embeddings": 32768,
    "rope_theta": 600000, "rope_scaling": None, "partial_rotary_factor": 0.5, "rotary_dim": 64, "num_experts": 256,
    "num_shared_experts": 1, "num_experts_per_tok": 8, "n_group": 8, "topk_group": 4, "routed_scaling_factor": 2.5,
    "moe_intermediate_size": 512, "first_k_dense_replace": 1, "score_function": "sigmoid", "norm_topk_prob": True,
    "moe_router_enable_expert_bias": True, "pad_token_id": EOS_ID,
}


@dataclass(frozen=True)
class LLaDA2Config:
    hidden_size: int  # model width (2048)
    num_hidden_layers: int  # decoder layers (20)
    num_attention_heads: int  # query heads (16)
    num_key_value_heads: int  # key/value heads (4: groups of 4 query heads)
    head_dim: int  # width of one head (128)
    vocab_size: int  # logits width (157184)
    intermediate_size: int  # SwiGLU width of the dense layers (5120)
    first_k_dense_replace: int  # how many leading layers are dense (1)
    num_experts: int  # routed experts per MoE layer (256)
    num_experts_per_tok: int  # experts each token uses, k (8)
    moe_intermediate_size: int  # SwiGLU width of one expert (512)
    num_shared_experts: int  # shared-expert MLP width in experts; 0 = none (1)
    n_group: int  # expert groups for group-limited routing (8)
    topk_group: int  # groups a token may route into (4)
    routed_scaling_factor: float  # factor on the normalised routing weights (2.5)
    use_qk_norm: bool  # per-head RMS norms on queries and keys (yes)
    use_qkv_bias: bool  # bias on query_key_value (no)
    use_bias: bool  # bias on the attention output projection (no)
    rope_theta: float  # RoPE base (600000)
    partial_rotary_factor: float  # share of each head that RoPE rotates (0.5: 64 of 128 dims)
    rms_norm_eps: float  # RMSNorm epsilon (1e-6)
    tie_word_embeddings: bool  # LM head shares the embedding (no)
    max_position_embeddings: int  # trained context (32768)
    block_size: int = BLOCK_SIZE  # attention block length; not in config.json (a decoding convention, 32)

    def __post_init__(self) -> None:
        check_config("LLaDA2", self, ("head_dim", "num_experts", "num_experts_per_tok", "moe_intermediate_size",
                                      "n_group", "topk_group", "block_size"),
                     self.partial_rotary_factor, width_splits=False)
        per_group = self.num_experts // self.n_group
        if self.num_experts % self.n_group or per_group < 2 or self.topk_group > self.n_group:
            raise ValueError(f"LLaDA2 config: num_experts={self.num_experts}, n_group={self.n_group}, topk_group="
                             f"{self.topk_group}: groups must split the experts evenly, hold >= 2 experts each "
                             "(a group is scored by its best two), and topk_group <= n_group")
        if self.num_experts_per_tok > self.topk_group * per_group:
            raise ValueError(f"LLaDA2 config: num_experts_per_tok={self.num_experts_per_tok} exceeds the "
                             f"{self.topk_group * per_group} experts of the {self.topk_group} kept groups")
        if not 0 <= self.first_k_dense_replace <= self.num_hidden_layers or (
                self.first_k_dense_replace and self.intermediate_size < 1):
            raise ValueError(f"LLaDA2 config: first_k_dense_replace={self.first_k_dense_replace} must be in "
                             f"[0, {self.num_hidden_layers}], with intermediate_size >= 1 when positive")
        if not (self.routed_scaling_factor > 0 and self.num_shared_experts >= 0):
            raise ValueError(f"LLaDA2 config: routed_scaling_factor={self.routed_scaling_factor} must be > 0 and "
                             f"num_shared_experts={self.num_shared_experts} >= 0")


def read_config(raw: dict) -> LLaDA2Config:
    """The official config.json (LLaDA2MoeConfig's keys) -> LLaDA2Config."""
    check_supported("LLaDA2", raw)
    if raw.get("num_shared_experts") == 0:
        raise ValueError("config.json: num_shared_experts=0 gives the reference empty shared experts; use null for "
                         "none, or the published 1")
    try:
        heads, width = int(raw["num_attention_heads"]), int(raw["hidden_size"])
        return LLaDA2Config(
            hidden_size=width, num_hidden_layers=int(raw["num_hidden_layers"]), num_attention_heads=heads,
            num_key_value_heads=int(raw["num_key_value_heads"]), head_dim=int(raw.get("head_dim") or width // heads),
            vocab_size=int(raw["vocab_size"]), intermediate_size=int(raw.get("intermediate_size") or 0),
            first_k_dense_replace=int(raw.get("first_k_dense_replace", 0)), num_experts=int(raw["num_experts"]),
            num_experts_per_tok=int(raw["num_experts_per_tok"]),
            moe_intermediate_size=int(raw["moe_intermediate_size"]),
            num_shared_experts=int(raw.get("num_shared_experts") or 0), n_group=int(raw.get("n_group", 8)),
            topk_group=int(raw.get("topk_group", 4)),
            routed_scaling_factor=float(raw.get("routed_scaling_factor", 2.5)),
            use_qk_norm=bool(raw.get("use_qk_norm", True)), use_qkv_bias=bool(raw.get("use_qkv_bias", False)),
            use_bias=bool(raw.get("use_bias", True)), rope_theta=float(raw.get("rope_theta", 10000.0)),
            partial_rotary_factor=float(raw.get("partial_rotary_factor", 0.5)),
            rms_norm_eps=float(raw.get("rms_norm_eps", 1e-5)),
            tie_word_embeddings=bool(raw.get("tie_word_embeddings", False)),
            max_position_embeddings=int(raw.get("max_position_embeddings", 16384)))
    except KeyError as err:
        raise missing_key("LLaDA2", err) from None


def block_causal(length: int, block_size: int, device: torch.device) -> torch.Tensor:
    """(L, L) bool: query i sees key j iff j's block is not after i's; blocks of `block_size` end at L."""
    index = torch.arange(length, device=device)
    block = torch.div(index - length % block_size, block_size, rounding_mode="floor")  # (L,) first block partial
    return block[None, :] <= block[:, None]


def attention_mask(given: torch.Tensor | None, length: int, block_size: int, device: torch.device, start: int = 0,
                   stop: int | None = None, keys_stop: int | None = None) -> torch.Tensor:
    """The block-causal mask of an L-position canvas, rows [start, stop) by keys [0, keys_stop) (default: all),
    combined with the engine's (None, bool key/4D mask or additive 4D mask over those rows and keys)."""
    rows, keys = slice(start, stop), slice(0, keys_stop)
    allowed = block_causal(length, block_size, device)[rows, keys][None, None]  # (1, 1, n, K)
    if given is None:
        return allowed
    if given.dtype != torch.bool:
        return given.masked_fill(~allowed, float("-inf"))  # additive: the caller owns its padded rows
    eye = torch.eye(length, dtype=torch.bool, device=device)[rows, keys][None, None]
    return (allowed & given) | eye  # (B, 1, n, K): a padded query keeps itself, so no row is empty


class Attention(nn.Module):
    def __init__(self, c: LLaDA2Config) -> None:
        super().__init__()
        self.c = c
        self.query_key_value = nn.Linear(c.hidden_size, (c.num_attention_heads + 2 * c.num_key_value_heads)
                                         * c.head_dim, bias=c.use_qkv_bias)
        if c.use_qk_norm:
            self.query_layernorm = RMSNorm(c.head_dim, c.rms_norm_eps)
            self.key_layernorm = RMSNorm(c.head_dim, c.rms_norm_eps)
        self.dense = nn.Linear(c.num_attention_heads * c.head_dim, c.hidden_size, bias=c.use_bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, cos: torch.Tensor, sin: torch.Tensor,
                kv: LayerKV | None = None) -> torch.Tensor:
        heads, n_kv = self.c.num_attention_heads, self.c.num_key_value_heads
        qkv = split_heads(self.query_key_value(x), heads + 2 * n_kv, self.c.head_dim)  # (B, H + 2 KV, n, hd)
        q, k, v = qkv.split([heads, n_kv, n_kv], dim=1)
        norms = (self.query_layernorm, self.key_layernorm) if self.c.use_qk_norm else None
        return self.dense(rotary_attention(q, k, v, cos, sin, mask, kv, norms))


class Gate(nn.Module):
    """Router weights `weight` (E, D) and the routing-only `expert_bias` (E,)."""

    def __init__(self, c: LLaDA2Config) -> None:
        super().__init__()
        self.c = c
        self.weight = nn.Parameter(torch.empty(c.num_experts, c.hidden_size))
        self.expert_bias = nn.Parameter(torch.zeros(c.num_experts))

    def forward(self, flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(T, D) -> chosen experts (T, k) and their float32 weights (T, k)."""
        c = self.c
        scores = torch.sigmoid(F.linear(flat.float(), self.weight.float()))  # (T, E)
        biased = scores + self.expert_bias.float()  # (T, E): chooses experts, never weighs them
        grouped = biased.view(-1, c.n_group, c.num_experts // c.n_group)  # (T, G, E/G)
        group_score = grouped.topk(2, dim=-1).values.sum(dim=-1)  # (T, G)
        kept = torch.zeros_like(group_score).scatter_(1, group_score.topk(c.topk_group, dim=-1).indices, 1.0)
        allowed = kept.bool()[:, :, None].expand_as(grouped).reshape(biased.shape)  # (T, E)
        experts = biased.masked_fill(~allowed, float("-inf")).topk(c.num_experts_per_tok, dim=-1).indices  # (T, k)
        weights = scores.gather(1, experts)  # (T, k)
        if c.num_experts_per_tok > 1:
            weights = weights / (weights.sum(dim=-1, keepdim=True) + 1e-20)
        return experts, weights * c.routed_scaling_factor


class SparseMoe(nn.Module):
    def __init__(self, c: LLaDA2Config) -> None:
        super().__init__()
        self.gate = Gate(c)
        self.experts = RoutedExperts(c.num_experts, c.hidden_size, c.moe_intermediate_size)
        if c.num_shared_experts:
            self.shared_experts = SwiGLU(c.hidden_size, c.moe_intermediate_size * c.num_shared_experts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])  # (T, D)
        out = self.experts(flat, *self.gate(flat)).view_as(x)  # combined in float32, as the reference
        if hasattr(self, "shared_experts"):
            out = out + self.shared_experts(x)
        return out


class Layer(DecoderLayer):
    """The fused attention under `attention`; a routed MLP, or a dense SwiGLU in the first `first_k_dense_replace`
    layers."""

    attention_name = "attention"

    def __init__(self, c: LLaDA2Config, routed: bool) -> None:
        super().__init__(c, Attention(c), SparseMoe(c) if routed else SwiGLU(c.hidden_size, c.intermediate_size))


class LLaDA2Model(Decoder):
    """Parameters under `model.*` (the embedding is `word_embeddings`) and `lm_head`, as in the published
    checkpoints."""

    def __init__(self, c: LLaDA2Config) -> None:
        layers = (Layer(c, i >= c.first_k_dense_replace) for i in range(c.num_hidden_layers))
        super().__init__(c, layers, c.partial_rotary_factor, embedding="word_embeddings")

    def hidden_states(self, ids: torch.Tensor, mask: torch.Tensor | None, positions: torch.Tensor,
                      kv: KVWindow | None = None) -> torch.Tensor:
        """Block-causal over the input, or with `kv` over the canvas of the window's store: its rows [start, stop)
        see the keys [0, keys_stop) their blocks allow (`mask` then covers those keys)."""
        size = self.config.block_size
        if kv is None:
            mask = attention_mask(mask, ids.shape[1], size, ids.device)
        else:
            mask = attention_mask(mask, kv.store.length, size, ids.device, kv.start, kv.stop, kv.keys_stop)
        return super().hidden_states(ids, mask, positions, kv)


LLADA2 = Family(name="llada2", model_types=("llada2_moe",), read_config=read_config, build=LLaDA2Model,
                special_ids=ling_special_ids, shift=False, context_length=lambda c: c.max_position_embeddings,
                published_config=PUBLISHED_CONFIG)
