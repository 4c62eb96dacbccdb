"""Decoding rules: given one step's block logits, propose tokens and say which positions to commit.

A rule is a frozen config (contracts.Rule): `start_block` returns the block's state as its own object (the fixed-steps
schedule, the credit matrix), and `propose` reads and updates that state. A rule never writes the token buffer and
never counts forward passes: the loop in `loop.py` does both, and it also enforces "at least one commit per step"
(see docs/CREDITDECODING.md for the maths; symbols follow the paper). Labels, presets and capabilities live in the
registry (registry.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from engine.decoding.contracts import Block, Proposal

# CreditDecoding presets (alpha = fusion strength, beta = decay, gamma = boost exponent).
# "paper" is the default: the final paper version (arXiv 2510.06133, ACL 2026) reports its headline numbers with it;
# "dinfer" is the older set shipped in inclusionAI/dInfer's CreditThresholdParallelDecoder.
CREDIT_PRESETS: dict[str, dict[str, float]] = {
    "paper": {"alpha": 0.65, "beta": 0.7, "gamma": 0.2},
    "dinfer": {"alpha": 0.7, "beta": 0.8, "gamma": 0.2},
}
DEFAULT_CREDIT_PRESET = "paper"


def _check(name: str, value: float, low: float, high: float, low_open: bool = False) -> None:
    bad = not low <= value <= high or (low_open and value == low)  # NaN fails the chained comparison
    if bad:
        bracket = "(" if low_open else "["
        raise ValueError(f"{name}={value!r} is out of range; allowed {bracket}{low}, {high}]")


def _top1(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Softmax, its argmax and the argmax's probability. logits (B, Lb, V) float32."""
    probs = torch.softmax(logits, dim=-1)  # (B, Lb, V)
    prob, top1 = probs.max(dim=-1)  # (B, Lb) each
    return probs, top1, prob


def scheduled_commits(confidence: torch.Tensor, masked: torch.Tensor, count: int) -> torch.Tensor:
    """Commit the `count` most confident masked positions of each row (fewer if fewer are masked)."""
    ranked = confidence.masked_fill(~masked, float("-inf"))  # (B, Lb)
    order = ranked.argsort(dim=-1, descending=True, stable=True)  # (B, Lb)
    rank = order.argsort(dim=-1)  # (B, Lb): rank of each position within its row
    return (rank < count) & masked


def fixed_schedule(block_length: int, steps_per_block: int) -> list[int]:
    """LLaDA's per-step commit counts in a block: base each step, the first (Lb % steps) steps one more."""
    base, extra = divmod(block_length, steps_per_block)
    return [base + (1 if k < extra else 0) for k in range(steps_per_block)]


class CreditState:
    """The trace-credit matrix C (B, Lb, V) of one block, with the paper's three operations."""

    def __init__(self, batch: int, block_length: int, vocab: int, device: torch.device) -> None:
        self.credit = torch.zeros(batch, block_length, vocab, dtype=torch.float32, device=device)  # (B, Lb, V)

    def update(self, top1: torch.Tensor, prob: torch.Tensor, masked: torch.Tensor, step_in_block: int,
               beta: torch.Tensor | float, gamma: float) -> None:
        if step_in_block > 0:  # decay is skipped on the block's first step
            self.credit.mul_(beta)
        boost = prob.pow(gamma) * masked  # (B, Lb): enhancement only at still-masked positions
        self.credit.scatter_add_(-1, top1.unsqueeze(-1), boost.unsqueeze(-1))

    def fuse(self, logits: torch.Tensor, alpha: torch.Tensor | float) -> torch.Tensor:
        return logits + alpha * torch.log1p(self.credit)  # (B, Lb, V): l_hat = l + alpha * log(1 + C)


@dataclass(frozen=True)
class Schedule:
    """A fixed-steps block's state: how many positions each step commits, and the decode's noise generator."""

    counts: list[int]  # commits per step of this block (LLaDA's schedule)
    generator: torch.Generator | None  # Gumbel noise

    def count(self, step_in_block: int) -> int:
        return self.counts[min(step_in_block, len(self.counts) - 1)]


