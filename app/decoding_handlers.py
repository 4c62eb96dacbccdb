"""Plain handlers of the Decoding Explorer: plain values in, plain values out, testable without a server.

Bad input raises gr.Error with a sentence saying what to change; the model is loaded once per process and shared
read-only; per-session data (the trace, the cancel token) lives in the caller's gr.State.
"""
from __future__ import annotations

import importlib.util
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import gradio as gr
import numpy as np
import torch

from analysis import colors
from analysis.trace_data import commit_confidence, display_text
from analysis.trace_tokens import live_html
from app.space import zero_gpu
from app.streaming import CancelToken, LiveStep, model_job, replay_decode, stream_decode
from engine.decoding import CREDIT_PRESETS, DEFAULT_CREDIT_PRESET, DecodeCancelled, Trace, TraceFormatError, load_trace
from engine.jobs import CancelToken as JobToken
from engine.jobs import Work
from engine.models import HUB_MODELS, LoadedModel, load_model
from engine.models.hub import hub_offline
from engine.pipeline import MAX_PROMPT_CHARS, DecodeOutcome, DecodeRequest, decode

RULES = {"fixed steps": "low_confidence", "threshold": "threshold", "credit": "credit",
         "credit in fixed steps": "credit_low_confidence"}  # UI label -> engine strategy
MAX_TRACE_BYTES = 50 * 2**20  # upload cap for trace files
GEN_LENGTHS = (32, 64, 128, 256, 512, 1024)
BLOCK_LENGTHS = (8, 16, 32, 64)
MIN_FRAME_SECONDS = 0.1  # at most ~10 live frames a second reach the page; the last frame always does
MAX_COMPARE = 3
MAX_SWEEP_POINTS = 8
LOG = logging.getLogger(__name__)
_MODEL_LOCK = threading.Lock()  # two sessions asking for a model at once load it once


def bundled_available() -> bool:
    """True when engine/models/bundled.py exists and its weights file is on disk (checked without loading)."""
    if importlib.util.find_spec("engine.models.bundled") is None:
        return False
    bundled = importlib.import_module("engine.models.bundled")
    weights = getattr(bundled, "WEIGHTS_PATH", None)
    return weights is None or Path(weights).is_file()


def model_refusal(name: str) -> str | None:
    """Why a model cannot run here, or None. Hub models need a GPU and Hub access."""
    if name == "bundled" and not bundled_available():
        return "the bundled model's weights are not installed in this copy of the app; pick tiny-random"
    if name in HUB_MODELS:
        if not torch.cuda.is_available():
            return f"{name} needs a GPU (about 16 GB) and this machine has none; pick bundled"
        if hub_offline():
            return f"{name} must be downloaded from the Hugging Face Hub, but HF_HUB_OFFLINE=1; pick bundled"
    return None


def model_choices() -> tuple[list[tuple[str, str]], str]:
    """(label, value) pairs for the picker, with the reason beside any model that cannot run, and the default."""
    choices = []
    for name in ("bundled", "tiny-random", *HUB_MODELS):
        reason = model_refusal(name)
        choices.append((f"{name} (unavailable: {reason})" if reason else name, name))
    return choices, "bundled" if model_refusal("bundled") is None else "tiny-random"


def check_model(name: str) -> str:
    """Refuse, with the reason, a model that is not on the list or cannot run here (before anything is loaded)."""
    if name not in ("bundled", "tiny-random", *HUB_MODELS):
        raise gr.Error(f"Model {name!r} is not allowed; pick one from the list.")
    reason = model_refusal(name)
    if reason:
        raise gr.Error(f"Model {name!r} cannot run here: {reason}.")
    return name


