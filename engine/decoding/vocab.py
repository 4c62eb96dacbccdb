"""The rules' passes over the vocabulary, fused by torch.compile on a GPU.

A step's logits are (B, Lb, V) float32 with V up to 126k and B * Lb rows as few as 32. Eager PyTorch runs each
softmax and max over such rows with one thread block per row (32 of an H200's 132 SMs) and writes every
intermediate (the softmax, log(1 + C), the fused logits) back to memory; inductor splits the reductions over the SMs
and fuses the arithmetic into them. On a CPU the same functions run eagerly (the numbers every CPU test checks);
compiled, they compute the same maths with another summation order (equal to ~1e-7, tests/test_vocab_passes.py).

`VocabPass(fn)` is `fn` on a CPU and compiled on CUDA; `COMPILE_ON_GPU` switches the compiled path off for a
side-by-side benchmark (lab/benchmarks/gpu_cache.py --eager-rules).
"""
from __future__ import annotations

from typing import Callable

import torch

COMPILE_ON_GPU = True  # benchmarks set False to time the eager passes beside the compiled ones


class VocabPass:
    """`fn` eagerly on a CPU tensor, torch.compile'd (inductor) on a CUDA one; `compiled(backend)` for tests."""

    def __init__(self, fn: Callable) -> None:
        self.fn = fn
        self._compiled: dict[str, Callable] = {}

    def compiled(self, backend: str = "inductor") -> Callable:
        if backend not in self._compiled:
            self._compiled[backend] = torch.compile(self.fn, backend=backend)
        return self._compiled[backend]

    def __call__(self, logits: torch.Tensor, *args):
        if logits.is_cuda and COMPILE_ON_GPU:
            return self.compiled()(logits, *args)
        return self.fn(logits, *args)


def _top1(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The argmax (B, Lb) of logits (B, Lb, V) float32 and its softmax probability (B, Lb)."""
    prob, top1 = torch.softmax(logits, dim=-1).max(dim=-1)
    return top1, prob


def _credit_step(logits: torch.Tensor, credit: torch.Tensor, masked: torch.Tensor, decay: bool,
                 alpha: torch.Tensor | float, beta: torch.Tensor | float, gamma: float
                 ) -> tuple[torch.Tensor, ...]:
    """One CreditDecoding step (docs/CREDITDECODING.md) over the credit matrix `credit` (B, Lb, V), updated in place:
    decay by beta (not on a block's first step), boost the raw top-1 by p ** gamma at masked positions, fuse
    l + alpha log(1 + C). Returns (fused top-1, its probability, its credit, raw top-1, its probability), (B, Lb)
    each."""
    top1, prob = _top1(logits)
    if decay:
        credit.mul_(beta)
    boost = prob.pow(gamma) * masked  # (B, Lb): enhancement only at still-masked positions
    credit.scatter_add_(-1, top1.unsqueeze(-1), boost.unsqueeze(-1))
    fused_top1, fused_prob = _top1(logits + alpha * torch.log1p(credit))  # (B, Lb) each
    credit_top1 = credit.gather(-1, fused_top1.unsqueeze(-1)).squeeze(-1)  # (B, Lb)
    return fused_top1, fused_prob, credit_top1, top1, prob


top1 = VocabPass(_top1)
credit_step = VocabPass(_credit_step)