def _schedule(steps: int, block: Block) -> Schedule:
    if steps % block.n_blocks:
        raise ValueError(f"steps={steps} must be a multiple of the number of blocks ({block.n_blocks} = "
                         f"gen_length / block_length)")
    if steps // block.n_blocks > block.block_length:
        raise ValueError(f"steps={steps} gives {steps // block.n_blocks} steps per block, more than "
                         f"block_length={block.block_length}; use steps <= gen_length")
    return Schedule(fixed_schedule(block.block_length, steps // block.n_blocks), block.generator)


def _check_steps(steps: object) -> None:
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps={steps!r} must be a positive integer")


def _check_credit(alpha: float, beta: float, gamma: float) -> None:
    if not alpha >= 0:  # also refuses NaN
        raise ValueError(f"alpha={alpha!r} must be >= 0")
    _check("beta", beta, 0.0, 1.0)
    _check("gamma", gamma, 0.0, 1.0)


@dataclass(frozen=True)
class LowConfidence:
    """LLaDA fixed steps: commit a precomputed number of the most confident masked positions per step."""

    steps: int  # total forward passes over the answer; split evenly over the blocks
    temperature: float = 0.0  # Gumbel noise on the logits (float64, as LLaDA); 0 = greedy

    def __post_init__(self) -> None:
        _check_steps(self.steps)
        _check("temperature", self.temperature, 0.0, 100.0)

    def params(self) -> dict:
        return {"steps": self.steps, "temperature": self.temperature}

    def start_block(self, block: Block) -> Schedule:
        return _schedule(self.steps, block)

    def propose(self, logits: torch.Tensor, masked: torch.Tensor, step_in_block: int, state: Schedule) -> Proposal:
        probs, top1, prob = _top1(logits)
        if self.temperature > 0:
            noisy = logits.double()  # (B, Lb, V) float64, as LLaDA
            uniform = torch.rand(noisy.shape, dtype=torch.float64, device=noisy.device, generator=state.generator)
            top1 = (noisy.exp() / (-torch.log(uniform)) ** self.temperature).argmax(dim=-1)  # (B, Lb)
            prob = probs.gather(-1, top1.unsqueeze(-1)).squeeze(-1)  # (B, Lb): clean p of the noisy choice
        commit = scheduled_commits(prob, masked, state.count(step_in_block))
        return Proposal(tokens=top1, confidence=prob, commit=commit, raw_top1=top1, raw_prob=prob)


@dataclass(frozen=True)
class Threshold:
    """Fast-dLLM: commit every masked position whose top-1 probability reaches tau."""

    threshold: float = 0.9  # tau

    def __post_init__(self) -> None:
        _check("threshold", self.threshold, 0.0, 1.0, low_open=True)

    def params(self) -> dict:
        return {"threshold": self.threshold}

    def start_block(self, block: Block) -> None:
        return None  # stateless

    def propose(self, logits: torch.Tensor, masked: torch.Tensor, step_in_block: int, state: None) -> Proposal:
        _, top1, prob = _top1(logits)
        return Proposal(tokens=top1, confidence=prob, commit=(prob >= self.threshold) & masked,
                        raw_top1=top1, raw_prob=prob)


def _fused(logits: torch.Tensor, masked: torch.Tensor, step_in_block: int, credit: CreditState, alpha, beta,
           gamma: float) -> tuple[torch.Tensor, ...]:
    """Update credit and return (fused top-1, fused prob, credit of fused top-1, raw top-1, raw prob)."""
    _, top1, prob = _top1(logits)
    credit.update(top1, prob, masked, step_in_block, beta, gamma)
    _, fused_top1, fused_prob = _top1(credit.fuse(logits, alpha))
    credit_top1 = credit.credit.gather(-1, fused_top1.unsqueeze(-1)).squeeze(-1)  # (B, Lb)
    return fused_top1, fused_prob, credit_top1, top1, prob


@dataclass(frozen=True)
class Credit:
    """CreditDecoding: the threshold rule on logits fused with trace credit (paper symbols tau, alpha, beta, gamma).

    With parameter_free=True, gamma = 1 and alpha_k = beta_k = 1 - (mask ratio of the current block), per row.
    """

    threshold: float = 0.9  # tau: commit when the fused top-1 probability s_hat >= tau
    alpha: float = CREDIT_PRESETS[DEFAULT_CREDIT_PRESET]["alpha"]  # fusion strength in l + alpha log(1 + C)
    beta: float = CREDIT_PRESETS[DEFAULT_CREDIT_PRESET]["beta"]  # per-step decay of the credit
    gamma: float = CREDIT_PRESETS[DEFAULT_CREDIT_PRESET]["gamma"]  # boost exponent: credit += p ** gamma
    parameter_free: bool = False  # the paper's variant with step-dependent alpha_k = beta_k, gamma = 1

    def __post_init__(self) -> None:
        _check("threshold", self.threshold, 0.0, 1.0, low_open=True)
        _check_credit(self.alpha, self.beta, self.gamma)

    def params(self) -> dict:
        return {"threshold": self.threshold, "alpha": self.alpha, "beta": self.beta, "gamma": self.gamma,
                "parameter_free": self.parameter_free}

    def start_block(self, block: Block) -> CreditState:
        return CreditState(block.batch, block.block_length, block.vocab, block.device)

    def _alpha_beta(self, masked: torch.Tensor) -> tuple[torch.Tensor | float, torch.Tensor | float, float]:
        if not self.parameter_free:
            return self.alpha, self.beta, self.gamma
        unmasked_ratio = 1.0 - masked.float().mean(dim=-1)[:, None, None]  # (B, 1, 1): 1 - mask ratio
        return unmasked_ratio, unmasked_ratio, 1.0

    def propose(self, logits: torch.Tensor, masked: torch.Tensor, step_in_block: int, state: CreditState
                ) -> Proposal:
        fused_top1, fused_prob, credit_top1, top1, prob = _fused(logits, masked, step_in_block, state,
                                                                 *self._alpha_beta(masked))
        return Proposal(tokens=fused_top1, confidence=fused_prob, commit=(fused_prob >= self.threshold) & masked,
                        raw_top1=top1, raw_prob=prob, credit_top1=credit_top1)


@dataclass(frozen=True)
class CreditSchedule:
    """A credit-in-fixed-steps block's state: the schedule and the credit matrix."""

    schedule: Schedule
    credit: CreditState


@dataclass(frozen=True)
class CreditLowConfidence:
    """Credit fused into LLaDA's fixed-steps rule (the paper's Table 3): the fused confidence ranks positions."""

    steps: int  # total forward passes, split evenly over blocks (as LowConfidence)
    alpha: float = CREDIT_PRESETS[DEFAULT_CREDIT_PRESET]["alpha"]  # fusion strength
    beta: float = CREDIT_PRESETS[DEFAULT_CREDIT_PRESET]["beta"]  # credit decay
    gamma: float = CREDIT_PRESETS[DEFAULT_CREDIT_PRESET]["gamma"]  # boost exponent

    def __post_init__(self) -> None:
        _check_steps(self.steps)
        _check_credit(self.alpha, self.beta, self.gamma)

    def params(self) -> dict:
        return {"steps": self.steps, "alpha": self.alpha, "beta": self.beta, "gamma": self.gamma}

    def start_block(self, block: Block) -> CreditSchedule:
        return CreditSchedule(_schedule(self.steps, block),
                              CreditState(block.batch, block.block_length, block.vocab, block.device))

    def propose(self, logits: torch.Tensor, masked: torch.Tensor, step_in_block: int, state: CreditSchedule
                ) -> Proposal:
        fused_top1, fused_prob, credit_top1, top1, prob = _fused(logits, masked, step_in_block, state.credit,
                                                                 self.alpha, self.beta, self.gamma)
        return Proposal(tokens=fused_top1, confidence=fused_prob,
                        commit=scheduled_commits(fused_prob, masked, state.schedule.count(step_in_block)),
                        raw_top1=top1, raw_prob=prob, credit_top1=credit_top1)
