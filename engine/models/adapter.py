"""Fold a shipped low-rank adapter into a plain base model: what loading the bundled dLLM needs from its recipe.

The file holds, per target projection, LoRA's A (r, in) and B (out, r), every RMSNorm weight and the mask token's
embedding row; merging computes W + scale * B @ A once, so the model then runs at the base model's speed. Training
the adapter is the recipe's business (lab/bundled/lora.py).
"""
from __future__ import annotations

from typing import Iterator

import torch
from torch import nn

TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")  # all 7 Llama projections
MASK_ROW_KEY = "mask_embedding"  # the mask token's embedding row, (hidden,)


def target_projections(model: nn.Module, types: tuple[type, ...] = (nn.Linear,)
                       ) -> Iterator[tuple[str, nn.Module, str, nn.Module]]:
    """(qualified name, parent, attribute, module) for every target projection that is one of `types`."""
    for name, module in model.named_modules():
        for target in TARGETS:
            child = getattr(module, target, None)
            if isinstance(child, types):
                yield f"{name}.{target}" if name else target, module, target, child


@torch.no_grad()
def merge_adapter(model: nn.Module, state: dict[str, torch.Tensor], scale: float, mask_id: int) -> nn.Module:
    """Fold a saved adapter into a plain (unwrapped) base model in place; a ValueError names any missing tensor."""
    names = {name for name, _, _, _ in target_projections(model)}
    expected = {f"{n}.{part}" for n in names for part in ("lora_A", "lora_B")}
    expected |= {name for name, _ in model.named_parameters() if name.endswith("norm.weight")} | {MASK_ROW_KEY}
    missing = sorted(expected - set(state))
    if missing:
        raise ValueError(f"the weights file lacks {len(missing)} tensors (e.g. {missing[0]!r}); it does not match "
                         "this base model: re-download or rebuild it with `python -m lab.bundled train --out DIR`")
    for name, _, _, linear in target_projections(model):  # the file's tensors may sit on another device (CPU)
        a = state[f"{name}.lora_A"].to(linear.weight.device, torch.float32)  # (r, in)
        b = state[f"{name}.lora_B"].to(linear.weight.device, torch.float32)  # (out, r)
        linear.weight += (scale * (b @ a)).to(linear.weight.dtype)
    parameters = dict(model.named_parameters())
    for name, value in state.items():
        if name.endswith("norm.weight"):
            parameters[name].copy_(value)
    embedding = model.get_input_embeddings().weight
    embedding[mask_id] = state[MASK_ROW_KEY].to(embedding.device, embedding.dtype)
    return model

