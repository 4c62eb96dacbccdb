"""Live decoding: the decode runs as a model job in the session's worker thread (app/session.py: one decode at a
time); an observer hands each step to the reader, and the run's cancel token (through its observer) stops the
decode at the end of the step in progress. A finished trace is shown the same way: `trace_step` turns step k of
a trace into the frame the live view draws."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from analysis.trace_data import commit_confidence, sequence_at
from app.session import DECODE_JOBS, CancelToken, run_in_worker
from app.space import gpu_function
from engine.decoding import DecodeCancelled, StepEvent, StepObserver, Trace
from engine.models import LoadedModel
from engine.models.cache import shared_dllm
from engine.pipeline import DecodeOutcome, DecodeRequest, decode

REPLAY_FRAME_SECONDS = 0.05  # pace of a replayed animation (ZeroGPU: the trace is computed first, shown after)


@dataclass(frozen=True)
class LiveStep:
    """The answer after one step, for the live view (batch row 0)."""

    step: int  # 0-based forward pass
    ids: np.ndarray  # (G,) the answer so far (mask id where still masked)
    committed: np.ndarray  # (G,) bool: committed so far
    confidence: np.ndarray  # (G,) float: the confidence each committed position was committed with (NaN if masked)
    seconds: float  # since the decode started


def trace_step(trace: Trace, step: int, seconds: float) -> LiveStep:
    """Step `step` of a recorded trace as the live view draws it (the last step includes early-stop fills)."""
    state = sequence_at(trace, step)
    confidence = np.where(state.committed, commit_confidence(trace), np.nan)  # (G,)
    return LiveStep(step=min(max(int(step), 0), max(trace.n_steps - 1, 0)), ids=state.ids,
                    committed=state.committed, confidence=confidence, seconds=seconds)


class _LiveObserver(StepObserver):
    """Keeps the running commit mask and commit confidences from the engine's step events and emits a LiveStep after
    every step."""

    def __init__(self, gen_length: int, block_length: int, emit: Callable[[LiveStep], None]) -> None:
        self.block_length, self.emit = block_length, emit
        self.committed = np.zeros(gen_length, dtype=bool)
        self.confidence = np.full(gen_length, np.nan)
        self.started = time.perf_counter()

    def step(self, event: StepEvent) -> None:
        lo = event.block * self.block_length
        new = event.committed[0]  # (Lb,)
        self.committed[lo:lo + self.block_length] |= new
        self.confidence[lo:lo + self.block_length][new] = event.fused_top1_prob[0][new]
        self.emit(LiveStep(step=event.step, ids=event.tokens[0].copy(), committed=self.committed.copy(),
                           confidence=self.confidence.copy(), seconds=time.perf_counter() - self.started))


def stream_decode(model: LoadedModel, request: DecodeRequest,
                  token: CancelToken) -> Iterator[LiveStep | DecodeOutcome | str]:
    """Yield the newest LiveStep whenever one is ready (older ones are skipped when the reader is slower than the
    model), "starting" / "waiting" (another decode holds the model) / "running" as keep-alives while there is nothing
    new, then the DecodeOutcome. Errors of the decode (ValueError, DecodeCancelled) are raised here. Closing the
    iterator early cancels the decode within one step, so an abandoned run frees its slot."""

    def job(emit: Callable[[LiveStep], None]) -> DecodeOutcome:
        live = _LiveObserver(request.gen_length, request.block_length, emit)
        return decode(model, request, observers=[live, token.observer()])

    for kind, item in run_in_worker(job, token, DECODE_JOBS, name="dllm-decode"):
        yield item if kind in ("progress", "done") else kind


@gpu_function(duration=120)
def decode_on_gpu(model_name: str, request: DecodeRequest) -> DecodeOutcome:
    """The whole decode inside one GPU call (ZeroGPU holds the GPU only while this runs); returns CPU data only."""
    outcome = decode(shared_dllm(model_name), request)
    outcome.result.tokens = outcome.result.tokens.cpu()
    return outcome


def replay_steps(trace: Trace, seconds_per_frame: float = 0.0) -> Iterator[LiveStep]:
    """The live view rebuilt from a finished trace (batch row 0), one LiveStep per forward pass."""
    elapsed = np.cumsum(trace.arrays["step_seconds"])  # (S,)
    for step in range(trace.n_steps):
        yield trace_step(trace, step, float(elapsed[step]))
        if seconds_per_frame:
            time.sleep(seconds_per_frame)


def replay_decode(model_name: str, request: DecodeRequest, token: CancelToken) -> Iterator[LiveStep | DecodeOutcome]:
    """As stream_decode, for GPU Spaces: compute the trace in one GPU call (in the caller's thread: ZeroGPU ties the
    call to the request; it cannot be stopped midway), then animate it on the CPU."""
    with DECODE_JOBS.hold(token):
        outcome = decode_on_gpu(model_name, request)
    for step in replay_steps(outcome.trace, REPLAY_FRAME_SECONDS):
        if token.cancelled:
            raise DecodeCancelled(f"cancelled after step {step.step}")
        yield step
    yield outcome
