"""Handlers that decode several times: compare rules (or cache modes) on one prompt and seed, and sweep a credit
knob. Each runs as one model job (app.decoding_runs.in_model_job): it yields keep-alives while it works, so a Cancel
or a closed page stops it within one decoding step."""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Iterator, Sequence

import gradio as gr
import pandas as pd
import plotly.graph_objects as go

from analysis import colors
from analysis.trace_compare import commit_order_figure, compare_table, sweep_figure, sweep_table, token_agreement
from app.decoding_runs import MAX_COMPARE, MAX_SWEEP_POINTS, decode_once, get_model, in_model_job, make_request
from engine.decoding.registry import BASELINE
from engine.decoding.trace import significant
from engine.models.kv_forward import cache_modes
from engine.pipeline import DecodeOutcome

SWEEP_KNOBS = {"beta": (0.0, 1.0), "alpha": (0.0, 5.0)}  # knob -> allowed range in a sweep
DEFAULT_GRIDS = {"beta": "0.1, 0.3, 0.5, 0.7, 0.9", "alpha": "0, 0.35, 0.65, 1.0, 2.0"}
RUNNING = "…"  # a sweep status ending so is still decoding


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
          alpha: float, beta: float, gamma: float, seed: int) -> Iterator[dict[str, Any]]:
    """Decode once with fixed steps (one token per step, the reference answer), then once per knob value with
    credit, as one model job. Yields the status ("k of n decodes"), the table (every value from the start, "pending"
    until decoded) and the figure (x axis over the whole grid) before the first decode and after every one; {}
    (nothing new) while a decode runs, so a Cancel or a closed page stops it within one step."""
    values = parse_grid(knob, grid_text)
    base = make_request(prompt, "credit", gen_length, block_length, 0, tau, "custom", alpha, beta, gamma, seed)
    requests = []
    for value in values:
        try:
            requests.append(replace(base, **{knob: value}))
        except ValueError as err:
            raise gr.Error(f"{knob} = {value} is refused: {err}; change that value.") from None
    total, symbol = len(values) + 1, colors.KNOB_SYMBOLS[knob]
    rows: list[dict] = []
    yield {"sweep_status": f"decode 1 of {total}: fixed steps, the reference answer{RUNNING}",
           "sweep_table": sweep_table(rows, knob, values), "sweep_plot": sweep_figure(rows, knob, values, None)}

    def work(token, emit) -> int:
        """Emits (reference NFE, the rows so far, the index of the value decoding now): each supersedes the last."""
        reference = decode_once(model_name, replace(base, rule=BASELINE, steps=None), token)
        reference_tokens = reference.trace.arrays["tokens"][0]
        done: list[dict] = []
        for index, (value, request) in enumerate(zip(values, requests)):
            emit((reference.result.nfe, list(done), index))
            outcome = decode_once(model_name, request, token)
            done.append({"value": value, "nfe": outcome.result.nfe,
                         "agreement": round(token_agreement(outcome.trace.arrays["tokens"][0], reference_tokens), 4),
                         "tokens_per_second": significant(outcome.tokens_per_second), "answer": outcome.answer})
        emit((reference.result.nfe, done, len(values)))
        return reference.result.nfe

    for kind, payload in in_model_job(work, newest_only=False):  # every decode's row and status, in order
        if kind == "done":
            yield {"sweep_status": f"done: {total} of {total} decodes (fixed steps NFE {payload})."}
        elif kind != "progress":
            yield {}
        else:
            reference_nfe, decoded, index = payload
            shown = {}
            if len(decoded) > len(rows):
                rows = decoded
                shown = {"sweep_table": sweep_table(rows, knob, values),
                         "sweep_plot": sweep_figure(rows, knob, values, reference_nfe)}
            if index < len(values):
                shown["sweep_status"] = (f"{index + 1} of {total} decodes done; decode {index + 2}: credit with "
                                         f"{symbol} = {values[index]:g}{RUNNING}")
            yield shown


def sweep_knob_changed(knob: str) -> dict[str, Any]:
    """Another swept knob: its default grid, and the previous knob's results cleared (they are not this knob's)."""
    if knob not in SWEEP_KNOBS:
        raise gr.Error(f"Sweep knob {knob!r} is unknown; pick one of: {', '.join(SWEEP_KNOBS)}.")
    return {"sweep_grid": DEFAULT_GRIDS[knob], "sweep_table": empty_sweep_table(knob), "sweep_plot": None,
            "sweep_status": f"The swept knob is now {colors.knob_label(knob)}: press Sweep to decode its values."}


def empty_sweep_table(knob: str) -> pd.DataFrame:
    """The table before a sweep: the knob's default values, all pending."""
    return sweep_table([], knob, parse_grid(knob, DEFAULT_GRIDS[knob]))


def sweep_cancelled(status: str) -> Any:
    """The sweep status after Cancel: a running sweep says where it stopped (decoded rows stay)."""
    if not (status or "").endswith(RUNNING):
        return gr.skip()
    return status.removesuffix(RUNNING).split("; decode")[0] + "; cancelled, the rows above are the values decoded."
