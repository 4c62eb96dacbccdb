"""How the loop hands each step to its observers without stalling a GPU.

On a CPU a step's numbers are copied and delivered at once. On a GPU the step's device tensors are packed into one
fresh buffer per dtype (a snapshot: later steps may change the loop's own tensors in place), copied to pinned host
buffers on a side stream after an event of the compute stream, and delivered one step late: the loop launches the
next forward first and then waits for the previous step's copies, which finished while that forward was queued, so
the device never waits for the host's copying and the observers' work overlaps the next forward. Observers still see
every step, in order, and the last one when the decode ends (`flush`). A step's `seconds` is then the time from its
start to the next step's start (or the end), which is the wall time the step cost.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from engine.decoding.contracts import Observer, StepEvent


def cpu(tensor: torch.Tensor, dtype=None) -> np.ndarray:
    """A numpy copy that never aliases loop state (a CPU tensor's .numpy() shares its memory)."""
    return np.array(tensor.detach().to("cpu").numpy(), dtype=dtype, copy=True)


@dataclass
class _Pending:
    info: dict  # StepEvent fields known on the host (step, block, step_in_block, recomputed)
    layout: list[tuple[str, torch.dtype, tuple[int, ...], object]]  # name, packed dtype, shape, numpy dtype
    device_buffers: dict[torch.dtype, torch.Tensor]  # kept alive until the copies are done
    host_buffers: dict[torch.dtype, torch.Tensor]  # pinned
    done: torch.cuda.Event | None  # the side stream's copies (None: packed on the CPU, nothing to wait for)
    started: float


class StepFeed:
    """Delivers StepEvents to `observers` (see the module docstring). deferred: pack and deliver one step late
    (default: on a GPU; the CPU can do it too, which is how the packing is tested)."""

    def __init__(self, observers: Sequence[Observer], device: torch.device, deferred: bool | None = None) -> None:
        self.observers = list(observers)
        self.deferred = device.type == "cuda" if deferred is None else deferred
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" and self.deferred and observers else None
        self._pending: _Pending | None = None

    def push(self, info: dict, tensors: dict[str, tuple[torch.Tensor, object]], started: float) -> None:
        """Queue one step: `tensors` maps a StepEvent field to (device tensor, numpy dtype)."""
        if not self.observers:
            return
        if not self.deferred:
            arrays = {name: cpu(tensor, dtype) for name, (tensor, dtype) in tensors.items()}
            self._send(info, arrays, time.perf_counter() - started)
            return
        layout, groups = [], {}
        for name, (tensor, dtype) in tensors.items():
            layout.append((name, tensor.dtype, tuple(tensor.shape), dtype))
            groups.setdefault(tensor.dtype, []).append(tensor.reshape(-1))
        packed = {dtype: torch.cat(parts) for dtype, parts in groups.items()}  # snapshots, on the compute stream
        if self.stream is None:
            self._pending = _Pending(info, layout, packed, packed, None, started)
            return
        ready = torch.cuda.Event()
        ready.record()
        with torch.cuda.stream(self.stream):
            self.stream.wait_event(ready)
            host = {dtype: torch.empty(flat.shape, dtype=dtype, pin_memory=True).copy_(flat, non_blocking=True)
                    for dtype, flat in packed.items()}
            done = torch.cuda.Event()
            done.record(self.stream)
        self._pending = _Pending(info, layout, packed, host, done, started)

    def flush(self, now: float) -> None:
        """Deliver the step still queued, if any (on a GPU: the previous one); `now` ends its wall time."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        if pending.done is not None:
            pending.done.synchronize()
        offsets: dict[torch.dtype, int] = {}
        arrays = {}
        for name, dtype, shape, np_dtype in pending.layout:
            start = offsets.get(dtype, 0)
            size = int(np.prod(shape, dtype=np.int64))
            flat = pending.host_buffers[dtype][start:start + size]
            arrays[name] = np.array(flat.numpy(), dtype=np_dtype, copy=True).reshape(shape)
            offsets[dtype] = start + size
        self._send(pending.info, arrays, now - pending.started)

    def _send(self, info: dict, arrays: dict[str, np.ndarray], seconds: float) -> None:
        event = StepEvent(seconds=seconds, **info, **arrays)
        for observer in self.observers:
            observer.step(event)
