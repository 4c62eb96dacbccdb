"""Views of what a selector favours across runs: kept against candidate lengths per run, and a seeds table (mean +-
sd per configuration) when several runs differ only in their seed. Pure functions of run logs."""
from __future__ import annotations

import json
import statistics
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from analysis.colors import REJECTED, SELECTED, selector_label
from engine.uds.runlog import RunLog

_LAYOUT = dict(template="plotly_white", margin=dict(l=60, r=20, t=50, b=45), legend=dict(orientation="h", y=-0.2))
SEED_FREE = ("seed",)  # config fields that tell repeats of one configuration apart


def length_distributions(logs: dict[str, RunLog]) -> go.Figure:
    """Per run, the token lengths of all candidates against those of the kept ones (box plots, means marked): a
    selector that prefers long samples shows its kept box above the candidates'."""
    fig = go.Figure()
    for kept, name, colour in ((False, "all candidates", REJECTED), (True, "kept", SELECTED)):
        xs, ys = [], []
        for run, log in logs.items():
            frame = log.candidates_frame()
            lengths = frame.loc[frame["selected"], "length"] if kept else frame["length"]
            xs += [run] * len(lengths)
            ys += lengths.tolist()
        fig.add_trace(go.Box(x=xs, y=ys, name=name, marker_color=colour, boxmean=True,
                             hovertemplate="%{x}<br>%{y} tokens<extra>" + name + "</extra>"))
    fig.update_layout(boxmode="group", title="token length: all candidates vs kept, per run", yaxis_title="tokens",
                      height=420, **_LAYOUT)
    return fig


def configuration_key(log: RunLog) -> str:
    """The run's configuration without its seeds: runs with equal keys are repeats of one configuration."""
    cfg = log.config
    parts: dict[str, Any] = {k: cfg.get(k) for k in ("selector", "mode", "dataset", "model", "preset", "processes")}
    for group in ("selection", "train"):
        parts[group] = {k: v for k, v in (cfg.get(group) or {}).items() if k not in SEED_FREE}
    return json.dumps(parts, sort_keys=True, default=str)


def seeds_table(logs: dict[str, RunLog]) -> pd.DataFrame:
    """One row per configuration loaded at two seeds or more: mean +- sd over its runs of the held-out loss, the
    maths accuracy, the last step's training loss and the kept / candidate mean lengths."""
    groups: dict[str, list[RunLog]] = {}
    for log in logs.values():
        groups.setdefault(configuration_key(log), []).append(log)
    rows = []
    for runs in groups.values():
        if len(runs) < 2:
            continue
        cfg = runs[0].config
        frames = [r.candidates_frame() for r in runs]
        values = {
            "held-out loss": [r.eval_summary.loss if r.eval_summary else np.nan for r in runs],
            "maths accuracy": [r.eval_summary.maths_accuracy if r.eval_summary else np.nan for r in runs],
            "final train loss": [float(r.steps_frame()["train_loss"].iloc[-1]) if r.steps else np.nan for r in runs],
            "kept length": [float(f.loc[f["selected"], "length"].mean()) for f in frames],
            "candidate length": [float(f["length"].mean()) for f in frames]}
        mode = " as released" if cfg.get("mode") == "as_released" else ""
        rows.append({"configuration": f"{selector_label(str(cfg.get('selector', '?')))}{mode}, K {cfg.get('keep')} "
                                      f"of B {cfg.get('batch')}",
                     "runs": len(runs), "seeds": ", ".join(str((r.config.get("selection") or {}).get("seed", "?"))
                                                           for r in runs),
                     **{name: _mean_sd(v) for name, v in values.items()}})
    return pd.DataFrame(rows, columns=["configuration", "runs", "seeds", "held-out loss", "maths accuracy",
                                       "final train loss", "kept length", "candidate length"])


def _mean_sd(values: list[float]) -> str:
    finite = [v for v in values if v == v]
    if not finite:
        return "n/a"
    sd = statistics.stdev(finite) if len(finite) > 1 else float("nan")
    missing = f" (n = {len(finite)})" if len(finite) < len(values) else ""
    return f"{statistics.fmean(finite):.4g} ± {sd:.2g}{missing}"
