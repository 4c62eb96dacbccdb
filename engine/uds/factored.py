"""The factored route: the UDS scores of the logits L = H W^T, computed from the hidden states H without forming L.

For a bias-free linear LM head W (V x d) whose output is the logits, untouched (SmolLM2's head is tied to the
embedding, d = 576, V = 49,152):
* L L^T = H (W^T W) H^T: the Gram matrix, hence the singular values and the nuclear norm, from N d^2 + N^2 d
  multiply-adds in float64 instead of N^2 V, exact up to float64 round-off (no accumulation over V at all);
* the sketch's vocabulary stage is linear in each row (random signs, real FFT columns, scaling: L -> L P), so
  L P = H (W^T P): one (d, d1) matrix replaces the (N, V) FFTs;
* the per-sample loss needs the head only on the rows that predict a response token.
W^T W and W^T P are cached per head weight and recomputed when the weight changes (full fine-tuning updates the tied
embedding in place, which bumps its version counter). The logits route (engine/uds/logit_scores.py) stays for raw logits,
the tests and the as-released transcription checks.
"""
from __future__ import annotations

from typing import Any

import torch

from engine.uds.batching import Batch, response_loss, rows_loss
from engine.uds.logit_scores import FFTSketch, spectrum_of_gram

SCORING_ROUTES = ("auto", "factored", "logits")
# Architectures whose forward returns lm_head(final hidden states) with nothing applied after (no bias, soft-cap or
# scale), checked by exact type: a subclass may post-process.
EXACT_ARCHITECTURES = ("LlamaForCausalLM",)


class FactoredHead:
    """Scores from the hidden states of `decoder` (the model without its head) through the linear `head`."""

    def __init__(self, decoder: torch.nn.Module, head: torch.nn.Linear, sketch: FFTSketch) -> None:
        if head.weight.shape[0] != sketch.vocab_size:
            raise ValueError(f"the head has vocabulary {head.weight.shape[0]}, the sketch was built for "
                             f"{sketch.vocab_size}")
        self.decoder, self.head, self.sketch = decoder, head, sketch
        self._key: tuple[Any, ...] | None = None
        self._gram_w = self._sketch_w = torch.empty(0)

    def hidden(self, batch: Batch) -> torch.Tensor:
        """Final hidden states (B, N, d), as float32, of one padded forward without the head."""
        device = self.head.weight.device
        out = self.decoder(input_ids=batch.ids.to(device), attention_mask=batch.attention.to(device).long())
        return out.last_hidden_state.float()

    def _cached(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(W^T W (d, d), W^T P (d, d1)) in float64 for the head weight as it is now."""
        weight = self.head.weight
        key = (weight.data_ptr(), weight._version, weight.device)
        if key != self._key:
            w = weight.detach().double()  # (V, d)
            self._gram_w = w.T @ w  # (d, d)
            self._sketch_w = self.sketch.vocab_stage(w.T)  # (d, d1): the vocabulary stage of each column of W
            self._key = key
        return self._gram_w, self._sketch_w

    def singular_values(self, hidden: torch.Tensor, rows: torch.Tensor) -> list[torch.Tensor]:
        """Per sample, the singular values (descending, float64) of its logit rows `rows` (B, N) bool."""
        gram_w, _ = self._cached()
        spectra = []
        for b in range(hidden.shape[0]):
            h = hidden[b][rows[b]].double()  # (n, d)
            spectra.append(spectrum_of_gram((h @ gram_w) @ h.T))  # (n, n) = L L^T
        return spectra

    def sketch_embeddings(self, hidden: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """The sketch z (B, d2 * d1) float32 of the logits, rows outside `rows` (B, N) counting as zero rows."""
        _, sketch_w = self._cached()
        y = (hidden.double() @ sketch_w) * rows.unsqueeze(-1)  # (B, N, d1) = L P on the kept rows
        return self.sketch.time_stage(y)

    def logits(self, hidden: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """The logits (B, N, V) float32 on `rows` (B, N) bool, zeros elsewhere: the head runs on those rows only."""
        logits = hidden.new_zeros((*hidden.shape[:2], self.sketch.vocab_size))  # (B, N, V)
        logits[rows] = self.head(hidden[rows]).float()
        return logits

    def response_loss(self, hidden: torch.Tensor, labels: torch.Tensor,
                      logits: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """batching.response_loss on the rows that predict a response token only: from `logits` (B, N, V) where
        they were kept, else through the head on those rows.

        hidden (B, N, d), labels (B, N) -> (loss sum per sample (B,), count (B,)).
        """
        if logits is not None:
            return response_loss(logits, labels)
        predicts = labels[:, 1:] != -100  # (B, N-1): row i predicts token i + 1
        return rows_loss(self.head(hidden[:, :-1][predicts]), labels, predicts)


def _not_exact(model: torch.nn.Module) -> str | None:
    """Why the factored route would not reproduce this model's logits, or None when it does."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft wraps the model
    name = type(base).__name__
    if name not in EXACT_ARCHITECTURES:
        return f"{name} is not one of {EXACT_ARCHITECTURES}, whose logits are the head's output untouched"
    head = base.get_output_embeddings()
    if type(head) is not torch.nn.Linear:
        return f"its head is a {type(head).__name__}, not a plain torch.nn.Linear (e.g. LoRA on the head)"
    if head.bias is not None:
        return "its head has a bias"
    if head.weight.dtype != torch.float32:
        return f"its head computes in {head.weight.dtype}, which rounds the logits (float32 is exact)"
    return None


def factored_head(model: torch.nn.Module, sketch: FFTSketch, route: str = "auto") -> FactoredHead | None:
    """The factored scorer for `model`, or None for the logits route.

    route "logits": always None. "factored": the factored scorer, or a ValueError saying why it would not be exact.
    "auto": the factored scorer where it is exact and the head is frozen (LoRA); a head that trains changes every
    step, and recomputing W^T W (V d^2 multiply-adds) each step costs about what the factored route saves.
    """
    if route not in SCORING_ROUTES:
        raise ValueError(f"scoring_route={route!r} is unknown; allowed: {SCORING_ROUTES}")
    if route == "logits":
        return None
    reason = _not_exact(model)
    if reason is not None:
        if route == "factored":
            raise ValueError(f"scoring_route='factored' is not exact for this model: {reason}; use 'auto' or "
                             f"'logits'")
        return None
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = base.get_output_embeddings()
    if route == "auto" and head.weight.requires_grad:
        return None
    return FactoredHead(base.get_decoder(), head, sketch)
