"""A loaded model's cached forwards, kept across decodes so a GPU replays their CUDA graphs instead of capturing anew.

A CachedForward (engine/models/kv_forward.py) owns the key/value store of one canvas shape and the CUDA graphs that
hold the store's addresses: a new one per decode captures ~9 graphs (seconds at 8B) before its first step. The pool
keeps a few per model under keys that make them interchangeable (engine/pipeline.py: cache config and canvas shape);
the caller resets a forward it takes, so a kept one decodes as a new one would.

Exclusive by taking out: `take` removes the forward from the pool for the length of one decode and puts it back
after, so two decodes at once (the CLI's or an API's threads; the app runs one at a time) never share one's
per-decode state; a second decode of a shape in use builds its own, as every decode did before the pool. The lock
guards only the dictionary, never a decode, so nothing waits for another decode and nothing can deadlock.

The benchmark keeps its own (engine/bench/decode.py `Forwards`): one thread, and every shape of a grid cell kept
until the next cell, as dropping one would capture again inside a timed batch.
"""
from __future__ import annotations

import gc
import threading
from collections import OrderedDict
from contextlib import contextmanager
from typing import Callable, Generic, Hashable, Iterator, TypeVar

from engine.decoding.contracts import DecodeCancelled

# Forwards kept per model. Each holds a key/value store of its canvas (LLaDA-8B: 512 KiB of bf16 keys and values a
# position, 1.5 GB for a 3000-token canvas) plus its graphs' memory, all idle between decodes. Two cover the
# explorer's usual back-and-forth (rules or knobs compared on one prompt, under one or two cache settings) while an
# idle app holds at most two stores.
KEEP_FORWARDS = 2

Forward = TypeVar("Forward")


class ForwardPool(Generic[Forward]):
    """Forwards by key, least recently used first; at most KEEP_FORWARDS kept, plus those out in running decodes.

    collect: run the garbage collector after dropping a forward. On a GPU a CachedForward and its GraphCache refer
    to each other, so only the collector frees the store and the graphs' memory, and waiting for it could let
    dropped stores pile up until an allocation fails; a full collection costs ~0.26 s with the app imported (this
    CPU), paid on a GPU only, where a capture costs more. A CPU forward has no such cycle and is freed when dropped."""

    def __init__(self, collect: bool) -> None:
        self.collect = collect
        self._idle: OrderedDict[Hashable, Forward] = OrderedDict()  # most recently used last
        self._lock = threading.Lock()

    def kept(self) -> dict[Hashable, Forward]:
        """The forwards not in use now, least recently used first (a copy)."""
        with self._lock:
            return dict(self._idle)

    @contextmanager
    def take(self, key: Hashable, build: Callable[[], Forward]) -> Iterator[Forward]:
        """The forward kept under `key`, or `build()` (after dropping the least recently used ones, so the new one
        and the kept ones stay within KEEP_FORWARDS), for the `with` block alone. It goes back when the block ends,
        or ends with DecodeCancelled (raised between two steps: the forward is whole); any other error drops it, as
        its state is unknown."""
        with self._lock:
            forward = self._idle.pop(key, None)
            dropped = self._trim(KEEP_FORWARDS - 1) if forward is None else 0
        self._collect(dropped)
        if forward is None:
            forward = build()
        try:
            yield forward
        except DecodeCancelled:
            self._put_back(key, forward)
            raise
        self._put_back(key, forward)

    def _put_back(self, key: Hashable, forward: Forward) -> None:
        with self._lock:
            dropped = int(self._idle.pop(key, None) is not None)  # a decode of the same key at once came back first
            self._idle[key] = forward
            dropped += self._trim(KEEP_FORWARDS)
        self._collect(dropped)

    def _trim(self, size: int) -> int:
        """Drop the least recently used forwards until at most `size` are kept; how many were dropped."""
        dropped = 0
        while len(self._idle) > size:
            self._idle.popitem(last=False)
            dropped += 1
        return dropped

    def _collect(self, dropped: int) -> None:
        if dropped and self.collect:
            gc.collect()
