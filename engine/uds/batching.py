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
    ids: torch.Tensor  # long (B, N), padded with the pad id (on the right, or on the left as released)
    attention: torch.Tensor  # bool (B, N), real tokens
    prompt: torch.Tensor  # bool (B, N), prompt tokens
    labels: torch.Tensor  # long (B, N), the trained token ids; -100 on padding (and on the prompt unless trained)

    def select(self, keep: torch.Tensor) -> "Batch":
        """The rows `keep` (long (K,)), without the columns that are padding in all of them (either padding side)."""
        columns = self.attention[keep].any(0)  # (N,): one contiguous run, padding sits on one side only
        return Batch(*(t[keep][:, columns] for t in (self.ids, self.attention, self.prompt, self.labels)))

    @classmethod
    def from_inputs(cls, inputs: dict[str, Any], prompt_lens: Sequence[int]) -> "Batch":
        """A Batch of collated Trainer inputs (input_ids, attention_mask, labels) on the CPU; the prompt is the first
        `prompt_lens[b]` real tokens of row b."""
        attention = inputs["attention_mask"].detach().cpu().bool()  # (B, N)
        real_position = attention.long().cumsum(1) - 1  # (B, N): index among the row's real tokens
        prompt = attention & (real_position < torch.tensor(prompt_lens).view(-1, 1))  # (B, N)
        return cls(ids=inputs["input_ids"].detach().cpu(), attention=attention, prompt=prompt,
                   labels=inputs["labels"].detach().cpu())


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


def as_item(encoded: Encoded, loss_on_prompt: bool = False) -> dict[str, Any]:
    """One training example as the Trainer's dataset holds it: token ids, labels (-100 where no loss) and the sample's
    metadata (engine/uds/trainer.py reads `sample_id`, `category`, `source` and `prompt_len` into the run log)."""
    prompt_labels = list(encoded.ids[: encoded.prompt_len]) if loss_on_prompt else [-100] * encoded.prompt_len
    labels = prompt_labels + list(encoded.ids[encoded.prompt_len:])
    s = encoded.sample
    return {"input_ids": list(encoded.ids), "labels": labels, "sample_id": s.sample_id, "category": s.category,
            "source": s.source, "prompt_len": encoded.prompt_len}


def pad_items(features: Sequence[dict[str, Any]], pad_id: int, padding_side: str = "right",
              multiple: int = 1) -> dict[str, torch.Tensor]:
    """input_ids, attention_mask and labels (B, N) of token lists, padded on `padding_side` to the longest length
    rounded up to `multiple`; labels are -100 on padding (ids wherever a feature has no labels)."""
    longest = max(len(f["input_ids"]) for f in features)
    n = -(-longest // multiple) * multiple
    ids = torch.full((len(features), n), pad_id, dtype=torch.long)  # (B, N)
    attention = torch.zeros((len(features), n), dtype=torch.long)  # (B, N)
    labels = torch.full((len(features), n), -100, dtype=torch.long)  # (B, N)
    for b, f in enumerate(features):
        length = len(f["input_ids"])
        span = slice(0, length) if padding_side == "right" else slice(n - length, n)
        ids[b, span] = torch.as_tensor(f["input_ids"], dtype=torch.long)
        attention[b, span] = 1
        labels[b, span] = torch.as_tensor(f.get("labels", f["input_ids"]), dtype=torch.long)
    return {"input_ids": ids, "attention_mask": attention, "labels": labels}


def collate(items: Sequence[Encoded], pad_id: int, padding_side: str = "right", multiple: int = 1,
            loss_on_prompt: bool = False) -> Batch:
    features = [as_item(e, loss_on_prompt) for e in items]
    return Batch.from_inputs(pad_items(features, pad_id, padding_side, multiple), [e.prompt_len for e in items])


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
