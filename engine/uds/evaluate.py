"""Held-out evaluation after a run: response-token loss on every item, greedy exact-answer accuracy on maths items."""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch

from engine.uds.batching import collate, encode, encode_prompt, response_loss
from engine.uds.data import Sample
from engine.uds.runlog import EvalItem, EvalSummary


def normalise_answer(text: str) -> str:
    """First line, stripped, trailing period dropped: '  1421.\\nBecause ...' -> '1421'."""
    first = text.strip().splitlines()[0].strip() if text.strip() else ""
    return first[:-1].strip() if first.endswith(".") else first


def evaluate(model: torch.nn.Module, tokenizer: Any, items: Sequence[Sample], cutoff: int, max_new_tokens: int,
             pad_id: int, eos_id: int) -> tuple[list[EvalItem], EvalSummary]:
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    results = []
    with torch.no_grad():
        for sample in items:
            batch = collate([encode(tokenizer, sample, cutoff)], pad_id)
            logits = model(input_ids=batch.ids.to(device), attention_mask=batch.attention.to(device).long()).logits
            loss_sum, count = response_loss(logits.float(), batch.labels.to(device))
            loss = float(loss_sum[0] / count[0]) if int(count[0]) else float("nan")
            prediction, correct = "", False
            if sample.is_exact:
                prompt = torch.tensor([encode_prompt(tokenizer, sample.prompt)], device=device)  # (1, P)
                out = model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt),
                                     max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=eos_id,
                                     pad_token_id=pad_id)
                prediction = tokenizer.decode(out[0, prompt.shape[1]:].tolist(), skip_special_tokens=True)
                correct = normalise_answer(prediction) == normalise_answer(sample.answer)
            results.append(EvalItem(sample_id=sample.sample_id, source=sample.source, category=sample.category,
                                    loss=loss, is_maths=sample.is_exact, prediction=prediction, correct=correct))
    model.train(was_training)
    losses = [r.loss for r in results if not math.isnan(r.loss)]
    maths = [r for r in results if r.is_maths]
    summary = EvalSummary(loss=sum(losses) / len(losses) if losses else float("nan"),
                          maths_accuracy=sum(r.correct for r in maths) / len(maths) if maths else float("nan"),
                          n_items=len(results), n_maths=len(maths))
    return results, summary
