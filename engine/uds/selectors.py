"""Selectors: given a micro-batch's scores, which K of the B candidates get the gradient step.

Every selector maps the same `CandidateScores` to one score per candidate; `choose` keeps the top K (ties broken by
position, so picks are deterministic). Full keeps everything. Adding a selector is one small class and one entry in
SELECTORS.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch


@dataclass(frozen=True)
class CandidateScores:
    s_intra: torch.Tensor  # float64 (B,) nuclear norm of the scored rows
    s_inter: torch.Tensor  # float64 (B,) mean distance to the buffer (0 while it is empty)
    loss: torch.Tensor  # float64 (B,) per-sample response-token loss
    alpha: float  # weight of s_inter in the UDS total

    @property
    def total(self) -> torch.Tensor:
        return self.s_intra + self.alpha * self.s_inter  # (B,)


class Selector(Protocol):
    name: str  # key in SELECTORS and in the run log config
    keeps_all: bool  # True only for Full: every candidate is trained on

    def score(self, scores: CandidateScores, generator: torch.Generator) -> torch.Tensor:
        """float64 (B,): higher is kept first."""


@dataclass(frozen=True)
class UDS:
    name: str = "uds"
    keeps_all: bool = False

    def score(self, scores: CandidateScores, generator: torch.Generator) -> torch.Tensor:
        return scores.total


@dataclass(frozen=True)
class UtilityOnly:
    name: str = "utility"
    keeps_all: bool = False

    def score(self, scores: CandidateScores, generator: torch.Generator) -> torch.Tensor:
        return scores.s_intra


@dataclass(frozen=True)
class DiversityOnly:
    name: str = "diversity"
    keeps_all: bool = False

    def score(self, scores: CandidateScores, generator: torch.Generator) -> torch.Tensor:
        return scores.s_inter


@dataclass(frozen=True)
class MaxLoss:
    name: str = "maxloss"
    keeps_all: bool = False

    def score(self, scores: CandidateScores, generator: torch.Generator) -> torch.Tensor:
        return scores.loss


@dataclass(frozen=True)
class Random:
    name: str = "random"
    keeps_all: bool = False

    def score(self, scores: CandidateScores, generator: torch.Generator) -> torch.Tensor:
        return torch.rand(scores.s_intra.shape[0], generator=generator, dtype=torch.float64)


@dataclass(frozen=True)
class Full:
    name: str = "full"
    keeps_all: bool = True

    def score(self, scores: CandidateScores, generator: torch.Generator) -> torch.Tensor:
        return scores.total


SELECTORS: dict[str, type] = {cls().name: cls for cls in (UDS, Random, MaxLoss, UtilityOnly, DiversityOnly, Full)}


def make_selector(name: str) -> Selector:
    if name not in SELECTORS:
        raise ValueError(f"selector={name!r} is unknown; use one of {sorted(SELECTORS)}")
    return SELECTORS[name]()


def top_k(score: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(selected bool (B,), rank long (B,)): the k highest scores, ties to the lower position; rank 0 = highest."""
    order = torch.argsort(-score, stable=True)  # (B,) positions, best first
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel())
    return rank < k, rank
