"""The decoding loop: semi-autoregressive block diffusion decoding with a pluggable rule.

The loop alone writes tokens, counts forward passes (NFE), enforces at least one commit per active row and step,
handles blocks, Dream-style shift and early stop at EOS. Observers (the trace recorder, a streamer; contracts.py)
see the start, CPU copies of each step and the result; with no observer nothing is copied. On a GPU the copies run
beside the next forward and reach the observers one step late (feed.py).
"""
from __future__ import annotations

import time
from functools import partial
from typing import Sequence

import numpy as np
import torch

from engine.decoding.cache import CacheConfig
from engine.decoding.contracts import Block, DecodeResult, DecodeStart, ModelFn, Observer, Proposal, Rule
from engine.decoding.feed import StepFeed, cpu
from engine.decoding.trace import TraceRecorder


def validate_lengths(prompt_ids: torch.Tensor, gen_length: int, block_length: int) -> int:
    """Check the shape arguments and return the number of blocks."""
    if prompt_ids.dim() != 2 or prompt_ids.shape[1] == 0:
        raise ValueError(f"prompt_ids has shape {tuple(prompt_ids.shape)}; need (B, P) with P >= 1 (empty prompt)")
    if gen_length < 1:
        raise ValueError(f"gen_length={gen_length} must be >= 1")
    if block_length < 1 or gen_length % block_length:
        raise ValueError(f"gen_length={gen_length} must be a positive multiple of block_length={block_length}")
    return gen_length // block_length


def _observe(proposal: Proposal) -> dict[str, tuple[torch.Tensor, object]]:
    """The proposal's numbers observers get (still on the device, with their numpy dtypes), (B, Lb) each."""
    credit = proposal.credit_top1 if proposal.credit_top1 is not None else torch.zeros_like(proposal.raw_prob)
    fused_prob = proposal.confidence if proposal.credit_top1 is not None else proposal.raw_prob
    return {"raw_top1_id": (proposal.raw_top1, np.int64), "raw_top1_prob": (proposal.raw_prob, np.float32),
            "fused_top1_id": (proposal.tokens, np.int64), "fused_top1_prob": (fused_prob, np.float32),
            "credit_top1": (credit, np.float32)}


def _vocabulary_numbers(logits: torch.Tensor, top_k: int) -> dict[str, tuple[torch.Tensor, object]]:
    """Entropy (B, Lb) and top-k (B, Lb, k) of the step's logits (B, Lb, V): the trace's passes over the vocabulary,
    which the feed runs beside the next forward on a GPU."""
    log_probs = torch.log_softmax(logits, dim=-1)  # (B, Lb, V)
    entropy = -(log_probs.exp() * log_probs.nan_to_num(neginf=0.0)).sum(-1)  # (B, Lb)
    topk_logp, topk_ids = log_probs.topk(top_k, dim=-1)  # (B, Lb, k)
    return {"topk_ids": (topk_ids, np.int64), "topk_probs": (topk_logp.exp(), np.float32),
            "entropy": (entropy, np.float32)}


