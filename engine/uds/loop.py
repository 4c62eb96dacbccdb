"""The SFT loop with online batch selection. It owns the optimizer, the buffer and the RNGs, and emits one frozen
record per candidate per step into a RunLog.

Per step: draw B candidates (a seeded permutation per epoch, identical for every selector at the same seed), score
them (no-grad forward, nuclear norm, sketch, buffer distance, loss; from the hidden states where that is exact, see
engine/uds/factored.py), let the selector keep K, push the kept z into the FIFO buffer, then one forward + backward +
AdamW step on the kept samples only.
"""
from __future__ import annotations

import copy
import time
from dataclasses import asdict
from typing import Any, Callable, Iterator

import numpy as np
import torch

from engine.uds.batching import Batch, Encoded, collate, encode, response_loss
from engine.uds.buffer import BufferEntry, FIFOBuffer
from engine.uds.config import SelectionConfig, TrainConfig
from engine.uds.data import Dataset
from engine.uds.evaluate import evaluate
from engine.uds.factored import factored_head
from engine.uds.runlog import CandidateRecord, EvictionRecord, RunLog, SampleRecord, StepRecord, TokenStrip
from engine.uds.logit_scores import FFTSketch, token_stats
from engine.uds.batch_scores import BatchScores, score_batch
from engine.uds.selectors import CandidateScores, make_selector, top_k
from engine.uds.static_forward import StaticScoringForward

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
Progress = Callable[[int, int, str], None]  # (steps done, total steps, message)


def prepare_trainable(base: torch.nn.Module, train: TrainConfig) -> torch.nn.Module:
    """A copy of `base` ready to train (the caller's model is never modified): LoRA adapters or all weights."""
    model = copy.deepcopy(base)
    if not train.lora:
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=train.lora_r, lora_alpha=train.lora_alpha, lora_dropout=0.0, bias="none",
                        target_modules=list(LORA_TARGETS), task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def _candidates(encoded: list[Encoded], batch: int, seed: int) -> Iterator[list[Encoded]]:
    """Endless micro-batches of exactly B: a fresh seeded permutation per epoch; a short tail joins the next epoch."""
    rng = np.random.default_rng(seed)
    pending: list[Encoded] = []
    while True:
        pending.extend(encoded[i] for i in rng.permutation(len(encoded)))
        while len(pending) >= batch:
            yield pending[:batch]
            pending = pending[batch:]


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, kept: Batch, grad_clip: float) -> float:
    device = next(model.parameters()).device
    model.train()
    logits = model(input_ids=kept.ids.to(device), attention_mask=kept.attention.to(device).long()).logits
    loss_sum, count = response_loss(logits, kept.labels.to(device))
    loss = loss_sum.sum() / count.sum().clamp_min(1)  # token mean over the kept samples, as HF's causal LM loss
    loss.backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())


def _records(step: int, items: list[Encoded], scores: BatchScores, chosen: CandidateScores,
             selector_score: torch.Tensor, selected: torch.Tensor, rank: torch.Tensor, keep: int,
             buffer_filled: bool) -> list[CandidateRecord]:
    kth = torch.sort(selector_score, descending=True).values[keep - 1]
    utility_sel, _ = top_k(chosen.s_intra, keep)
    diversity_sel, _ = top_k(chosen.s_inter, keep)
    total = chosen.total
    out = []
    for b, item in enumerate(items):
        stats = scores.stats[b]
        out.append(CandidateRecord(
            step=step, position=b, sample_id=item.sample.sample_id, category=item.sample.category,
            source=item.sample.source, length=len(item.ids), n_rows=int(scores.rows[b].sum()),
            s_intra=float(chosen.s_intra[b]), s_inter=float(chosen.s_inter[b]),
            alpha_s_inter=float(chosen.alpha * chosen.s_inter[b]), total=float(total[b]),
            selector_score=float(selector_score[b]), rank=int(rank[b]), selected=bool(selected[b]),
            margin_to_kth=float(selector_score[b] - kth),
            flips_utility_only=bool(utility_sel[b] != selected[b]),
            flips_diversity_only=buffer_filled and bool(diversity_sel[b] != selected[b]),
            loss=float(chosen.loss[b]), fro_norm=stats["fro_norm"], flatness=stats["flatness"],
            effective_rank=stats["effective_rank"], sigma1_share=stats["sigma1_share"]))
    return out


def _strips(step: int, items: list[Encoded], batch: Batch, scores: BatchScores) -> list[TokenStrip]:
    strips = []
    for b, item in enumerate(items):
        ids = batch.ids[b]  # (N,)
        signals = token_stats(scores.logits[b], ids)  # on the logits' device; (N,) each comes back
        strips.append(TokenStrip(step=step, position=b, sample_id=item.sample.sample_id,
                                 token_ids=ids.numpy().astype(np.int64),
                                 **{k: v.cpu().numpy().astype(np.float32) for k, v in signals.items()},
                                 is_pad=(~batch.attention[b]).numpy(), is_prompt=batch.prompt[b].numpy()))
    return strips


def _run_config(selection: SelectionConfig, train: TrainConfig, dataset: Dataset, model_name: str,
                truncated: int, dropped: int, factored: bool, graphed: bool) -> dict[str, Any]:
    label = ("default: padding rows masked" if selection.mode == "default"
             else "as released: all rows incl. padding")
    return {"selector": selection.selector, "mode": selection.mode, "mode_label": label, "alpha": selection.alpha,
            "batch": selection.batch, "keep": selection.batch if selection.selector == "full" else selection.keep,
            "snapshot_every": train.snapshot_every, "dataset": dataset.name, "model": model_name,
            "train_samples": len(dataset.train), "heldout_samples": len(dataset.heldout), "truncated": truncated,
            "dropped_prompt_too_long": dropped, "scoring_route_used": "factored" if factored else "logits",
            "scoring_forward": "cuda graphs" if graphed else "eager",
            "status": "running", "selection": asdict(selection), "train": asdict(train)}


