"""Projections of one input run as one matmul (LLaDA's and Dream's q/k/v, and their MLPs' gate and up), with the
checkpoint's tensor names kept: the module stores the parts' weights stacked, and its parent's state_dict and
load_state_dict still speak the parts' names (hooks), so checkpoint.check_tensors, the loader and the fixtures see
the published layout. Why hooks rather than parameters that are views into the stacked tensor: `.to()`,
`to_empty()` and `load_state_dict(assign=True)` replace each parameter on its own, which would silently break views.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class StackedLinear(nn.Linear):
    """Linear maps of one input, stacked by output rows and run as one matmul: `weight` (sum of the widths, in) holds
    the parts' weights one under another (`bias` likewise), and `forward` returns each part's output, views of the
    one product. One wide GEMM fills a GPU better than several narrow ones: LLaDA-8B's q, k and v at 288 x 4096 x 4096
    each make 128 output tiles for an H200's 132 SMs (docs/GPU_NOTES.md). `stacked_names` on the parent makes its
    state_dict name the parts as the checkpoint does."""

    def __init__(self, in_features: int, parts: dict[str, int], bias: bool) -> None:
        super().__init__(in_features, sum(parts.values()), bias=bias)
        self.parts = dict(parts)  # checkpoint name under the parent (e.g. "q_proj") -> output width, stacking order
        self.stacked = True  # False: one matmul per part over row slices of the same weight, the layout before
        #                      stacking, which lab/benchmarks/gpu_cache.py --split measures side by side

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """x (..., in) -> one (..., width) per part, in stacking order."""
        widths = list(self.parts.values())
        if self.stacked:
            return super().forward(x).split(widths, dim=-1)
        biases = [None] * len(widths) if self.bias is None else self.bias.split(widths)
        return tuple(F.linear(x, w, b) for w, b in zip(self.weight.split(widths), biases))


def stacked_names(parent: nn.Module) -> None:
    """Make `parent`'s state_dict and load_state_dict speak the checkpoint's names for its StackedLinear children:
    saving, each part appears as `{part}.weight` (`.bias`), a row slice of the stacked tensor; loading, the parts are
    stacked (a copy) into the child. Checkpoints, fixtures and checkpoint.check_tensors so see the published names."""
    parent.register_state_dict_post_hook(_split_stacked)
    parent.register_load_state_dict_pre_hook(_stack_parts)


def stack_in_place(module: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Stack the parts of every StackedLinear under `module` inside `state` itself, dropping each part as it goes.
    A loader that holds the only references calls this before load_state_dict: stacking there works on a copy of
    the dict, so every part would stay alive until loading ends (~9.7 GB more for LLaDA-8B in bf16)."""
    for name, sub in module.named_modules():
        _stack_parts(sub, state, f"{name}." if name else "")


def _stacked_children(parent: nn.Module) -> list[tuple[str, StackedLinear]]:
    return [(name, child) for name, child in parent.named_children() if isinstance(child, StackedLinear)]


def _split_stacked(parent: nn.Module, state: dict, prefix: str, local_metadata: dict) -> None:
    """After `parent` and its children saved (their entries are the dict's last): each stacked tensor becomes its
    parts, in its place, so the order is the checkpoint module's (q, k, v, then the output projection)."""
    stacked = {f"{prefix}{name}.{kind}": child for name, child in _stacked_children(parent)
               for kind in ("weight", "bias")}
    own = [(key, state.pop(key)) for key in [key for key in state if key.startswith(prefix)]]
    for key, value in own:
        child = stacked.get(key)
        if child is None:
            state[key] = value
            continue
        kind = key.rsplit(".", 1)[1]
        for part, piece in zip(child.parts, value.split(list(child.parts.values()))):  # (width, in) or (width,)
            state[f"{prefix}{part}.{kind}"] = piece


def _stack_parts(parent: nn.Module, state: dict, prefix: str, *_) -> None:
    """Before `parent` loads (load_state_dict hands hooks its own copy of the dict): the parts, when all are there,
    become the child's stacked tensor; partial parts stay, and strict loading names them."""
    for name, child in _stacked_children(parent):
        for kind in ("weight", "bias"):
            keys = [f"{prefix}{part}.{kind}" for part in child.parts]
            if all(key in state for key in keys):
                state[f"{prefix}{name}.{kind}"] = torch.cat([state.pop(key) for key in keys])
