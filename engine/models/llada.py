"""LLaDA (LLaDA-8B-Instruct, LLaDA-8B-Base, LLaDA-1.5), natively: the OLMo-style "llama" block of the published
modeling_llada.py, bidirectional, reading the official config.json keys and tensor names.

Structure (verified against the reference code's logits, tests/test_native_models.py): token embedding `wte`; per
block RMS-normed attention (q/k/v projections, RoPE on q and k in float32, SDPA, `attn_out`) and a SwiGLU MLP
(`ff_out(silu(ff_proj(x)) * up_proj(x))`), both residual; final RMSNorm `ln_f`; LM head `ff_out` (or `wte` when
`weight_tying`). No biases in the published checkpoints. q/k/v, and the MLP's `ff_proj` and `up_proj`, are each
stored stacked and run as one matmul (stacked.StackedLinear); the state dict still has the checkpoint's tensor names.

Padding: the reference builds an attention bias from `attention_mask` but passes `attn_mask=None` to SDPA, so it
attends to padded keys. Here a key padding mask, when given, hides them; without one the two agree exactly, and a
left-padded row with the mask equals the reference run on that row alone (docs/MODELS.md).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from engine.models.native import (Family, KVWindow, LayerKV, NativeLM, RMSNorm, SpecialIds, apply_rope, attend,
                                  rope_tables, token_id)
from engine.models.stacked import StackedLinear, stacked_names

# Published special ids (GSAI-ML/LLaDA-8B-Instruct: config.json names mask 126336 and eos / pad 126081; the chat
# template ends an assistant turn with <|eot_id|> 126348, after which SFT padded the answer with 126081).
MASK_ID, EOS_ID, EOT_ID = 126336, 126081, 126348

# The published config.json of GSAI-ML/LLaDA-8B-Instruct (LLaDA-8B-Base and LLaDA-1.5 share every shape and id),
# structural and size keys as on the Hub; the model card (and iLLaDA's comparison table) gives 8.02B parameters,
# 6.98B without the embedding and the untied head. tests/test_native_sizes.py builds it on the meta device.
PUBLISHED_CONFIG = {
    "model_type": "llada", "architectures": ["LLaDAModelLM"], "block_type": "llama", "activation_type": "silu",
    "layer_norm_type": "rms", "rope": True, "alibi": False, "attention_layer_norm": False, "include_bias": False,
    "include_qkv_bias": False, "scale_logits": False, "input_emb_norm": False, "multi_query_attention": None,
    "d_model": 4096, "n_heads": 32, "n_kv_heads": 32, "n_layers": 32, "mlp_hidden_size": 12288, "mlp_ratio": 4,
    "vocab_size": 126464, "embedding_size": 126464, "rope_theta": 500000.0, "rms_norm_eps": 1e-05,
    "weight_tying": False, "max_sequence_length": 4096, "mask_token_id": 126336, "eos_token_id": 126081,
    "pad_token_id": 126081,
}

# Values the loader accepts for the structural keys (anything else is a model this module does not implement).
REQUIRED = {"block_type": "llama", "layer_norm_type": "rms", "activation_type": "silu", "rope": True,
            "alibi": False, "attention_layer_norm": False, "include_bias": False, "scale_logits": False,
            "input_emb_norm": False}


@dataclass(frozen=True)
class LLaDAConfig:
    d_model: int  # hidden width (4096 for the 8B models)
    n_heads: int  # query heads (32)
    n_kv_heads: int  # key/value heads (32: no grouping in the published models)
    n_layers: int  # transformer blocks (32)
    mlp_hidden_size: int  # SwiGLU inner width (12288)
    vocab_size: int  # logits width = embedding rows (`embedding_size` when set, 126464)
    rope_theta: float  # RoPE base (500000)
    rms_norm_eps: float  # RMSNorm epsilon (1e-5)
    weight_tying: bool  # LM head shares the embedding (False when published)
    include_qkv_bias: bool  # biases on q/k/v (False when published)
    max_sequence_length: int  # trained context (4096)

    def __post_init__(self) -> None:
        for field in ("d_model", "n_heads", "n_kv_heads", "n_layers", "mlp_hidden_size", "vocab_size",
                      "max_sequence_length"):
            if getattr(self, field) < 1:
                raise ValueError(f"LLaDA config: {field}={getattr(self, field)} must be >= 1")
        if self.d_model % self.n_heads or self.n_heads % self.n_kv_heads:
            raise ValueError(f"LLaDA config: d_model={self.d_model}, n_heads={self.n_heads}, "
                             f"n_kv_heads={self.n_kv_heads}: heads must divide d_model and kv heads divide heads")
        if (self.d_model // self.n_heads) % 2:
            raise ValueError(f"LLaDA config: head size {self.d_model // self.n_heads} must be even for RoPE")
        if not (self.rope_theta > 0 and self.rms_norm_eps > 0):
            raise ValueError(f"LLaDA config: rope_theta={self.rope_theta} and rms_norm_eps={self.rms_norm_eps} "
                             "must be > 0")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads


def read_config(raw: dict) -> LLaDAConfig:
    """The official config.json (LLaDA's own keys, as ModelConfig in configuration_llada.py) -> LLaDAConfig."""
    for key, want in REQUIRED.items():
        if key in raw and raw[key] != want:
            raise ValueError(f"config.json: {key}={raw[key]!r}, but LLaDA checkpoints have {want!r}; this folder "
                             "is not a LLaDA-8B / LLaDA-1.5 model")
    if raw.get("multi_query_attention"):
        raise ValueError("config.json: multi_query_attention=true is not the published LLaDA structure")
    try:
        d_model, n_heads = int(raw["d_model"]), int(raw["n_heads"])
        n_kv = raw.get("n_kv_heads")
        mlp = raw.get("mlp_hidden_size") or int(raw.get("mlp_ratio", 4)) * d_model
        return LLaDAConfig(d_model=d_model, n_heads=n_heads, n_kv_heads=int(n_kv) if n_kv else n_heads,
                           n_layers=int(raw["n_layers"]), mlp_hidden_size=int(mlp),
                           vocab_size=int(raw.get("embedding_size") or raw["vocab_size"]),
                           rope_theta=float(raw.get("rope_theta", 10000.0)),
                           rms_norm_eps=float(raw.get("rms_norm_eps", 1e-5)),
                           weight_tying=bool(raw.get("weight_tying", True)),
                           include_qkv_bias=bool(raw.get("include_qkv_bias", False)),
                           max_sequence_length=int(raw.get("max_sequence_length", 1024)))
    except KeyError as err:
        raise ValueError(f"config.json lacks {err.args[0]!r}, which a LLaDA config names; the folder holds "
                         "another model") from None


class LLaDABlock(nn.Module):
    regions = ("project", "finish")  # compiled by NativeLM.compile_layers; the attention between them runs eagerly

    def __init__(self, c: LLaDAConfig) -> None:
        super().__init__()
        self.c = c
        kv_width = c.n_kv_heads * c.head_dim
        self.attn_norm, self.ff_norm = RMSNorm(c.d_model, c.rms_norm_eps), RMSNorm(c.d_model, c.rms_norm_eps)
        # q/k/v and the MLP's gate and up each run as one matmul; the state dict keeps the checkpoint's names
        self.qkv = StackedLinear(c.d_model, {"q_proj": c.d_model, "k_proj": kv_width, "v_proj": kv_width},
                                 bias=c.include_qkv_bias)
        self.attn_out = nn.Linear(c.d_model, c.d_model, bias=False)
        self.gate_up = StackedLinear(c.d_model, {"ff_proj": c.mlp_hidden_size, "up_proj": c.mlp_hidden_size},
                                     bias=False)
        self.ff_out = nn.Linear(c.mlp_hidden_size, c.d_model, bias=False)
        stacked_names(self)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, cos: torch.Tensor, sin: torch.Tensor,
                kv: LayerKV | None = None) -> torch.Tensor:
        q, k, v = self.project(x, cos, sin)
        return self.finish(x, attend(q, k, v, mask, kv))

    def project(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Normed queries, keys and values (B, heads, L, hd), RoPE applied; keys and values contiguous, as a cache's
        store hands them to attention, so a full forward and a cached one attend over the same layouts."""
        batch, length, _ = x.shape
        h = self.attn_norm(x)  # (B, L, D)
        q, k, v = self.qkv(h)  # (B, L, D), (B, L, KV * hd) twice: views of one product
        q = q.view(batch, length, self.c.n_heads, self.c.head_dim).transpose(1, 2)  # (B, H, L, hd)
        k = k.view(batch, length, self.c.n_kv_heads, self.c.head_dim).transpose(1, 2)  # (B, KV, L, hd)
        v = v.view(batch, length, self.c.n_kv_heads, self.c.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)  # float32 rotation, back to the model dtype
        return q, k.contiguous(), v.contiguous()

    def finish(self, x: torch.Tensor, att: torch.Tensor) -> torch.Tensor:
        """The attention output (B, H, L, hd) projected and added, then the SwiGLU MLP, residual: (B, L, D)."""
        batch, length, _ = x.shape
        x = x + self.attn_out(att.transpose(1, 2).reshape(batch, length, self.c.d_model))
        gate, up = self.gate_up(self.ff_norm(x))  # (B, L, mlp) each: views of one product
        return x + self.ff_out(F.silu(gate) * up)


class LLaDAModel(NativeLM):
    """Parameters under `model.transformer.*`, as in the published checkpoints."""

    def __init__(self, c: LLaDAConfig) -> None:
        super().__init__()
        self.config = c
        parts = {"wte": nn.Embedding(c.vocab_size, c.d_model),
                 "blocks": nn.ModuleList(LLaDABlock(c) for _ in range(c.n_layers)),
                 "ln_f": RMSNorm(c.d_model, c.rms_norm_eps)}
        if not c.weight_tying:
            parts["ff_out"] = nn.Linear(c.d_model, c.vocab_size, bias=False)
        self.model = nn.Module()
        self.model.transformer = nn.ModuleDict(parts)

    def hidden_states(self, ids: torch.Tensor, mask: torch.Tensor | None, positions: torch.Tensor,
                      kv: KVWindow | None = None) -> torch.Tensor:
        t = self.model.transformer
        x = t.wte(ids)  # (B, L, D)
        cos, sin = rope_tables(positions, self.config.head_dim, self.config.rope_theta)  # (B, 1, L, hd) float32
        for i, block in enumerate(t.blocks):
            x = block(x, mask, cos, sin, None if kv is None else kv.layer(i))
        return t.ln_f(x)

    def layers(self) -> nn.ModuleList:
        return self.model.transformer.blocks

    def head(self, hidden: torch.Tensor) -> torch.Tensor:
        t = self.model.transformer
        return F.linear(hidden, t.wte.weight) if self.config.weight_tying else t.ff_out(hidden)  # (B, n, V)


def special_ids(raw: dict, tokenizer) -> SpecialIds:
    """Stop on EOS (126081, dInfer's stop id; SFT pads answers with it); <|eot_id|> (126348 when published; the
    tokenizer's own id when the folder has one) also ends the text."""
    eos = int(raw.get("eos_token_id", EOS_ID))
    eot = token_id(tokenizer, "<|eot_id|>", EOT_ID)
    return SpecialIds(mask_id=int(raw.get("mask_token_id", MASK_ID)),
                      eos_ids=(eos, eot) if eot != eos else (eos,))


LLADA = Family(name="llada", model_types=("llada",), read_config=read_config, build=LLaDAModel,
               special_ids=special_ids, shift=False, context_length=lambda c: c.max_sequence_length,
               published_config=PUBLISHED_CONFIG)
