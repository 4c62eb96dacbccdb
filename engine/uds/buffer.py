"""The FIFO buffer of sketch embeddings of previously selected samples (UDS's diversity reference set)."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class BufferEntry:
    sample_id: str  # the selected sample
    insert_step: int  # step at which its z entered
    position: int  # its micro-batch position at that step


class FIFOBuffer:
    """At most `capacity` embeddings, oldest evicted first. z is stored as computed at insertion (stale by design)."""

    def __init__(self, capacity: int = 1024, dim: int = 1024) -> None:
        if capacity < 1:
            raise ValueError(f"buffer capacity={capacity} must be >= 1")
        self.capacity, self.dim = capacity, dim
        self._z = torch.zeros(capacity, dim)  # (M, D) ring storage
        self._entries: list[BufferEntry | None] = [None] * capacity
        self._next = 0  # ring slot the next push writes
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def embeddings(self) -> torch.Tensor:
        """Filled slots, oldest first: float32 (n, D)."""
        order = self._order()
        return self._z[order].clone()

    def entries(self) -> list[BufferEntry]:
        """Filled slots' metadata, oldest first."""
        return [self._entries[i] for i in self._order()]  # type: ignore[misc]

    def _order(self) -> list[int]:
        start = (self._next - self._count) % self.capacity
        return [(start + i) % self.capacity for i in range(self._count)]

    def push(self, z: torch.Tensor, entries: list[BufferEntry]) -> list[BufferEntry]:
        """Append rows of z (k, D) with their metadata; returns the entries evicted to make room, oldest first."""
        if z.shape != (len(entries), self.dim):
            raise ValueError(f"push needs z of shape ({len(entries)}, {self.dim}), got {tuple(z.shape)}")
        evicted = []
        for row, entry in zip(z, entries):
            old = self._entries[self._next]
            if self._count == self.capacity and old is not None:
                evicted.append(old)
            self._z[self._next] = row.float()
            self._entries[self._next] = entry
            self._next = (self._next + 1) % self.capacity
            self._count = min(self._count + 1, self.capacity)
        return evicted
