"""What a natively implemented diffusion-LM family provides, and the pieces the families share.

A family (LLaDA, Dream, LLaDA-MoE, ...) is one module under engine/models/ exporting a `Family`: how to read the
official config.json into a frozen config, how to build the torch module for it, and which special ids stop and pad.
The module subclasses `NativeLM`, so every family answers the same call the engine makes
(`engine/models/cuda_graph.py` and `LoadedModel`):

    model(input_ids=ids (B, L), attention_mask=None | key mask (B, L) | bool (B, 1, L, L),
          position_ids=None | (B, L), use_cache=False, logits_to_keep=0 | row indices) -> .logits (B, L or rows, V)

Its state-dict names are the official checkpoint's tensor names, so loading is a name-for-name copy
(engine/models/checkpoint.py checks names and shapes first; projections a family runs as one matmul keep their
parts' names, engine/models/stacked.py). Attention is bidirectional; a key padding mask hides padded keys, and
positions then count real tokens only (what Dream's generation code passes; LLaDA's RoPE is relative, so its real
rows do not depend on that offset).

Key/value caches (engine/models/kv_forward.py) use one more entry, shared by every family: `hidden_states(ids, mask,
positions, kv)` with `kv` a `KVWindow` runs only the canvas positions [kv.start, kv.stop) (ids and positions of those
positions), writes their keys and values into the window's `KeyValueStore` and attends to the store's keys
[0, kv.keys_stop): a family passes `kv.layer(i)` to layer i and its attention hands it to `attend`, nothing more.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class SpecialIds:
    mask_id: int  # the [MASK] id the model was trained with
    eos_ids: tuple[int, ...]  # the first stops a decode and pads after it; the others also end an answer's text


@dataclass(frozen=True)
class Family:
    name: str  # short family name: "llada", "dream"
    model_types: tuple[str, ...]  # config.json "model_type" values this family reads
    read_config: Callable[[dict], object]  # official config.json dict -> the family's frozen config (ValueError)
    build: Callable[[object], "NativeLM"]  # config -> module, on torch's current default device (meta when loading)
    special_ids: Callable[[dict, object], SpecialIds]  # (config.json, tokenizer or None) -> ids; published if unnamed
    shift: bool  # Dream-style alignment: logits[i-1] predict position i
    context_length: Callable[[object], int]  # config -> the longest sequence (prompt + answer) it was trained for
    published_config: dict  # the released full-size config.json (sourced in the family module)
    architectures: tuple[str, ...] = ()  # config.json "architectures" that pick this family before model_type does
    bpe_tokenizer: str | None = None  # stock transformers class for vocab.json + merges.txt when no tokenizer.json


def token_id(tokenizer, token: str, published: int) -> int:
    """A special token's id in the folder's tokenizer when it has the token, else the family's published id."""
    if tokenizer is not None and token in tokenizer.get_vocab():
        return int(tokenizer.convert_tokens_to_ids(token))
    return published


@dataclass
class NativeOutput:
    logits: torch.Tensor  # (B, rows, V) in the model's dtype


class NativeLM(nn.Module):
    """Base of every native family: masks, positions and the rows-only LM head are handled here once; a family
    implements `hidden_states` (final-normed) and `head`."""

    def hidden_states(self, ids: torch.Tensor, mask: torch.Tensor | None, positions: torch.Tensor,
                      kv: KVWindow | None = None) -> torch.Tensor:
        raise NotImplementedError  # (B, n) ids -> (B, n, D); mask: SDPA attn_mask or None; positions (B, n)

    def head(self, hidden: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError  # (B, n, D) -> (B, n, V)

    def layers(self) -> nn.ModuleList:
        """The repeated blocks, in order (every family but LLaDA keeps them at `model.layers`)."""
        return self.model.layers

    def compile_layers(self, backend: str = "inductor") -> None:
        """torch.compile each block's `regions` (methods its class names) in place: inductor fuses their norms,
        rotary, SiLU, residual adds and casts into a few kernels; the GEMMs stay cuBLAS's. Attention runs between
        the regions as it is, so a cached forward (which writes its keys to a store there) and a full one replay the
        same compiled code and stay equal. Compiled once, with the rows dimension dynamic, and reused by every
        layer and every row count; no CUDA graphs of its own (cuda_graph.GraphCache captures the compiled forward).
        Idempotent; CPU tests use backend "aot_eager"."""
        layers = list(self.layers())
        names = getattr(layers[0], "regions", ()) if layers else ()
        if not names:
            raise ValueError(f"{type(self).__name__}'s blocks name no `regions` to compile; it runs uncompiled "
                             "(compile_model=False)")
        for layer in layers:
            for name in names:
                if name not in vars(layer):  # not compiled yet (the compiled method shadows the class's)
                    setattr(layer, name, torch.compile(getattr(layer, name), backend=backend, dynamic=True))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, use_cache: bool = False,
                logits_to_keep: int | torch.Tensor = 0) -> NativeOutput:
        if use_cache:
            raise ValueError("native diffusion models keep no KV cache; call with use_cache=False")
        mask, positions = attention_inputs(input_ids, attention_mask, position_ids)
        hidden = self.hidden_states(input_ids, mask, positions)  # (B, L, D)
        if isinstance(logits_to_keep, torch.Tensor):
            hidden = hidden[:, logits_to_keep]  # (B, rows, D): the block's rows only
        elif logits_to_keep > 0:
            hidden = hidden[:, -logits_to_keep:]
        return NativeOutput(logits=self.head(hidden))


