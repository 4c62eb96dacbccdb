"""The causal models the Selection Lab trains: SmolLM2-135M-Instruct (default) or a tiny random one for tests."""
from __future__ import annotations

from typing import Any

import torch

SFT_MODELS = ("smollm2", "tiny-random")


def load_sft_model(name: str = "smollm2", device: str | None = None) -> tuple[torch.nn.Module, Any]:
    """(model, tokenizer), shared read-only: `run_selection` trains a copy. CPU float32 or CUDA bfloat16."""
    if name == "smollm2":
        from engine.models.smollm import load_smollm

        return load_smollm(device)
    if name == "tiny-random":
        return tiny_causal(device)
    raise ValueError(f"model={name!r} is unknown; allowed: {', '.join(SFT_MODELS)}")


def load_sft_tokenizer(name: str = "smollm2") -> Any:
    """The tokenizer of a Selection Lab model alone (no weights are read)."""
    if name == "smollm2":
        from engine.models.smollm import load_smollm_tokenizer

        return load_smollm_tokenizer()
    if name == "tiny-random":
        from engine.models.tiny import byte_tokenizer

        return byte_tokenizer()
    raise ValueError(f"model={name!r} is unknown; allowed: {', '.join(SFT_MODELS)}")


def tiny_causal(device: str | None = None, seed: int = 0) -> tuple[torch.nn.Module, Any]:
    """A causal Llama of SmolLM2's shape at toy width with the in-memory byte tokenizer: seconds, no files."""
    from transformers import LlamaForCausalLM

    from engine.models.base import pick_device_dtype
    from engine.models.tiny import byte_tokenizer, tiny_config

    tokenizer = byte_tokenizer()
    device_, dtype = pick_device_dtype(device)
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    model = LlamaForCausalLM(tiny_config(len(tokenizer))).to(device_, dtype).eval()
    torch.random.set_rng_state(generator_state)
    return model, tokenizer
