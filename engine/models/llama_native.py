"""The bundled model (and tiny-random) as a native module: a transformers LlamaForCausalLM made bidirectional is, layer
for layer, LLaDA's block (RMSNorm, q/k/v with RoPE, SDPA, output projection, SwiGLU), so its weights drop into
`LLaDAModel` under LLaDA's names, sharing storage, except q/k/v and gate/up, which LLaDA's block keeps stacked (one
copy each, stacked.StackedLinear). The native module is what the key/value caches need:
transformers' cache API appends keys, while a dual cache overwrites the block's keys in place among cached ones
(engine/models/native.py KVWindow). tests/test_kv_cache.py checks that both modules give the same logits.
"""
from __future__ import annotations

import functools

import torch

from engine.models.base import LoadedModel
from engine.models.llada import LLaDAConfig, LLaDAModel
from engine.models.native import NativeLM

# transformers Llama parameter (after "model.layers.{i}.") -> LLaDA's (after "model.transformer.blocks.{i}.")
LAYER_NAMES = {"self_attn.q_proj": "q_proj", "self_attn.k_proj": "k_proj", "self_attn.v_proj": "v_proj",
               "self_attn.o_proj": "attn_out", "mlp.gate_proj": "ff_proj", "mlp.up_proj": "up_proj",
               "mlp.down_proj": "ff_out", "input_layernorm": "attn_norm", "post_attention_layernorm": "ff_norm"}


def llada_config(config) -> LLaDAConfig:
    """A transformers LlamaConfig -> the LLaDAConfig of the same network; ValueError for what LLaDA's block lacks."""
    rope = getattr(config, "rope_parameters", None) or {"rope_theta": getattr(config, "rope_theta", 10000.0)}
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    unsupported = {"hidden_act": config.hidden_act != "silu", "mlp_bias": bool(getattr(config, "mlp_bias", False)),
                   "attention_bias": bool(getattr(config, "attention_bias", False)),
                   "rope_type": rope.get("rope_type", "default") != "default",
                   "head_dim": head_dim * config.num_attention_heads != config.hidden_size}
    bad = [name for name, is_bad in unsupported.items() if is_bad]
    if bad:
        raise ValueError(f"this Llama has {', '.join(bad)} unlike LLaDA's block; it cannot run natively, so cache "
                         "modes are not available for it: use cache 'none'")
    return LLaDAConfig(d_model=config.hidden_size, n_heads=config.num_attention_heads,
                       n_kv_heads=config.num_key_value_heads, n_layers=config.num_hidden_layers,
                       mlp_hidden_size=config.intermediate_size, vocab_size=config.vocab_size,
                       rope_theta=float(rope["rope_theta"]), rms_norm_eps=float(config.rms_norm_eps),
                       weight_tying=bool(config.tie_word_embeddings), include_qkv_bias=False,
                       max_sequence_length=int(config.max_position_embeddings))


def llada_state(llama_state: dict[str, torch.Tensor], tied: bool) -> dict[str, torch.Tensor]:
    """Rename a LlamaForCausalLM state dict to LLaDAModel's names (same tensors)."""
    out = {}
    for name, tensor in llama_state.items():
        if name.startswith("model.layers."):
            index, rest = name.removeprefix("model.layers.").split(".", 1)
            part, kind = rest.rsplit(".", 1)
            out[f"model.transformer.blocks.{index}.{LAYER_NAMES[part]}.{kind}"] = tensor
        elif name == "model.embed_tokens.weight":
            out["model.transformer.wte.weight"] = tensor
        elif name == "model.norm.weight":
            out["model.transformer.ln_f.weight"] = tensor
        elif name == "lm_head.weight" and not tied:
            out["model.transformer.ff_out.weight"] = tensor
    return out


def native_model(loaded: LoadedModel) -> NativeLM:
    """The loaded model's native module: itself for a native family, else (a transformers Llama) LLaDAModel over the
    same weight tensors, built once per loaded model."""
    return loaded.model if isinstance(loaded.model, NativeLM) else _converted(loaded)


@functools.lru_cache(maxsize=4)
def _converted(loaded: LoadedModel) -> NativeLM:
    config = llada_config(loaded.model.config)
    with torch.device("meta"):
        native = LLaDAModel(config)
    native.load_state_dict(llada_state(loaded.model.state_dict(), config.weight_tying), strict=True, assign=True)
    return native.eval()
