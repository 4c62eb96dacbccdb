"""Pieces the mixture-of-experts families share (LLaDA-MoE, LLaDA2): routed experts, a SwiGLU MLP (Dream's MLP too) and
the special ids of the tokenizer both use.

Routed experts run as two grouped matrix products (`torch.nn.functional.grouped_mm`): the (token, expert) pairs are
sorted by expert, the expert weights are stored stacked (E, out, in), and one call multiplies every expert's rows by
its own weights, the groups given by a device tensor of offsets. So there is no Python loop over tokens and none over
experts either: the whole block is a fixed sequence of kernels with no host synchronisation, which a CUDA graph can
capture, and each expert's weights are read once per forward however many tokens chose it (a decoding step on a
288-token canvas touches nearly all of them; reading weights is what bounds its time on a GPU).

The checkpoints store every expert as three separate matrices (`experts.{j}.gate_proj.weight`, `up_proj`,
`down_proj`); `RoutedExperts` reads and writes exactly those names (its `state_dict` hooks), so the shared loader
checks and loads it like any other module.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engine.models.native import SpecialIds
from engine.models.stacked import StackedLinear, stacked_names

# Both families use inclusionAI's Ling-2.0 tokenizer (157184 ids). Mask 156895: LLaDA2's generate() default, the
# LLaDA-MoE model card's generate(mask_id=156895) and dInfer for both. Stop and pad 156892 <|endoftext|>: dInfer's
# eos_id for both (its benchmarks cut answers there), LLaDA2's generate() eos_id, both configs' pad_token_id.
MASK_ID, EOS_ID = 156895, 156892
ROLE_END = "<|role_end|>"  # closes a turn in the Ling chat template; its id is read from the folder's tokenizer


class SwiGLU(nn.Module):
    """down(silu(gate(x)) * up(x)), bias-free, with the checkpoints' names gate_proj / up_proj / down_proj."""

    def __init__(self, hidden: int, inner: int) -> None:
        super().__init__()
        self.gate_up = StackedLinear(hidden, {"gate_proj": inner, "up_proj": inner}, bias=False)
        self.down_proj = nn.Linear(inner, hidden, bias=False)
        stacked_names(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x)  # (..., inner) each: views of one product
        return self.down_proj(F.silu(gate) * up)


class RoutedExperts(nn.Module):
    """E SwiGLU experts of width `inner`, stored stacked: gate_up (E, 2 * inner, hidden) = gate rows over up rows,
    down (E, hidden, inner)."""

    def __init__(self, num_experts: int, hidden: int, inner: int) -> None:
        super().__init__()
        self.num_experts, self.inner = num_experts, inner
        self.gate_up = nn.Parameter(torch.empty(num_experts, 2 * inner, hidden))
        self.down = nn.Parameter(torch.empty(num_experts, hidden, inner))

    def forward(self, x: torch.Tensor, experts: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """x (T, D); experts (T, k) chosen ids; weights (T, k) -> sum_k weights * expert_k(x), (T, D) in x's dtype.
        The weighted sum is taken in `weights`' dtype (callers pick the reference's precision)."""
        tokens, k = experts.shape
        flat = experts.reshape(-1)  # (T*k,) expert of each (token, slot) pair
        order = torch.argsort(flat, stable=True)  # (T*k,) pairs grouped by expert
        counts = torch.zeros(self.num_experts, dtype=torch.long, device=x.device)
        counts.index_add_(0, flat, torch.ones_like(flat))  # (E,) pairs per expert; bincount would sync the host
        offsets = counts.cumsum(0).to(torch.int32)  # (E,) end of each expert's group
        rows = x[order // k]  # (T*k, D) the token of each sorted pair
        gate, up = F.grouped_mm(rows, self.gate_up.transpose(1, 2), offs=offsets).split(self.inner, dim=-1)
        out = F.grouped_mm(F.silu(gate) * up, self.down.transpose(1, 2), offs=offsets)  # (T*k, D)
        unsorted = torch.empty_like(out)
        unsorted[order] = out  # (T*k, D) back in (token, slot) order: a permutation, no atomics
        mixed = (unsorted.view(tokens, k, -1).to(weights.dtype) * weights[:, :, None]).sum(dim=1)  # (T, D)
        return mixed.to(x.dtype)

    def _names(self, prefix: str) -> list[tuple[int, str]]:
        return [(j, f"{prefix}{j}.{part}.weight") for j in range(self.num_experts)
                for part in ("gate_proj", "up_proj", "down_proj")]

    def _save_to_state_dict(self, destination: dict, prefix: str, keep_vars: bool) -> None:
        gate_up = self.gate_up if keep_vars else self.gate_up.detach()
        down = self.down if keep_vars else self.down.detach()
        for j in range(self.num_experts):
            destination[f"{prefix}{j}.gate_proj.weight"] = gate_up[j, :self.inner]  # (inner, hidden)
            destination[f"{prefix}{j}.up_proj.weight"] = gate_up[j, self.inner:]
            destination[f"{prefix}{j}.down_proj.weight"] = down[j]  # (hidden, inner)

    def _load_from_state_dict(self, state_dict: dict, prefix: str, local_metadata: dict, strict: bool,
                              missing_keys: list, unexpected_keys: list, error_msgs: list) -> None:
        names = [name for _, name in self._names(prefix)]
        missing = [name for name in names if name not in state_dict]
        missing_keys.extend(missing)
        if strict:
            known = set(names)
            unexpected_keys.extend(key for key in state_dict if key.startswith(prefix) and key not in known)
        if missing:
            return

        def stacked(part: str) -> torch.Tensor:
            return torch.stack([state_dict[f"{prefix}{j}.{part}.weight"] for j in range(self.num_experts)])

        gate_up = torch.cat([stacked("gate_proj"), stacked("up_proj")], dim=1)  # (E, 2 * inner, hidden)
        down = stacked("down_proj")  # (E, hidden, inner)
        for name, value in (("gate_up", gate_up), ("down", down)):
            param = getattr(self, name)
            if value.shape != param.shape:
                error_msgs.append(f"{prefix}*: experts stack to {tuple(value.shape)}, expected {tuple(param.shape)}")
            elif local_metadata.get("assign_to_params_buffers", False):
                setattr(self, name, nn.Parameter(value, requires_grad=param.requires_grad))
            else:
                with torch.no_grad():
                    param.copy_(value)


def ling_special_ids(raw: dict, tokenizer) -> SpecialIds:
    """Mask from config.json's `mask_token_id` when named (the published configs do not), else 156895; stop and pad
    on `eos_token_id`, else `pad_token_id`, else 156892; the folder tokenizer's <|role_end|> also ends the text."""
    eos = raw.get("eos_token_id", raw.get("pad_token_id", EOS_ID))
    eos = int(eos[0] if isinstance(eos, list) else eos)
    ends = (eos,)
    if tokenizer is not None and ROLE_END in tokenizer.get_vocab():
        role_end = int(tokenizer.convert_tokens_to_ids(ROLE_END))
        ends += (role_end,) if role_end != eos else ()
    return SpecialIds(mask_id=int(raw.get("mask_token_id", MASK_ID)), eos_ids=ends)
