"""The step x position heatmap: what the model believed at every step about every still-masked position.

Rows are steps (forward passes), columns answer positions; a cell is blank once its position is committed or while
its block has not started. Long answers are paged (at most 128 positions by MAX_PAGE_STEPS steps a page) so a figure
never holds more than a few thousand live cells, and cell text is dropped past TEXT_CELL_LIMIT (the hover still has
everything).
"""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from analysis import colors
from analysis.trace_data import MAX_PAGE_STEPS, METRIC_ARRAYS, Page, credit_forced, grid, page, token_label
from engine.decoding.trace import Trace

PLOT_WIDTH_PX = 1000  # about the plot area's width in the tab; sizes the commit outlines to the cells
WIDE_PAGE = 48  # positions; wider pages print at most 3 characters per cell
TEXT_CELL_LIMIT = 2500  # above this many live cells, cells carry colour only (text is unreadable and slow)
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


def heatmap_figure(trace: Trace, metric: str = "raw", page_index: int = 0, max_positions: int = 128,
                   text_limit: int = TEXT_CELL_LIMIT) -> go.Figure:
    """The heatmap of one page for `metric` (raw / fused / credit / entropy); committed cells are outlined and
    credit-forced commits marked in a second colour; cells carry their top-1 token while at most text_limit are
    live."""
    if metric not in METRIC_ARRAYS:
        raise ValueError(f"metric={metric!r} is unknown; allowed: {', '.join(METRIC_ARRAYS)}")
    window = page(trace, page_index, max_positions)
    values, ids, committed = grid(trace, metric, window)
    (p_lo, p_hi), (s_lo, s_hi) = window.positions, window.steps
    positions, steps = np.arange(p_lo, p_hi), np.arange(s_lo, s_hi)
    live = int(np.isfinite(values).sum())
    text = None
    if live <= text_limit:
        chars = 6 if p_hi - p_lo <= WIDE_PAGE else 3  # cells of a wide page are narrow
        text = np.vectorize(lambda t: token_label(trace, t, chars) if t >= 0 else "", otypes=[object])(ids)
    probability = metric in ("raw", "fused")
    finite_max = float(np.nanmax(values)) if live else 1.0
    fig = go.Figure(go.Heatmap(
        z=values, x=positions, y=steps, colorscale=METRIC_SCALES[metric], zmin=0.0,
        zmax=1.0 if probability else max(finite_max, 1e-6), text=text,
        texttemplate="%{text}" if text is not None else None, textfont={"size": 9},
        customdata=_hover(trace, window, values), hovertemplate="%{customdata}<extra></extra>",
        colorbar={"title": {"text": colors.HEATMAP_METRICS[metric].split(" (")[0]}}, xgap=1, ygap=1))
    row_px = min(max(700 / max(s_hi - s_lo, 1), 12), 32)  # figure height grows with the steps up to a cap
    outline = max(6.0, min(row_px, PLOT_WIDTH_PX / max(p_hi - p_lo, 1)) - 4)  # a frame around the whole cell
    rows, cols = np.nonzero(committed)
    forced = credit_forced(trace)[p_lo + cols]
    for mask, name, color in ((~forced, "committed at this step", colors.COMMITTED),
                              (forced, "committed because of credit (raw p < τ ≤ ŝ)", colors.CREDIT_FORCED)):
        fig.add_trace(go.Scatter(x=positions[cols[mask]], y=steps[rows[mask]], mode="markers", name=name,
                                 marker={"symbol": "square-open", "size": outline, "color": color,
                                         "line": {"width": 2, "color": color}}, hoverinfo="skip"))
    cells_per_row = max(p_hi - p_lo, 1)
    (w_lo, w_hi) = window.window_steps
    more = (f"; these positions took steps {w_lo}-{w_hi - 1}, {MAX_PAGE_STEPS} a page"
            if (s_lo, s_hi) != (w_lo, w_hi) else "")
    fig.update_layout(
        title=(f"{colors.HEATMAP_METRICS[metric]}: steps {s_lo}-{s_hi - 1} x positions {p_lo}-{p_hi - 1} "
               f"(page {window.index + 1} of {window.count}{more})"),
        xaxis_title="answer position", yaxis_title="step (forward pass)", yaxis_autorange="reversed",
        height=int(160 + (s_hi - s_lo) * row_px), plot_bgcolor=colors.MASKED,
        legend={"orientation": "h", "y": -0.15}, margin={"l": 60, "r": 20, "t": 50, "b": 60},
        xaxis={"range": [p_lo - 0.5, p_lo + cells_per_row - 0.5]})
    return fig
