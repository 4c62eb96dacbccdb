"""Tables and text of one UDS run log: the per-candidate table and its filters, the scale check, a sample's detail
tables, the run summary and the JSONL export. Pure functions of a RunLog; nothing here runs a model.

A candidate is addressed by `(step, position)`: a sample can be drawn again in a later epoch with other scores.
"""
from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd

from analysis.colors import field_label, selector_label
from engine.uds.runlog import RunLog
from engine.uds.runlog_compact import is_compact
from engine.uds.selectors import SELECTORS

# Per-candidate table: run-log field -> column header, key columns first (the table scrolls sideways past them).
TABLE_COLUMNS = {
    "step": "step", "position": "pos", "selected": "selected", "rank": "rank", "total": "s", "s_intra": "s_intra",
    "alpha_s_inter": "α·s_inter", "loss": "loss", "category": "category", "sample_id": "sample_id", "length": "len",
    "margin_to_kth": "margin", "flips_utility_only": "flip_util", "flips_diversity_only": "flip_div",
    "effective_rank": "eff_rank", "flatness": "flatness",
}
COMPARISON_COLUMNS = ("run", "selector", "mode", "steps", "K of B", "α", "final train loss", "held-out loss",
                      "maths accuracy", "categories selected", "seconds")  # comparison_table, one row per run
SCORE_COLUMNS = ("field", "value")  # candidate_scores
NEIGHBOUR_COLUMNS = ("sample_id", "category", "inserted at step", "distance")  # buffer_neighbours
STATUS_FILTERS = ("all", "selected", "rejected", "flipped by α·s_inter")
DETAIL_FIELDS = ("s_intra", "s_inter", "alpha_s_inter", "total", "selector_score", "rank", "selected",
                 "margin_to_kth", "flips_utility_only", "flips_diversity_only", "loss", "length", "n_rows",
                 "fro_norm", "flatness", "effective_rank", "sigma1_share")


def candidate_table(log: RunLog) -> pd.DataFrame:
    """One row per candidate per step, rounded for display, in step then position order."""
    frame = log.candidates_frame()[list(TABLE_COLUMNS)].rename(columns=TABLE_COLUMNS)
    floats = frame.select_dtypes("float").columns
    frame[floats] = frame[floats].round(4)
    return frame.reset_index(drop=True)


def filter_table(table: pd.DataFrame, category: str = "all", status: str = "all", query: str = "") -> pd.DataFrame:
    """Rows of `candidate_table` matching a category ("all" for any), a status in STATUS_FILTERS and a substring of
    the sample id or category (case-insensitive)."""
    if status not in STATUS_FILTERS:
        raise ValueError(f"status={status!r} is not a filter; choose one of {STATUS_FILTERS}")
    keep = pd.Series(True, index=table.index)
    if category and category != "all":
        keep &= table["category"] == category
    if status == "selected":
        keep &= table["selected"]
    elif status == "rejected":
        keep &= ~table["selected"]
    elif status == "flipped by α·s_inter":
        keep &= table["flip_util"]
    if query.strip():
        needle = query.strip().lower()
        keep &= table["sample_id"].str.lower().str.contains(needle, regex=False) | table["category"].str.lower(
        ).str.contains(needle, regex=False)
    return table[keep].reset_index(drop=True)


def categories(log: RunLog) -> list[str]:
    """Categories seen among the candidates, sorted."""
    return sorted({c.category for c in log.candidates})


def scale_check(log: RunLog) -> pd.DataFrame:
    """Per step: does alpha * s_inter matter against s_intra?

    `gap`: s_intra of the K-th minus the (K+1)-th candidate ranked by s_intra alone, the margin diversity has to
    overturn; `spread`: max minus min of alpha * s_inter in the step, the most it can shift one candidate against
    another; `could_change`: spread >= gap; `changed`: the top K by s = s_intra + alpha * s_inter differs from the top K
    by s_intra (ties to the lower position, as the selectors break them). Steps that keep every candidate are skipped.
    """
    keep = int(log.config.get("keep", 0))
    rows = []
    for step, group in log.candidates_frame().groupby("step", sort=True):
        if keep <= 0 or keep >= len(group):
            continue
        s_intra = group["s_intra"].to_numpy()
        by_utility = np.argsort(-s_intra, kind="stable")
        by_total = np.argsort(-group["total"].to_numpy(), kind="stable")
        gap = float(s_intra[by_utility[keep - 1]] - s_intra[by_utility[keep]])
        spread = float(group["alpha_s_inter"].max() - group["alpha_s_inter"].min())
        rows.append({"step": int(step), "gap": gap, "spread": spread, "could_change": spread >= gap,
                     "changed": set(by_utility[:keep].tolist()) != set(by_total[:keep].tolist())})
    return pd.DataFrame(rows, columns=["step", "gap", "spread", "could_change", "changed"]).astype(
        {"step": "int64", "gap": "float64", "spread": "float64", "could_change": bool, "changed": bool})


