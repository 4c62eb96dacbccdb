"""The other way to ship a small delta: fine-tune every projection fully, then compress each weight change to rank r.

The compressed file has exactly the LoRA file's tensors and shapes (A (r, in), B (out, r), norms, mask row) with
scale 1 (alpha = rank), so the loader merges either kind the same way and the two methods are compared at equal
bytes. The truncation keeps the r largest singular directions of each change W_tuned - W_base (the best rank-r
approximation in Frobenius norm); the share of the change's energy it keeps is logged per projection.
"""
from __future__ import annotations

import torch
from torch import nn

from lab.bundled.lora import MASK_ROW_KEY, adapted_linears, train_norms_and_mask_row


def prepare_full(model: nn.Module, mask_id: int) -> list[nn.Parameter]:
    """Unfreeze every projection and norm; the embedding (tied to the output head) trains only in the mask row.
    Returns the trainable parameters."""
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    trainable: list[nn.Parameter] = []
    for _, _, _, linear in adapted_linears(model):
        linear.weight.requires_grad_(True)
        trainable.append(linear.weight)
    return trainable + train_norms_and_mask_row(model, mask_id)


@torch.no_grad()
def compress_full(tuned: nn.Module, base: nn.Module, rank: int, mask_id: int) -> tuple[dict[str, torch.Tensor],
                                                                                           dict[str, float]]:
    """(a LoRA-format state in bfloat16 with scale 1, the kept energy share of each projection's change)."""
    base_weights = {name: linear.weight for name, _, _, linear in adapted_linears(base)}
    state: dict[str, torch.Tensor] = {}
    kept: dict[str, float] = {}
    for name, _, _, linear in adapted_linears(tuned):
        delta = (linear.weight.float() - base_weights[name].float())  # (out, in)
        u, s, vh = torch.linalg.svd(delta, full_matrices=False)  # s descending
        r = min(rank, s.numel())
        root = s[:r].sqrt()
        a = torch.zeros(rank, delta.shape[1], device=delta.device)
        b = torch.zeros(delta.shape[0], rank, device=delta.device)
        a[:r] = root[:, None] * vh[:r]  # (r, in)
        b[:, :r] = u[:, :r] * root[None, :]  # (out, r)
        state[f"{name}.lora_A"], state[f"{name}.lora_B"] = a, b
        total = float((s ** 2).sum())
        kept[name] = float((s[:r] ** 2).sum()) / total if total > 0 else 1.0
    for name, parameter in tuned.named_parameters():
        if name.endswith("norm.weight"):
            state[name] = parameter.detach()
    state[MASK_ROW_KEY] = tuned.get_input_embeddings().weight.detach()[mask_id]
    return {key: value.to("cpu", torch.bfloat16).contiguous() for key, value in state.items()}, kept
