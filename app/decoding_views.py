"""Handlers that render a finished (or imported) trace: every one reads the trace only, never the model, so
switching a view, recolouring or scrubbing costs no forward pass."""
from __future__ import annotations

import gradio as gr
import pandas as pd
import plotly.graph_objects as go

from analysis import colors
from analysis.trace_data import METRIC_ARRAYS, page_count, tokens_per_second
from analysis.trace_heatmap import heatmap_figure
from analysis.trace_inspector import inspector_figure, topk_table
from analysis.trace_timeline import stability_figure, timeline_figure
from analysis.trace_tokens import order_html, scrub_html
from app.decoding_handlers import require_trace
from app.session_files import make_room, session_folder
from engine.decoding import Trace, save_trace

PAGE_POSITIONS = 128  # heatmap page width: whole blocks up to this many positions


def metric_key(metric: str) -> str:
    """Accept a metric id (raw / fused / credit / entropy) or its display label."""
    for key, label in colors.HEATMAP_METRICS.items():
        if metric in (key, label):
            return key
    raise gr.Error(f"Heatmap colour {metric!r} is unknown; pick one of: {', '.join(METRIC_ARRAYS)}.")


def heatmap(trace: Trace | None, metric: str, page_number: int) -> go.Figure:
    """The heatmap for a page (1-based, as the slider shows it)."""
    return heatmap_figure(require_trace(trace), metric_key(metric), int(page_number) - 1, PAGE_POSITIONS)


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
    params = ", ".join(f"{colors.KNOB_LABELS.get(k, k)} = {v}" for k, v in meta["params"].items())
    prompt = meta.get("prompt", "")
    shown = prompt if len(prompt) <= 80 else prompt[:79] + "…"
    return (f"**{colors.rule_label(meta['strategy'])}** ({params}) on **{meta.get('model', 'unknown model')}**, "
            f"prompt “{shown}”: NFE {meta['nfe']}, gen_length {meta['gen_length']}, block_length "
            f"{meta['block_length']}, {tokens_per_second(trace):.1f} tokens/s, seed {meta['seed']}")


def render_views(trace: Trace | None, metric: str, position: int) -> dict:
    """Every view of a trace, plus the ranges the page / step / position sliders need."""
    trace = require_trace(trace)
    last_step = max(trace.n_steps - 1, 0)
    position = min(max(int(position), 0), trace.meta["gen_length"] - 1)
    inspector, table = inspect(trace, position)
    return {"info": trace_info(trace), "heatmap": heatmap(trace, metric, 1), "timeline": timeline_figure(trace),
            "stability": stability_figure(trace), "order": order_html(trace), "scrub": scrub_html(trace, last_step),
            "inspector": inspector, "topk": table, "pages": page_count(trace, PAGE_POSITIONS),
            "last_step": last_step, "position": position, "gen_length": trace.meta["gen_length"]}


def export_trace(trace: Trace | None, session_id: str | None) -> str:
    """Write the trace (engine schema, gzipped JSON) into the session's folder (app/session_files.py: removed when
    the session ends or ages out); return the path to download."""
    trace = require_trace(trace)
    name = f"trace-{trace.meta['strategy']}-nfe{trace.meta['nfe']}-seed{trace.meta['seed']}.json.gz"
    folder = session_folder(session_id)
    make_room(folder)
    return str(save_trace(trace, folder / name))
