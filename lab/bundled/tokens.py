"""Token layout of the recipe: chat-templated prompt ids, EOS-padded answer slots, left-padded batches."""
from __future__ import annotations

import torch


def prompt_ids(tokenizer, prompt: str) -> list[int]:
    """The user's message through the chat template, ending with the assistant header (as the app encodes it)."""
    ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                        tokenize=True, return_dict=False)
    if hasattr(ids, "input_ids"):
        ids = ids["input_ids"]
    return list(ids)


def answer_ids(tokenizer, answer: str) -> list[int]:
    return list(tokenizer.encode(answer, add_special_tokens=False))


def slot_for(n_answer: int, slot_lengths: tuple[int, ...]) -> int | None:
    """The shortest slot holding the answer and at least one EOS; None when none does."""
    return next((slot for slot in slot_lengths if n_answer + 1 <= slot), None)


def left_pad(rows: list[list[int]], pad_id: int, device: torch.device | str = "cpu"
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ids, key_mask, position_ids), each (B, L): rows right-aligned so every answer slot ends at L.

    Positions count from 0 at each row's first real token, so a padded row sees the same positions it would alone;
    the key mask keeps padding out of attention.
    """
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    key_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row):] = torch.tensor(row, dtype=torch.long)
        key_mask[i, width - len(row):] = 1
    positions = (key_mask.cumsum(dim=1) - 1).clamp(min=0)  # (B, L)
    return ids.to(device), key_mask.to(device), positions.to(device)