def _ensure_one_commit(commit: torch.Tensor, confidence: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """Every row with masked positions commits at least its most confident one (Fast-dLLM issue #42)."""
    needs = masked.any(dim=-1) & ~commit.any(dim=-1)  # (B,)
    best = confidence.masked_fill(~masked, float("-inf")).argmax(dim=-1)  # (B,)
    fallback = torch.nn.functional.one_hot(best, masked.shape[1]).bool() & needs[:, None]  # (B, Lb)
    return commit | fallback


@torch.no_grad()
def generate(model_fn: ModelFn, prompt_ids: torch.Tensor, strategy: Rule, gen_length: int = 64, block_length: int = 16,
             mask_id: int | None = None, eos_id: int | None = None, shift: bool = False,
             observers: Sequence[Observer] = (), record_trace: bool = True, top_k: int = 5,
             seed: int = 0) -> DecodeResult:
    """Decode `gen_length` tokens after `prompt_ids` (B, P) with `strategy`; see docs/CREDITDECODING.md."""
    if mask_id is None:
        raise ValueError("mask_id is required: take it from the model's spec (e.g. LoadedModel.spec.mask_id)")
    n_blocks = validate_lengths(prompt_ids, gen_length, block_length)
    if top_k < 1:
        raise ValueError(f"top_k={top_k} must be >= 1")
    device = prompt_ids.device
    batch, prompt_length = prompt_ids.shape
    generator = torch.Generator(device=device).manual_seed(seed)
    recorder = TraceRecorder() if record_trace else None
    observers = [*observers, *([recorder] if recorder else [])]
    cache = getattr(model_fn, "cache", None) or CacheConfig()  # a cached callable's policy (contracts.py)
    for observer in observers:
        observer.start(DecodeStart(prompt_ids=prompt_ids, rule=strategy, gen_length=gen_length,
                                   block_length=block_length, mask_id=mask_id, eos_id=eos_id, shift=shift, seed=seed,
                                   top_k=top_k, cache=cache))

    block_fn = getattr(model_fn, "block_logits", None)  # optional: (ids, start, stop) -> logits of those rows only
    block_starts = getattr(model_fn, "start_block", None)  # optional: a cached callable learns each block's positions
    feed = StepFeed(observers, device)
    state = None  # the rule's per-block state (contracts.Rule.start_block)
    mask_index = torch.tensor([mask_id], device=device)
    x = torch.cat([prompt_ids, torch.full((batch, gen_length), mask_id, dtype=torch.long, device=device)], 1)
    commit_step = torch.full((batch, gen_length), -1, dtype=torch.long, device=device)  # (B, G)
    active = torch.ones(batch, dtype=torch.bool, device=device)  # (B,): rows not stopped at EOS
    nfe, start = 0, time.perf_counter()
    for block in range(n_blocks):
        lo, hi = prompt_length + block * block_length, prompt_length + (block + 1) * block_length
        step_in_block = 0
        while True:
            masked = (x[:, lo:hi] == mask_id) & active[:, None]  # (B, Lb)
            if not bool(masked.any()):
                break
            step_start = time.perf_counter()
            if step_in_block == 0 and block_starts is not None:
                block_starts(lo, hi)
            rows = (lo - 1, hi - 1) if shift else (lo, hi)  # logit rows that predict the block
            block_logits = (block_fn(x, *rows) if block_fn is not None
                            else model_fn(x)[:, rows[0]:rows[1]])  # (B, Lb, V)
            nfe += 1
            feed.flush(step_start)  # the previous step, while this forward runs on a GPU
            if step_in_block == 0:
                state = strategy.start_block(Block(batch=batch, block_length=block_length, vocab=block_logits.shape[-1],
                                                   n_blocks=n_blocks, device=device, generator=generator))
            block_logits = block_logits.float().index_fill(-1, mask_index, float("-inf"))  # never propose the mask
            proposal = strategy.propose(block_logits, masked, step_in_block, state)
            commit = _ensure_one_commit(proposal.commit & masked, proposal.confidence, masked)  # (B, Lb)
            x[:, lo:hi] = torch.where(commit, proposal.tokens, x[:, lo:hi])
            commit_step[:, lo - prompt_length:hi - prompt_length].masked_fill_(commit, nfe - 1)
            if observers:
                feed.push({"step": nfe - 1, "block": block, "step_in_block": step_in_block,
                           "recomputed": cache.refreshes(step_in_block)},
                          {**_observe(proposal), "active": (active, bool), "masked_before": (masked, bool),
                           "committed": (commit, bool), "tokens": (x[:, prompt_length:], np.int64)}, step_start,
                          derive=partial(_vocabulary_numbers, top_k=top_k), source=block_logits)
            step_in_block += 1
        if eos_id is not None:
            stops = active & (x[:, lo:hi] == eos_id).any(dim=-1)  # (B,): rows whose finished block holds EOS
            x[:, hi:] = torch.where(stops[:, None], torch.full_like(x[:, hi:], eos_id), x[:, hi:])
            active &= ~stops
            if not bool(active.any()):
                break
    feed.flush(time.perf_counter())
    answer = x[:, prompt_length:]
    result = DecodeResult(tokens=answer, nfe=nfe, commit_step=cpu(commit_step),
                          seconds=time.perf_counter() - start)
    for observer in observers:
        observer.end(result)
    if recorder is not None:
        result.trace = recorder.trace
    return result