def get_model(name: str) -> LoadedModel:
    """The shared, read-only model (loaded on first use, once per process)."""
    check_model(name)
    with _MODEL_LOCK:
        try:
            return load_model(name)
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
                 alpha: float, beta: float, gamma: float, seed: int) -> DecodeRequest:
    """The engine request for the knobs (the page and the API both come through here; DecodeRequest checks every
    value); steps = 0 means one token per step (steps = gen_length)."""
    if not isinstance(rule, str) or rule not in RULES:
        raise gr.Error(f"Rule {rule!r:.60} is unknown; pick one of: {', '.join(RULES)}.")
    try:
        return DecodeRequest(prompt=prompt, strategy=RULES[rule], gen_length=gen_length, block_length=block_length,
                             steps=None if steps in (0, None) else steps, threshold=tau, preset=preset, alpha=alpha,
                             beta=beta, gamma=gamma, seed=seed)
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
    job = token.start()  # before the model loads: a Cancel during the load stops the decode at its first step
    gen = request.gen_length
    masked = np.zeros(gen, dtype=bool)
    yield Frame(live_html(np.zeros(gen, dtype=np.int64), masked, np.full(gen, np.nan), str),
                f"{colors.rule_label(request.strategy)}: {gen} positions masked; loading {model_name} (first use "
                "only) and reading the prompt")
    model = get_model(model_name)
    label = _labeller(model)
    last: LiveStep | None = None
    shown_at = 0.0
    steps = replay_decode(model_name, request, job) if replay else stream_decode(model, request, job)
    try:
        for item in _refusing(steps):
            if item == "waiting" and last is None:
                yield Frame(live_html(np.zeros(gen, dtype=np.int64), masked, np.full(gen, np.nan), str),
                            "waiting: another decode is using the model (one at a time); Cancel leaves the line")
            elif isinstance(item, str):
                yield None
            elif isinstance(item, LiveStep):
                last = item
                if time.perf_counter() - shown_at >= MIN_FRAME_SECONDS:
                    shown_at = time.perf_counter()
                    yield Frame(live_html(item.ids, item.committed, item.confidence, label), _status(item, gen))
                else:
                    yield None
            else:
                meta = item.trace.meta
                done = LiveStep(step=meta["nfe"] - 1, ids=item.trace.arrays["tokens"][0],
                                committed=np.ones(gen, dtype=bool), confidence=_final_confidence(item),
                                seconds=item.result.seconds)
                yield Frame(live_html(done.ids, done.committed, done.confidence, label),
                            f"done: NFE {meta['nfe']}, {meta['answer_tokens']} answer tokens in "
                            f"{item.result.seconds:.2f} s = {item.tokens_per_second:.1f} tokens/s", outcome=item)
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


def _final_confidence(outcome: DecodeOutcome) -> np.ndarray:
    """Commit confidences from the trace (the live frames may have skipped steps); early-stop fills are NaN."""
    return commit_confidence(outcome.trace)


def summary(outcome: DecodeOutcome) -> dict:
    """The numbers a user (or an API caller) wants from a decode."""
    return {**trace_summary(outcome.trace), "answer": outcome.answer}


def trace_summary(trace: Trace) -> dict:
    """The same numbers from a trace alone (a cached example or an imported file)."""
    meta = trace.meta
    seconds = float(meta["seconds"])
    answer_tokens = meta.get("answer_tokens", meta["gen_length"])
    return {"answer": meta.get("answer", ""), "model": meta.get("model", "?"), "rule": meta["strategy"],
            "params": meta["params"], "nfe": meta["nfe"], "gen_length": meta["gen_length"],
            "block_length": meta["block_length"], "answer_tokens": answer_tokens, "seconds": round(seconds, 4),
            "tokens_per_second": round(answer_tokens / max(seconds, 1e-9), 3), "seed": meta["seed"]}


def trace_frame(trace: Trace) -> Frame:
    """The finished answer of a trace as the live view draws it, with a status line naming where it came from."""
    label = lambda token: display_text(trace.token_text.get(token, f"#{token}"))  # noqa: E731
    gen = trace.meta["gen_length"]
    html = live_html(trace.arrays["tokens"][0], np.ones(gen, dtype=bool), commit_confidence(trace), label)
    return Frame(html, f"recorded trace of {trace.meta.get('model', '?')} ({trace.meta['strategy']}): "
                       f"NFE {trace.meta['nfe']}, {trace.meta['seconds']:.2f} s when it was recorded")


def decode_once(model_name: str, request: DecodeRequest, token: JobToken | None = None) -> DecodeOutcome:
    """A whole decode without streaming, in the caller's thread (compare and sweep run it inside a model job); the
    token stops it within one step."""
    model = get_model(model_name)
    try:
        return decode(model, request, observers=[token] if token else ())
    except ValueError as err:
        raise gr.Error(f"The decode was refused: {err}.") from None


def in_model_job(work: Work) -> Iterator[tuple[str, object]]:
    """Run work(token, emit) as a model job (one at a time, stopped within a step when the caller is closed);
    yields ("starting" | "waiting" | "running", None) keep-alives and ("progress", item), then ("done", result). A
    cancelled job raises gr.Error."""
    try:
        yield from model_job(work)
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
