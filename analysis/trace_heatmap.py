"""The step x position heatmap: what the model believed at every step about every still-masked position, and an
overview of a whole long answer.

Rows are steps (forward passes), columns answer positions; a cell is blank once its position is committed or while
its block has not started. Cells keep one size however long the answer is (CELL_WIDTH_PX x CELL_HEIGHT_PX, narrower
only for blocks too wide for the plot; in the app gr.Plot stretches the width to the tab, so a page's 32 columns stay
~30 px wide): a long answer is paged by whole blocks (at the app's page width, one block of 32 per page), so each page
is a readable zoom on one block; the overview draws every position once, a row per page. An imported trace's block
longer than MAX_PAGE_WIDTH is paged in slices, and a block's steps past MAX_PAGE_STEPS go on the next page.
Cell text is dropped past TEXT_CELL_LIMIT live cells (the hover still has everything).
"""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from analysis import colors
from analysis.trace_data import (MAX_PAGE_STEPS, METRIC_ARRAYS, PAGE_POSITIONS, Page, credit_forced, grid,
                                 masked_mean, page, page_count, token_label)
from engine.decoding.trace import Trace

PLOT_WIDTH_PX = 1100  # the widest plot area the tab gives a figure; wider pages get narrower cells
CELL_WIDTH_PX = 30  # a heatmap cell, whatever the answer's length: room for 4 characters of its token
CELL_HEIGHT_PX = 22
TEXT_CELL_LIMIT = 2500  # above this many live cells, cells carry colour only (text is unreadable and slow)
# The top is Gradio's: gr.Plot raises a titled figure's top margin to 100 px (so the cells keep their size in the
# app); the bottom holds the axis title and the legend below it.
MARGIN = {"l": 60, "r": 20, "t": 100, "b": 95}
MIN_PLOT_PX = 120  # the plot area of a figure with few rows: Plotly's autosize loops when it is only a few pixels
COLORBAR_PX = 110  # room right of the plot area for the colour bar
LEGEND_BELOW_PX = 55  # the legend's top, below the plot area (the x axis title sits above it)
METRIC_SCALES = {"raw": colors.CONFIDENCE_SCALE, "fused": colors.CONFIDENCE_SCALE, "credit": colors.CREDIT_SCALE,
                 "entropy": colors.ENTROPY_SCALE}


def _hover(trace: Trace, window: Page, values: np.ndarray) -> np.ndarray:
    """(s, p) hover strings for live cells: raw / fused top-1, credit, entropy and the raw top-k."""
    hover = np.full(values.shape, "", dtype=object)
    (p_lo, _), (s_lo, _) = window.positions, window.steps
    block_length = trace.meta["block_length"]
    arrays = trace.arrays
    labels: dict[int, str] = {}

    def label(token: int) -> str:
        if token not in labels:
            labels[token] = token_label(trace, token)
        return labels[token]

    for row, col in zip(*np.nonzero(np.isfinite(values))):
        step, position = s_lo + row, p_lo + col
        slot = position % block_length
        topk = ", ".join(f"{label(t)!r} {p:.2f}" for t, p in zip(arrays["topk_ids"][step, 0, slot].tolist(),
                                                                 arrays["topk_probs"][step, 0, slot].tolist()))
        hover[row, col] = (
            f"step {step}, position {position}<br>raw top-1 {label(int(arrays['raw_top1_id'][step, 0, slot]))!r} "
            f"p={arrays['raw_top1_prob'][step, 0, slot]:.3f}<br>fused top-1 "
            f"{label(int(arrays['fused_top1_id'][step, 0, slot]))!r} ŝ={arrays['fused_top1_prob'][step, 0, slot]:.3f}"
            f"<br>credit {arrays['credit_top1'][step, 0, slot]:.3f} · entropy {arrays['entropy'][step, 0, slot]:.2f}"
            f"<br>top-{arrays['topk_ids'].shape[-1]}: {topk}")
    return hover


def _cell_width(columns: int) -> float:
    return min(CELL_WIDTH_PX, PLOT_WIDTH_PX / max(columns, 1))


