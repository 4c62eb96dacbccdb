"""Turn a transformers Llama-family model into a bidirectional (full-attention) one, in place."""
from __future__ import annotations

import torch


def make_bidirectional(model: torch.nn.Module) -> torch.nn.Module:
    """Full attention: masking_utils builds a bidirectional mask when config.is_causal is False, and SDPA / flash
    kernels read each attention module's own is_causal flag, so both are switched off."""
    model.config.is_causal = False
    if hasattr(model.config, "text_config"):
        model.config.text_config.is_causal = False
    switched = 0
    for module in model.modules():
        if hasattr(module, "is_causal"):
            module.is_causal = False
            switched += 1
    if switched == 0:
        raise ValueError(f"{type(model).__name__} has no attention modules with an is_causal flag; "
                         "cannot make it bidirectional")
    return model
