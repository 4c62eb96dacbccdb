"""Model jobs of the Decoding Explorer: every event that runs the model (live decode, /decode, compare, sweep) runs
its work through engine.jobs, in a worker thread holding one of DECODE_JOBS' slots and checking a cancel token at
every step; a live decode's observer hands each step to the caller."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from app.space import gpu_function
from engine.decoding import DecodeCancelled, StepEvent, Trace
from engine.jobs import CancelToken as JobToken
from engine.jobs import Emit, JobSlots, Work, run_job
from engine.models import LoadedModel, load_model
from engine.pipeline import DecodeOutcome, DecodeRequest, decode

REPLAY_FRAME_SECONDS = 0.05  # pace of a replayed animation (ZeroGPU: the trace is computed first, shown after)
MODEL_SLOTS = 1  # model jobs at once: a decode uses every core of a 2-core CPU, and the whole GPU
DECODE_JOBS = JobSlots(MODEL_SLOTS)  # process-wide: holds even when a client cancels or disconnects


class CancelToken:
    """Per session (kept in gr.State): Cancel cancels the job in progress. A deep copy (gr.State copies its initial
    value per session) is a fresh holder, never a shared one."""

    def __init__(self) -> None:
        self._job = JobToken()

    def __deepcopy__(self, memo: dict) -> "CancelToken":
        return CancelToken()

    def start(self) -> JobToken:
        """A fresh job token for a new run (an earlier Cancel must not stop it)."""
        self._job = JobToken()
        return self._job

    def cancel(self) -> None:
        self._job.cancel()


def model_job(work: Work, token: JobToken | None = None) -> Iterator[tuple[str, Any]]:
    """run_job on the Decoding Explorer's model slots (see engine.jobs.run_job for what it yields)."""
    return run_job(work, DECODE_JOBS, token)


@dataclass(frozen=True)
class LiveStep:
    """The answer after one step, for the live view (batch row 0)."""

    step: int  # 0-based forward pass
    ids: np.ndarray  # (G,) the answer so far (mask id where still masked)
    committed: np.ndarray  # (G,) bool: committed so far
    confidence: np.ndarray  # (G,) float: the confidence each committed position was committed with (NaN if masked)
    seconds: float  # since the decode started


class _LiveObserver:
    """Keeps the running commit mask and commit confidences and emits a LiveStep after every step."""

    def __init__(self, gen_length: int, block_length: int, emit: Emit) -> None:
        self.block_length, self.emit = block_length, emit
        self.committed = np.zeros(gen_length, dtype=bool)
        self.confidence = np.full(gen_length, np.nan)
        self.start = time.perf_counter()

    def on_step(self, event: StepEvent) -> None:
        lo = event.block * self.block_length
        new = event.committed[0]  # (Lb,)
        self.committed[lo:lo + self.block_length] |= new
        self.confidence[lo:lo + self.block_length][new] = event.fused_top1_prob[0][new]
        self.emit(LiveStep(step=event.step, ids=event.tokens[0].copy(), committed=self.committed.copy(),
                           confidence=self.confidence.copy(), seconds=time.perf_counter() - self.start))


def stream_decode(model: LoadedModel, request: DecodeRequest,
                  token: JobToken) -> Iterator[LiveStep | DecodeOutcome | str]:
    """Yield the newest LiveStep whenever one is ready (older ones are skipped when the reader is slower than the
    model), "starting" / "waiting" / "running" as keep-alives while there is nothing new, then the DecodeOutcome.
    Errors of the decode (ValueError, DecodeCancelled) are raised here. Closing the iterator early cancels the
    decode within one step, so an abandoned run frees its slot."""
    def work(job: JobToken, emit: Emit) -> DecodeOutcome:
        return decode(model, request, observers=[_LiveObserver(request.gen_length, request.block_length, emit), job])

    for kind, payload in model_job(work, token):
        yield payload if kind in ("progress", "done") else kind


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
                  token: JobToken) -> Iterator[LiveStep | DecodeOutcome]:
    """As stream_decode, for GPU Spaces: compute the trace in one GPU call (in the caller's thread: ZeroGPU ties the
    call to the request; it cannot be stopped midway), then animate it on the CPU."""
    with DECODE_JOBS.hold(token):
        outcome = decode_on_gpu(model_name, request)
    for step in replay_steps(outcome.trace, REPLAY_FRAME_SECONDS):
        if token.cancelled:
            raise DecodeCancelled(f"cancelled after step {step.step}")
        yield step
    yield outcome
