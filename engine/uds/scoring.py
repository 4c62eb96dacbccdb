"""One micro-batch's scoring pass: a no-grad forward, then every per-candidate signal the selectors and views use."""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from engine.uds.batching import Batch, response_loss
from engine.uds.scorer import FFTSketch, mean_distance, singular_values, spectrum_stats


@dataclass(frozen=True)
class BatchScores:
    logits: torch.Tensor  # float32 (B, N, V) of the scoring forward (kept for the per-token strips)
    rows: torch.Tensor  # bool (B, N) logit rows that entered the scores (all rows as released, real rows by default)
    z: torch.Tensor  # float32 (B, D) sketch embeddings
    s_intra: torch.Tensor  # float64 (B,) nuclear norms
    s_inter: torch.Tensor  # float64 (B,) mean distance to the buffer
    loss: torch.Tensor  # float64 (B,) mean response-token loss per sample (NaN without response tokens)
    stats: list[dict[str, float]]  # per candidate: fro_norm, flatness, effective_rank, sigma1_share
    seconds: float  # wall-clock seconds of forward + Gram + sketch + buffer distances + loss


def score_batch(model: torch.nn.Module, batch: Batch, sketch: FFTSketch, buffer_z: torch.Tensor,
                as_released: bool) -> BatchScores:
    """Score B candidates against the buffer (M, D). `as_released` scores every row of the padded batch."""
    start = time.perf_counter()
    was_training = model.training
    model.eval()
    with torch.no_grad():
        logits = _forward(model, batch) if as_released else _forward_grouped(model, batch)  # (B, N, V)
    model.train(was_training)
    device = logits.device
    rows = torch.ones_like(batch.attention) if as_released else batch.attention  # (B, N)
    spectra = singular_values(logits, rows.to(device))
    z = sketch(logits, None if as_released else rows)  # (B, D)
    s_inter = mean_distance(z, buffer_z)  # (B,)
    loss_sum, count = response_loss(logits, batch.labels.to(device))
    loss = (loss_sum.double() / count.double()).cpu()  # (B,), NaN where count == 0
    stats = [spectrum_stats(s.cpu()) for s in spectra]
    return BatchScores(logits=logits, rows=rows, z=z, s_intra=torch.tensor([s["s_intra"] for s in stats],
                       dtype=torch.float64), s_inter=s_inter, loss=loss, stats=stats,
                       seconds=time.perf_counter() - start)


def _forward(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    device = next(model.parameters()).device
    out = model(input_ids=batch.ids.to(device), attention_mask=batch.attention.to(device).long())
    return out.logits.float()  # (B, N, V)


def _forward_grouped(model: torch.nn.Module, batch: Batch, slack: float = 1.25) -> torch.Tensor:
    """The same logits on real rows as one padded forward (causal attention, right padding), at less cost: samples
    of similar length (within `slack` x) share a forward, so one long sample does not pad seven short ones.
    Padding rows come back as zeros; the default mode masks them out anyway."""
    lengths = batch.attention.sum(1)  # (B,)
    order = torch.argsort(lengths, stable=True).tolist()
    groups: list[list[int]] = []
    for b in order:
        if groups and int(lengths[b]) <= slack * int(lengths[groups[-1][0]]):
            groups[-1].append(b)
        else:
            groups.append([b])
    logits = None
    for group in groups:
        rows = torch.tensor(group)
        part = _forward(model, batch.select(rows))  # (g, n_g, V)
        if logits is None:
            logits = part.new_zeros((batch.ids.shape[0], batch.ids.shape[1], part.shape[-1]))  # (B, N, V)
        logits[rows, : part.shape[1]] = part
    return logits
