"""The scoring pass of one micro-batch: a no-grad forward, then every per-candidate signal selectors and views use."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import torch

from engine.uds.batching import Batch, response_loss
from engine.uds.factored import FactoredHead
from engine.uds.logit_scores import FFTSketch, mean_distance, singular_values, spectrum_stats
from engine.uds.static_forward import StaticScoringForward, eval_mode


@dataclass(frozen=True)
class BatchScores:
    logits: torch.Tensor | None  # float32 (B, N, V) for the per-token strips; None where the factored route skips them
    rows: torch.Tensor  # bool (B, N) logit rows that entered the scores (all rows as released, real rows by default)
    z: torch.Tensor  # float32 (B, D) sketch embeddings
    s_intra: torch.Tensor  # float64 (B,) nuclear norms
    s_inter: torch.Tensor  # float64 (B,) mean distance to the buffer
    loss: torch.Tensor  # float64 (B,) mean response-token loss per sample (NaN without response tokens)
    stats: list[dict[str, float]]  # per candidate: fro_norm, flatness, effective_rank, sigma1_share
    seconds: float  # wall-clock seconds of forward + Gram + sketch + buffer distances + loss


def score_batch(model: torch.nn.Module, batch: Batch, sketch: FFTSketch, buffer_z: torch.Tensor,
                as_released: bool, factored: FactoredHead | None = None, keep_logits: bool = True,
                static: StaticScoringForward | None = None) -> BatchScores:
    """Score B candidates against the buffer (M, D). `as_released` scores every row of the padded batch.

    Without `factored`: the logits route (full forward, Gram and sketch of the (N, V) logits; logits kept). With it
    (engine/uds/factored.py): the same scores from the hidden states; the head runs on the response rows for the
    loss, or on every scored row when `keep_logits` (the per-token strips need them). `static` (built for the same
    route) runs the forward at a bucketed length, from CUDA graphs on a GPU (engine/uds/static_forward.py);
    without it the forward is eager, and in the default mode samples of similar length share one.
    """
    start = time.perf_counter()
    rows = torch.ones_like(batch.attention) if as_released else batch.attention  # (B, N)
    with torch.no_grad():
        if factored is None:
            logits = _run(model, batch, lambda part: _forward(model, part), as_released, static)
            device = logits.device
            spectra = singular_values(logits, rows.to(device))
            z = sketch(logits, None if as_released else rows)  # (B, D)
        else:
            hidden = _run(model, batch, factored.hidden, as_released, static)  # (B, N, d)
            device = hidden.device
            spectra = factored.singular_values(hidden, rows.to(device))
            z = factored.sketch_embeddings(hidden, rows.to(device))  # (B, D)
            logits = factored.logits(hidden, rows.to(device)) if keep_logits else None  # (B, N, V)
        labels = batch.labels.to(device)
        loss_sum, count = (response_loss(logits, labels) if factored is None
                           else factored.response_loss(hidden, labels, logits))
    s_inter = mean_distance(z, buffer_z)  # (B,)
    loss = (loss_sum.double() / count.double()).cpu()  # (B,), NaN where count == 0
    stats = [spectrum_stats(s.cpu()) for s in spectra]
    return BatchScores(logits=logits, rows=rows, z=z, s_intra=torch.tensor([s["s_intra"] for s in stats],
                       dtype=torch.float64), s_inter=s_inter, loss=loss, stats=stats,
                       seconds=time.perf_counter() - start)


def _run(model: torch.nn.Module, batch: Batch, forward: Callable[[Batch], torch.Tensor], as_released: bool,
         static: StaticScoringForward | None) -> torch.Tensor:
    """(B, N, X) of the whole padded batch: as released every row counts; by default padding rows are zeros."""
    if static is None:
        with eval_mode(model):
            return forward(batch) if as_released else _grouped(batch, forward)
    out = static(batch)  # switches to eval mode where it needs to
    return out if as_released else out.masked_fill_(~batch.attention.to(out.device).unsqueeze(-1), 0.0)


def _forward(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    device = next(model.parameters()).device
    out = model(input_ids=batch.ids.to(device), attention_mask=batch.attention.to(device).long())
    return out.logits.float()  # (B, N, V)


def _grouped(batch: Batch, forward: Callable[[Batch], torch.Tensor], slack: float = 1.25) -> torch.Tensor:
    """`forward` (a padded batch -> (g, n_g, X)) on real rows as one padded forward would give (causal attention,
    right padding), at less cost: samples of similar length (within `slack` x) share a forward, so one long sample
    does not pad seven short ones. Padding rows come back as zeros; the default mode masks them out anyway."""
    lengths = batch.attention.sum(1)  # (B,)
    order = torch.argsort(lengths, stable=True).tolist()
    groups: list[list[int]] = []
    for b in order:
        if groups and int(lengths[b]) <= slack * int(lengths[groups[-1][0]]):
            groups[-1].append(b)
        else:
            groups.append([b])
    out = None
    for group in groups:
        rows = torch.tensor(group)
        part = forward(batch.select(rows))  # (g, n_g, X)
        if out is None:
            out = part.new_zeros((batch.ids.shape[0], batch.ids.shape[1], part.shape[-1]))  # (B, N, X)
        out[rows, : part.shape[1]] = part
    return out
