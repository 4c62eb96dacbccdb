"""Several traces of the same prompt and seed side by side (answers, NFE, tokens/s, where commit orders differ),
and a credit sweep (NFE and agreement with the fixed-steps answer against alpha or beta)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analysis import colors
from analysis.trace_data import tokens_per_second
from engine.decoding.trace import Trace


def token_agreement(tokens: np.ndarray, reference: np.ndarray) -> float:
    """Fraction of answer positions holding the same token as the reference answer (both (G,))."""
    if tokens.shape != reference.shape:
        raise ValueError(f"answers of different lengths ({tokens.shape[0]} vs {reference.shape[0]}) cannot be "
                         "compared; decode both with the same gen_length")
    return float((tokens == reference).mean()) if tokens.size else 1.0


def order_discordance(commit_a: np.ndarray, commit_b: np.ndarray) -> np.ndarray:
    """(G,) per position, the fraction of other positions whose order relative to it (before / same step / after)
    differs between two decodes. Early-stop fills (-1) count as after every decoded step."""
    last = max(int(commit_a.max()), int(commit_b.max())) + 1
    a = np.where(commit_a < 0, last, commit_a)
    b = np.where(commit_b < 0, last, commit_b)
    differs = np.sign(a[:, None] - a[None, :]) != np.sign(b[:, None] - b[None, :])  # (G, G)
    return differs.sum(axis=1) / max(len(a) - 1, 1)


def _label(trace: Trace) -> str:
    params = trace.meta["params"]
    knobs = ", ".join(f"{k}={v:g}" for k, v in params.items() if isinstance(v, (int, float))
                      and not isinstance(v, bool))
    if params.get("parameter_free"):
        knobs = "parameter-free, " + knobs.split(", gamma")[0]
    cache = trace.meta["cache"]
    cached = "" if cache["mode"] == "none" else f" · {cache['mode']} cache"
    return f"{colors.rule_label(trace.meta['rule'])} ({knobs}){cached}"


def compare_table(traces: Sequence[Trace], answers: Sequence[str]) -> pd.DataFrame:
    """One row per decode; agreement and order differences are measured against the first."""
    reference = traces[0]
    rows = []
    for trace, answer in zip(traces, answers):
        discordance = order_discordance(reference.arrays["commit_step"][0], trace.arrays["commit_step"][0])
        rows.append({"rule": _label(trace), "NFE": trace.meta["nfe"], "tokens/s": round(tokens_per_second(trace), 2),
                     "seconds": round(float(trace.meta["seconds"]), 3),
                     "same tokens as first": round(token_agreement(trace.arrays["tokens"][0],
                                                                   reference.arrays["tokens"][0]), 3),
                     "positions decoded in another order than first": int((discordance > 0).sum()),
                     "answer": answer})
    return pd.DataFrame(rows)


def commit_order_figure(traces: Sequence[Trace]) -> go.Figure:
    """Top: the commit step of every position under each rule. Bottom: per position, the share of other positions
    whose relative order differs from the first rule's."""
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.6, 0.4], vertical_spacing=0.08,
                        subplot_titles=("committed at step", "order differs from the first rule (share of positions)"))
    reference = traces[0].arrays["commit_step"][0]
    for index, trace in enumerate(traces):
        commit = trace.arrays["commit_step"][0]
        color = colors.CATEGORICAL[index % len(colors.CATEGORICAL)]
        name = f"{index + 1}. {_label(trace)}"
        fig.add_trace(go.Scatter(x=np.arange(len(commit)), y=commit, mode="lines+markers", marker={"size": 4},
                                 line={"color": color}, name=name, legendgroup=name), row=1, col=1)
        if index:
            fig.add_trace(go.Bar(x=np.arange(len(commit)), y=order_discordance(reference, commit),
                                 marker_color=color, name=name, legendgroup=name, showlegend=False), row=2, col=1)
    fig.update_xaxes(title_text="answer position", row=2, col=1)
    fig.update_yaxes(title_text="step", row=1, col=1)
    fig.update_yaxes(title_text="share", range=[0, 1], row=2, col=1)
    fig.update_layout(height=520, barmode="group", legend={"orientation": "h", "y": -0.15},
                      margin={"l": 60, "r": 20, "t": 40, "b": 60})
    return fig


def sweep_figure(sweep: pd.DataFrame, knob: str) -> go.Figure:
    """NFE (left axis) and agreement with the fixed-steps answer (right axis) against the swept knob.
    sweep has columns value, nfe, agreement (plus the fixed-steps reference NFE as reference_nfe)."""
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Scatter(x=sweep["value"], y=sweep["nfe"], mode="lines+markers", name="NFE (credit)",
                             line={"color": colors.COMMIT}))
    if "reference_nfe" in sweep and len(sweep):
        fig.add_hline(y=float(sweep["reference_nfe"].iloc[0]), line_dash="dot", line_color=colors.NEUTRAL,
                      annotation_text="NFE of fixed steps")
    fig.add_trace(go.Scatter(x=sweep["value"], y=sweep["agreement"], mode="lines+markers",
                             name="same tokens as fixed steps", line={"color": colors.STABLE}), secondary_y=True)
    fig.update_xaxes(title_text=colors.knob_label(knob))
    fig.update_yaxes(title_text="NFE (forward passes)", rangemode="tozero")
    fig.update_yaxes(title_text="agreement", range=[0, 1.05], secondary_y=True)
    fig.update_layout(title=f"speed / agreement trade-off over {colors.knob_label(knob)}", height=420,
                      legend={"orientation": "h", "y": -0.2}, margin={"l": 60, "r": 60, "t": 50, "b": 60})
    return fig
