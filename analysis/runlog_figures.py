"""Plotly figures of UDS run logs: utility over steps, the score decomposition with its scale check, a candidate's
per-token strip, and the comparison of runs across selectors. Pure functions; nothing here runs a model.

Every point that stands for a candidate carries `customdata = [step, position]`, the key the app's linked selection
uses.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analysis.colors import (CATEGORICAL, GREYED, NEUTRAL, REJECTED, SELECTED, SEQUENTIAL, category_colors,
                             field_label, selector_label)
from analysis.runlog_views import scale_check
from engine.uds.runlog import RunLog, TokenStrip

UTILITY_FIELDS = ("s_intra", "total", "alpha_s_inter", "loss", "effective_rank", "flatness", "fro_norm")
STRIP_ROWS = ("token_loss", "logit_norm", "entropy")
MAX_CATEGORIES = 8  # categories named in the share plot (Okabe-Ito has 8 colours); the rest are "other"
OTHER = "other categories"
_LAYOUT = dict(template="plotly_white", margin=dict(l=60, r=20, t=50, b=45), legend=dict(orientation="h", y=-0.18))


def utility_over_steps(log: RunLog, field: str = "s_intra") -> go.Figure:
    """`field` of every candidate against its step, selected and rejected apart, with the per-step means."""
    if field not in UTILITY_FIELDS:
        raise ValueError(f"field={field!r} cannot be plotted over steps; choose one of {UTILITY_FIELDS}")
    frame = log.candidates_frame()
    fig = go.Figure()
    for kept, name, colour, offset in ((True, "selected", SELECTED, 0.12), (False, "rejected", REJECTED, -0.12)):
        part = frame[frame["selected"] == kept]
        fig.add_trace(go.Scatter(
            x=part["step"] + offset, y=part[field], mode="markers", name=name,
            marker=dict(color=colour, size=7, opacity=0.75), customdata=part[["step", "position"]].to_numpy(),
            text=part["sample_id"], hovertemplate="%{text}<br>step %{customdata[0]}, pos %{customdata[1]}"
                                                  "<br>%{y:.4g}<extra>" + name + "</extra>"))
        means = part.groupby("step")[field].mean()
        fig.add_trace(go.Scatter(x=means.index, y=means.to_numpy(), mode="lines", name=f"mean, {name}",
                                 line=dict(color=colour, width=2), hoverinfo="skip"))
    fig.update_layout(title=f"{field_label(field)} per step: selected vs rejected", xaxis_title="step",
                      yaxis_title=field_label(field), **_LAYOUT)
    return fig


def score_decomposition(log: RunLog) -> go.Figure:
    """Left: per step, the s_intra gap at the K-th place against the spread of α·s_inter (when the spread reaches the
    gap, diversity can reorder the top K). Right: s_intra against α·s_inter for every candidate."""
    scale = scale_check(log)
    frame = log.candidates_frame()
    changed, could = int(scale["changed"].sum()), int(scale["could_change"].sum())
    fig = make_subplots(rows=1, cols=2, column_widths=[0.5, 0.5], subplot_titles=(
        f"α·s_inter changed the top-K in {changed} of {len(scale)} steps (could in {could})",
        "s_intra against α·s_inter"))
    fig.add_trace(go.Scatter(x=scale["step"], y=scale["gap"], mode="lines+markers", name="s_intra gap, K-th to K+1-th",
                             line=dict(color=SELECTED)), row=1, col=1)
    fig.add_trace(go.Scatter(x=scale["step"], y=scale["spread"], mode="lines+markers", name="spread of α·s_inter",
                             line=dict(color=REJECTED)), row=1, col=1)
    flipped = scale[scale["changed"]]
    fig.add_trace(go.Scatter(x=flipped["step"], y=flipped["spread"], mode="markers", name="top-K changed",
                             marker=dict(symbol="star", size=13, color=CATEGORICAL[5])), row=1, col=1)
    for kept, name, colour in ((True, "selected", SELECTED), (False, "rejected", REJECTED)):
        part = frame[frame["selected"] == kept]
        fig.add_trace(go.Scatter(
            x=part["s_intra"], y=part["alpha_s_inter"], mode="markers", name=name, showlegend=False,
            marker=dict(color=colour, size=7, opacity=0.75), customdata=part[["step", "position"]].to_numpy(),
            text=part["sample_id"], hovertemplate="%{text}<br>s_intra %{x:.4g}<br>α·s_inter %{y:.4g}<extra></extra>"),
            row=1, col=2)
    fig.update_xaxes(title_text="step", row=1, col=1)
    fig.update_yaxes(title_text="score units", type="log" if (scale[["gap", "spread"]] > 0).all().all() and len(
        scale) else "linear", row=1, col=1)
    fig.update_xaxes(title_text=field_label("s_intra"), row=1, col=2)
    fig.update_yaxes(title_text=field_label("alpha_s_inter"), row=1, col=2)
    fig.update_layout(**_LAYOUT)
    return fig


def token_strip(strip: TokenStrip, tokens: Sequence[str] | None = None) -> go.Figure:
    """Per-token loss, logit row norm and entropy of one candidate; padding and prompt rows greyed.

    Each row is coloured on its own min-max scale (the three signals have different units); hover shows the value.
    `tokens` (N,) are display strings for the token ids, when the caller has the tokenizer."""
    n = len(strip.token_ids)
    if tokens is not None and len(tokens) != n:
        raise ValueError(f"token_strip got {len(tokens)} token strings for a strip of {n} tokens; pass one per id")
    labels = list(tokens) if tokens is not None else [str(t) for t in strip.token_ids.tolist()]
    greyed = strip.is_pad | strip.is_prompt  # (N,)
    raw = np.stack([getattr(strip, name).astype(np.float64) for name in STRIP_ROWS])  # (3, N)
    shown = np.where(greyed[None, :], np.nan, raw)  # (3, N): greyed cells become the grey background
    low, high = np.nanmin(shown, axis=1, initial=np.inf), np.nanmax(shown, axis=1, initial=-np.inf)
    span = np.where(np.isfinite(high - low) & (high > low), high - low, 1.0)
    scaled = (shown - np.where(np.isfinite(low), low, 0.0)[:, None]) / span[:, None]  # (3, N) in [0, 1]
    kind = np.where(strip.is_pad, "padding", np.where(strip.is_prompt, "prompt", "response"))
    hover = [[f"#{i} {labels[i]!r} ({kind[i]})<br>{field_label(name)}: {raw[r, i]:.4g}" for i in range(n)]
             for r, name in enumerate(STRIP_ROWS)]
    fig = go.Figure(go.Heatmap(z=scaled, x=list(range(n)), y=[field_label(name) for name in STRIP_ROWS],
                               colorscale=SEQUENTIAL, zmin=0, zmax=1, text=hover, hoverinfo="text",
                               colorbar=dict(title="row min→max", tickvals=[0, 1], ticktext=["min", "max"])))
    real = np.flatnonzero(~strip.is_pad)  # padding is cut from the view: it is never scored or trained on
    lo, hi = (int(real[0]), int(real[-1])) if real.size else (0, max(n - 1, 0))
    n_prompt, n_pad = int(strip.is_prompt[~strip.is_pad].sum()), int(strip.is_pad.sum())
    fig.update_layout(title=f"per-token strip of {strip.sample_id} (step {strip.step})<br><sup>grey: the {n_prompt} "
                            f"prompt tokens, which the loss skips; coloured: the {hi - lo + 1 - n_prompt} response "
                            "tokens" + (f"; {n_pad} padding tokens not drawn" if n_pad else "") + "</sup>",
                      xaxis_title="token position", xaxis_range=[lo - 0.5, hi + 0.5], plot_bgcolor=GREYED,
                      height=260, **{**_LAYOUT, "margin": dict(l=130, r=20, t=50, b=45)})
    return fig


def category_shares(logs: dict[str, RunLog], names: Sequence[str]) -> dict[str, list[float]]:
    """Per category, its share of each run's selected samples: the MAX_CATEGORIES largest overall by name, the rest
    summed as OTHER (a legend of 24 colours reads as none)."""
    picks = {name: [c.category for c in logs[name].candidates if c.selected] for name in names}
    shares = {category: [p.count(category) / len(p) if p else 0.0 for p in picks.values()]
              for category in sorted({c for p in picks.values() for c in p})}
    if len(shares) <= MAX_CATEGORIES:
        return shares
    largest = sorted(sorted(shares, key=lambda c: -sum(shares[c]))[:MAX_CATEGORIES - 1])
    rest = [sum(shares[c][i] for c in shares if c not in largest) for i in range(len(names))]
    return {**{c: shares[c] for c in largest}, OTHER: rest}


def run_number(name: str) -> str:
    """"#3" for a session run named "#3 ...", else the name: bar ticks stay short when many runs are compared."""
    head = name.split(" ", 1)[0]
    return head if head.startswith("#") and head[1:].isdigit() else name


def compare_runs(logs: dict[str, RunLog]) -> go.Figure:
    """Runs kept in the session side by side: training loss per step, held-out loss, maths exact-answer accuracy and
    the category mix of the selected samples."""
    fig = make_subplots(rows=2, cols=2, subplot_titles=("training loss per step (kept samples)", "held-out loss",
                                                        "maths exact-answer accuracy", "share of selected per category"),
                        vertical_spacing=0.2)
    names = list(logs)
    shares_by_category = category_shares(logs, names)
    colours = category_colors([c for c in shares_by_category if c != OTHER])
    for i, name in enumerate(names):
        log = logs[name]
        steps = log.steps_frame()
        colour = CATEGORICAL[i % len(CATEGORICAL)]
        label = f"{name}: {selector_label(str(log.config.get('selector', '?')))}"
        fig.add_trace(go.Scatter(x=steps["step"], y=steps["train_loss"], mode="lines", name=label,
                                 line=dict(color=colour)), row=1, col=1)
        summary = log.eval_summary
        fig.add_trace(go.Bar(x=[name], y=[summary.loss if summary else np.nan], marker_color=colour,
                             showlegend=False, hovertemplate="%{x}: %{y:.4g}<extra>held-out loss</extra>"), row=1, col=2)
        fig.add_trace(go.Bar(x=[name], y=[summary.maths_accuracy if summary else np.nan], marker_color=colour,
                             showlegend=False, hovertemplate="%{x}: %{y:.1%}<extra>maths accuracy</extra>"),
                      row=2, col=1)
    for category, shares in shares_by_category.items():
        fig.add_trace(go.Bar(x=names, y=shares, name=category, marker_color=colours.get(category, NEUTRAL),
                             legend="legend2", hovertemplate=category + ": %{y:.1%}<extra>%{x}</extra>"), row=2, col=2)
    fig.update_layout(barmode="stack", height=620, **{**_LAYOUT, "margin": dict(l=60, r=200, t=50, b=45)},
                      legend2=dict(title=dict(text="category (selected)"), x=1.02, xanchor="left", y=0.42,
                                   yanchor="top", font=dict(size=11)))
    fig.update_yaxes(range=[0, 1], row=2, col=1)
    fig.update_yaxes(range=[0, 1], row=2, col=2)
    fig.update_xaxes(title_text="step", row=1, col=1)
    for row, col in ((1, 2), (2, 1), (2, 2)):  # bars ticked with the run's number, named in full in the legend
        fig.update_xaxes(tickvals=names, ticktext=[run_number(name) for name in names], row=row, col=col)
    if not names:
        fig.add_annotation(text="no runs yet", showarrow=False, font=dict(color=NEUTRAL), xref="paper", yref="paper",
                           x=0.5, y=0.5)
    return fig
