"""The /decode API: one whole decode as a model job, answered with the summary and the trace (strict JSON, bounded
in size)."""
from __future__ import annotations

import json
from typing import Iterator

from app.decoding_runs import DEFAULTS, check_model, decode_once, in_model_job, make_request, summary
from engine.decoding.trace_io import strict_json, trace_json
from engine.pipeline import DecodeOutcome

MAX_RESPONSE_BYTES = 24 * 2**20  # a /decode response; the knob caps keep it near 13 MB (gen 1024, block 64, 1024 steps)
STATUS = {"starting": "starting", "waiting": "waiting for the model (one decode at a time)"}  # else "decoding"


def api_decode(prompt: str, model: str = "bundled", rule: str = DEFAULTS["rule"],
               gen_length: int = DEFAULTS["gen_length"], block_length: int = DEFAULTS["block_length"], steps: int = 0,
               tau: float = DEFAULTS["threshold"], preset: str = DEFAULTS["preset"], alpha: float = DEFAULTS["alpha"],
               beta: float = DEFAULTS["beta"], gamma: float = DEFAULTS["gamma"], seed: int = DEFAULTS["seed"],
               cache: str = DEFAULTS["cache"]) -> Iterator[dict]:
    """Decode a prompt; return the answer, NFE, tokens/s and the whole trace (the engine's schema, as exported).
    rule: a rule id of the registry (low_confidence, threshold, credit, credit_low_confidence) or its label; steps = 0
    means gen_length (fixed-steps rules);
    tau = threshold τ, alpha = fusion α, beta = decay β, gamma = boost γ (preset custom; paper / dinfer /
    parameter_free set them); cache = key/value cache none / prefix / dual (Fast-dLLM). While it waits for the
    model or decodes it streams {"status": ...}; the last message is the result (what gradio_client's predict
    returns), strict JSON of at most MAX_RESPONSE_BYTES. A cancelled or disconnected call stops the decode within one
    step."""
    request = make_request(prompt, rule, gen_length, block_length, steps, tau, preset, alpha, beta, gamma, seed, cache)
    check_model(model)
    for kind, payload in in_model_job(lambda token, emit: decode_once(model, request, token)):
        yield response(payload) if kind == "done" else {"status": STATUS.get(kind, "decoding")}


def response(outcome: DecodeOutcome) -> dict:
    """The /decode result: the summary and the trace, strict JSON (no NaN); a trace that would take the response
    past MAX_RESPONSE_BYTES is left out and "trace_omitted" says why and how to get it."""
    payload = {**strict_json(summary(outcome)), "trace": trace_json(outcome.trace)}
    size = len(json.dumps(payload, allow_nan=False, separators=(",", ":")))
    if size > MAX_RESPONSE_BYTES:
        payload.update(trace=None, trace_omitted=f"the trace is {size / 2**20:.1f} MB of JSON, over the "
                                                 f"{MAX_RESPONSE_BYTES / 2**20:.0f} MB a response carries; decode "
                                                 "with /decode_live and download it with /export_trace")
    return payload
