"""Selection Lab handlers: plain values in, plain values or dicts out; testable without a server.

Per-session data lives in one dict held by `gr.State` (see `new_state`): the runs kept in the session, their buffer
maps, and the session's private temporary folder for exports and uploaded run logs. Nothing here runs a model
except `run_events`, which delegates to app.selection_runs.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Callable, Iterator

import gradio as gr
import numpy as np
import pandas as pd

from analysis import runlog_figures, runlog_views, selection_bias
from analysis.buffer_map import COLOR_BY, NO_SKETCHES, BufferMap, buffer_map_figure, build_buffer_map, no_map_figure
from analysis.projection import ProjectionConfig
from app import selection_examples, session, session_files
from app.selection_progress import RunPhases, reuse_note
from app.selection_runs import MODEL_CHOICES, build_configs, load_dataset, run_in_background
from engine.models.cache import shared_sft_tokenizer
from engine.uds.runlog import RunLog
from engine.uds.runlog_compact import is_compact
from engine.uds.runlog_zip import ZipCaps, export_runlog_zip, import_runlog_zip

MAX_RUNS = 6  # runs kept per session; the oldest is dropped past this (bounds memory per session)
RUNLOG_ZIP_CAPS = ZipCaps(max_zip_bytes=50 * 2**20)  # the page's 50 MB upload cap; unpacked size, rows: the defaults
MAP_METHODS = {"UMAP": "auto", "PCA": "pca"}  # radio label -> ProjectionConfig.method


def empty_frame(columns) -> pd.DataFrame:
    """A table before there is anything to show: its headers, no rows (not Gradio's placeholder "1 | 2 | 3")."""
    return pd.DataFrame(columns=list(columns))


def new_state() -> dict[str, Any]:
    """An empty session: no runs, no maps, no folder yet."""
    return {"runs": {}, "maps": {}, "folder": None, "counter": 0}


def add_run(state: dict[str, Any], log: RunLog, label: str, buffer_map: BufferMap | None = None) -> tuple[
        dict[str, Any], str]:
    """A new state with `log` kept under a fresh name (the oldest run dropped past MAX_RUNS); returns (state, name)."""
    state, names = add_runs(state, [(log, label)])
    if buffer_map is not None:
        state = {**state, "maps": {**state["maps"], (names[0], "UMAP"): buffer_map}}
    return state, names[0]


def add_runs(state: dict[str, Any], logs: list[tuple[RunLog, str]]) -> tuple[dict[str, Any], list[str]]:
    """A new state with every log kept under a fresh name; older runs are dropped, oldest first, past MAX_RUNS or
    past the number just added (a shipped set is kept whole); returns (state, the new names)."""
    counter, runs, names = state["counter"], {**state["runs"]}, []
    for log, label in logs:
        counter += 1
        names.append(f"#{counter} {label}")
        runs[names[-1]] = log
    maps = {**state["maps"]}
    while len(runs) > max(MAX_RUNS, len(logs)):
        oldest = next(iter(runs))
        runs.pop(oldest)
        maps = {k: v for k, v in maps.items() if k[0] != oldest}
    return {**state, "runs": runs, "maps": maps, "counter": counter}, names


def run_label(log: RunLog) -> str:
    """Short name of a run: selector, mode, K of B, seed."""
    cfg = log.config
    mode = " as released" if cfg.get("mode") == "as_released" else ""
    seed = cfg.get("selection", {}).get("seed", "?")
    return f"{cfg.get('selector', '?')}{mode} K{cfg.get('keep', '?')}/B{cfg.get('batch', '?')} seed {seed}"


def get_run(state: dict[str, Any], name: str | None) -> RunLog:
    if not state["runs"]:
        raise gr.Error("No run yet: press Run selection, or upload a saved run log (.zip).")
    if name not in state["runs"]:
        raise gr.Error(f"Run {name!r} is not in this session; pick one of: {', '.join(state['runs'])}.")
    return state["runs"][name]


def get_map(state: dict[str, Any], name: str, method: str) -> tuple[dict[str, Any], BufferMap | None]:
    """The run's buffer map for `method` ("UMAP" or "PCA"), fitted on first use and kept in the state; None for a
    compact run log (no sketches to project)."""
    if method not in MAP_METHODS:
        raise gr.Error(f"Map method {method!r} is not offered; choose UMAP or PCA.")
    key = (name, method)
    if is_compact(get_run(state, name)):
        return state, None
    if key in state["maps"]:
        return state, state["maps"][key]
    fitted = build_buffer_map(get_run(state, name), ProjectionConfig(method=MAP_METHODS[method]))
    return {**state, "maps": {**state["maps"], key: fitted}}, fitted


def run_views(state: dict[str, Any], name: str, utility_field: str = "s_intra", color_by: str = "age",
              map_method: str = "UMAP", map_step: float | None = None, show_rejected: bool = True,
              category: str = "all", status: str = "all", query: str = "",
              highlight: tuple[int, int] | None = None) -> dict[str, Any]:
    """Every view of one run (and the comparison of all runs in the session) as named plain values."""
    log = get_run(state, name)
    if color_by not in COLOR_BY:
        raise gr.Error(f"Colour {color_by!r} is not offered; choose one of {', '.join(COLOR_BY)}.")
    if utility_field not in runlog_figures.UTILITY_FIELDS:
        raise gr.Error(f"{utility_field!r} cannot be plotted over steps; choose one of "
                       f"{', '.join(runlog_figures.UTILITY_FIELDS)}.")
    state, fitted = get_map(state, name, map_method)
    last = log.steps[-1].step
    step = last if map_step is None or (isinstance(map_step, float) and math.isnan(map_step)) else int(map_step)
    step = min(max(step, 0), last)
    choices = ["all"] + runlog_views.categories(log)
    return {
        "state": state,
        "summary": runlog_views.summary_markdown(log),
        "table": table_view(log, category if category in choices else "all", status, query),
        "category": gr.update(choices=choices, value=category if category in choices else "all"),
        "utility": runlog_figures.utility_over_steps(log, utility_field),
        "decomposition": runlog_figures.score_decomposition(log),
        "map": draw_map(log, fitted, step, color_by, show_rejected, highlight),
        "map_method": shown_method(fitted, map_method),
        "map_step": gr.update(minimum=0, maximum=max(last, 1), value=step),
        "comparison": runlog_figures.compare_runs(state["runs"]),
        "comparison_table": runlog_views.comparison_table(state["runs"]),
        "length_bias": selection_bias.length_distributions(state["runs"]),
        "seeds": selection_bias.seeds_table(state["runs"]),
        "runs": gr.update(choices=list(state["runs"]), value=name),
    }


def filtered_table(state: dict[str, Any], name: str, category: str, status: str, query: str):
    """The candidate table of a run under the page's filters."""
    return table_view(get_run(state, name), category, status, query)


def utility_view(state: dict[str, Any], name: str, field: str):
    """The utility-over-steps figure for another quantity."""
    if field not in runlog_figures.UTILITY_FIELDS:
        raise gr.Error(f"{field!r} cannot be plotted over steps; choose one of "
                       f"{', '.join(runlog_figures.UTILITY_FIELDS)}.")
    return runlog_figures.utility_over_steps(get_run(state, name), field)


def table_view(log: RunLog, category: str = "all", status: str = "all", query: str = ""):
    try:
        return runlog_views.filter_table(runlog_views.candidate_table(log), category, status, query or "")
    except ValueError as err:
        raise gr.Error(str(err)) from None


def map_view(state: dict[str, Any], name: str, color_by: str, map_method: str, map_step: float,
             show_rejected: bool, step: float | None, position: float | None) -> dict[str, Any]:
    """Only the buffer map (recolour, scrub, toggle rejected): the projection is reused, nothing is refitted."""
    log = get_run(state, name)
    if color_by not in COLOR_BY:
        raise gr.Error(f"Colour {color_by!r} is not offered; choose one of {', '.join(COLOR_BY)}.")
    state, fitted = get_map(state, name, map_method)
    last = log.steps[-1].step
    at = min(max(int(map_step if map_step is not None else last), 0), last)
    highlight = _key(step, position)
    return {"state": state, "map": draw_map(log, fitted, at, color_by, show_rejected, highlight),
            "map_method": shown_method(fitted, map_method)}


def draw_map(log: RunLog, fitted: BufferMap | None, step: int, color_by: str, show_rejected: bool,
             highlight: tuple[int, int] | None):
    """The buffer map, or for a compact run log (no fitted map) a figure saying why there is none."""
    return no_map_figure() if fitted is None else buffer_map_figure(log, fitted, step, color_by, show_rejected,
                                                                    highlight)


def shown_method(fitted: BufferMap | None, asked: str = "UMAP") -> str:
    """The projection radio's value for a fitted map: what was drawn (a UMAP request on too few points is PCA); the
    request unchanged when nothing was drawn."""
    if fitted is None:
        return asked
    return "UMAP" if fitted.method == "umap" else "PCA"


def detail(state: dict[str, Any], name: str, step: float | None, position: float | None) -> dict[str, Any]:
    """The linked selection: one candidate's text, scores, nearest buffer neighbours and per-token strip."""
    log = get_run(state, name)
    key = _key(step, position)
    if key is None:
        raise gr.Error("Pick a candidate first: click a point of the buffer map or a row of the table (or type its "
                       "step and position).")
    try:
        text = runlog_views.candidate_text(log, *key)
        scores = runlog_views.candidate_scores(log, *key)
        neighbours = runlog_views.buffer_neighbours(log, *key)
    except ValueError as err:
        raise gr.Error(str(err)) from None
    strip = log.strip(*key)
    if is_compact(log):
        strip_figure, note = None, NO_SKETCHES
    elif strip is None:
        strip_figure, note = None, "No per-token strip was stored for this step (the run stores the first steps only)."
    else:
        strip_figure, note = runlog_figures.token_strip(strip, _token_strings(log, strip.token_ids)), ""
    return {"text": text + (f"\n\n_{note}_" if note else ""), "scores": scores, "neighbours": neighbours,
            "strip": strip_figure, "step": key[0], "position": key[1]}


def row_to_key(row_value: list[Any] | None) -> tuple[int, int]:
    """(step, position) of a clicked table row (the table's first two columns)."""
    if not row_value or len(row_value) < 2:
        raise gr.Error("That row has no step and position; click a row of the candidate table.")
    try:
        return int(row_value[0]), int(row_value[1])
    except (TypeError, ValueError):
        raise gr.Error(f"Row {row_value[:2]} does not start with a step and a position; click a data row.") from None


def point_to_key(data: dict[str, Any] | None) -> tuple[int, int]:
    """(step, position) from a clicked map point's custom data, as the page's click bridge sends it."""
    try:
        return int(data["step"]), int(data["position"])
    except (TypeError, KeyError, ValueError):
        raise gr.Error("The click did not land on a candidate; click a point of the buffer map.") from None


def export_selected(state: dict[str, Any], name: str) -> tuple[dict[str, Any], str]:
    """Write the selected subset as JSONL into the session's folder; returns (state, file path)."""
    log = get_run(state, name)
    state, folder = session_folder(state)
    path = folder / f"selected-{_slug(name)}.jsonl"
    path.write_text(runlog_views.selected_jsonl(log), encoding="utf-8")
    return state, str(path)


def export_runlog(state: dict[str, Any], name: str) -> tuple[dict[str, Any], str]:
    """Zip the run log (the format `load_runlog_zip` reads back) into the session's folder."""
    log = get_run(state, name)
    state, folder = session_folder(state)
    try:
        return state, str(export_runlog_zip(log, folder, RUNLOG_ZIP_CAPS, name=f"runlog-{_slug(name)}"))
    except ValueError as err:
        raise gr.Error(f"The run log cannot be downloaded: {err}.") from None


def load_runlog_zip(state: dict[str, Any], upload: str | None) -> tuple[dict[str, Any], str]:
    """A saved run log (zip of its folder) uploaded by the user; every view works from it without a model."""
    if not upload:
        raise gr.Error("No file: upload a run log .zip (as saved by 'Download run log').")
    state, folder = session_folder(state)
    try:
        log = import_runlog_zip(upload, folder, RUNLOG_ZIP_CAPS)
    except ValueError as err:
        raise gr.Error(f"{err}.") from None
    return add_run(state, log, f"upload {run_label(log)}")


def load_example_set(state: dict[str, Any], label: str | None) -> tuple[dict[str, Any], list[str]]:
    """Every run of a shipped set (app/selection_examples.py) into the session, no model needed; returns (state, the
    runs' names)."""
    if not label:
        raise gr.Error("Pick a set of shipped run logs first.")
    try:
        logs = selection_examples.load_set(label)
    except ValueError as err:
        raise gr.Error(f"{err}.") from None
    return add_runs(state, [(log, name) for name, log in logs])


def run_events(state: dict[str, Any], selector: str, steps: float, batch: float, keep: float, alpha: float,
               lora: bool, seed: float, dataset_source: str, upload: str | None, prompt_col: str, response_col: str,
               messages_col: str, category_col: str, answer_col: str, model_label: str, cutoff: float,
               eval_items: float, hub_id: str = "", *, progress: Callable[..., Any]) -> Iterator[dict[str, Any]]:
    """The Run button: check the controls, train in the background with progress, then every view of the new run.

    Yields dicts: {"status": text} while running (empty dicts as keep-alive ticks), then the views of `run_views`."""
    selection, train = build_configs(selector, steps, batch, keep, alpha, lora, seed, cutoff, eval_items)
    if model_label not in MODEL_CHOICES:
        raise gr.Error(f"Model {model_label!r} is not offered; choose one of: {', '.join(MODEL_CHOICES)}.")
    dataset = load_dataset(dataset_source, upload, prompt_col, response_col, messages_col, category_col, answer_col,
                           int(seed), hub_id)
    progress((0, train.steps), desc="starting")
    reuse, phases = reuse_note(dataset, selection, train), RunPhases(train, bool(dataset.heldout))
    head = (f"Running {selector} on {dataset.name}: {train.steps} steps, K = {selection.keep} of B = "
            f"{selection.batch}. {reuse}  \n")
    shown = head + phases.text()
    yield {"status": shown}
    for kind, payload in run_in_background(MODEL_CHOICES[model_label], dataset, selection, train,
                                           finish=lambda log: (log, build_buffer_map(log))):
        if kind == "progress":
            done, total, text = payload
            progress((done, total), desc=text)
            shown = head + phases.update(text)
            yield {"status": shown}
        elif kind == "tick":  # the seconds move once a second: other ticks only keep the stream alive
            text = head + phases.tick()
            yield {"status": text} if text != shown else {}
            shown = text
        elif kind == "error":
            raise gr.Error(f"The run failed: {payload}.")
        else:
            log, fitted = payload
            state, name = add_run(state, log, run_label(log), fitted)
            yield {**run_views(state, name), "status": f"Done: {name}." + (f" {reuse}" if reuse else "")}


def session_folder(state: dict[str, Any]) -> tuple[dict[str, Any], Path]:
    """The session's private folder (app/session.py, created on first use; removed when the session ends or ages
    out, app/session_files.py); every file this tab writes goes there, after making room under the disk cap."""
    folder = state.get("folder")
    if not (folder and Path(folder).is_dir()):
        folder = str(session.session_folder())
        state = {**state, "folder": folder}
    os.utime(folder)
    session_files.make_room(Path(folder))
    return state, Path(folder)


def drop_state(state: dict[str, Any]) -> None:
    """gr.State's delete_callback: the session ended; its folder goes."""
    session_files.remove_folder(state.get("folder") if isinstance(state, dict) else None)


def _token_strings(log: RunLog, token_ids: np.ndarray) -> list[str] | None:
    """Token strings for the strip when the run's tokenizer is available here; None shows the ids instead."""
    try:
        tokenizer = shared_sft_tokenizer(str(log.config.get("model", "")))
    except (ValueError, OSError):
        return None
    return [tokenizer.decode([int(t)]) for t in token_ids.tolist()]


def _key(step: float | None, position: float | None) -> tuple[int, int] | None:
    if step is None or position is None:
        return None
    if any(isinstance(v, float) and not math.isfinite(v) for v in (step, position)):
        return None
    return int(step), int(position)


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in name).strip("-") or "run"
