"""Handlers that decode several times: compare rules (or cache modes) on one prompt and seed, and sweep a credit
knob."""
from __future__ import annotations

from dataclasses import replace
from typing import Iterator, Sequence

import gradio as gr
import pandas as pd
import plotly.graph_objects as go

from analysis.trace_compare import commit_order_figure, compare_table, sweep_figure, token_agreement
from app.decoding_runs import MAX_COMPARE, MAX_SWEEP_POINTS, decode_once, get_model, make_request
from engine.decoding.registry import BASELINE
from engine.models.kv_forward import cache_modes
from engine.pipeline import DecodeOutcome

SWEEP_KNOBS = {"beta": (0.0, 1.0), "alpha": (0.0, 5.0)}  # knob -> allowed range in a sweep
DEFAULT_GRIDS = {"beta": "0.1, 0.3, 0.5, 0.7, 0.9", "alpha": "0, 0.35, 0.65, 1.0, 2.0"}


def compare_outcomes(model_name: str, prompt: str, rules: Sequence[str], gen_length: int, block_length: int,
                     steps: int, tau: float, preset: str, alpha: float, beta: float, gamma: float,
                     seed: int, cache: str = "none") -> list[DecodeOutcome]:
    """Decode the prompt with 2-3 rules, same seed, knobs and cache."""
    rules = list(rules or [])
    if not 2 <= len(rules) <= MAX_COMPARE:
        raise gr.Error(f"{len(rules)} rules are ticked; tick 2 or {MAX_COMPARE} rules to compare.")
    requests = [make_request(prompt, rule, gen_length, block_length, steps, tau, preset, alpha, beta, gamma, seed,
                             cache) for rule in rules]
    return [decode_once(model_name, request) for request in requests]


def cache_outcomes(model_name: str, prompt: str, rule: str, gen_length: int, block_length: int, steps: int,
                   tau: float, preset: str, alpha: float, beta: float, gamma: float,
                   seed: int) -> list[DecodeOutcome]:
    """Decode the prompt with one rule and every cache mode the model can use (no cache first), same seed and
    knobs: what a cache changes in the answer, the NFE and the time."""
    base = make_request(prompt, rule, gen_length, block_length, steps, tau, preset, alpha, beta, gamma, seed)
    modes = cache_modes(get_model(model_name), int(block_length))
    return [decode_once(model_name, replace(base, cache=mode)) for mode in modes]


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
    credit; yield the table and figure after every decode so the picture fills in."""
    values = parse_grid(knob, grid_text)
    base = make_request(prompt, "credit", gen_length, block_length, 0, tau, "custom", alpha, beta, gamma, seed)
    reference = decode_once(model_name, replace(base, rule=BASELINE, steps=None))
    reference_tokens = reference.trace.arrays["tokens"][0]
    rows = []
    for value in values:
        try:
            request = replace(base, **{knob: value})
        except ValueError as err:
            raise gr.Error(f"{knob} = {value} is refused: {err}; change that value.") from None
        outcome = decode_once(model_name, request)
        rows.append({"value": value, "nfe": outcome.result.nfe,
                     "agreement": round(token_agreement(outcome.trace.arrays["tokens"][0], reference_tokens), 4),
                     "tokens/s": round(outcome.tokens_per_second, 2), "reference_nfe": reference.result.nfe,
                     "answer": outcome.answer})
        table = pd.DataFrame(rows)
        yield table, sweep_figure(table, knob)

