"""tiny-random: a randomly initialised model of the bundled architecture (a bidirectional SmolLM2-style Llama) with a
byte-level tokenizer built in memory. It exercises every code path offline in seconds; its answers are noise."""
from __future__ import annotations

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from engine.models.base import LoadedModel, ModelSpec, pick_device_dtype
from engine.models.bidirectional import make_bidirectional

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|mask|>")
# ChatML, as SmolLM2-Instruct uses.
CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def byte_tokenizer() -> PreTrainedTokenizerFast:
    """A real HF tokenizer over the 256 bytes plus ChatML specials (ids 0-3), needing no download."""
    byte_chars = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    vocab.update({ch: len(SPECIAL_TOKENS) + i for i, ch in enumerate(byte_chars)})
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.add_special_tokens(list(SPECIAL_TOKENS))
    return PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   mask_token="<|mask|>", chat_template=CHAT_TEMPLATE)


def tiny_config(vocab_size: int, layers: int = 2) -> LlamaConfig:
    """SmolLM2-135M's architecture (tied embeddings, GQA 3:1, SiLU MLP) at toy width."""
    return LlamaConfig(vocab_size=vocab_size, hidden_size=48, intermediate_size=128, num_hidden_layers=layers,
                       num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=2048,
                       tie_word_embeddings=True, rope_theta=100000.0, attn_implementation="sdpa")


def load_tiny(device: str | None = None, seed: int = 0) -> LoadedModel:
    tokenizer = byte_tokenizer()
    device_, dtype = pick_device_dtype(device)
    with torch.random.fork_rng(devices=[]):  # seeded weights without touching the caller's global RNG
        torch.manual_seed(seed)
        model = make_bidirectional(LlamaForCausalLM(tiny_config(len(tokenizer)))).to(device_, dtype)
    spec = ModelSpec(name="tiny-random", mask_id=tokenizer.mask_token_id,
                     eos_ids=(tokenizer.eos_token_id, tokenizer.pad_token_id), shift=True, max_length=2048,
                     description="randomly initialised, bundled architecture: for tests; answers are noise")
    return LoadedModel(spec, model, tokenizer, device_, dtype)


def tiny_causal(device: str | None = None, seed: int = 0) -> tuple[torch.nn.Module, PreTrainedTokenizerFast]:
    """A causal Llama of SmolLM2's shape at toy width with the in-memory byte tokenizer: seconds, no files."""
    tokenizer = byte_tokenizer()
    device_, dtype = pick_device_dtype(device)
    with torch.random.fork_rng(devices=[]):  # seeded weights without touching the caller's global RNG
        torch.manual_seed(seed)
        model = LlamaForCausalLM(tiny_config(len(tokenizer))).to(device_, dtype).eval()
    return model, tokenizer