def attention_inputs(ids: torch.Tensor, attention_mask: torch.Tensor | None,
                     position_ids: torch.Tensor | None) -> tuple[torch.Tensor | None, torch.Tensor]:
    """SDPA's attn_mask (None = attend everywhere) and positions (B, L) from the engine's optional inputs.

    A 2D mask (B, L) marks real tokens (1) and padding (0): padded keys are hidden from every query, and positions
    count real tokens from 0. A 4D boolean or additive mask is used as given (cuda_graph builds one per decode)."""
    batch, length = ids.shape
    if attention_mask is None:
        mask = None
    elif attention_mask.dim() == 2 and tuple(attention_mask.shape) == (batch, length):
        keys = attention_mask.bool()  # (B, L)
        mask = keys[:, None, None, :]  # (B, 1, 1, L): broadcast over heads and queries
        if position_ids is None:
            position_ids = (keys.long().cumsum(dim=1) - 1).clamp(min=0)  # (B, L)
    elif attention_mask.dim() == 4 and attention_mask.shape[0] == batch and attention_mask.shape[-1] == length:
        mask = attention_mask
    else:
        raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)}; expected ({batch}, {length}) "
                         f"(1 = real token, 0 = padding) or a 4D mask ({batch}, 1, {length}, {length})")
    if position_ids is None:
        position_ids = torch.arange(length, device=ids.device).expand(batch, length)  # (B, L)
    return mask, position_ids


class RMSNorm(nn.Module):
    """Normalise in float32, cast back, then scale (LLaDA's RMSLayerNorm and Dream's DreamRMSNorm both do this)."""

    def __init__(self, size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)  # (..., D) float32
        return self.weight * normed.to(x.dtype)


def rope_tables(positions: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin (B, 1, L, head_dim) in float32 for the standard rotary embedding (rotate-half layout)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32)
                                / head_dim))  # (head_dim / 2,)
    freqs = positions.float()[:, :, None] * inv_freq[None, None, :]  # (B, L, head_dim / 2)
    angles = torch.cat([freqs, freqs], dim=-1)[:, None]  # (B, 1, L, head_dim)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x (B, H, L, hd) in the tables' dtype (LLaDA: float32; Dream: the activations' dtype)."""
    xr = x.to(cos.dtype)
    half = x.shape[-1] // 2
    rotated = torch.cat([-xr[..., half:], xr[..., :half]], dim=-1)  # rotate_half
    return (xr * cos + rotated * sin).to(x.dtype)


@dataclass
class KeyValueStore:
    """Every layer's keys and values (B, KV heads, length, hd), RoPE applied, of one decode's canvas; a layer's
    buffers are allocated by the first forward that writes it and then written in place (a CUDA graph keeps their
    addresses)."""

    length: int  # canvas positions (prompt + answer)
    keys: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> (B, KV, length, hd)
    values: dict[int, torch.Tensor] = field(default_factory=dict)


LayerKV = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]  # a window's layer: (k, v) ->
#                                                                             the keys and values to attend to


@dataclass(frozen=True)
class KVWindow:
    """One cached forward: it computes canvas positions [start, stop) and its queries see keys [0, keys_stop)."""

    store: KeyValueStore
    index: torch.Tensor  # (n,) long: the positions start..stop-1, on the device (a graph replays other values)
    start: int  # first position this forward computes (block-causal masks read it; full attention never does)
    stop: int  # end (exclusive) of the computed positions
    keys_stop: int  # the queries attend to positions [0, keys_stop) (the canvas length for full attention)

    def layer(self, index: int) -> LayerKV:
        return partial(self.merge, index)

    def merge(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write this forward's keys and values (B, KV, n, hd) into the store; return the visible ones
        (B, KV, keys_stop, hd): the fresh window among the kept rest."""
        store = self.store
        if layer not in store.keys:
            shape = (*k.shape[:2], store.length, k.shape[-1])
            store.keys[layer], store.values[layer] = k.new_zeros(shape), v.new_zeros(shape)
        store.keys[layer].index_copy_(2, self.index, k)
        store.values[layer].index_copy_(2, self.index, v)
        return store.keys[layer][:, :, :self.keys_stop], store.values[layer][:, :, :self.keys_stop]


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
           kv: LayerKV | None = None) -> torch.Tensor:
    """Bidirectional SDPA; q (B, H, n, hd), k and v (B, KV, n, hd) with KV dividing H (grouped-query attention).
    With `kv` (a KVWindow's layer), k and v are this window's and the queries attend to the cache's visible keys."""
    if kv is not None:
        k, v = kv(k, v)  # (B, KV, keys_stop, hd)
    groups = q.shape[1] // k.shape[1]
    if groups > 1:
        k = k.repeat_interleave(groups, dim=1)  # (B, H, L, hd)
        v = v.repeat_interleave(groups, dim=1)
    if mask is not None and mask.dtype == torch.bool:
        mask = mask.expand(q.shape[0], 1, q.shape[2], k.shape[2])  # (B, 1, L, L)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=False)  # (B, H, L, hd)


@torch.no_grad()
def init_random(module: nn.Module, seed: int, std: float = 0.02) -> nn.Module:
    """Random weights in place (benchmarks and fixtures): matrices N(0, std), norm scales 1 + N(0, std) so that
    their mapping is tested too, biases N(0, std)."""
    generators: dict[torch.device, torch.Generator] = {}
    for name, param in module.named_parameters():
        if param.device not in generators:
            generators[param.device] = torch.Generator(device=param.device).manual_seed(seed)
        noise = torch.randn(param.shape, generator=generators[param.device], device=param.device) * std
        param.copy_(noise + 1.0 if name.endswith("norm.weight") or name.endswith("ln_f.weight") else noise)
    return module
