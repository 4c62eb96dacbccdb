"""The Decoding Explorer's handlers: plain values in, a dict keyed by the tab's component names out (or a plain
value for single-output events), testable without a server. Every handler that changes the trace on screen (a
decode, a cached example, an import, a compared decode picked) returns every panel that shows it: the top panel
(`trace_panels`) here, the views (`view_panels`) in the event chained after it. The views read the trace only, never
the model, so switching a view, recolouring or scrubbing costs no forward pass."""
from __future__ import annotations

from typing import Any, Iterator

import gradio as gr
import pandas as pd
import plotly.graph_objects as go

from analysis import colors
from analysis.trace_data import (METRIC_ARRAYS, PAGE_POSITIONS, page_count, rate_text, recorded_on,
                                 tokens_per_second)
from analysis.trace_heatmap import heatmap_figure, overview_figure
from analysis.trace_inspector import inspector_figure, topk_table
from analysis.trace_timeline import stability_figure, timeline_figure
from analysis.trace_tokens import order_html, scrub_html
from app import decoding_experiments as experiments
from app import decoding_runs as runs
from app import examples as cached
from app.decoding_runs import require_trace
from app.session import CancelToken, session_folder
from app.session_files import make_room
from engine.decoding import CREDIT_PRESETS, Trace, rule_entry, save_trace
from engine.pipeline import DecodeRequest

# The knob components, in make_request's order: every event that decodes takes them in this order.
KNOBS = ("rule", "gen_length", "block_length", "steps", "tau", "preset", "alpha", "beta", "gamma", "seed", "cache")
TOP_PANEL_NAMES = ("live", "status", "answer", "stats", "trace")  # what shows the trace on screen, above the views
VIEW_PANEL_NAMES = ("info", "heatmap", "overview", "timeline", "stability", "order", "scrub", "inspector", "topk",
                    "page", "step", "position")  # the views of the trace on screen


def metric_key(metric: str) -> str:
    """Accept a metric id (raw / fused / credit / entropy) or its display label."""
    for key, label in colors.HEATMAP_METRICS.items():
        if metric in (key, label):
            return key
    raise gr.Error(f"Heatmap colour {metric!r} is unknown; pick one of: {', '.join(METRIC_ARRAYS)}.")


def heatmap(trace: Trace | None, metric: str, page_number: int) -> go.Figure:
    """The heatmap for a page (1-based, as the page box shows it)."""
    return heatmap_figure(require_trace(trace), metric_key(metric), int(page_number) - 1, PAGE_POSITIONS)


def heatmaps(trace: Trace | None, metric: str, page_number: int) -> dict[str, Any]:
    """A page of the heatmap and, for a trace of more than one page, the overview of every position (one row per
    page), both in the picked colour."""
    trace = require_trace(trace)
    pages = page_count(trace, PAGE_POSITIONS)
    overview = overview_figure(trace, metric_key(metric), PAGE_POSITIONS) if pages > 1 else None
    return {"heatmap": heatmap(trace, metric, page_number), "overview": gr.update(value=overview, visible=pages > 1)}


def scrub(trace: Trace | None, step: int) -> str:
    return scrub_html(require_trace(trace), int(step))


def inspect(trace: Trace | None, position: int) -> tuple[go.Figure, pd.DataFrame]:
    trace = require_trace(trace)
    gen_length = trace.meta["gen_length"]
    if not 0 <= int(position) < gen_length:
        raise gr.Error(f"Position {position} is outside the answer; pick 0 to {gen_length - 1}.")
    return inspector_figure(trace, int(position)), topk_table(trace, int(position))


def trace_info(trace: Trace) -> str:
    """One Markdown line about the trace on screen."""
    meta = trace.meta
    params = ", ".join(colors.knob_label(k) if v is True else f"{colors.knob_label(k)} = {v}"
                       for k, v in meta["params"].items() if v is not False)  # a switch shows only when on
    prompt = meta.get("prompt", "")
    shown = prompt if len(prompt) <= 80 else prompt[:79] + "…"
    return (f"**NFE {meta['nfe']}** with **{colors.rule_label(meta['rule'])}** ({params}) on "
            f"**{meta.get('model', 'unknown model')}**, prompt “{shown}”: gen_length {meta['gen_length']}, "
            f"block_length {meta['block_length']}, seed {meta['seed']}; "
            f"{rate_text(tokens_per_second(trace))} on {recorded_on(trace)}")


def render_views(trace: Trace | None, metric: str, position: int) -> dict:
    """Every view of a trace, plus the ranges the page / step / position sliders need."""
    trace = require_trace(trace)
    last_step = max(trace.n_steps - 1, 0)
    position = min(max(int(position), 0), trace.meta["gen_length"] - 1)
    inspector, table = inspect(trace, position)
    return {"info": trace_info(trace), **heatmaps(trace, metric, 1), "timeline": timeline_figure(trace),
            "stability": stability_figure(trace), "order": order_html(trace), "scrub": scrub_html(trace, last_step),
            "inspector": inspector, "topk": table, "pages": page_count(trace, PAGE_POSITIONS),
            "last_step": last_step, "position": position, "gen_length": trace.meta["gen_length"]}


