"""What the decoding loop, its rules and its observers agree on, in one place.

- A **rule** is a frozen config (what the rule is) with two methods: `start_block(block)` returns the per-block state
  the rule needs (a fresh object each block; the config never changes), and `propose(logits, masked, step_in_block,
  state)` returns a `Proposal`. Rules never write tokens or count forwards: the loop does (loop.py).
- A **model callable** maps ids (B, L) to logits (B, L, V). It may add `block_logits(ids, start, stop)` (the logit
  rows the loop needs, the block's), and a cached one (engine/models/kv_forward.py) also `cache` (a CacheConfig) and
  `start_block(start, stop)`, which the loop calls before a block's first step with the block's canvas positions; the
  callable counts the block's steps itself and decides, by `cache.refreshes(step_in_block)`, when to recompute.
- An **observer** sees a decode begin (`start`), every forward pass (`step`, CPU copies) and the result (`end`). The
  trace recorder is one; the app's live view is another. Raising `DecodeCancelled` in `step` stops the decode.
Shapes: B = batch rows, Lb = block_length, V = vocabulary, k = top_k, G = gen_length, P = prompt length.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Protocol

import numpy as np
import torch

from engine.decoding.cache import CacheConfig

if TYPE_CHECKING:  # for the annotation only; trace.py imports this module
    from engine.decoding.trace import Trace

ModelFn = Callable[[torch.Tensor], torch.Tensor]  # ids (B, L) long -> logits (B, L, V) float


class DecodeCancelled(Exception):
    """Raised by an observer to stop a decode (the app's Cancel button, a client that went away)."""


@dataclass(frozen=True)
class Block:
    """What a rule may know when a block starts."""

    batch: int  # B
    block_length: int  # Lb
    vocab: int  # V
    n_blocks: int  # gen_length // block_length
    device: torch.device
    generator: torch.Generator | None  # the decode's seeded generator (Gumbel noise)


@dataclass(frozen=True)
class Proposal:
    """What a rule proposes for one step over the current block."""

    tokens: torch.Tensor  # (B, Lb) long: the token each position would get if committed
    confidence: torch.Tensor  # (B, Lb) float: the score used to rank positions (fused for credit rules)
    commit: torch.Tensor  # (B, Lb) bool: positions the rule wants committed (the loop keeps only masked ones)
    raw_top1: torch.Tensor  # (B, Lb) long: argmax of the raw (or noisy, with temperature) logits
    raw_prob: torch.Tensor  # (B, Lb) float: softmax probability of raw_top1 under the raw logits
    credit_top1: torch.Tensor | None = None  # (B, Lb) float: credit of the proposed token (credit rules only)


class Rule(Protocol):
    """A decoding rule: a frozen config plus the two calls the loop makes (see the registry for its metadata)."""

    def params(self) -> dict[str, Any]: ...  # the knobs as recorded in a trace

    def start_block(self, block: Block) -> Any: ...  # the per-block state (None for stateless rules)

    def propose(self, logits: torch.Tensor, masked: torch.Tensor, step_in_block: int, state: Any) -> Proposal: ...


@dataclass(frozen=True)
class DecodeStart:
    """What observers learn when a decode begins."""

    prompt_ids: torch.Tensor  # (B, P)
    rule: Rule
    gen_length: int  # G
    block_length: int  # Lb
    mask_id: int
    eos_id: int | None
    shift: bool  # Dream-style alignment: logits[i-1] predict position i
    seed: int
    top_k: int  # k
    cache: CacheConfig = CacheConfig()  # the model callable's key/value cache (mode "none" without one)


@dataclass(frozen=True)
class StepEvent:
    """One forward pass, as observers see it (all numpy, on the CPU)."""

    step: int  # 0-based forward-pass index (= NFE - 1)
    block: int  # block index
    step_in_block: int  # 0-based step inside the block
    seconds: float  # wall time of this step (forward + rule + copies)
    active: np.ndarray  # (B,) bool: rows still decoding (not stopped at EOS)
    masked_before: np.ndarray  # (B, Lb) bool: positions masked when the step began
    committed: np.ndarray  # (B, Lb) bool: positions committed by this step
    tokens: np.ndarray  # (B, G) int64: the answer after this step (mask id where still masked)
    raw_top1_id: np.ndarray  # (B, Lb) int64
    raw_top1_prob: np.ndarray  # (B, Lb) float32
    fused_top1_id: np.ndarray  # (B, Lb) int64: equals raw for rules without credit
    fused_top1_prob: np.ndarray  # (B, Lb) float32
    credit_top1: np.ndarray  # (B, Lb) float32: credit of the fused top-1 (0 without credit)
    topk_ids: np.ndarray  # (B, Lb, k) int64: raw top-k
    topk_probs: np.ndarray  # (B, Lb, k) float32
    entropy: np.ndarray  # (B, Lb) float32: entropy (nats) of the raw distribution
    recomputed: bool = True  # this step's forward recomputed every position's keys (no cache, or a cache refresh)


@dataclass
class DecodeResult:
    tokens: torch.Tensor  # (B, G) long: the answers
    nfe: int  # forward passes of the batch
    commit_step: np.ndarray  # (B, G) int: forward pass that committed each position; -1 = filled by early stop
    seconds: float  # wall time of the whole decode
    trace: Trace | None = None  # the recorded trace (generate(record_trace=True), the default)


class Observer(Protocol):
    """Sees a decode from the side; never changes it (tokens are identical with and without observers)."""

    def start(self, begin: DecodeStart) -> None: ...

    def step(self, event: StepEvent) -> None: ...

    def end(self, result: DecodeResult) -> None: ...


class StepObserver:
    """Base for observers that only watch the steps (a live view, a cancel check): start and end do nothing."""

    def start(self, begin: DecodeStart) -> None:
        return None

    def step(self, event: StepEvent) -> None:
        return None

    def end(self, result: DecodeResult) -> None:
        return None