def run_summary(log: RunLog) -> dict[str, Any]:
    """The run's headline numbers as plain values (NaN where the run has no such data)."""
    cands = log.candidates_frame()
    steps = log.steps_frame()
    scale = scale_check(log)
    selected = cands[cands["selected"]]
    summary = log.eval_summary
    n_categories = cands["category"].nunique()
    return {
        "selector": str(log.config.get("selector", "?")),
        "mode_label": str(log.config.get("mode_label", log.config.get("mode", "?"))),
        "status": str(log.config.get("status", "?")),
        "steps": len(steps), "batch": int(log.config.get("batch", 0)), "keep": int(log.config.get("keep", 0)),
        "alpha": float(log.config.get("alpha", math.nan)),
        "final_train_loss": float(steps["train_loss"].iloc[-1]) if len(steps) else math.nan,
        "mean_s_intra_selected": float(selected["s_intra"].mean()) if len(selected) else math.nan,
        "mean_s_intra_rejected": float(cands.loc[~cands["selected"], "s_intra"].mean()) if len(cands) else math.nan,
        "steps_changed_by_diversity": int(scale["changed"].sum()),
        "steps_diversity_could_change": int(scale["could_change"].sum()),
        "steps_compared": len(scale),
        "categories_selected": int(selected["category"].nunique()), "categories_seen": int(n_categories),
        "eval_loss": summary.loss if summary else math.nan,
        "maths_accuracy": summary.maths_accuracy if summary else math.nan,
        "n_maths": summary.n_maths if summary else 0,
        "truncated": int(log.config.get("truncated", 0)),
        "seconds": float(steps["seconds"].sum()) if len(steps) else 0.0,
    }


def applies(log: RunLog) -> dict[str, bool]:
    """Which parts of the UDS summary mean something for the run's selector (engine/uds/selectors.py `reads`): α only
    when s_intra and s_inter are summed, the scoring mode when a logit score is read, the scale check for both."""
    selector = SELECTORS.get(str(log.config.get("selector", "")))
    reads = set(selector().reads) if selector else {"s_intra", "s_inter"}
    both = {"s_intra", "s_inter"} <= reads
    return {"alpha": both, "mode": bool(reads & {"s_intra", "s_inter"}), "scale_check": both,
            "rejected": not (selector and selector().keeps_all)}


def summary_markdown(log: RunLog) -> str:
    """The run summary as a few lines of Markdown for the page: only what applies to the run's selector."""
    s, shown = run_summary(log), applies(log)
    mode = f" ({s['mode_label']})" if shown["mode"] else ""
    alpha = f", α = {s['alpha']:g}" if shown["alpha"] else ""
    lines = [
        f"**{selector_label(s['selector'])}**{mode}, {s['status']}: {s['steps']} steps, "
        f"K = {s['keep']} of B = {s['batch']}{alpha}, {s['seconds']:.1f} s.",
        f"Final training loss {_fmt(s['final_train_loss'])}; held-out loss {_fmt(s['eval_loss'])}; "
        + (f"maths exact answers {_fmt(s['maths_accuracy'], pct=True)} of {s['n_maths']}." if s["n_maths"]
           else "no maths items were held out."),
        (f"Mean s_intra: selected {_fmt(s['mean_s_intra_selected'])} vs rejected "
         f"{_fmt(s['mean_s_intra_rejected'])}. " if shown["rejected"] else "Every candidate was kept. ")
        + f"Categories selected: {s['categories_selected']} of {s['categories_seen']} seen.",
    ]
    if shown["scale_check"]:
        lines.append(f"Scale check: adding α·s_inter to s_intra changes the top-K in {s['steps_changed_by_diversity']} "
                     f"of {s['steps_compared']} steps (its spread reaches the s_intra gap at the K-th place in "
                     f"{s['steps_diversity_could_change']})." if s["steps_compared"]
                     else "Scale check: not applicable, every candidate was kept.")
    if is_compact(log):
        lines.append("_Compact run log: no sketches or per-token strips, so the buffer map, the nearest buffer "
                     "entries and the strip are not available; every score, pick and evaluation is._")
    if s["truncated"]:
        lines.append(f"{s['truncated']} samples were longer than the cut-off and truncated.")
    return "  \n".join(lines)