def _fixed_size(columns: int, rows: int) -> dict:
    """Layout keys that give every cell the same size in pixels (the figure grows with the page, not the cells)."""
    width = MARGIN["l"] + MARGIN["r"] + COLORBAR_PX + columns * _cell_width(columns)
    plot = max(rows * CELL_HEIGHT_PX, MIN_PLOT_PX)
    return {"width": int(width), "height": int(MARGIN["t"] + MARGIN["b"] + plot), "autosize": False, "margin": MARGIN}


def _legend_below(rows: int) -> dict:
    return {"orientation": "h", "yanchor": "top", "y": -LEGEND_BELOW_PX / max(rows * CELL_HEIGHT_PX, MIN_PLOT_PX)}


def _zmax(metric: str, values: np.ndarray) -> float:
    if metric in ("raw", "fused"):
        return 1.0
    return max(float(np.nanmax(values)), 1e-6) if np.isfinite(values).any() else 1.0


def heatmap_figure(trace: Trace, metric: str = "raw", page_index: int = 0,
                   max_positions: int = PAGE_POSITIONS,
                   text_limit: int = TEXT_CELL_LIMIT) -> go.Figure:
    """The heatmap of one page for `metric` (raw / fused / credit / entropy) at a fixed cell size; committed cells
    are outlined and credit-forced commits marked in a second colour; cells carry their top-1 token while at most
    text_limit are live."""
    if metric not in METRIC_ARRAYS:
        raise ValueError(f"metric={metric!r} is unknown; allowed: {', '.join(METRIC_ARRAYS)}")
    window = page(trace, page_index, max_positions)
    values, ids, committed = grid(trace, metric, window)
    (p_lo, p_hi), (s_lo, s_hi) = window.positions, window.steps
    positions, steps = np.arange(p_lo, p_hi), np.arange(s_lo, s_hi)
    columns = max(p_hi - p_lo, 1)
    live = int(np.isfinite(values).sum())
    text = None
    if live <= text_limit:
        chars = max(1, int(_cell_width(columns) // 7))  # ~7 px a character at the cells' font size
        text = np.vectorize(lambda t: token_label(trace, t, chars) if t >= 0 else "", otypes=[object])(ids)
    fig = go.Figure(go.Heatmap(
        z=values, x=positions, y=steps, colorscale=METRIC_SCALES[metric], zmin=0.0, zmax=_zmax(metric, values),
        text=text, texttemplate="%{text}" if text is not None else None, textfont={"size": 9},
        customdata=_hover(trace, window, values), hovertemplate="%{customdata}<extra></extra>",
        colorbar={"title": {"text": colors.HEATMAP_METRICS[metric].split(" (")[0]}}, xgap=1, ygap=1))
    outline = max(6.0, min(CELL_HEIGHT_PX, _cell_width(columns)) - 4)  # a frame around the whole cell
    rows, cols = np.nonzero(committed)
    forced = credit_forced(trace)[p_lo + cols]
    for mask, name, color in ((~forced, "committed at this step", colors.COMMITTED),
                              (forced, "committed because of credit (raw p < τ ≤ ŝ)", colors.CREDIT_FORCED)):
        fig.add_trace(go.Scatter(x=positions[cols[mask]], y=steps[rows[mask]], mode="markers", name=name,
                                 marker={"symbol": "square-open", "size": outline, "color": color,
                                         "line": {"width": 2, "color": color}}, hoverinfo="skip"))
    blocks = sorted({p // trace.meta["block_length"] for p in (p_lo, p_hi - 1)})
    (w_lo, w_hi) = window.window_steps
    more = f" of {w_lo}-{w_hi - 1} ({MAX_PAGE_STEPS} a page)" if (s_lo, s_hi) != (w_lo, w_hi) else ""
    fig.update_layout(
        title=(f"{colors.HEATMAP_METRICS[metric]}: page {window.index + 1} of {window.count}, "
               f"block{'s' if blocks[-1] > blocks[0] else ''} {'-'.join(map(str, blocks))} = positions "
               f"{p_lo}-{p_hi - 1}, steps {s_lo}-{s_hi - 1}{more}"),
        xaxis_title="answer position", yaxis_title="step (forward pass)",
        yaxis={"range": [s_hi - 0.5, s_lo - 0.5]},  # reversed: step 0 on top; exactly the page's rows
        plot_bgcolor=colors.MASKED, showlegend=True, legend=_legend_below(s_hi - s_lo),
        xaxis={"range": [p_lo - 0.5, p_lo + columns - 0.5]}, **_fixed_size(columns, s_hi - s_lo))
    return fig


def overview_rows(trace: Trace, max_positions: int = PAGE_POSITIONS) -> list[tuple[int, int, int]]:
    """(first page index, lo, hi) for every page's positions, in order: the overview draws one row per page."""
    rows: list[tuple[int, int, int]] = []
    for index in range(page_count(trace, max_positions)):
        lo, hi = page(trace, index, max_positions).positions
        if not rows or (lo, hi) != rows[-1][1:]:
            rows.append((index, lo, hi))
    return rows


def overview_figure(trace: Trace, metric: str = "raw", max_positions: int = PAGE_POSITIONS) -> go.Figure:
    """Every decoded position of the answer once, a row per heatmap page (row k = page k's positions): the metric
    averaged over the steps the position was still masked, with the committing step and the steps it waited on
    hover; credit-forced commits outlined. The map of a long trace, whose pages show every step."""
    if metric not in METRIC_ARRAYS:
        raise ValueError(f"metric={metric!r} is unknown; allowed: {', '.join(METRIC_ARRAYS)}")
    rows = overview_rows(trace, max_positions)
    width = max(hi - lo for _, lo, hi in rows)
    mean, waited = masked_mean(trace, metric)
    commit, tokens = trace.arrays["commit_step"][0], trace.arrays["tokens"][0]
    forced = credit_forced(trace)
    z = np.full((len(rows), width), np.nan)
    hover = np.full((len(rows), width), "", dtype=object)
    marks: list[tuple[int, int]] = []
    for r, (_, lo, hi) in enumerate(rows):
        z[r, :hi - lo] = mean[lo:hi]
        for position in range(lo, hi):
            hover[r, position - lo] = (
                f"position {position}: {token_label(trace, int(tokens[position]))!r}<br>committed at step "
                f"{commit[position]} after {waited[position]} step(s) masked<br>mean {metric} while masked "
                f"{mean[position]:.3f}" + ("<br>committed because of credit" if forced[position] else ""))
            marks += [(position - lo, r)] if forced[position] else []
    labels = [f"page {index + 1}: {lo}-{hi - 1}" for index, lo, hi in rows]
    fig = go.Figure(go.Heatmap(
        z=z, x=np.arange(width), y=labels, colorscale=METRIC_SCALES[metric], zmin=0.0, zmax=_zmax(metric, z),
        customdata=hover, hovertemplate="%{customdata}<extra></extra>", xgap=1, ygap=1,
        colorbar={"title": {"text": f"mean {colors.HEATMAP_METRICS[metric].split(' (')[0]}"}}))
    fig.add_trace(go.Scatter(x=[m[0] for m in marks], y=[labels[m[1]] for m in marks], mode="markers",
                             name="committed because of credit", hoverinfo="skip",
                             marker={"symbol": "square-open", "size": CELL_HEIGHT_PX - 6,
                                     "color": colors.CREDIT_FORCED, "line": {"width": 2}}))
    decoded = rows[-1][2]
    tail = (f"; positions {decoded}-{trace.meta['gen_length'] - 1} were filled by early stop"
            if decoded < trace.meta["gen_length"] else "")
    fig.update_layout(
        title=f"overview: mean {colors.HEATMAP_METRICS[metric]} while masked, one row per page{tail}",
        xaxis_title="position within the page", yaxis_autorange="reversed", plot_bgcolor=colors.MASKED,
        showlegend=bool(marks), legend=_legend_below(len(rows)),
        **_fixed_size(width, len(rows)))
    return fig
