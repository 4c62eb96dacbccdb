"""The token inspector: one answer position across the steps of its block (top-k, raw vs fused confidence against
the tau line, the credit trajectory)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analysis import colors
from analysis.trace_data import MAX_VIEW_STEPS, credit_forced, threshold, token_label
from engine.decoding.trace import Trace


def check_position(trace: Trace, position: int) -> int:
    gen_length = trace.meta["gen_length"]
    if not 0 <= int(position) < gen_length:
        raise ValueError(f"position={position} is outside the answer; pick 0 to {gen_length - 1}")
    return int(position)


def position_steps(trace: Trace, position: int) -> np.ndarray:
    """The steps of the position's block (before, at and after its commit), at most MAX_VIEW_STEPS of them: those
    up to the position's commit first."""
    steps = np.flatnonzero(trace.arrays["step_block"] == position // trace.meta["block_length"])
    commit = int(trace.arrays["commit_step"][0, position])
    end = max(int(np.searchsorted(steps, commit, side="right")), MAX_VIEW_STEPS)
    return steps[max(end - MAX_VIEW_STEPS, 0):end]


def inspector_figure(trace: Trace, position: int) -> go.Figure:
    """Raw p and fused ŝ of the position's top-1 per step with the tau line; credit on the lower panel; dotted
    lines at "stable since" and "committed at"."""
    position = check_position(trace, position)
    steps = position_steps(trace, position)
    slot = position % trace.meta["block_length"]
    arrays = trace.arrays
    raw, fused = arrays["raw_top1_prob"][steps, 0, slot], arrays["fused_top1_prob"][steps, 0, slot]
    credit = arrays["credit_top1"][steps, 0, slot]
    raw_text = [token_label(trace, t) for t in arrays["raw_top1_id"][steps, 0, slot].tolist()]
    fused_text = [token_label(trace, t) for t in arrays["fused_top1_id"][steps, 0, slot].tolist()]
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.65, 0.35], vertical_spacing=0.08)
    fig.add_trace(go.Scatter(x=steps, y=raw, mode="lines+markers", name="raw p (top-1)", text=raw_text,
                             line={"color": colors.STABLE},
                             hovertemplate="step %{x}: raw top-1 %{text} p=%{y:.3f}<extra></extra>"), row=1, col=1)
    fig.add_trace(go.Scatter(x=steps, y=fused, mode="lines+markers", name="fused ŝ (top-1)", text=fused_text,
                             line={"color": colors.COMMIT, "dash": "dash"},
                             hovertemplate="step %{x}: fused top-1 %{text} ŝ=%{y:.3f}<extra></extra>"), row=1, col=1)
    fig.add_trace(go.Bar(x=steps, y=credit, name="credit C", marker_color=colors.CREDIT_FORCED,
                         hovertemplate="step %{x}: credit %{y:.3f}<extra></extra>"), row=2, col=1)
    tau = threshold(trace)
    if tau is not None:
        fig.add_hline(y=tau, line_dash="dot", line_color=colors.NEUTRAL, annotation_text=f"τ = {tau:g}",
                      row=1, col=1)
    commit, stable = int(arrays["commit_step"][0, position]), int(arrays["stable_step"][0, position])
    for step, label, color, side in ((stable, "stable since", colors.STABLE, "top left"),
                                     (commit, "committed", colors.COMMIT, "top right")):
        if step >= 0:
            fig.add_vline(x=step, line_dash="dot", line_color=color, annotation_text=label,
                          annotation_position=side)
    final = token_label(trace, int(arrays["tokens"][0, position]))
    forced = " · committed because of credit" if credit_forced(trace)[position] else ""
    fig.update_yaxes(title_text="probability", range=[0, 1.05], row=1, col=1)
    fig.update_yaxes(title_text="credit", row=2, col=1)
    fig.update_xaxes(title_text="step", row=2, col=1)
    block_steps = int((arrays["step_block"] == position // trace.meta["block_length"]).sum())
    capped = (f"<br>steps {steps[0]}-{steps[-1]} of the block's {block_steps} shown (a view draws at most "
              f"{MAX_VIEW_STEPS} steps)" if len(steps) < block_steps else "")
    fig.update_layout(title=f"position {position}: final {final!r}, committed at step {commit}{forced}{capped}",
                      height=460, legend={"orientation": "h", "y": -0.18}, margin={"l": 60, "r": 20, "t": 50, "b": 60})
    return fig


def topk_table(trace: Trace, position: int) -> pd.DataFrame:
    """One row per step of the position's block: its state and the raw top-k with probabilities."""
    position = check_position(trace, position)
    slot = position % trace.meta["block_length"]
    commit = int(trace.arrays["commit_step"][0, position])
    rows = []
    for step in position_steps(trace, position).tolist():
        state = "committed" if step == commit else ("masked" if trace.arrays["masked_before"][step, 0, slot]
                                                    else "done")
        row = {"step": step, "state": state,
               "credit": round(float(trace.arrays["credit_top1"][step, 0, slot]), 4)}
        pairs = zip(trace.arrays["topk_ids"][step, 0, slot].tolist(),
                    trace.arrays["topk_probs"][step, 0, slot].tolist())
        for rank, (token, prob) in enumerate(pairs, start=1):
            row[f"top-{rank}"] = f"{token_label(trace, token)} ({prob:.3f})"
        rows.append(row)
    return pd.DataFrame(rows)
