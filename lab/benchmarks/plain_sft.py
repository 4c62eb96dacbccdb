"""The baseline the UDS benchmarks measure against: plain SFT steps on candidate micro-batches, with no selection.

`candidate_batches` draws micro-batches of exactly B the way a random sampler does (a fresh seeded permutation per
epoch); `sft_step` is one forward + backward + clip + AdamW step with the token-mean response loss.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import torch

from engine.uds.batching import Batch, Encoded, response_loss


def candidate_batches(encoded: Sequence[Encoded], batch: int, seed: int) -> Iterator[list[Encoded]]:
    """Endless micro-batches of exactly B: a fresh seeded permutation per epoch; a short tail joins the next epoch."""
    rng = np.random.default_rng(seed)
    pending: list[Encoded] = []
    while True:
        pending.extend(encoded[i] for i in rng.permutation(len(encoded)))
        while len(pending) >= batch:
            yield pending[:batch]
            pending = pending[batch:]


def sft_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: Batch, grad_clip: float) -> float:
    """Forward + backward + clip + AdamW on `batch`; returns the loss (a host sync, so the step is timed whole)."""
    device = next(model.parameters()).device
    model.train()
    logits = model(input_ids=batch.ids.to(device), attention_mask=batch.attention.to(device).long()).logits
    loss_sum, count = response_loss(logits, batch.labels.to(device))
    loss = loss_sum.sum() / count.sum().clamp_min(1)  # token mean over the batch, as HF's causal LM loss
    loss.backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())