def page_label(trace: Trace | None, pages: int) -> str:
    """The page box's label: how many pages, and what one holds (whole blocks: the zoom on a block)."""
    if trace is None:
        return f"heatmap page (whole blocks, up to {PAGE_POSITIONS} positions each)"
    block_length = trace.meta["block_length"]
    per_page = max(1, PAGE_POSITIONS // block_length)
    holds = "one block" if per_page == 1 else f"{per_page} blocks"
    return f"heatmap page, 1 to {pages} ({holds} of {block_length} positions each, every step)"


def export_trace(trace: Trace | None, session_id: str | None) -> str:
    """Write the trace (engine schema, gzipped JSON) into the session's folder (removed when the session ends or
    ages out, app/session_files.py); return the path to download."""
    trace = require_trace(trace)
    name = f"trace-{trace.meta['rule']}-nfe{trace.meta['nfe']}-seed{trace.meta['seed']}.json.gz"
    folder = session_folder(session_id)
    make_room(folder)
    return str(save_trace(trace, folder / name))


def view_panels(trace: Trace | None, metric: str, position: int) -> dict[str, Any]:
    """Every view of the trace on screen, by component name, with the page / step / position sliders fitted to it
    (nothing when there is no trace yet)."""
    if trace is None:
        return {}
    out = render_views(trace, metric, position)
    return {"info": out["info"], "heatmap": out["heatmap"], "overview": out["overview"], "timeline": out["timeline"],
            "stability": out["stability"], "order": out["order"], "scrub": out["scrub"],
            "inspector": out["inspector"], "topk": out["topk"],
            "page": gr.update(maximum=out["pages"], value=1, label=page_label(trace, out["pages"])),
            "step": gr.update(maximum=max(out["last_step"], 1), value=out["last_step"]),
            "position": gr.update(maximum=out["gen_length"] - 1, value=out["position"])}


def trace_panels(trace: Trace, source: str) -> dict[str, Any]:
    """The top panel (answer as tokens, status, answer text, summary) for a finished trace, and the trace itself."""
    frame = runs.trace_frame(trace, source)
    return {"live": frame.html, "status": frame.status, "answer": trace.meta.get("answer", ""),
            "stats": runs.trace_summary(trace), "trace": trace}


def live_decode(model: str, prompt: str, token: CancelToken, rule: str, gen_length: int, block_length: int,
                steps: int, tau: float, preset: str, alpha: float, beta: float, gamma: float,
                seed: int, cache: str = "none") -> Iterator[dict[str, Any]]:
    """Decode with the knobs, one dict per frame; the last one carries the new trace."""
    request = runs.make_request(prompt, rule, gen_length, block_length, steps, tau, preset, alpha, beta, gamma, seed,
                                cache)
    for frame in runs.decode_frames(model, request, token):
        if frame is None:  # keep-alive: nothing new, but the server may close the stream here
            yield {}
        elif frame.outcome is None:
            yield {"live": frame.html, "status": frame.status}
        else:
            yield {"live": frame.html, "status": frame.status, "answer": frame.outcome.answer,
                   "stats": runs.summary(frame.outcome), "trace": frame.outcome.trace}


def retune(enabled: bool, model: str, prompt: str, token: CancelToken, rule: str, gen_length: int, block_length: int,
           steps: int, tau: float, preset: str, alpha: float, beta: float, gamma: float,
           seed: int, cache: str = "none") -> Iterator[dict[str, Any]]:
    """A released α / β knob re-decodes (when enabled, for credit rules) with the preset switched to custom (a
    moved knob leaves the preset)."""
    if not enabled or not rule_entry(rule).has("credit"):
        yield {}
        return
    for panels in live_decode(model, prompt, token, rule, gen_length, block_length, steps, tau, "custom", alpha, beta,
                              gamma, seed, cache):
        yield {"preset": "custom", **panels}


def custom_preset() -> str:
    """A moved α / β / γ leaves its preset (a preset's values win over the knobs), re-decoding or not."""
    return "custom"


def preset_knobs(name: str) -> dict[str, Any]:
    """α, β, γ for a credit preset (parameter_free computes them per step, so they are locked)."""
    if name == "parameter_free":
        return {"alpha": gr.update(interactive=False), "beta": gr.update(interactive=False),
                "gamma": gr.update(value=1.0, interactive=False)}
    if name in CREDIT_PRESETS:
        return {k: gr.update(value=CREDIT_PRESETS[name][k], interactive=True) for k in ("alpha", "beta", "gamma")}
    return {k: gr.update(interactive=True) for k in ("alpha", "beta", "gamma")}


def rule_knobs(name: str) -> dict[str, Any]:
    """Only the knobs the rule reads are shown (its capabilities in the rule registry)."""
    entry = rule_entry(name)
    credit = entry.has("credit")
    return {"steps": gr.update(visible=entry.has("step_budget")), "tau": gr.update(visible=entry.has("threshold")),
            **{k: gr.update(visible=credit) for k in ("preset", "alpha", "beta", "gamma")}}


def knob_differences(trace: Trace, model: str, prompt: str, request: DecodeRequest) -> list[str]:
    """What the knobs ask for that the trace on screen was not decoded with: "name: trace value → knob value"."""
    meta = trace.meta
    shown = {"model": meta.get("model"), "prompt": meta.get("prompt"), "rule": colors.rule_label(meta["rule"]),
             "gen_length": meta["gen_length"], "block_length": meta["block_length"], "seed": meta["seed"],
             "cache": meta["cache"]["mode"], **{colors.knob_label(k): v for k, v in meta["params"].items()}}
    asked = {"model": model, "prompt": prompt, "rule": colors.rule_label(request.rule),
             "gen_length": request.gen_length, "block_length": request.block_length, "seed": request.seed,
             "cache": request.cache, **{colors.knob_label(k): v for k, v in request.make_rule().params().items()}}
    differ = [name for name in asked if not _same(shown.get(name), asked[name])]
    return [f"{name}: {_short(shown.get(name))} → {_short(asked[name])}" for name in differ]


def staleness(trace: Trace | None, model: str, prompt: str, rule: str, gen_length: int, block_length: int, steps: int,
              tau: float, preset: str, alpha: float, beta: float, gamma: float, seed: int, cache: str = "none") -> str:
    """A warning above the views when the knobs no longer match the trace they show (moving a knob never re-draws
    them by itself); empty when they match."""
    if trace is None:
        return ""
    try:
        request = runs.make_request(prompt, rule, gen_length, block_length, steps, tau, preset, alpha, beta, gamma,
                                    seed, cache)
    except gr.Error as err:
        return f"⚠️ **The views below show an earlier decode**; the knobs are not a valid decode yet: {err.message}"
    differ = knob_differences(trace, model, prompt, request)
    if not differ:
        return ""
    return (f"⚠️ **The views below show an earlier decode, not the knobs** ({'; '.join(differ)}). Press **Decode** "
            "to see the knobs' decode.")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and abs(float(a) - float(b)) < 1e-9
    return a == b


def _short(value: Any) -> str:
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return f"“{text[:30]}…”" if len(text) > 30 else text


def show_example(name: str | None) -> dict[str, Any]:
    """A cached example trace becomes the trace on screen."""
    return trace_panels(cached.example_trace(name), "recorded trace") if name else {}


def import_file(path: str | None) -> dict[str, Any]:
    """An uploaded trace file becomes the trace on screen."""
    return trace_panels(runs.import_trace(path), "imported trace")


def compare(model: str, prompt: str, rules: list[str], gen_length: int, block_length: int, steps: int, tau: float,
            preset: str, alpha: float, beta: float, gamma: float, seed: int,
            cache: str = "none") -> Iterator[dict[str, Any]]:
    """Decode with 2-3 rules as one model job (nothing to show while it runs); the table, the figure and the decodes
    (kept in the session to pick one)."""
    yield from _compared(experiments.compare_outcomes(model, prompt, rules, gen_length, block_length, steps, tau,
                                                      preset, alpha, beta, gamma, seed, cache))


def compare_caches(model: str, prompt: str, rule: str, gen_length: int, block_length: int, steps: int, tau: float,
                   preset: str, alpha: float, beta: float, gamma: float, seed: int) -> Iterator[dict[str, Any]]:
    """Decode with the rule and every cache mode the model can use, no cache first; as `compare`."""
    yield from _compared(experiments.cache_outcomes(model, prompt, rule, gen_length, block_length, steps, tau, preset,
                                                    alpha, beta, gamma, seed))


def _compared(job: Iterator[tuple[str, Any]]) -> Iterator[dict[str, Any]]:
    """{} while the model job runs (a keep-alive the server may close), then the comparison panels."""
    for kind, outcomes in job:
        if kind != "done":
            yield {}
            continue
        table, figure = experiments.compare_views(outcomes)
        yield {"compare_table": table, "compare_plot": figure, "compared": [o.trace for o in outcomes]}


def pick_compared(compared: list[Trace] | None, row: int) -> dict[str, Any]:
    """A clicked row of the comparison table: that rule's decode becomes the trace on screen."""
    if not compared:
        raise gr.Error("There is no comparison yet: press Compare first.")
    if not 0 <= int(row) < len(compared):
        raise gr.Error(f"Row {row} is not in the comparison; click one of its {len(compared)} rows.")
    return trace_panels(compared[int(row)], "compared decode")


def export(trace: Trace | None, request: gr.Request | None = None) -> str:
    """The Export button: the trace into this browser session's folder."""
    return export_trace(trace, request.session_hash if request else None)

