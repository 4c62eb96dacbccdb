"""Decoding Explorer: turning the tab's knobs into a real decode (streamed frame by frame, or whole), the model
picker, and reading a trace file. Plain values in, plain values out, testable without a server.

Bad input raises gr.Error with a sentence saying what to change; the model is loaded once per process and shared
read-only (engine/models/cache.py); per-session data (the trace, the cancel token) lives in the caller's gr.State.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Iterator

import gradio as gr
import numpy as np

from analysis import colors
from analysis.trace_data import display_text, rate_text, recorded_on, token_label, tokens_per_second
from analysis.trace_tokens import live_html
from app.session import DECODE_JOBS, CancelToken, run_in_worker
from app.space import zero_gpu
from app.streaming import LiveStep, replay_decode, stream_decode, trace_step
from engine.decoding import RULES, DecodeCancelled, Trace, TraceFormatError, load_trace
from engine.decoding.trace import significant
from engine.models import MODELS, LoadedModel, model_entry, model_ids, unavailable
from engine.models.cache import shared_dllm
from engine.pipeline import MAX_PROMPT_CHARS, DecodeOutcome, DecodeRequest, decode

RULE_CHOICES = [(entry.label, entry.id) for entry in RULES.values()]  # the rule picker: labels shown, ids sent
MAX_TRACE_BYTES = 50 * 2**20  # upload cap for trace files
GEN_LENGTHS = (32, 64, 128, 256, 512, 1024)
BLOCK_LENGTHS = (8, 16, 32, 64)
MIN_FRAME_SECONDS = 0.1  # at most ~10 live frames a second reach the page; the last frame always does
MAX_COMPARE = 3
MAX_SWEEP_POINTS = 8
DEFAULTS = {f.name: f.default for f in fields(DecodeRequest)}  # the engine's knob defaults: the tab and API start here
LOG = logging.getLogger(__name__)


def model_refusal(name: str) -> str | None:
    """Why a registered model cannot run here (GPU, Hub access, weights), or None."""
    reason = unavailable(model_entry(name, "dllm"))
    return f"{reason}; pick bundled or tiny-random" if reason else None


def model_choices() -> tuple[list[tuple[str, str]], str]:
    """(label, value) pairs for the picker (size, what it is, and the reason beside any model that cannot run here),
    and the default: the first model that can run."""
    choices, runnable = [], []
    for name in model_ids("dllm"):
        entry, reason = MODELS[name], model_refusal(name)
        label = f"{name} · {entry.size} · {entry.picker}"
        choices.append((f"{label} (unavailable: {reason})" if reason else label, name))
        runnable += [] if reason else [name]
    return choices, runnable[0]


def check_model(name: str) -> str:
    """Refuse, with the reason, a model that is not registered or cannot run here (before anything is loaded)."""
    if name not in model_ids("dllm"):
        raise gr.Error(f"Model {name!r} is not allowed; pick one from the list.")
    reason = model_refusal(name)
    if reason:
        raise gr.Error(f"Model {name!r} cannot run here: {reason}.")
    return name


def get_model(name: str) -> LoadedModel:
    """The shared, read-only model (loaded on first use, once per process)."""
    check_model(name)
    try:
        return shared_dllm(name)
    except (ValueError, OSError, ImportError) as err:
        LOG.warning("model %s could not be loaded: %s", name, err)  # the details (paths) stay in the server log
        raise gr.Error(f"Model {name!r} could not be loaded on this server; pick another model.") from None


def warm_default_model() -> None:
    """Load the picker's default model in the background at start-up; a failure is logged and shown on first use."""
    try:
        get_model(model_choices()[1])
    except gr.Error:
        LOG.warning("the default model could not be preloaded")


