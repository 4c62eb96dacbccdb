"""Online selection state: the sketch, the FIFO buffer of kept sketches and the selector, and one selection step.

Per micro-batch, each process scores its candidates (engine/uds/batch_scores.py) and keeps the top K of every group
of B; what it picked (`ProcessPick`) is gathered from every process, and `push` appends the kept sketches of all of
them, in process order, to the buffer. Every process pushes the same picks in the same order, so the buffers agree.
The Random selector draws from a generator seeded by (seed, step, group), so its picks do not depend on how groups
are spread over processes, and nothing reseeds torch's global RNG.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from engine.uds.batch_scores import BatchScores, score_batch
from engine.uds.batching import Batch
from engine.uds.buffer import BufferEntry, FIFOBuffer
from engine.uds.config import SelectionConfig
from engine.uds.factored import factored_head
from engine.uds.logit_scores import FFTSketch, token_stats
from engine.uds.runlog import CandidateRecord, EvictionRecord, TokenStrip
from engine.uds.selectors import CandidateScores, make_selector, top_k
from engine.uds.static_forward import StaticScoringForward


@dataclass(frozen=True)
class ProcessPick:
    process: int  # rank of the process that scored these candidates
    candidates: list[CandidateRecord]  # one per candidate, positions global (process x candidates per process + i)
    z: np.ndarray  # float32 (P, D) sketches of the P candidates, in position order
    kept: list[int]  # local positions (0..P-1) of the kept candidates, ascending
    trained_items: int  # what the loss divides by for the kept: label tokens (token mean) or samples (per sample)
    loss_sum: float  # the kept samples' loss before the update, summed the same way (tokens or per-sample means)
    strips: list[TokenStrip]  # per-token strips of the candidates, when this step stores them
    scoring_seconds: float  # wall-clock seconds of the scoring pass and the choice


class OnlineSelection:
    """One process's view of the run's selection: identical on every process after every `push`."""

    def __init__(self, config: SelectionConfig, vocab_size: int, strip_every: int = 1, strip_max_steps: int = 64):
        self.config = config
        self.sketch = FFTSketch(vocab_size, config.time_length, config.d1, config.d2, seed=config.seed)
        self.buffer = FIFOBuffer(config.buffer_size, self.sketch.dim)
        self.selector = make_selector(config.selector)
        self.keep = config.batch if self.selector.keeps_all else config.keep
        self.strip_every, self.strip_max_steps, self.strip_steps = strip_every, strip_max_steps, 0
        self.factored: Any = None
        self.static: StaticScoringForward | None = None
        self._model: torch.nn.Module | None = None

    def attach(self, model: torch.nn.Module, cuda_graphs: bool) -> None:
        """Pick the scoring route for `model` (factored where exact, engine/uds/factored.py) and, on CUDA with right
        padding, the bucketed forward replayed from CUDA graphs (engine/uds/static_forward.py)."""
        self._model = model
        self.factored = factored_head(model, self.sketch, self.config.scoring_route)
        on_gpu = next(model.parameters()).device.type == "cuda"
        right = self.config.padding_side == "right"
        self.static = StaticScoringForward(model, self.factored, graphs=True) if on_gpu and cuda_graphs and right \
            else None

    def score(self, batch: Batch, meta: Sequence[dict[str, Any]], step: int, process: int,
              per_sample: bool) -> ProcessPick:
        """Score the P candidates of this process (P a multiple of B), keep K per group of B."""
        if self._model is None:
            raise RuntimeError("OnlineSelection.attach(model) must run before score")
        started = time.perf_counter()
        n = batch.ids.shape[0]
        if n % self.config.batch:
            raise ValueError(f"a micro-batch of {n} candidates is not a whole number of groups of batch="
                             f"{self.config.batch}; make the per-device batch size a multiple of B")
        if self.config.padding_side == "right" and bool((~batch.attention[:, 0] & batch.attention.any(1)).any()):
            raise ValueError("the default scoring mode needs right-padded candidates (each sample's rows from time "
                             "0); set the tokenizer's padding_side to 'right', or use mode='as_released'")
        with_strips = step % self.strip_every == 0 and self.strip_steps < self.strip_max_steps
        scores = score_batch(self._model, batch, self.sketch, self.buffer.embeddings(),
                             self.config.mode == "as_released", self.factored, keep_logits=with_strips,
                             static=self.static)
        chosen = CandidateScores(s_intra=scores.s_intra, s_inter=scores.s_inter, loss=scores.loss,
                                 alpha=self.config.alpha)
        records, kept = [], []
        for g, start in enumerate(range(0, n, self.config.batch)):
            rows = slice(start, start + self.config.batch)
            group_scores = CandidateScores(chosen.s_intra[rows], chosen.s_inter[rows], chosen.loss[rows],
                                           chosen.alpha)
            generator = self._generator(step, process * (n // self.config.batch) + g)
            selector_score = self.selector.score(group_scores, generator)  # (B,)
            selected, rank = top_k(selector_score, self.keep)
            kept += (selected.nonzero().flatten() + start).tolist()
            records += _records(step, process, process * n + start, meta[rows], scores, rows, group_scores,
                                selector_score, selected, rank, self.keep, len(self.buffer) > 0)
        strips = []
        if with_strips:
            strips, self.strip_steps = _strips(step, process * n, meta, batch, scores), self.strip_steps + 1
        counts = (batch.labels[kept, 1:] != -100).sum(1)  # (K,) trained tokens per kept sample
        losses = scores.loss[kept].nan_to_num(0.0)  # (K,) per-sample mean loss; 0 where nothing is trained
        trained = int((counts > 0).sum()) if per_sample else int(counts.sum())
        loss_sum = float(losses.sum()) if per_sample else float((losses * counts).sum())
        return ProcessPick(process=process, candidates=records, z=scores.z.numpy(), kept=kept, trained_items=trained,
                           loss_sum=loss_sum, strips=strips, scoring_seconds=time.perf_counter() - started)

    def push(self, picks: Sequence[ProcessPick], step: int) -> list[EvictionRecord]:
        """Append every process's kept sketches, in process order, to the buffer; return the evictions."""
        evicted = []
        for pick in sorted(picks, key=lambda p: p.process):
            entries = [BufferEntry(pick.candidates[i].sample_id, step, pick.candidates[i].position) for i in pick.kept]
            evicted += self.buffer.push(torch.from_numpy(pick.z[pick.kept]), entries)
        return [EvictionRecord(step, e.sample_id, e.insert_step, e.position) for e in evicted]

    def _generator(self, step: int, group: int) -> torch.Generator:
        seed = int(np.random.SeedSequence([self.config.seed, step, group]).generate_state(1)[0])
        return torch.Generator().manual_seed(seed)


