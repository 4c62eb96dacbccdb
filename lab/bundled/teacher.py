"""The AR teacher: SmolLM2-135M-Instruct itself, answering prompts in left-padded batches with HF generate.

It writes the recipe's chat / instruction / code answers and is the baseline the eval table sets beside the dLLM.
"""
from __future__ import annotations

import torch

from lab.bundled.tokens import left_pad, prompt_ids


@torch.no_grad()
def teacher_answers(model, tokenizer, prompts: list[str], max_new_tokens: int, batch_size: int, sample: bool,
                    seed: int, repetition_penalty: float = 1.0) -> list[tuple[str, bool]]:
    """(answer text, finished with EOS) per prompt, in the prompts' order. Greedy unless `sample` (T = 0.7)."""
    device = next(model.parameters()).device
    eos_id = tokenizer.eos_token_id
    encoded = [prompt_ids(tokenizer, p) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))  # similar lengths share a batch
    results: list[tuple[str, bool]] = [("", False)] * len(prompts)
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        ids, key_mask, _ = left_pad([encoded[i] for i in chunk], eos_id, device)
        torch.manual_seed(seed + start)
        out = model.generate(input_ids=ids, attention_mask=key_mask, max_new_tokens=max_new_tokens,
                             do_sample=sample, temperature=0.7 if sample else None, top_p=0.95 if sample else None,
                             top_k=None, repetition_penalty=repetition_penalty, eos_token_id=eos_id,
                             pad_token_id=eos_id)  # (b, P + new)
        for row, index in enumerate(chunk):
            new = out[row, ids.shape[1]:].tolist()
            finished = eos_id in new
            text = tokenizer.decode(new[:new.index(eos_id)] if finished else new, skip_special_tokens=True)
            results[index] = (text.strip(), finished)
    return results