def make_request(prompt: str, rule: str, gen_length: int, block_length: int, steps: int, tau: float, preset: str,
                 alpha: float, beta: float, gamma: float, seed: int, cache: str = "none") -> DecodeRequest:
    """The engine request for the knobs (the page and the API both come through here; DecodeRequest checks every
    value: finite, in range, integral where it must be); steps = 0 means one token per step (steps = gen_length)."""
    try:
        return DecodeRequest(prompt=prompt, rule=rule, gen_length=gen_length, block_length=block_length,
                             steps=None if steps in (0, None) else steps, threshold=tau, preset=preset, alpha=alpha,
                             beta=beta, gamma=gamma, seed=seed, cache=cache)
    except ValueError as err:
        raise gr.Error(f"These settings are refused: {err}. Change that setting and decode again.") from None


def _labeller(model: LoadedModel) -> Callable[[int], str]:
    """id -> short display string, cached for the run (the tokenizer is slow per call)."""
    cache = {model.spec.mask_id: "[MASK]", model.spec.eos_id: "[EOS]"}

    def label(token: int) -> str:
        if token not in cache:
            cache[token] = display_text(model.token_text([token])[token])
        return cache[token]
    return label


@dataclass(frozen=True)
class Frame:
    """What the live view shows now; `outcome` is set on the last frame of a finished decode."""

    html: str  # the answer so far as token spans
    status: str  # "step k, N committed, NFE so far"
    outcome: DecodeOutcome | None = None


def _status(step: LiveStep, gen_length: int) -> str:
    return (f"step {step.step}, {int(step.committed.sum())} of {gen_length} committed, NFE so far {step.step + 1} "
            f"({step.seconds:.1f} s)")


def decode_frames(model_name: str, request: DecodeRequest, token: CancelToken,
                  replay: bool | None = None) -> Iterator[Frame | None]:
    """Stream a decode: a first frame with every position masked, one frame per step the reader keeps up with, and
    a last frame carrying the outcome; None in between is a keep-alive (nothing new to show) that lets a server
    close the stream at once. Cancel ends the stream with a 'cancelled' frame (no outcome). The first frame comes
    before the model is loaded, so the page answers at once even on the first click after a start.
    replay (default: on a ZeroGPU Space) computes the whole trace in one GPU call and animates it afterwards."""
    replay = zero_gpu() if replay is None else replay
    check_model(model_name)
    run = token.start()  # before the model loads: a Cancel during the load stops the decode at its first step
    gen = request.gen_length
    masked = np.zeros(gen, dtype=bool)
    blank = live_html(np.zeros(gen, dtype=np.int64), masked, np.full(gen, np.nan), str)
    yield Frame(blank, f"{colors.rule_label(request.rule)}: {gen} positions masked; loading {model_name} (first use "
                       "only) and reading the prompt")
    model = get_model(model_name)
    label = _labeller(model)
    last: LiveStep | None = None
    shown_at = 0.0
    steps = replay_decode(model_name, request, run) if replay else stream_decode(model, request, run)
    try:
        for item in _refusing(steps):
            if item == "waiting" and last is None:
                yield Frame(blank, "waiting: another decode is using the model (one at a time); Cancel leaves the line")
            elif isinstance(item, str):
                yield None
            elif isinstance(item, LiveStep):
                last = item
                if time.perf_counter() - shown_at < MIN_FRAME_SECONDS:
                    yield None
                    continue
                shown_at = time.perf_counter()
                yield Frame(live_html(item.ids, item.committed, item.confidence, label), _status(item, gen))
            else:
                meta = item.trace.meta
                done = trace_step(item.trace, meta["nfe"] - 1, item.result.seconds)
                yield Frame(live_html(done.ids, done.committed, done.confidence, label),
                            f"done: NFE {meta['nfe']}, {meta['answer_tokens']} answer tokens in "
                            f"{item.result.seconds:.2f} s = {rate_text(item.tokens_per_second)}", outcome=item)
    except DecodeCancelled:
        where = f"after step {last.step} ({int(last.committed.sum())} of {gen} committed)" if last else "at the start"
        yield Frame(live_html(last.ids, last.committed, last.confidence, label) if last else "",
                    f"cancelled {where}; the views keep the previous trace")
    finally:
        steps.close()  # a stream closed by the server cancels the decode now, not when it is garbage-collected


