"""Low-rank adapters on every projection, plus trainable norms and mask embedding: train and save (merging
lives with the loader, engine/models/adapter.py).

What ships is exactly what trains: A and B of each adapter, every RMSNorm weight, and the embedding row of the mask
token (an unused special token whose pretrained vector means nothing to the new task). At load the adapters are
merged into the base weights (W + scale * B @ A), so the bundled model runs at the base model's speed.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from engine.models.adapter import MASK_ROW_KEY, target_projections


class LoRALinear(nn.Module):
    """base(x) + scale * B(A(x)); B starts at zero so training starts from the base model exactly."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, generator: torch.Generator) -> None:
        super().__init__()
        self.base = base
        self.scale = alpha / rank
        bound = 1.0 / math.sqrt(base.in_features)
        a = (torch.rand(rank, base.in_features, generator=generator) * 2 - 1) * bound  # (r, in)
        self.lora_A = nn.Parameter(a.to(base.weight.device))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, device=base.weight.device))  # (out, r)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        update = (x.to(self.lora_A.dtype) @ self.lora_A.T) @ self.lora_B.T  # (..., out)
        return self.base(x) + (self.scale * update).to(x.dtype)


def adapted_linears(model: nn.Module):
    """Every target projection, plain or already wrapped: (qualified name, parent, attribute, module)."""
    return target_projections(model, (nn.Linear, LoRALinear))


def add_lora(model: nn.Module, rank: int, alpha: float, mask_id: int, seed: int) -> list[nn.Parameter]:
    """Freeze the model, wrap every projection in an adapter, unfreeze norms and the mask row; return the
    trainable parameters. The embedding (tied to the output head) gets a gradient only in the mask row."""
    generator = torch.Generator().manual_seed(seed)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    trainable: list[nn.Parameter] = []
    for _, parent, target, linear in list(adapted_linears(model)):
        adapter = LoRALinear(linear, rank, alpha, generator)
        setattr(parent, target, adapter)
        trainable += [adapter.lora_A, adapter.lora_B]
    return trainable + train_norms_and_mask_row(model, mask_id)


def train_norms_and_mask_row(model: nn.Module, mask_id: int) -> list[nn.Parameter]:
    """Unfreeze every RMSNorm weight and the embedding, whose gradient is kept in the mask token's row only (the
    embedding is tied to the output head, which stays as it was). Returns those parameters."""
    trainable: list[nn.Parameter] = []
    for name, parameter in model.named_parameters():
        if name.endswith("norm.weight"):
            parameter.requires_grad_(True)
            trainable.append(parameter)
    embedding = model.get_input_embeddings().weight
    embedding.requires_grad_(True)
    row = torch.zeros(embedding.shape[0], 1, device=embedding.device, dtype=embedding.dtype)  # (V, 1)
    row[mask_id] = 1.0
    embedding.register_hook(lambda grad: grad * row)
    return trainable + [embedding]


def adapter_state(model: nn.Module, mask_id: int) -> dict[str, torch.Tensor]:
    """The shipped tensors, in bfloat16 on the CPU: adapters, norms, the mask embedding row."""
    state: dict[str, torch.Tensor] = {}
    for name, _, _, module in adapted_linears(model):
        if isinstance(module, LoRALinear):
            state[f"{name}.lora_A"] = module.lora_A.detach()
            state[f"{name}.lora_B"] = module.lora_B.detach()
    for name, parameter in model.named_parameters():
        if name.endswith("norm.weight"):
            state[name] = parameter.detach()
    state[MASK_ROW_KEY] = model.get_input_embeddings().weight.detach()[mask_id]
    return {key: value.to("cpu", torch.bfloat16).contiguous() for key, value in state.items()}