def comparison_table(logs: dict[str, RunLog]) -> pd.DataFrame:
    """One row per run kept in the session: the numbers the comparison plots show."""
    rows = []
    for name, log in logs.items():
        s = run_summary(log)
        shown = applies(log)
        rows.append({"run": name, "selector": selector_label(s["selector"]),
                     "mode": s["mode_label"] if shown["mode"] else "–", "steps": s["steps"],
                     "K of B": f"{s['keep']} of {s['batch']}", "α": f"{s['alpha']:g}" if shown["alpha"] else "–",
                     "final train loss": round(s["final_train_loss"], 4), "held-out loss": round(s["eval_loss"], 4),
                     "maths accuracy": round(s["maths_accuracy"], 4),
                     "categories selected": s["categories_selected"], "seconds": round(s["seconds"], 1)})
    return pd.DataFrame(rows, columns=list(COMPARISON_COLUMNS))


def candidate_scores(log: RunLog, step: int, position: int) -> pd.DataFrame:
    """The scores of one candidate, one row per field with its display label."""
    record = _candidate(log, step, position)
    return pd.DataFrame([(field_label(name), _cell(getattr(record, name))) for name in DETAIL_FIELDS],
                        columns=list(SCORE_COLUMNS))


def candidate_text(log: RunLog, step: int, position: int) -> str:
    """Markdown with the candidate's id, category and its prompt / response text (when the log stored it)."""
    record = _candidate(log, step, position)
    head = (f"**{record.sample_id}** ({record.source} / {record.category}), step {step}, position {position}: "
            f"{'selected' if record.selected else 'rejected'}, rank {record.rank}.")
    sample = log.sample(record.sample_id)
    if sample is None:
        return head + "\n\n_The run log has no text for this sample._"
    return f"{head}\n\n**Prompt**\n\n{_fence(sample.prompt)}\n\n**Response**\n\n{_fence(sample.response)}"


def buffer_neighbours(log: RunLog, step: int, position: int, k: int = 5) -> pd.DataFrame:
    """The k buffer entries nearest to the candidate's sketch z, in the buffer it was scored against (after step-1).

    Distances are L2 in sketch space, the same distances whose mean is s_inter."""
    _candidate(log, step, position)
    columns = list(NEIGHBOUR_COLUMNS)
    if step == 0 or is_compact(log):  # a compact log has no sketches to measure distances in
        return pd.DataFrame(columns=columns)
    buffer = log.buffer_at(step - 1)
    if not buffer.sample_ids:
        return pd.DataFrame(columns=columns)
    z = log.embedding(step, position).astype(np.float64)  # (D,)
    dist = np.linalg.norm(buffer.embeddings.astype(np.float64) - z, axis=1)  # (n_slots,)
    order = np.argsort(dist, kind="stable")[:k]
    category = {(c.step, c.position): c.category for c in log.candidates if c.selected}
    return pd.DataFrame([{"sample_id": buffer.sample_ids[i],
                          "category": category[(buffer.insert_steps[i], buffer.positions[i])],
                          "inserted at step": buffer.insert_steps[i], "distance": round(float(dist[i]), 3)}
                         for i in order], columns=columns)


def selected_jsonl(log: RunLog) -> str:
    """The selected candidates as JSON Lines, one object per pick in step order: id, text, scores."""
    lines = []
    for c in log.candidates:
        if not c.selected:
            continue
        sample = log.sample(c.sample_id)
        lines.append(json.dumps({
            "sample_id": c.sample_id, "step": c.step, "source": c.source, "category": c.category,
            "prompt": sample.prompt if sample else None, "response": sample.response if sample else None,
            "s_intra": c.s_intra, "alpha_s_inter": c.alpha_s_inter, "total": c.total, "rank": c.rank,
            "loss": c.loss}, ensure_ascii=False, allow_nan=False))
    return "\n".join(lines) + ("\n" if lines else "")


def _candidate(log: RunLog, step: int, position: int):
    record = next((c for c in log.candidates if c.step == step and c.position == position), None)
    if record is None:
        raise ValueError(f"no candidate at step {step}, position {position}; the run has steps "
                         f"0..{len(log.steps) - 1} and positions 0..{int(log.config.get('batch', 1)) - 1}")
    return record


def _cell(value: Any) -> str:
    if isinstance(value, bool) or isinstance(value, (int, np.integer)):
        return str(value)
    return "NaN" if math.isnan(value) else f"{value:.6g}"


def _fmt(value: float, pct: bool = False) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    return f"{100 * value:.1f}%" if pct else f"{value:.4g}"


def _fence(text: str) -> str:
    """Sample text shown verbatim: a code fence longer than any backtick run inside it."""
    fence = "`" * max(3, _longest_backtick_run(text) + 1)
    return f"{fence}text\n{text}\n{fence}"


def _longest_backtick_run(text: str) -> int:
    best = run = 0
    for ch in text:
        run = run + 1 if ch == "`" else 0
        best = max(best, run)
    return best
