"""Tokenise samples with the model's chat template and pad them into micro-batches for scoring and training."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from engine.uds.data import Sample


@dataclass(frozen=True)
class Encoded:
    sample: Sample  # the source sample
    ids: tuple[int, ...]  # prompt + response token ids, at most the cut-off
    prompt_len: int  # leading ids that belong to the prompt (no loss)
    truncated: bool  # the full conversation was longer than the cut-off


@dataclass(frozen=True)
class Batch:
    ids: torch.Tensor  # long (B, N), right-padded with the pad id
    attention: torch.Tensor  # bool (B, N), real tokens
    prompt: torch.Tensor  # bool (B, N), prompt tokens
    labels: torch.Tensor  # long (B, N), ids on response tokens, -100 on prompt and padding

    def select(self, keep: torch.Tensor) -> "Batch":
        """The rows `keep` (long (K,)), trimmed to their longest real length (right padding makes that exact)."""
        n = int(self.attention[keep].sum(1).max())
        return Batch(*(t[keep, :n] for t in (self.ids, self.attention, self.prompt, self.labels)))


def _text(tokenizer: Any, messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def _tokens(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def encode(tokenizer: Any, sample: Sample, cutoff: int) -> Encoded:
    """Chat-template the sample. The prompt (up to and including the assistant header) and the rest are tokenised
    separately, so training sees the same prompt ids that generation starts from (BPE would otherwise merge the
    header's newline with a response's leading spaces)."""
    user = [{"role": "user", "content": sample.prompt}]
    prompt_text = _text(tokenizer, user, add_generation_prompt=True)
    full_text = _text(tokenizer, user + [{"role": "assistant", "content": sample.response}], False)
    if not full_text.startswith(prompt_text):
        raise ValueError(f"the tokenizer's chat template does not extend the prompt with the response for sample "
                         f"{sample.sample_id!r}; a template with a prompt prefix is needed")
    prompt_ids = _tokens(tokenizer, prompt_text)
    full = prompt_ids + _tokens(tokenizer, full_text[len(prompt_text):])
    return Encoded(sample=sample, ids=tuple(full[:cutoff]), prompt_len=min(len(prompt_ids), cutoff),
                   truncated=len(full) > cutoff)


def encode_prompt(tokenizer: Any, prompt: str) -> list[int]:
    return _tokens(tokenizer, _text(tokenizer, [{"role": "user", "content": prompt}], add_generation_prompt=True))


def collate(items: Sequence[Encoded], pad_id: int) -> Batch:
    n = max(len(e.ids) for e in items)
    ids = torch.full((len(items), n), pad_id, dtype=torch.long)  # (B, N)
    attention = torch.zeros((len(items), n), dtype=torch.bool)  # (B, N)
    prompt = torch.zeros((len(items), n), dtype=torch.bool)  # (B, N)
    for b, e in enumerate(items):
        ids[b, : len(e.ids)] = torch.tensor(e.ids)
        attention[b, : len(e.ids)] = True
        prompt[b, : e.prompt_len] = True
    labels = ids.masked_fill(~attention | prompt, -100)  # (B, N)
    return Batch(ids=ids, attention=attention, prompt=prompt, labels=labels)


def response_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Causal next-token loss on response tokens: logits (B, N, V), labels (B, N) -> (sum per sample (B,), count (B,)).

    Row i predicts token i + 1, as in transformers' causal LM loss. Only the R rows that predict a response token
    enter the cross-entropy, as one contiguous (R, V) block: over the whole batch in the (B, V, N) layout it took
    58 ms on an H100 at B = 8, N = 192, V = 49,152 (docs/UDS_SPEED.md).
    """
    predicts = labels[:, 1:] != -100  # (B, N-1)
    return rows_loss(logits[:, :-1][predicts], labels, predicts)


def rows_loss(rows: torch.Tensor, labels: torch.Tensor, predicts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """response_loss from the logits `rows` (R, V) of the positions `predicts` (B, N-1) marks, in row-major order."""
    targets = labels[:, 1:][predicts]  # (R,)
    token_loss = torch.nn.functional.cross_entropy(rows.float(), targets, reduction="none")  # (R,)
    per_position = token_loss.new_zeros(predicts.shape)  # (B, N-1); a scatter, not an atomic add: deterministic
    per_position[predicts] = token_loss
    return per_position.sum(1), predicts.sum(1)
