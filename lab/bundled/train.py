"""LLaDA-style masked-diffusion SFT: the prompt stays clean, the EOS-padded answer slot is masked with ratio
t ~ U(t_min, 1), and the cross-entropy on masked positions is weighted 1/t and averaged over the slot length.

Dream-style shift: the logits at position i - 1 predict token i, the alignment the causal base was pretrained with,
so the adapted model starts from the teacher's next-token head instead of learning a new one.
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
import torch.nn.functional as F

from lab.bundled.config import RecipeConfig
from lab.bundled.data import Example
from lab.bundled.tokens import answer_ids, left_pad, prompt_ids, slot_for


@dataclass(frozen=True)
class Tokenised:
    prompt: tuple[int, ...]  # chat-templated prompt ids
    slot: tuple[int, ...]  # answer ids then EOS up to the slot length
    source: str  # the Example's source label


def tokenise(examples: list[Example], tokenizer, config: RecipeConfig, eos_id: int) -> tuple[list[Tokenised], dict]:
    """Examples -> padded slots; answers that fit no slot and over-long prompts are dropped (and counted)."""
    rng = random.Random(config.seed)
    kept, dropped = [], {"answer_too_long": 0, "prompt_too_long": 0}
    prompt_cache: dict[str, list[int]] = {}
    for example in examples:
        prompt = prompt_cache.setdefault(example.prompt, prompt_ids(tokenizer, example.prompt))
        answer = answer_ids(tokenizer, example.answer)
        slot = slot_for(len(answer), config.slot_lengths)
        if slot is None:
            dropped["answer_too_long"] += 1
            continue
        if len(prompt) > config.max_prompt_tokens:
            dropped["prompt_too_long"] += 1
            continue
        if slot < config.slot_lengths[-1] and rng.random() < config.long_slot_share:
            slot = config.slot_lengths[-1]
        kept.append(Tokenised(tuple(prompt), tuple(answer + [eos_id] * (slot - len(answer))), example.source))
    return kept, dropped


def batches(data: list[Tokenised], batch_size: int, seed: int) -> Iterator[list[Tokenised]]:
    """Endless batches of one slot length each, grouped by prompt length (jittered per epoch) to waste little
    padding, in a shuffled order."""
    rng = random.Random(seed)
    by_slot: dict[int, list[Tokenised]] = {}
    for item in data:
        by_slot.setdefault(len(item.slot), []).append(item)
    while True:
        epoch = []
        for items in by_slot.values():
            ordered = sorted(items, key=lambda item: len(item.prompt) + rng.uniform(0, 24))
            epoch += [ordered[i:i + batch_size] for i in range(0, len(ordered), batch_size)]
        rng.shuffle(epoch)
        yield from epoch


def diffusion_loss(model, batch: list[Tokenised], mask_id: int, shift: bool, min_mask_ratio: float,
                   generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """The 1/t-weighted masked cross-entropy of one batch (a scalar)."""
    eos_id = batch[0].slot[-1]  # every slot ends in EOS padding, which also pads the prompts (key-masked)
    ids, key_mask, positions = left_pad([list(b.prompt) + list(b.slot) for b in batch], eos_id, device)
    size, length = ids.shape
    slot = len(batch[0].slot)
    start = length - slot  # every row's slot occupies the last `slot` columns
    # Stratified t: one draw per row from its own stratum, so each batch spans the whole noise range.
    t = (torch.arange(size) + torch.rand(size, generator=generator)) / size  # (B,)
    t = (min_mask_ratio + (1.0 - min_mask_ratio) * t)[torch.randperm(size, generator=generator)]
    masked = torch.rand(size, slot, generator=generator) < t[:, None]  # (B, S)
    forced = torch.randint(0, slot, (size,), generator=generator)  # at least one masked position per row
    masked[torch.arange(size), forced] = True
    t, masked = t.to(device), masked.to(device)
    noisy = ids.clone()
    noisy[:, start:] = torch.where(masked, torch.full_like(noisy[:, start:], mask_id), ids[:, start:])
    hidden = model.model(input_ids=noisy, attention_mask=key_mask, position_ids=positions).last_hidden_state
    predicting = hidden[:, start - 1:length - 1] if shift else hidden[:, start:]  # (B, S, H)
    logits = model.lm_head(predicting[masked]).float()  # (N, V): only masked positions pay for the head
    targets = ids[:, start:][masked]  # (N,)
    nll = F.cross_entropy(logits, targets, reduction="none")  # (N,)
    weights = (1.0 / t)[:, None].expand(size, slot)[masked]  # (N,)
    return (nll * weights).sum() / (size * slot)


def lr_at(step: int, total: int, config: RecipeConfig) -> float:
    if step < config.warmup_steps:
        return config.peak_lr * (step + 1) / config.warmup_steps
    progress = min(1.0, (step - config.warmup_steps) / max(1, total - config.warmup_steps))
    return config.peak_lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress)))


def train(model, trainable: list[torch.nn.Parameter], data: list[Tokenised], config: RecipeConfig, mask_id: int,
          shift: bool, device: torch.device, log: Callable[[str], None] = print) -> list[dict]:
    """Optimise until max_steps or the time budget; the cosine schedule is fitted to the budget once steps 10-30
    are timed. Returns the log records (step, loss, lr, seconds)."""
    optimizer = torch.optim.AdamW(trainable, lr=config.peak_lr, betas=(0.9, 0.98), weight_decay=0.0)
    generator = torch.Generator().manual_seed(config.seed)
    stream = batches(data, config.batch_size, config.seed)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast(
        "cpu", enabled=False)
    model.train()
    # Steps 10 to 30 are timed: the first ones pay for CUDA start-up and allocator growth, and timing
    # them made the first GPU run plan 304 steps where 700 fitted.
    total, timing_from, timing_to = config.max_steps, 10, 30
    records, window, start, timing_start = [], [], time.perf_counter(), 0.0
    for step in range(config.max_steps):
        if step >= total:
            break
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, total, config)
        with autocast:
            loss = diffusion_loss(model, next(stream), mask_id, shift, config.min_mask_ratio, generator, device)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, config.grad_clip)
        optimizer.step()
        window.append(float(loss.detach()))
        if step + 1 == timing_from:
            timing_start = time.perf_counter()
        if step + 1 == timing_to:
            per_step = (time.perf_counter() - timing_start) / (timing_to - timing_from)
            remaining = config.train_seconds - (time.perf_counter() - start)
            total = min(config.max_steps, timing_to + max(0, int(remaining / per_step)))
            log(f"{per_step * 1000:.0f} ms/step -> {total} steps in {config.train_seconds:.0f} s")
        if (step + 1) % config.log_every == 0 or step + 1 == total:
            record = {"step": step + 1, "loss": sum(window) / len(window), "lr": lr_at(step, total, config),
                      "seconds": round(time.perf_counter() - start, 1)}
            records.append(record)
            log(f"step {record['step']:5d}  loss {record['loss']:.4f}  lr {record['lr']:.2e}  {record['seconds']}s")
            window = []
    model.eval()
    return records
