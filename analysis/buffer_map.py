"""The map of the UDS buffer: sketches z projected to 2-D once per run log, then drawn at any step.

The projection is fitted on the buffer as it grows (snapshot by snapshot, see analysis.projection.GrowingMap), so
the fit sees selected samples only; rejected candidates are placed afterwards with `transform`. A point is keyed by
`(step, position)`, so its coordinates never change while the user scrubs steps or recolours.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go

from analysis.colors import AGE_SCALE, EVICTED, NEUTRAL, REJECTED, SELECTED, SEQUENTIAL, category_colors, field_label
from analysis.projection import GrowingMap, ProjectionConfig, umap_available
from engine.uds.runlog import RunLog

COLOR_BY = ("age", "score", "category", "selected")
NO_SKETCHES = ("This is a compact run log: its sketches z were dropped to ship it small (engine/uds/runlog_compact.py), "
               "so there is no buffer map and no nearest buffer entries; the tables, utility, decomposition, "
               "comparison and seeds views are complete.")


@dataclass
class BufferMap:
    """Coordinates of every candidate of one run log, computed once."""

    coords: dict[tuple[int, int], np.ndarray]  # (step, position) -> (2,)
    method: str  # "umap" or "pca": what was fitted, whatever was asked
    note: str = ""  # why the map is not what was asked (UMAP asked, PCA fitted), shown in the figure's title


def build_buffer_map(log: RunLog, config: ProjectionConfig | None = None) -> BufferMap:
    """Fit on the buffer snapshot by snapshot (selected samples only), then place the rejected candidates."""
    if not log.candidates:
        raise ValueError("the run log has no candidates, so there is no buffer to map; run at least one step")
    growing = GrowingMap(config)
    for step in log.snapshot_steps():
        snapshot = log.buffer_at(step)
        if snapshot.sample_ids:
            growing.add(list(zip(snapshot.insert_steps, snapshot.positions)), snapshot.embeddings)
    growing.finish()
    keys = [(c.step, c.position) for c in log.candidates]
    growing.add(keys, log.all_embeddings())
    method = growing.method or "pca"
    config = growing.projector.config
    note = ""
    if config.method == "auto" and method == "pca":
        note = (f"UMAP needs at least {config.min_umap_points} buffer points and this run has fewer, so PCA is drawn"
                if umap_available() else "umap-learn is not installed, so PCA is drawn")
    return BufferMap(coords=dict(zip(keys, growing.lookup(keys))), method=method, note=note)


def buffer_map_figure(log: RunLog, buffer_map: BufferMap, step: int | None = None, color_by: str = "age",
                      show_rejected: bool = True, highlight: tuple[int, int] | None = None) -> go.Figure:
    """The buffer after `step` (default: the last step), plus, if asked, every candidate rejected up to then.

    Colour by "age" (insertion step), "score" (s = s_intra + α·s_inter), "category" or "selected". Entries evicted up
    to `step` are drawn as small crosses. `highlight` rings one candidate `(step, position)`."""
    if color_by not in COLOR_BY:
        raise ValueError(f"color_by={color_by!r} is not a colouring; choose one of {COLOR_BY}")
    last = log.steps[-1].step
    step = last if step is None else int(step)
    if not 0 <= step <= last:
        raise ValueError(f"step={step} is outside the run's steps 0..{last}; pick a step in that range")
    frame = log.candidates_frame()
    frame = frame[frame["step"] <= step]
    buffer = log.buffer_at(step)
    in_buffer = set(zip(buffer.insert_steps, buffer.positions))
    keys = list(zip(frame["step"], frame["position"]))
    frame = frame.assign(in_buffer=[k in in_buffer for k in keys],
                         x=[buffer_map.coords[k][0] for k in keys], y=[buffer_map.coords[k][1] for k in keys])
    shown = frame[frame["in_buffer"]]
    rejected = frame[~frame["selected"]] if show_rejected else frame.iloc[0:0]
    evicted = frame[frame["selected"] & ~frame["in_buffer"]]
    fig = go.Figure()
    if color_by == "category":
        colours = category_colors(frame["category"])
        for category, part in shown.groupby("category", sort=True):
            fig.add_trace(_points(part, category, dict(color=colours[category], size=9)))
        if len(rejected):
            fig.add_trace(_points(rejected, "rejected (any category)", dict(
                color=[colours[c] for c in rejected["category"]], size=6, symbol="circle-open", opacity=0.6)))
    elif color_by == "selected":
        fig.add_trace(_points(shown, "selected (in buffer)", dict(color=SELECTED, size=9)))
        if len(rejected):
            fig.add_trace(_points(rejected, "rejected", dict(color=REJECTED, size=6, opacity=0.6)))
    else:
        column, scale = ("step", AGE_SCALE) if color_by == "age" else ("total", SEQUENTIAL)
        title = field_label("insert_step") if color_by == "age" else "s"
        low, high = float(frame[column].min()), float(frame[column].max())
        fig.add_trace(_points(shown, "in buffer", dict(
            color=shown[column], colorscale=scale, cmin=low, cmax=high, size=9,
            colorbar=dict(title=title))))
        if len(rejected):
            fig.add_trace(_points(rejected, "rejected", dict(
                color=rejected[column], colorscale=scale, cmin=low, cmax=high, size=6, symbol="circle-open")))
    if len(evicted):
        fig.add_trace(_points(evicted, "evicted", dict(color=EVICTED, size=6, symbol="x-thin-open")))
    if highlight is not None and highlight in buffer_map.coords:
        x, y = buffer_map.coords[highlight]
        fig.add_trace(go.Scatter(x=[x], y=[y], mode="markers", name="chosen", hoverinfo="skip",
                                 marker=dict(size=20, color="rgba(0,0,0,0)", line=dict(color="black", width=2.5))))
    fig.update_layout(
        title=(f"buffer after step {step}: {len(shown)} entries ({buffer_map.method.upper()} of the sketches z)"
               + (f"<br><sup>{buffer_map.note}</sup>" if buffer_map.note else "")),
        template="plotly_white", margin=dict(l=30, r=20, t=50, b=30), legend=dict(orientation="h", y=-0.08),
        xaxis=dict(showticklabels=False, title=None), yaxis=dict(showticklabels=False, title=None), height=520,
        clickmode="event", hovermode="closest", dragmode="zoom", uirevision="buffer-map")
    if not len(frame):
        fig.add_annotation(text="empty", showarrow=False, font=dict(color=NEUTRAL))
    return fig


def no_map_figure() -> go.Figure:
    """What the map shows for a run log without sketches (a compact one): why there is nothing to draw."""
    fig = go.Figure()
    fig.add_annotation(text=NO_SKETCHES.replace(" (engine", "<br>(engine").replace(", so", ",<br>so"),
                       showarrow=False, font=dict(color=NEUTRAL), xref="paper", yref="paper", x=0.5, y=0.5)
    fig.update_layout(title="buffer map: not available for a compact run log", template="plotly_white", height=320,
                      xaxis=dict(visible=False), yaxis=dict(visible=False))
    return fig


def _points(part, name: str, marker: dict) -> go.Scatter:
    return go.Scatter(
        x=part["x"], y=part["y"], mode="markers", name=name, marker=marker,
        customdata=part[["step", "position"]].to_numpy(), text=part["sample_id"],
        hovertemplate="%{text}<br>step %{customdata[0]}, pos %{customdata[1]}<extra>" + name + "</extra>")
