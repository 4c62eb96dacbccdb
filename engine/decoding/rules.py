"""Decoding rules: given one step's block logits, propose tokens and say which positions to commit.

A rule never writes the token buffer and never counts forward passes: the loop in `loop.py` does both, and it also
enforces "at least one commit per step". A rule's only state is the credit matrix of the credit rules, created in
`start_block` and reset there (see docs/CREDITDECODING.md for the maths; symbols follow the paper).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

# CreditDecoding presets (alpha = fusion strength, beta = decay, gamma = boost exponent).
# "paper" is the default: the final paper version (arXiv 2510.06133, ACL 2026) reports its headline numbers with it;
# "dinfer" is the older set shipped in inclusionAI/dInfer's CreditThresholdParallelDecoder.
CREDIT_PRESETS: dict[str, dict[str, float]] = {
    "paper": {"alpha": 0.65, "beta": 0.7, "gamma": 0.2},
    "dinfer": {"alpha": 0.7, "beta": 0.8, "gamma": 0.2},
}
DEFAULT_CREDIT_PRESET = "paper"


@dataclass(frozen=True)
class Proposal:
    """What a rule proposes for one step over the current block (B rows, Lb positions)."""

    tokens: torch.Tensor  # (B, Lb) long: the token each position would get if committed
    confidence: torch.Tensor  # (B, Lb) float: the score used to rank positions (fused for credit rules)
    commit: torch.Tensor  # (B, Lb) bool: positions the rule wants committed (the loop keeps only masked ones)
    raw_top1: torch.Tensor  # (B, Lb) long: argmax of the raw (or noisy, with temperature) logits
    raw_prob: torch.Tensor  # (B, Lb) float: softmax probability of raw_top1 under the raw logits
    credit_top1: torch.Tensor | None = None  # (B, Lb) float: credit of the proposed token (credit rules only)


def _check(name: str, value: float, low: float, high: float, low_open: bool = False) -> None:
    bad = value < low or value > high or (low_open and value == low)
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


@dataclass
class LowConfidence:
    """LLaDA fixed steps: commit a precomputed number of the most confident masked positions per step."""

    steps: int  # total forward passes over the answer; split evenly over the blocks
    temperature: float = 0.0  # Gumbel noise on the logits (float64, as LLaDA); 0 = greedy
    name: str = field(default="low_confidence", init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"steps={self.steps!r} must be a positive integer")
        _check("temperature", self.temperature, 0.0, 100.0)

    def params(self) -> dict:
        return {"steps": self.steps, "temperature": self.temperature}

    def start_block(self, batch: int, block_length: int, vocab: int, device: torch.device,
                    n_blocks: int, generator: torch.Generator | None) -> None:
        if self.steps % n_blocks:
            raise ValueError(f"steps={self.steps} must be a multiple of the number of blocks ({n_blocks} = "
                             f"gen_length / block_length)")
        if self.steps // n_blocks > block_length:
            raise ValueError(f"steps={self.steps} gives {self.steps // n_blocks} steps per block, more than "
                             f"block_length={block_length}; use steps <= gen_length")
        self._schedule = fixed_schedule(block_length, self.steps // n_blocks)
        self._generator = generator

    def count(self, step_in_block: int) -> int:
        """How many positions this block's step commits (the schedule fixed at the block's start)."""
        return self._schedule[min(step_in_block, len(self._schedule) - 1)]

    def propose(self, logits: torch.Tensor, masked: torch.Tensor, step_in_block: int) -> Proposal:
        probs, top1, prob = _top1(logits)
        if self.temperature > 0:
            noisy = logits.double()  # (B, Lb, V) float64, as LLaDA
            uniform = torch.rand(noisy.shape, dtype=torch.float64, device=noisy.device, generator=self._generator)
            top1 = (noisy.exp() / (-torch.log(uniform)) ** self.temperature).argmax(dim=-1)  # (B, Lb)
            prob = probs.gather(-1, top1.unsqueeze(-1)).squeeze(-1)  # (B, Lb): clean p of the noisy choice
        commit = scheduled_commits(prob, masked, self.count(step_in_block))
        return Proposal(tokens=top1, confidence=prob, commit=commit, raw_top1=top1, raw_prob=prob)


@dataclass
class Threshold:
    """Fast-dLLM: commit every masked position whose top-1 probability reaches tau."""

    threshold: float = 0.9  # tau
    name: str = field(default="threshold", init=False)

    def __post_init__(self) -> None:
        _check("threshold", self.threshold, 0.0, 1.0, low_open=True)

    def params(self) -> dict:
        return {"threshold": self.threshold}

    def start_block(self, batch: int, block_length: int, vocab: int, device: torch.device,
                    n_blocks: int, generator: torch.Generator | None) -> None:
        pass  # stateless

    def propose(self, logits: torch.Tensor, masked: torch.Tensor, step_in_block: int) -> Proposal:
        _, top1, prob = _top1(logits)
        return Proposal(tokens=top1, confidence=prob, commit=(prob >= self.threshold) & masked,
                        raw_top1=top1, raw_prob=prob)


@dataclass
class Credit:
    """CreditDecoding: the threshold rule on logits fused with trace credit (paper symbols tau, alpha, beta, gamma).

    With parameter_free=True, gamma = 1 and alpha_k = beta_k = 1 - (mask ratio of the current block), per row.
    """

    threshold: float = 0.9  # tau: commit when the fused top-1 probability s_hat >= tau
    alpha: float = CREDIT_PRESETS[DEFAULT_CREDIT_PRESET]["alpha"]  # fusion strength in l + alpha log(1 + C)
    beta: float = CREDIT_PRESETS[DEFAULT_CREDIT_PRESET]["beta"]  # per-step decay of the credit
    gamma: float = CREDIT_PRESETS[DEFAULT_CREDIT_PRESET]["gamma"]  # boost exponent: credit += p ** gamma
    parameter_free: bool = False  # the paper's variant with step-dependent alpha_k = beta_k, gamma = 1
    name: str = field(default="credit", init=False)

    def __post_init__(self) -> None:
        _check("threshold", self.threshold, 0.0, 1.0, low_open=True)
        if self.alpha < 0:
            raise ValueError(f"alpha={self.alpha!r} must be >= 0")
        _check("beta", self.beta, 0.0, 1.0)
        _check("gamma", self.gamma, 0.0, 1.0)

    @classmethod
    def preset(cls, name: str, threshold: float = 0.9) -> "Credit":
        if name == "parameter_free":
            return cls(threshold=threshold, gamma=1.0, parameter_free=True)
        if name not in CREDIT_PRESETS:
            allowed = ", ".join([*CREDIT_PRESETS, "parameter_free"])
            raise ValueError(f"preset={name!r} is unknown; allowed: {allowed}")
        return cls(threshold=threshold, **CREDIT_PRESETS[name])

    def params(self) -> dict:
        return {"threshold": self.threshold, "alpha": self.alpha, "beta": self.beta, "gamma": self.gamma,
                "parameter_free": self.parameter_free}

    def start_block(self, batch: int, block_length: int, vocab: int, device: torch.device,
                    n_blocks: int, generator: torch.Generator | None) -> None:
        self._state = CreditState(batch, block_length, vocab, device)

    def _alpha_beta(self, masked: torch.Tensor) -> tuple[torch.Tensor | float, torch.Tensor | float, float]:
        if not self.parameter_free:
            return self.alpha, self.beta, self.gamma
        unmasked_ratio = 1.0 - masked.float().mean(dim=-1)[:, None, None]  # (B, 1, 1): 1 - mask ratio
        return unmasked_ratio, unmasked_ratio, 1.0

    def fused(self, logits: torch.Tensor, masked: torch.Tensor, step_in_block: int) -> tuple[torch.Tensor, ...]:
        """Update credit and return (fused top-1, fused prob, credit of fused top-1, raw top-1, raw prob)."""
        _, top1, prob = _top1(logits)
        alpha, beta, gamma = self._alpha_beta(masked)
        self._state.update(top1, prob, masked, step_in_block, beta, gamma)
        _, fused_top1, fused_prob = _top1(self._state.fuse(logits, alpha))
        credit_top1 = self._state.credit.gather(-1, fused_top1.unsqueeze(-1)).squeeze(-1)  # (B, Lb)
        return fused_top1, fused_prob, credit_top1, top1, prob

    def propose(self, logits: torch.Tensor, masked: torch.Tensor, step_in_block: int) -> Proposal:
        fused_top1, fused_prob, credit_top1, top1, prob = self.fused(logits, masked, step_in_block)
        return Proposal(tokens=fused_top1, confidence=fused_prob, commit=(fused_prob >= self.threshold) & masked,
                        raw_top1=top1, raw_prob=prob, credit_top1=credit_top1)


@dataclass
class CreditLowConfidence:
    """Credit fused into LLaDA's fixed-steps rule (the paper's Table 3): the fused confidence ranks positions."""

    steps: int  # total forward passes, split evenly over blocks (as LowConfidence)
    alpha: float = CREDIT_PRESETS[DEFAULT_CREDIT_PRESET]["alpha"]  # fusion strength
    beta: float = CREDIT_PRESETS[DEFAULT_CREDIT_PRESET]["beta"]  # credit decay
    gamma: float = CREDIT_PRESETS[DEFAULT_CREDIT_PRESET]["gamma"]  # boost exponent
    name: str = field(default="credit_low_confidence", init=False)

    def __post_init__(self) -> None:
        self._schedule_rule = LowConfidence(self.steps)
        self._credit_rule = Credit(threshold=1.0, alpha=self.alpha, beta=self.beta, gamma=self.gamma)

    def params(self) -> dict:
        return {"steps": self.steps, "alpha": self.alpha, "beta": self.beta, "gamma": self.gamma}

    def start_block(self, batch: int, block_length: int, vocab: int, device: torch.device,
                    n_blocks: int, generator: torch.Generator | None) -> None:
        self._schedule_rule.start_block(batch, block_length, vocab, device, n_blocks, generator)
        self._credit_rule.start_block(batch, block_length, vocab, device, n_blocks, generator)

    def propose(self, logits: torch.Tensor, masked: torch.Tensor, step_in_block: int) -> Proposal:
        fused_top1, fused_prob, credit_top1, top1, prob = self._credit_rule.fused(logits, masked, step_in_block)
        return Proposal(tokens=fused_top1, confidence=fused_prob,
                        commit=scheduled_commits(fused_prob, masked, self._schedule_rule.count(step_in_block)),
                        raw_top1=top1, raw_prob=prob, credit_top1=credit_top1)


STRATEGIES = ("low_confidence", "threshold", "credit", "credit_low_confidence")


def make_strategy(name: str, **params) -> LowConfidence | Threshold | Credit | CreditLowConfidence:
    """Build a rule from its name and parameters (as recorded in a trace's meta or given on the CLI)."""
    classes = {"low_confidence": LowConfidence, "threshold": Threshold, "credit": Credit,
               "credit_low_confidence": CreditLowConfidence}
    if name not in classes:
        raise ValueError(f"strategy={name!r} is unknown; allowed: {', '.join(STRATEGIES)}")
    return classes[name](**params)
