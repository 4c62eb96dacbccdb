"""Live decoding: the decode runs in a worker thread; an observer hands each step to the caller through a queue, and
a per-session cancel token makes the observer raise DecodeCancelled at the next step."""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from app.space import gpu_function
from engine.decoding import DecodeCancelled, StepEvent, StepObserver, Trace
from engine.models import LoadedModel, load_model
from engine.pipeline import DecodeOutcome, DecodeRequest, decode

REPLAY_FRAME_SECONDS = 0.05  # pace of a replayed animation (ZeroGPU: the trace is computed first, shown after)


class CancelToken:
    """Per session (kept in gr.State): Cancel sets the event of the run in progress. A deep copy (gr.State copies
    its initial value per session) is a fresh token, never a shared one."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def __deepcopy__(self, memo: dict) -> "CancelToken":
        return CancelToken()

    def start(self) -> threading.Event:
        """A fresh event for a new run (an earlier Cancel must not stop it)."""
        self._event = threading.Event()
        return self._event

    def cancel(self) -> None:
        self._event.set()


@dataclass(frozen=True)
class LiveStep:
    """The answer after one step, for the live view (batch row 0)."""

    step: int  # 0-based forward pass
    ids: np.ndarray  # (G,) the answer so far (mask id where still masked)
    committed: np.ndarray  # (G,) bool: committed so far
    confidence: np.ndarray  # (G,) float: the confidence each committed position was committed with (NaN if masked)
    seconds: float  # since the decode started


class _LiveObserver(StepObserver):
    """Keeps the running commit mask and commit confidences; stops the decode when the cancel event is set."""

    def __init__(self, gen_length: int, block_length: int, cancel: threading.Event, out: queue.Queue) -> None:
        self.block_length, self.cancel, self.out = block_length, cancel, out
        self.committed = np.zeros(gen_length, dtype=bool)
        self.confidence = np.full(gen_length, np.nan)
        self.started = time.perf_counter()
        self.last_step = -1

    def step(self, event: StepEvent) -> None:
        lo = event.block * self.block_length
        new = event.committed[0]  # (Lb,)
        self.committed[lo:lo + self.block_length] |= new
        self.confidence[lo:lo + self.block_length][new] = event.fused_top1_prob[0][new]
        self.last_step = event.step
        self.out.put(LiveStep(step=event.step, ids=event.tokens[0].copy(), committed=self.committed.copy(),
                              confidence=self.confidence.copy(), seconds=time.perf_counter() - self.started))
        if self.cancel.is_set():
            raise DecodeCancelled(f"cancelled after step {event.step}")


def stream_decode(model: LoadedModel, request: DecodeRequest,
                  cancel: threading.Event) -> Iterator[LiveStep | DecodeOutcome]:
    """Yield the newest LiveStep whenever one is ready (older ones are skipped when the reader is slower than the
    model), then the DecodeOutcome. Errors of the decode (ValueError, DecodeCancelled) are raised here. Closing the
    iterator early cancels the decode, so an abandoned run frees its slot."""
    out: queue.Queue = queue.Queue()
    observer = _LiveObserver(request.gen_length, request.block_length, cancel, out)
    done = object()

    def work() -> None:
        try:
            out.put((done, decode(model, request, observers=[observer])))
        except BaseException as err:  # handed to the reading thread, which raises it
            out.put((done, err))

    worker = threading.Thread(target=work, name="dllm-decode", daemon=True)
    worker.start()
    try:
        while True:
            item = out.get()
            while not out.empty() and isinstance(item, LiveStep):
                item = out.get()  # skip to the newest frame
            if isinstance(item, LiveStep):
                yield item
                continue
            result = item[1]
            if isinstance(result, BaseException):
                raise result
            yield result
            return
    finally:
        cancel.set()
        worker.join(timeout=30)


@gpu_function(duration=120)
def decode_on_gpu(model_name: str, request: DecodeRequest) -> DecodeOutcome:
    """The whole decode inside one GPU call (ZeroGPU holds the GPU only while this runs); returns CPU data only."""
    outcome = decode(load_model(model_name), request)
    outcome.result.tokens = outcome.result.tokens.cpu()
    return outcome


def replay_steps(trace: Trace, seconds_per_frame: float = 0.0) -> Iterator[LiveStep]:
    """The live view rebuilt from a finished trace (batch row 0), one LiveStep per forward pass."""
    tokens, commit = trace.arrays["tokens"][0], trace.arrays["commit_step"][0]  # (G,) each
    confidence = np.full(tokens.shape, np.nan)
    lb = trace.meta["block_length"]
    elapsed = np.cumsum(trace.arrays["step_seconds"])
    for step in range(trace.n_steps):
        block = trace.arrays["step_block"][step]
        new = trace.arrays["committed"][step, 0]  # (Lb,)
        confidence[block * lb:(block + 1) * lb][new] = trace.arrays["fused_top1_prob"][step, 0][new]
        committed = (commit >= 0) & (commit <= step)
        ids = np.where(committed, tokens, trace.meta["mask_id"])
        yield LiveStep(step=step, ids=ids, committed=committed, confidence=confidence.copy(),
                       seconds=float(elapsed[step]))
        if seconds_per_frame:
            time.sleep(seconds_per_frame)


def replay_decode(model_name: str, request: DecodeRequest,
                  cancel: threading.Event) -> Iterator[LiveStep | DecodeOutcome]:
    """As stream_decode, for GPU Spaces: compute the trace in one GPU call, then animate it on the CPU."""
    outcome = decode_on_gpu(model_name, request)
    for step in replay_steps(outcome.trace, REPLAY_FRAME_SECONDS):
        if cancel.is_set():
            raise DecodeCancelled(f"cancelled after step {step.step}")
        yield step
    yield outcome
