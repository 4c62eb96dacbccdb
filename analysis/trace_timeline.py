"""Progress over a decode (tokens per step, cumulative, tokens/s) and the paper's Figure 1: per token, the step
from which its top-1 stayed the final token ("stable since") against the step that committed it."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analysis import colors
from analysis.trace_data import (MAX_VIEW_STEPS, credit_forced, rate_text, recorded_on, threshold, token_label,
                                 tokens_per_second, view_window, window_note)
from engine.decoding.trace import Trace


def timeline_figure(trace: Trace) -> go.Figure:
    """Top: tokens committed per step (bars, one colour per block) and cumulative (line); with a key/value cache,
    the refresh steps (every key recomputed) as markers above their bars. Bottom: cumulative tokens against wall
    time, whose slope is tokens/s. Draws the first MAX_VIEW_STEPS steps and says so."""
    shown = min(trace.n_steps, MAX_VIEW_STEPS)
    committed = trace.arrays["committed"][:shown, 0].sum(axis=-1)  # (s,)
    cumulative = np.cumsum(committed)
    elapsed = np.cumsum(trace.arrays["step_seconds"][:shown])
    steps = np.arange(shown)
    block_colors = [colors.CATEGORICAL[b % len(colors.CATEGORICAL)]
                    for b in trace.arrays["step_block"][:shown].tolist()]
    fig = make_subplots(rows=2, cols=1, specs=[[{"secondary_y": True}], [{}]], vertical_spacing=0.16,
                        subplot_titles=("tokens committed per step (colour = block)", "progress over wall time"))
    fig.add_trace(go.Bar(x=steps, y=committed, marker_color=block_colors, name="committed this step",
                         hovertemplate="step %{x}: %{y} committed<extra></extra>"), row=1, col=1)
    fig.add_trace(go.Scatter(x=steps, y=cumulative, mode="lines", name="committed so far",
                             line={"color": colors.NEUTRAL}), row=1, col=1, secondary_y=True)
    fig.add_trace(go.Scatter(x=elapsed, y=cumulative, mode="lines+markers", marker={"size": 4},
                             name="committed vs seconds", line={"color": colors.STABLE},
                             hovertemplate="%{x:.2f} s: %{y} committed<extra></extra>"), row=2, col=1)
    cache = trace.meta["cache"]
    if cache["mode"] != "none":
        refreshed = np.flatnonzero(trace.arrays["step_recomputed"][:shown])
        fig.add_trace(go.Scatter(x=refreshed, y=committed[refreshed] + 0.3, mode="markers", name="cache refresh",
                                 marker={"symbol": "triangle-down", "size": 9, "color": colors.REFRESH},
                                 hovertemplate="step %{x}: cache refresh<extra></extra>"), row=1, col=1)
    fig.update_xaxes(title_text="step (NFE - 1)", row=1, col=1)
    fig.update_yaxes(title_text="tokens", row=1, col=1)
    fig.update_yaxes(title_text="cumulative", row=1, col=1, secondary_y=True)
    fig.update_xaxes(title_text="seconds", row=2, col=1)
    fig.update_yaxes(title_text="committed", row=2, col=1)
    fig.update_layout(
        title=(f"NFE {trace.meta['nfe']} for {trace.meta['gen_length']} positions · "
               f"{trace.meta.get('answer_tokens', trace.meta['gen_length'])} answer tokens in "
               f"{trace.meta['seconds']:.2f} s on {recorded_on(trace)} = {rate_text(tokens_per_second(trace))}"
               + cache_note(cache)
               + (f"<br>steps 0-{shown - 1} of {trace.n_steps} shown (a view draws at most {MAX_VIEW_STEPS} steps; "
                  "the heatmap pages through all)" if shown < trace.n_steps else "")),
        height=560, showlegend=False, margin={"l": 60, "r": 60, "t": 70, "b": 50})
    return fig


def cache_note(cache: dict) -> str:
    """' · cache dual, refresh every 4 steps' (nothing without a cache)."""
    if cache["mode"] == "none":
        return ""
    every = "each block" if cache["refresh"] is None else f"every {cache['refresh']} steps"
    return f" · cache {cache['mode']}, refreshed {every}"


def stability_figure(trace: Trace) -> go.Figure:
    """Per position: "stable since" (open circle), "committed at" (filled), the gap between them (grey line: the
    redundant steps credit aims to remove), and credit-forced commits (raw p < tau <= fused p) as diamonds. Draws
    the first MAX_VIEW_POSITIONS positions and says so."""
    window = view_window(trace.meta["gen_length"])
    commit = trace.arrays["commit_step"][0, :window[1]]
    stable = trace.arrays["stable_step"][0, :window[1]]
    forced = credit_forced(trace)[:window[1]]
    positions = np.arange(len(commit))
    decoded = commit >= 0
    has_stable = decoded & (stable >= 0)
    labels = [token_label(trace, t) for t in trace.arrays["tokens"][0, :window[1]].tolist()]
    gap_x, gap_y = [], []
    for position in np.flatnonzero(has_stable).tolist():
        gap_x += [position, position, None]
        gap_y += [stable[position], commit[position], None]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=gap_x, y=gap_y, mode="lines", line={"color": colors.GREYED, "width": 3},
                             name="gap (redundant steps)", hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=positions[has_stable], y=stable[has_stable], mode="markers", name="stable since",
                             marker={"symbol": "circle-open", "size": 8, "color": colors.STABLE},
                             text=[labels[i] for i in np.flatnonzero(has_stable)],
                             hovertemplate="position %{x} %{text}: stable since step %{y}<extra></extra>"))
    for mask, name, symbol, color in ((decoded & ~forced, "committed at", "circle", colors.COMMIT),
                                      (decoded & forced, "committed because of credit", "diamond",
                                       colors.CREDIT_FORCED)):
        fig.add_trace(go.Scatter(x=positions[mask], y=commit[mask], mode="markers", name=name,
                                 marker={"symbol": symbol, "size": 8, "color": color},
                                 text=[labels[i] for i in np.flatnonzero(mask)],
                                 hovertemplate="position %{x} %{text}: committed at step %{y}<extra></extra>"))
    gaps = (commit - stable)[has_stable]
    tau = threshold(trace)
    note = window_note(window, trace.meta["gen_length"], "the heatmap pages through all")
    fig.update_layout(
        title=(f"stable since vs committed at: mean gap {gaps.mean() if gaps.size else 0:.1f} steps, "
               f"{int(forced.sum())} credit-forced commits"
               + (f" (τ = {tau:g})" if tau is not None else "")
               + (f"<br>{note}" if note else "")),
        xaxis_title="answer position", yaxis_title="step", height=420, legend={"orientation": "h", "y": -0.2},
        margin={"l": 60, "r": 20, "t": 50, "b": 60})
    return fig