def run_selection(base_model: torch.nn.Module, tokenizer: Any, dataset: Dataset, selection: SelectionConfig,
                  train: TrainConfig, model_name: str = "model", progress: Progress | None = None,
                  should_stop: Callable[[], bool] | None = None) -> RunLog:
    """Train a copy of `base_model` for `train.steps` selected micro-batches; return the run log.

    `should_stop` is checked before every step: when it returns True the run ends there, the log says
    status "cancelled" and no eval runs. `progress` is called after every step and during eval.
    """
    if train.cutoff > selection.time_length:
        raise ValueError(f"cutoff={train.cutoff} exceeds the sketch time_length={selection.time_length}; "
                         f"lower the cut-off or raise time_length")
    torch.manual_seed(train.seed)  # adapter init and anything else drawing from torch's global RNG
    model = prepare_trainable(base_model, train)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=train.lr,
                                  weight_decay=train.weight_decay)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    encoded = [encode(tokenizer, s, train.cutoff) for s in dataset.train]
    truncated = sum(e.truncated for e in encoded)
    trainable = [e for e in encoded if len(e.ids) > e.prompt_len]  # a prompt that fills the cut-off teaches nothing
    if len(trainable) < selection.batch:
        raise ValueError(f"only {len(trainable)} of {len(encoded)} samples keep response tokens within "
                         f"cutoff={train.cutoff}, fewer than batch={selection.batch}; raise the cut-off")
    selector = make_selector(selection.selector)
    keep = selection.batch if selector.keeps_all else selection.keep
    vocab = model.get_output_embeddings().weight.shape[0]
    sketch = FFTSketch(vocab, selection.time_length, selection.d1, selection.d2, seed=selection.seed)
    factored = factored_head(model, sketch, selection.scoring_route)
    on_gpu = next(model.parameters()).device.type == "cuda"
    # On a CPU the eager forward, sharing one per similar length, is cheaper than padding to a bucket.
    static = StaticScoringForward(model, factored, graphs=True) if on_gpu and train.cuda_graphs else None
    log = RunLog(config=_run_config(selection, train, dataset, model_name, truncated,
                                    len(encoded) - len(trainable), factored is not None, static is not None))
    buffer = FIFOBuffer(selection.buffer_size, sketch.dim)
    random_gen = torch.Generator().manual_seed(selection.seed)
    seen: dict[str, SampleRecord] = {}
    strip_steps = 0
    batches = _candidates(trainable, selection.batch, train.seed)
    for step in range(train.steps):
        if should_stop is not None and should_stop():
            log.config["status"] = "cancelled"
            log.samples = list(seen.values())
            return log
        started = time.perf_counter()
        items = next(batches)
        batch = collate(items, pad_id)
        with_strips = step % train.strip_every == 0 and strip_steps < train.strip_max_steps
        scores = score_batch(model, batch, sketch, buffer.embeddings(), selection.mode == "as_released", factored,
                             keep_logits=with_strips, static=static)
        chosen = CandidateScores(s_intra=scores.s_intra, s_inter=scores.s_inter, loss=scores.loss,
                                 alpha=selection.alpha)
        selector_score = selector.score(chosen, random_gen)  # (B,)
        selected, rank = top_k(selector_score, keep)
        records = _records(step, items, scores, chosen, selector_score, selected, rank, keep, len(buffer) > 0)
        keep_idx = selected.nonzero().flatten()  # (K,) positions in order
        evicted = buffer.push(scores.z[keep_idx], [BufferEntry(items[i].sample.sample_id, step, int(i))
                                                   for i in keep_idx.tolist()])
        strips: list[TokenStrip] = []
        if with_strips:
            strips, strip_steps = _strips(step, items, batch, scores), strip_steps + 1
        z, scoring_seconds = scores.z.numpy(), scores.seconds
        del scores  # frees the (B, N, V) logits before the training forward
        train_loss = train_step(model, optimizer, batch.select(keep_idx), train.grad_clip)
        for item in items:
            s = item.sample
            seen.setdefault(s.sample_id, SampleRecord(s.sample_id, s.source, s.category, s.prompt, s.response,
                                                      "train"))
        log.add_step(StepRecord(step=step, train_loss=train_loss, seconds=time.perf_counter() - started,
                                scoring_seconds=scoring_seconds, n_kept=len(keep_idx), buffer_size=len(buffer)),
                     records, z,
                     [EvictionRecord(step, e.sample_id, e.insert_step, e.position) for e in evicted], strips)
        if progress is not None:
            progress(step + 1, train.steps, f"step {step + 1}/{train.steps}: loss {train_loss:.3f}")
    log.samples = list(seen.values())
    if train.eval_items > 0 and dataset.heldout:
        if progress is not None:
            progress(train.steps, train.steps, "held-out evaluation")
        items_eval = list(dataset.heldout[: train.eval_items])
        eos_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else pad_id
        log.eval_items, log.eval_summary = evaluate(model, tokenizer, items_eval, train.cutoff,
                                                    train.eval_max_new_tokens, pad_id, eos_id)
        log.samples += [SampleRecord(s.sample_id, s.source, s.category, s.prompt, s.response, "heldout")
                        for s in items_eval]
    log.config["status"] = "completed"
    return log
