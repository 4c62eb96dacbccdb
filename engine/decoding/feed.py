"""How the loop hands each step to its observers without stalling a GPU.

On a CPU a step's numbers are copied and delivered at once. On a GPU the step's device tensors are packed into one
fresh buffer per dtype (a snapshot: later steps may change the loop's own tensors in place), copied to pinned host
buffers on a side stream after an event of the compute stream, and delivered one step late: the loop launches the
next forward first and then waits for the previous step's copies, which finished while that forward was queued, so
the device never waits for the host's copying and the observers' work overlaps the next forward. Numbers the loop
itself does not need (`derive`: the trace's entropy and top-k over the vocabulary) are computed on that side stream
too, from a tensor no later step changes, so on a GPU they overlap the next forward instead of delaying it. Observers
still see every step, in order, and the last one when the decode ends (`flush`). A step's `seconds` is then the time
from its start to the next step's start (or the end), which is the wall time the step cost.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from engine.decoding.contracts import Observer, StepEvent


def cpu(tensor: torch.Tensor, dtype=None) -> np.ndarray:
    """A numpy copy that never aliases loop state (a CPU tensor's .numpy() shares its memory)."""
    return np.array(tensor.detach().to("cpu").numpy(), dtype=dtype, copy=True)


Fields = tuple[torch.Tensor, object]  # a StepEvent field's tensor and the numpy dtype it is delivered in


def _pack(tensors: dict[str, Fields], layout: list | None = None, packed: list[torch.Tensor] | None = None
          ) -> tuple[list, list[torch.Tensor]]:
    """One flat copy per dtype of `tensors` (a snapshot: later steps may change them in place), appended to
    `packed`, and where each field is (the layout, extended)."""
    layout, packed = list(layout or []), list(packed or [])
    groups: dict[torch.dtype, list[torch.Tensor]] = {}
    offsets: dict[torch.dtype, int] = {}
    for name, (tensor, np_dtype) in tensors.items():
        parts = groups.setdefault(tensor.dtype, [])
        buffer = len(packed) + list(groups).index(tensor.dtype)
        layout.append((name, buffer, offsets.get(tensor.dtype, 0), tuple(tensor.shape), np_dtype))
        offsets[tensor.dtype] = offsets.get(tensor.dtype, 0) + tensor.numel()
        parts.append(tensor.reshape(-1))
    return layout, packed + [torch.cat(parts) for parts in groups.values()]


@dataclass
class _Pending:
    info: dict  # StepEvent fields known on the host (step, block, step_in_block, recomputed)
    layout: list[tuple[str, int, int, tuple[int, ...], object]]  # name, buffer, offset in it, shape, numpy dtype
    device_buffers: list[torch.Tensor]  # packed snapshots and the derived numbers' source: alive until copied
    host_buffers: list[torch.Tensor]  # pinned on a GPU; on a CPU the packed snapshots themselves
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

    def push(self, info: dict, tensors: dict[str, Fields], started: float,
             derive: Callable[[torch.Tensor], dict[str, Fields]] | None = None,
             source: torch.Tensor | None = None) -> None:
        """Queue one step: `tensors` maps a StepEvent field to (device tensor, numpy dtype); `derive(source)` adds
        more fields (on a GPU, on the side stream: `source` must be a tensor the loop never changes in place)."""
        if not self.observers:
            return
        if not self.deferred:
            tensors = {**tensors, **(derive(source) if derive is not None else {})}
            arrays = {name: cpu(tensor, dtype) for name, (tensor, dtype) in tensors.items()}
            self._send(info, arrays, time.perf_counter() - started)
            return
        layout, packed = _pack(tensors)  # snapshots, on the compute stream
        if self.stream is None:
            if derive is not None:
                layout, packed = _pack(derive(source), layout, packed)
            self._pending = _Pending(info, layout, [], packed, None, started)
            return
        ready = torch.cuda.Event()
        ready.record()
        with torch.cuda.stream(self.stream):
            self.stream.wait_event(ready)
            if derive is not None:
                layout, packed = _pack(derive(source), layout, packed)
            host = [torch.empty(flat.shape, dtype=flat.dtype, pin_memory=True).copy_(flat, non_blocking=True)
                    for flat in packed]
            done = torch.cuda.Event()
            done.record(self.stream)
        keep = packed + ([source] if source is not None else [])  # freed once `done` has passed
        self._pending = _Pending(info, layout, keep, host, done, started)

    def flush(self, now: float) -> None:
        """Deliver the step still queued, if any (on a GPU: the previous one); `now` ends its wall time."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        if pending.done is not None:
            pending.done.synchronize()
        arrays = {}
        for name, buffer, start, shape, np_dtype in pending.layout:
            flat = pending.host_buffers[buffer][start:start + int(np.prod(shape, dtype=np.int64))]
            arrays[name] = np.array(flat.numpy(), dtype=np_dtype, copy=True).reshape(shape)
        self._send(pending.info, arrays, now - pending.started)

    def _send(self, info: dict, arrays: dict[str, np.ndarray], seconds: float) -> None:
        event = StepEvent(seconds=seconds, **info, **arrays)
        for observer in self.observers:
            observer.step(event)