def _refusing(stream: Iterator) -> Iterator:
    """The engine's ValueErrors (knobs it refuses, a prompt too long for the context) as gr.Error; errors of the
    caller's own rendering are not caught here."""
    try:
        yield from stream
    except ValueError as err:
        raise gr.Error(f"The decode was refused: {err}.") from None


def summary(outcome: DecodeOutcome) -> dict:
    """The numbers a user (or an API caller) wants from a decode."""
    return {**trace_summary(outcome.trace), "answer": outcome.answer}


def trace_summary(trace: Trace) -> dict:
    """The same numbers from a trace alone (a cached example or an imported file)."""
    meta = trace.meta
    return {"nfe": meta["nfe"], "answer": meta.get("answer", ""), "model": meta.get("model", "?"),
            "rule": meta["rule"], "params": meta["params"], "gen_length": meta["gen_length"],
            "block_length": meta["block_length"], "answer_tokens": meta.get("answer_tokens", meta["gen_length"]),
            "seconds": round(float(meta["seconds"]), 4), "tokens_per_second": significant(tokens_per_second(trace)),
            "recorded_on": recorded_on(trace), "seed": meta["seed"], "cache": meta["cache"]}


def trace_frame(trace: Trace, source: str = "recorded trace") -> Frame:
    """The finished answer of a trace as the live view draws it, with a status line naming where it came from."""
    done = trace_step(trace, trace.n_steps - 1, float(trace.meta["seconds"]))
    html = live_html(done.ids, done.committed, done.confidence, lambda token: token_label(trace, token))
    meta = trace.meta
    return Frame(html, f"{source} of {meta.get('model', '?')}, {colors.rule_label(meta['rule'])}: NFE {meta['nfe']} "
                       f"for {meta.get('answer_tokens', meta['gen_length'])} answer tokens; recorded on "
                       f"{recorded_on(trace)} in {meta['seconds']:.2f} s = {rate_text(tokens_per_second(trace))}")


def decode_once(model_name: str, request: DecodeRequest, token: CancelToken | None = None) -> DecodeOutcome:
    """A whole decode without streaming, in the caller's thread (compare, sweep and /decode run it inside a model
    job, `in_model_job`); the token stops it within one step."""
    model = get_model(model_name)
    try:
        return decode(model, request, observers=[token.observer()] if token else ())
    except ValueError as err:
        raise gr.Error(f"The decode was refused: {err}.") from None


def in_model_job(work: Callable[[CancelToken, Callable[[Any], None]], Any],
                 newest_only: bool = True) -> Iterator[tuple[str, Any]]:
    """Run work(token, emit) as a model job (one decode at a time, stopped within a step when the caller is closed);
    yields ("starting" | "waiting" | "running", None) keep-alives and ("progress", item), then ("done", result). A
    cancelled job raises gr.Error."""
    token = CancelToken()
    try:
        yield from run_in_worker(lambda emit: work(token, emit), token, DECODE_JOBS, name="dllm-model-job",
                                 newest_only=newest_only)
    except DecodeCancelled:
        raise gr.Error("Cancelled: the run stopped at its next step.") from None


def require_trace(trace: Trace | None) -> Trace:
    if trace is None:
        raise gr.Error("There is no trace yet: decode a prompt or import a trace file first.")
    return trace


def import_trace(path: str | None) -> Trace:
    """Read an uploaded trace file (size-capped, JSON data only)."""
    if not path:
        raise gr.Error("No file was uploaded: pick a trace file (.json or .json.gz) exported from this app.")
    size = Path(path).stat().st_size
    if size > MAX_TRACE_BYTES:
        raise gr.Error(f"The file is {size / 2**20:.1f} MB; traces up to {MAX_TRACE_BYTES // 2**20} MB are "
                       "accepted. Export a shorter decode.")
    try:
        return load_trace(path, max_bytes=MAX_TRACE_BYTES)
    except TraceFormatError as err:
        raise gr.Error(f"This file is not a usable decoding trace: {err}. Upload a trace exported from this app.") \
            from None
