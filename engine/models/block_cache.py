"""An exact key/value cache for a block-causal model (LLaDA2): finished blocks are computed once, not every step.

Block-causal attention never lets a token see a later block, so once the decoding loop has moved past a block, the
keys and values of every earlier position are final: they depend only on tokens that no longer change. The model
callable here keeps them per layer and, for the loop's current block, runs only that block's tokens against them;
its logits equal a full forward's (tests/test_block_cache.py) while a step computes one block instead of the canvas.

One instance per decode, like `StaticForward` (same `key_mask` for left-padded prompts). When the loop asks for a
block that starts past the cache's end, the tokens in between are run against the cache first and their keys and
values appended: the prompt before the first block (a prefill), then each block just finished (its final tokens).
`refreshes` counts those extra forwards, which the loop's NFE does not include. Eager only: the cache grows, so the
shapes change block to block (a CUDA-graph version would preallocate the cache at the canvas length).
"""
from __future__ import annotations

import torch

from engine.models.base import LoadedModel
from engine.models.llada2 import KeyValues, block_causal


class BlockCacheForward:
    """ids -> logits for one decode of a block-causal model; `block_logits` runs the block against cached keys."""

    def __init__(self, loaded: LoadedModel, key_mask: torch.Tensor | None = None) -> None:
        if not hasattr(loaded.model, "run") or not hasattr(loaded.model.config, "block_size"):
            raise ValueError(f"model {loaded.spec.name!r} is not block-causal; a block cache is exact only for "
                             "block-causal models such as LLaDA2")
        self.loaded, self.model, self.device, self.spec = loaded, loaded.model, loaded.device, loaded.spec
        self.block_size = loaded.model.config.block_size
        self._key_mask = None if key_mask is None else key_mask.to(self.device).bool()  # (B, P)
        self._past: list[KeyValues] | None = None
        self._length = 0  # positions whose keys and values are cached
        self.refreshes = 0

    def _keys(self, ids: torch.Tensor) -> torch.Tensor | None:
        """(B, L) real-key mask of the whole canvas, or None without padding."""
        if self._key_mask is None:
            return None
        tail = torch.ones(ids.shape[0], ids.shape[1] - self._key_mask.shape[1], dtype=torch.bool, device=self.device)
        return torch.cat([self._key_mask, tail], dim=1)

    @torch.no_grad()
    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        keys = self._keys(ids)
        return self.model(input_ids=ids.to(self.device), attention_mask=keys).logits.float()  # (B, L, V)

    @torch.no_grad()
    def block_logits(self, ids: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """Logits of rows start..stop-1 (B, block, V), equal to self(ids)[:, start:stop]; the rows must be one block
        of the model's grid (blocks end at the canvas end: the loop's blocks when block_length = block size)."""
        length = ids.shape[1]
        if stop - start != self.block_size or (length - start) % self.block_size:
            raise ValueError(f"rows [{start}, {stop}) of a {length}-token canvas are not one {self.block_size}-token "
                             f"attention block; decode with block_length={self.block_size}")
        ids = ids.to(self.device)
        keys = self._keys(ids)
        positions = (torch.arange(length, device=self.device).expand(ids.shape[0], length) if keys is None
                     else (keys.long().cumsum(dim=1) - 1).clamp(min=0))  # (B, L)
        if start < self._length:  # a new decode on this instance: start over
            self._past, self._length = None, 0
        if start > self._length:
            self._extend(ids, keys, positions, start)
        mask = None if keys is None else keys[:, None, None, :stop]  # (B, 1, 1, stop): every cached block is visible
        hidden, _ = self.model.run(ids[:, start:stop], mask, positions[:, start:stop], self._past)  # (B, block, D)
        return self.model.head(hidden).float()  # (B, block, V)

    def _extend(self, ids: torch.Tensor, keys: torch.Tensor | None, positions: torch.Tensor, start: int) -> None:
        """Run positions [cached end, start) against the cache under the canvas's block-causal mask; append their
        keys and values."""
        lo, length = self._length, ids.shape[1]
        allowed = block_causal(length, self.block_size, self.device)[lo:start, :start][None, None]  # (1, 1, n, start)
        if keys is not None:
            eye = torch.eye(length, dtype=torch.bool, device=self.device)[lo:start, :start][None, None]
            allowed = (allowed & keys[:, None, None, :start]) | eye  # padded queries keep themselves
        _, fresh = self.model.run(ids[:, lo:start], allowed, positions[:, lo:start], self._past)
        self._past = fresh if self._past is None else [(torch.cat([k0, k1], 2), torch.cat([v0, v1], 2))
                                                       for (k0, v0), (k1, v1) in zip(self._past, fresh)]
        self._length = start
        self.refreshes += 1
