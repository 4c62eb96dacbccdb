"""The scoring forward at a few fixed shapes, so that on a GPU it replays from CUDA graphs.

At SmolLM2's size a GPU forward is bound by kernel launches, not arithmetic (LoRA on all 7 projections adds several
small kernels per projection): the eager scoring forward over B candidates cost 75% of the training step on the K
kept ones that selection is meant to save (docs/UDS_SPEED.md). A no-grad forward of fixed shape can be captured once as a CUDA
graph and replayed without launch gaps.

Fixed shapes: the batch is right-padded to a bucket length (a multiple of `bucket`), and attention gets an explicit
4D mask, causal and over real keys only: the mask transformers builds from the 2D padding mask itself (its own 2D
path inspects the mask on the host, which a graph cannot capture). With right padding and causal attention no row
below the batch's length N sees the extra positions, so the output is cut back to N: the scores of the default mode
and of the as-released mode are those of the unbucketed forward. On a CPU the same forward runs eagerly (the tests
check it against the loop's eager routes); the loop uses it on CUDA, where `TrainConfig.cuda_graphs` is on. A
replay skips the switch to eval mode, which costs more than the replay's own launches on a GPU host.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch

from engine.models.cuda_graph import GraphCache
from engine.uds.batching import Batch
from engine.uds.factored import FactoredHead

BUCKET = 64  # lengths are rounded up to a multiple of this: at most cut-off / 64 graphs per run


@contextlib.contextmanager
def eval_mode(module: torch.nn.Module) -> Iterator[None]:
    """`module` in eval mode inside the block, as it was after. Switching walks every submodule (2,499 for SmolLM2
    with LoRA: 20 ms there and back on this project's CPU), which a replayed graph does not need: leaving it out of
    replays took the H200 scoring pass from 38 to 23 ms (docs/UDS_SPEED.md)."""
    was_training = module.training
    if was_training:
        module.eval()
    try:
        yield
    finally:
        if was_training:
            module.train()


def _logits(model: torch.nn.Module, ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    return model(input_ids=ids, attention_mask=attention_mask, use_cache=False).logits  # (B, L, V)


def _hidden(decoder: torch.nn.Module, ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    return decoder(input_ids=ids, attention_mask=attention_mask, use_cache=False).last_hidden_state  # (B, L, d)


class StaticScoringForward:
    """batch -> float32 (B, N, X): the logits (X = V), or with `factored` the decoder's final hidden states (X = d),
    of one forward at a bucketed length; from CUDA graphs when `graphs` (one per bucket, captured on first use)."""

    def __init__(self, model: torch.nn.Module, factored: FactoredHead | None, graphs: bool,
                 bucket: int = BUCKET) -> None:
        self.device = next(model.parameters()).device
        if graphs and self.device.type != "cuda":
            raise ValueError(f"CUDA graphs need a CUDA model; this one is on {self.device}; use graphs=False")
        self.module = model if factored is None else factored.decoder
        self.forward = _logits if factored is None else _hidden
        self.bucket = bucket
        self.graphs = GraphCache(self.module, forward=self.forward) if graphs else None

    @property
    def captures(self) -> int:
        """CUDA graphs captured so far (0 when eager)."""
        return 0 if self.graphs is None else self.graphs.captures

    @torch.no_grad()
    def __call__(self, batch: Batch) -> torch.Tensor:
        n = batch.ids.shape[1]
        length = -(-n // self.bucket) * self.bucket
        ids = torch.nn.functional.pad(batch.ids, (0, length - n)).to(self.device)  # (B, L); pad keys are masked
        keys = torch.nn.functional.pad(batch.attention, (0, length - n)).to(self.device)  # (B, L) real tokens
        causal = torch.ones(length, length, dtype=torch.bool, device=self.device).tril()  # (L, L)
        mask = causal[None, None] & keys[:, None, None, :]  # (B, 1, L, L): row i sees real keys j <= i
        inputs = {"ids": ids, "attention_mask": mask}
        if self.graphs is not None and self.graphs.has(inputs):
            out = self.graphs.run(inputs)  # replays what was captured in eval mode, whatever the module's mode now
        else:
            with eval_mode(self.module):  # an eager forward, or the capture of a new length
                out = self.forward(self.module, **inputs) if self.graphs is None else self.graphs.run(inputs)
        return out[:, :n].float()  # (B, N, X)
