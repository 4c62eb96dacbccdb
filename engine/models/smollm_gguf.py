"""Read SmolLM2's GGUF straight into a transformers Llama: one pass over the header, a fixed name map, dequantise.

transformers' GGUF path parses the file twice with gguf's reader (which slices a memmap once per vocabulary string,
~100k times) and rebuilds llama.cpp's name table once per tensor: most of the ~16 s a CPU load cost. This module
reads the header with `struct` (GGUF v2/v3 layout), keeps only the scalar metadata, and leaves the dequantisation to
the `gguf` package. The test suite checks it yields exactly transformers' weights.
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import torch

_LAYER_NAMES = {  # llama.cpp tensor name (after "blk.N.") -> transformers name (after "model.layers.N.")
    "attn_norm.weight": "input_layernorm.weight", "ffn_norm.weight": "post_attention_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight", "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight", "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight", "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}
_TOP_NAMES = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
              "output.weight": "lm_head.weight"}


def _unpermute_rotary(weight: np.ndarray, heads: int) -> np.ndarray:
    """Undo llama.cpp's reordering of q / k rows (it interleaves each head's two rotary halves)."""
    rows, cols = weight.shape
    return weight.reshape(heads, rows // heads // 2, 2, cols).swapaxes(1, 2).reshape(rows, cols)


_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9  # GGUF value types that are not fixed-size scalars


class _Header:
    """The GGUF header: scalar metadata (arrays such as the vocabulary are skipped) and tensor infos."""

    def __init__(self, buffer: memoryview) -> None:
        self.buffer, self.pos = buffer, 0
        magic, version = self._take("<4sI")
        if magic != b"GGUF" or version not in (2, 3):
            raise ValueError(f"not a GGUF v2/v3 file (magic {magic!r}, version {version})")
        n_tensors, n_values = self._take("<QQ")
        self.metadata: dict[str, object] = {}
        for _ in range(n_values):
            key = self._string()
            value = self._value(self._take("<I")[0])
            if value is not None:
                self.metadata[key] = value
        self.tensors = []  # (name, numpy shape, ggml type, offset from the data start)
        for _ in range(n_tensors):
            name = self._string()
            dims = self._take(f"<{self._take('<I')[0]}Q")
            ggml_type, offset = self._take("<IQ")
            self.tensors.append((name, tuple(reversed(dims)), ggml_type, offset))
        alignment = int(self.metadata.get("general.alignment", 32))
        self.data_start = -(-self.pos // alignment) * alignment

    def _take(self, fmt: str) -> tuple:
        values = struct.unpack_from(fmt, self.buffer, self.pos)
        self.pos += struct.calcsize(fmt)
        return values

    def _string(self) -> str:
        (length,) = self._take("<Q")
        self.pos += length
        return bytes(self.buffer[self.pos - length:self.pos]).decode("utf-8")

    def _value(self, value_type: int) -> object:
        if value_type in _SCALARS:
            return self._take(_SCALARS[value_type])[0]
        if value_type == _STRING:
            return self._string()
        if value_type != _ARRAY:
            raise ValueError(f"unknown GGUF value type {value_type}")
        item_type, count = self._take("<IQ")
        if item_type in _SCALARS:
            self.pos += count * struct.calcsize(_SCALARS[item_type])
        else:
            for _ in range(count):
                self._value(item_type)
        return None

    def get(self, key: str):
        if key not in self.metadata:
            raise ValueError(f"the GGUF lacks {key!r}; it is not a SmolLM2 / Llama GGUF")
        return self.metadata[key]


def read_llama_gguf(path: Path) -> tuple["object", dict[str, torch.Tensor]]:
    """(LlamaConfig, float32 state dict) of a Llama-architecture GGUF."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, dequantize
    from transformers import LlamaConfig

    raw = np.memmap(path, dtype=np.uint8, mode="r")
    header = _Header(memoryview(raw))
    if header.get("general.architecture") != "llama":
        raise ValueError(f"{path} holds a {header.get('general.architecture')!r} model, not llama")
    heads, kv_heads = int(header.get("llama.attention.head_count")), int(header.get("llama.attention.head_count_kv"))
    names = {tensor[0] for tensor in header.tensors}
    config = LlamaConfig(
        vocab_size=int(header.get("llama.vocab_size")), hidden_size=int(header.get("llama.embedding_length")),
        intermediate_size=int(header.get("llama.feed_forward_length")),
        num_hidden_layers=int(header.get("llama.block_count")), num_attention_heads=heads,
        num_key_value_heads=kv_heads, max_position_embeddings=int(header.get("llama.context_length")),
        rms_norm_eps=float(np.float32(header.get("llama.attention.layer_norm_rms_epsilon"))),
        rope_theta=float(header.get("llama.rope.freq_base")), tie_word_embeddings="output.weight" not in names,
        bos_token_id=int(header.get("tokenizer.ggml.bos_token_id")),
        eos_token_id=int(header.get("tokenizer.ggml.eos_token_id")),
        pad_token_id=int(header.get("tokenizer.ggml.padding_token_id")), hidden_act="silu")
    state: dict[str, torch.Tensor] = {}
    for tensor_name, shape, ggml_type, offset in header.tensors:
        qtype = GGMLQuantizationType(ggml_type)
        block, block_bytes = GGML_QUANT_SIZES[qtype]
        row_bytes = shape[-1] // block * block_bytes
        rows = int(np.prod(shape[:-1], dtype=np.int64))
        start = header.data_start + offset
        packed = raw[start:start + rows * row_bytes].reshape(rows, row_bytes)  # (rows, bytes per row)
        values = dequantize(packed, qtype).astype(np.float32, copy=False).reshape(shape)
        if tensor_name in _TOP_NAMES:
            name = _TOP_NAMES[tensor_name]
        else:
            _, layer, rest = tensor_name.split(".", 2)
            if rest not in _LAYER_NAMES:
                raise ValueError(f"unexpected tensor {tensor_name!r} in {path}")
            name = f"model.layers.{layer}.{_LAYER_NAMES[rest]}"
            if rest in ("attn_q.weight", "attn_k.weight"):
                values = _unpermute_rotary(values, heads if rest == "attn_q.weight" else kv_heads)
        values = values if values.flags.writeable else values.copy()  # F32 tensors are views of the read-only file
        state[name] = torch.from_numpy(np.ascontiguousarray(values))
    return config, state


def load_llama_gguf(path: Path) -> torch.nn.Module:
    """A float32 LlamaForCausalLM (eval mode, CPU) with the GGUF's weights, built without random initialisation."""
    from transformers import LlamaForCausalLM

    config, state = read_llama_gguf(path)
    with torch.device("meta"):  # no allocation, no random init: the GGUF's tensors are assigned below
        model = LlamaForCausalLM(config)
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    missing = [name for name in missing if not (name == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or unexpected:
        raise ValueError(f"{path} does not fit the Llama layout: missing {missing[:3]}, unexpected {unexpected[:3]}")
    model.tie_weights()
    # The rotary tables are computed buffers, not weights: rebuild them on the CPU.
    model.model.rotary_emb = type(model.model.rotary_emb)(config=config)
    left_on_meta = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left_on_meta:
        raise ValueError(f"{path}: no weights for {left_on_meta[:3]}")
    return model.eval()
