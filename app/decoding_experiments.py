"""Handlers that decode several times: compare rules (or cache modes) on one prompt and seed, and sweep a credit
knob. Each runs as one model job (app.decoding_runs.in_model_job): it yields keep-alives while it works, so a Cancel
or a closed page stops it within one decoding step."""
from __future__ import annotations

from dataclasses import replace
from typing import Iterator, Sequence

import gradio as gr
import pandas as pd
import plotly.graph_objects as go

from analysis.trace_compare import commit_order_figure, compare_table, sweep_figure, token_agreement
from app.decoding_runs import MAX_COMPARE, MAX_SWEEP_POINTS, decode_once, get_model, in_model_job, make_request
from engine.decoding.registry import BASELINE
from engine.models.kv_forward import cache_modes
from engine.pipeline import DecodeOutcome

SWEEP_KNOBS = {"beta": (0.0, 1.0), "alpha": (0.0, 5.0)}  # knob -> allowed range in a sweep
DEFAULT_GRIDS = {"beta": "0.1, 0.3, 0.5, 0.7, 0.9", "alpha": "0, 0.35, 0.65, 1.0, 2.0"}


def compare_outcomes(model_name: str, prompt: str, rules: Sequence[str], gen_length: int, block_length: int,
                     steps: int, tau: float, preset: str, alpha: float, beta: float, gamma: float,
                     seed: int, cache: str = "none") -> Iterator[tuple[str, list[DecodeOutcome] | None]]:
    """Decode the prompt with 2-3 rules, same seed, knobs and cache, as one model job: keep-alives (see
    app.decoding_runs.in_model_job), then ("done", the outcomes)."""
    rules = list(rules or [])
    if not 2 <= len(rules) <= MAX_COMPARE:
        raise gr.Error(f"{len(rules)} rules are ticked; tick 2 or {MAX_COMPARE} rules to compare.")
    requests = [make_request(prompt, rule, gen_length, block_length, steps, tau, preset, alpha, beta, gamma, seed,
                             cache) for rule in rules]
    yield from in_model_job(lambda token, emit: [decode_once(model_name, request, token) for request in requests])


def cache_outcomes(model_name: str, prompt: str, rule: str, gen_length: int, block_length: int, steps: int,
                   tau: float, preset: str, alpha: float, beta: float, gamma: float,
                   seed: int) -> Iterator[tuple[str, list[DecodeOutcome] | None]]:
    """Decode the prompt with one rule and every cache mode the model can use (no cache first), same seed and
    knobs, as one model job: what a cache changes in the answer, the NFE and the time."""
    base = make_request(prompt, rule, gen_length, block_length, steps, tau, preset, alpha, beta, gamma, seed)
    modes = cache_modes(get_model(model_name), base.block_length)
    yield from in_model_job(lambda token, emit: [decode_once(model_name, replace(base, cache=mode), token)
                                                 for mode in modes])


def compare_views(outcomes: Sequence[DecodeOutcome]) -> tuple[pd.DataFrame, go.Figure]:
    """The comparison table (each decode against the first) and where their commit orders differ."""
    traces = [outcome.trace for outcome in outcomes]
    return compare_table(traces, [o.answer for o in outcomes]), commit_order_figure(traces)


def parse_grid(knob: str, text: str) -> list[float]:
    """Comma-separated knob values, checked against the knob's range and the point limit."""
    if knob not in SWEEP_KNOBS:
        raise gr.Error(f"Sweep knob {knob!r} is unknown; pick one of: {', '.join(SWEEP_KNOBS)}.")
    try:
        values = [float(part) for part in (text or "").replace(";", ",").split(",") if part.strip()]
    except ValueError:
        raise gr.Error(f"Sweep values {text!r} are not numbers; write them like {DEFAULT_GRIDS[knob]}.") from None
    low, high = SWEEP_KNOBS[knob]
    if not 2 <= len(values) <= MAX_SWEEP_POINTS:
        raise gr.Error(f"The sweep has {len(values)} values; give 2 to {MAX_SWEEP_POINTS}, e.g. {DEFAULT_GRIDS[knob]}.")
    outside = [v for v in values if not low <= v <= high]
    if outside:
        raise gr.Error(f"Sweep values {outside} are outside {knob}'s range [{low}, {high}]; change them.")
    return sorted(set(values))


def sweep(model_name: str, prompt: str, knob: str, grid_text: str, gen_length: int, block_length: int, tau: float,
          alpha: float, beta: float, gamma: float, seed: int) -> Iterator[tuple[pd.DataFrame, go.Figure]]:
    """Decode once with fixed steps (one token per step, the reference answer), then once per knob value with
    credit; yield the table and figure after every decode so the picture fills in ((gr.skip(), gr.skip()) while a
    decode runs)."""
    values = parse_grid(knob, grid_text)
    base = make_request(prompt, "credit", gen_length, block_length, 0, tau, "custom", alpha, beta, gamma, seed)
    requests = []
    for value in values:
        try:
            requests.append(replace(base, **{knob: value}))
        except ValueError as err:
            raise gr.Error(f"{knob} = {value} is refused: {err}; change that value.") from None

    def work(token, emit) -> None:
        reference = decode_once(model_name, replace(base, rule=BASELINE, steps=None), token)
        reference_tokens = reference.trace.arrays["tokens"][0]
        rows = []
        for value, request in zip(values, requests):
            outcome = decode_once(model_name, request, token)
            rows.append({"value": value, "nfe": outcome.result.nfe,
                         "agreement": round(token_agreement(outcome.trace.arrays["tokens"][0], reference_tokens), 4),
                         "tokens/s": round(outcome.tokens_per_second, 2), "reference_nfe": reference.result.nfe,
                         "answer": outcome.answer})
            emit(list(rows))

    for kind, rows in in_model_job(work):
        if kind == "progress":
            table = pd.DataFrame(rows)
            yield table, sweep_figure(table, knob)
        elif kind != "done":
            yield gr.skip(), gr.skip()