def _records(step: int, process: int, first: int, meta: Sequence[dict[str, Any]], scores: BatchScores, rows: slice,
             chosen: CandidateScores, selector_score: torch.Tensor, selected: torch.Tensor, rank: torch.Tensor,
             keep: int, buffer_filled: bool) -> list[CandidateRecord]:
    """The CandidateRecords of one group of B; rank, margin and flips are within the group."""
    kth = torch.sort(selector_score, descending=True).values[keep - 1]
    utility_sel, _ = top_k(chosen.s_intra, keep)
    diversity_sel, _ = top_k(chosen.s_inter, keep)
    total = chosen.total
    out = []
    for b, item in enumerate(meta):
        stats = scores.stats[rows.start + b]
        out.append(CandidateRecord(
            step=step, position=first + b, process=process, sample_id=item["sample_id"], category=item["category"],
            source=item["source"], length=item["length"], n_rows=int(scores.rows[rows.start + b].sum()),
            s_intra=float(chosen.s_intra[b]), s_inter=float(chosen.s_inter[b]),
            alpha_s_inter=float(chosen.alpha * chosen.s_inter[b]), total=float(total[b]),
            selector_score=float(selector_score[b]), rank=int(rank[b]), selected=bool(selected[b]),
            margin_to_kth=float(selector_score[b] - kth),
            flips_utility_only=bool(utility_sel[b] != selected[b]),
            flips_diversity_only=buffer_filled and bool(diversity_sel[b] != selected[b]),
            loss=float(chosen.loss[b]), fro_norm=stats["fro_norm"], flatness=stats["flatness"],
            effective_rank=stats["effective_rank"], sigma1_share=stats["sigma1_share"]))
    return out


def _strips(step: int, first: int, meta: Sequence[dict[str, Any]], batch: Batch,
            scores: BatchScores) -> list[TokenStrip]:
    strips = []
    for b, item in enumerate(meta):
        ids = batch.ids[b]  # (N,)
        signals = token_stats(scores.logits[b], ids)  # on the logits' device; (N,) each comes back
        strips.append(TokenStrip(step=step, position=first + b, sample_id=item["sample_id"],
                                 token_ids=ids.numpy().astype(np.int64),
                                 **{k: v.cpu().numpy().astype(np.float32) for k, v in signals.items()},
                                 is_pad=(~batch.attention[b]).numpy(), is_prompt=batch.prompt[b].numpy()))
    return strips
