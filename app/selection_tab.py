"""Selection Lab tab: build the components inside the current Blocks and wire them to the plain handlers.

Linked selection: a click on a buffer-map point (through a small click bridge: gr.Plot has no click event in
Gradio 6.31, so a gr.HTML's `js_on_load` listens for Plotly's `plotly_click` and triggers a server event with the
point's (step, position)), a click on a table row, or a typed step and position all open the same detail view.
"""
from __future__ import annotations

from typing import Any, Iterator

import gradio as gr

from analysis.buffer_map import COLOR_BY
from analysis.runlog_figures import UTILITY_FIELDS
from analysis.runlog_views import (COMPARISON_COLUMNS, NEIGHBOUR_COLUMNS, SCORE_COLUMNS, STATUS_FILTERS,
                                   TABLE_COLUMNS)
from app import selection_handlers as h
from app.selection_examples import example_sets
from app.selection_runs import DATASET_CHOICES, MODEL_CHOICES, SELECTOR_CHOICES
from engine.uds.config import SelectionConfig, TrainConfig

MAP_ID = "uds-buffer-map"
DETAIL_EMPTY = ("_Click a point of the buffer map or a row of the Candidates table, or type a step and a position and "
                "press Enter: that candidate's prompt and response, its scores, its nearest buffer entries and its "
                "per-token strip appear here._")
SELECTION, TRAIN = SelectionConfig(), TrainConfig()  # the engine's defaults: the controls start here
# Re-binds after every redraw of the plot (Gradio replaces the Plotly div); one listener per div.
CLICK_BRIDGE_JS = """
const onClick = (ev) => {
  const p = ev && ev.points && ev.points[0];
  if (p && p.customdata) { trigger('click', {step: p.customdata[0], position: p.customdata[1]}); }
};
const bind = () => {
  const plot = document.querySelector('#%s .js-plotly-plot');
  if (plot && plot.on && plot.__udsClick !== onClick) {
    if (plot.removeListener && plot.__udsClick) { plot.removeListener('plotly_click', plot.__udsClick); }
    plot.on('plotly_click', onClick);
    plot.__udsClick = onClick;
  }
};
new MutationObserver(bind).observe(document.body, {childList: true, subtree: true});
bind();
""" % MAP_ID
INTRO = (
    "### Selection Lab: UDS online batch selection for SFT, and why each sample was picked\n"
    "Each step scores **B** candidates with one no-grad forward pass: utility **s_intra = ‖L‖_\\*** (nuclear norm of "
    "the logits) plus **α · s_inter** (mean distance of the logit sketch to a FIFO buffer of earlier picks); the top "
    "**K** get the gradient step. Runs are real LoRA (or full) fine-tuning of the model below; everything after the "
    "run is drawn from its run log, which you can download and load again without a model.")


def build_selection_tab() -> None:
    """Create the Selection Lab's components and events inside the current Blocks (call inside a gr.Tab)."""
    state = gr.State(h.new_state(), delete_callback=h.drop_state)  # the session's folder goes with it
    gr.Markdown(INTRO)
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            c = _controls()
        with gr.Column(scale=3):
            v = _views()
    _wire(state, c, v)


def _controls() -> dict[str, Any]:
    c: dict[str, Any] = {}
    c["dataset"] = gr.Radio(list(DATASET_CHOICES), value="bundled mixture", label="Dataset")
    with gr.Accordion("Upload, Hub id and column mapping", open=False):
        c["hub_id"] = gr.Textbox("", label="Hub dataset id (only when the machine is online)")
        c["upload"] = gr.File(label="JSONL, CSV or Parquet (≤ 50 MB)", file_types=[".jsonl", ".json", ".csv",
                                                                                   ".parquet"], type="filepath")
        with gr.Row():
            c["prompt_col"] = gr.Textbox("prompt", label="prompt column")
            c["response_col"] = gr.Textbox("response", label="response column")
        with gr.Row():
            c["messages_col"] = gr.Textbox("", label="or chat messages column")
            c["category_col"] = gr.Textbox("", label="category column (optional)")
        c["answer_col"] = gr.Textbox("", label="exact answer column (optional)")
    c["selector"] = gr.Dropdown(list(SELECTOR_CHOICES), value=next(iter(SELECTOR_CHOICES)), label="Selector")
    with gr.Row():
        c["steps"] = gr.Number(TRAIN.steps, label="steps", precision=0, minimum=1, maximum=2000, elem_id="uds-steps")
        c["seed"] = gr.Number(TRAIN.seed, label="seed", precision=0)
    with gr.Row():
        c["batch"] = gr.Number(SELECTION.batch, label="B (candidates per step)", precision=0, minimum=1, maximum=64)
        c["keep"] = gr.Number(SELECTION.keep, label="K (kept per step)", precision=0, minimum=1, maximum=64)
    c["alpha"] = gr.Number(SELECTION.alpha, label="α: weight of s_inter in s = s_intra + α·s_inter", minimum=0)
    c["lora"] = gr.Checkbox(TRAIN.lora, label=f"LoRA (r {TRAIN.lora_r}, all 7 projections); off = full fine-tuning")
    with gr.Accordion("Model and evaluation", open=False):
        c["model"] = gr.Dropdown(list(MODEL_CHOICES), value=next(iter(MODEL_CHOICES)), label="Model",
                                 elem_id="uds-model")
        with gr.Row():
            c["cutoff"] = gr.Number(TRAIN.cutoff, label="cut-off (tokens)", precision=0, minimum=8,
                                    maximum=SELECTION.time_length, elem_id="uds-cutoff")
            c["eval_items"] = gr.Number(TRAIN.eval_items, label="held-out items", precision=0, minimum=0, maximum=200,
                                        elem_id="uds-eval-items")
    with gr.Row():
        c["run"] = gr.Button("Run selection", variant="primary", elem_id="uds-run")
        c["cancel"] = gr.Button("Cancel", variant="stop", elem_id="uds-cancel")
    c["status"] = gr.Markdown("", elem_id="uds-status")
    c["runs"] = gr.Dropdown([], label="Runs in this session", interactive=True)
    with gr.Row():
        c["export"] = gr.Button("Export selected (JSONL)", size="sm", elem_id="uds-export")
        c["download"] = gr.Button("Download run log", size="sm", elem_id="uds-download")
    c["file"] = gr.File(label="Download", interactive=False, elem_id="uds-file")
    c["runlog_upload"] = gr.File(label="Load a saved run log (.zip)", file_types=[".zip"], type="filepath",
                                  elem_id="uds-runlog-upload")
    shipped = example_sets()
    with gr.Row(visible=bool(shipped)):
        c["example_set"] = gr.Dropdown(shipped, value=shipped[0] if shipped else None, scale=3,
                                       label="Shipped run logs (no model needed)", elem_id="uds-example-set")
        c["load_examples"] = gr.Button("Load all runs", size="sm", scale=1, elem_id="uds-load-examples")
    return c


def _views() -> dict[str, Any]:
    v: dict[str, Any] = {}
    v["summary"] = gr.Markdown("_No run yet: press **Run selection**, or load a saved run log._",
                               elem_id="uds-summary")
    with gr.Tabs() as v["view_tabs"]:
        with gr.Tab("Buffer map", id="map"):
            with gr.Row():
                v["color_by"] = gr.Radio(list(COLOR_BY), value="age", label="colour by")
                v["map_method"] = gr.Radio(list(h.MAP_METHODS), value="UMAP", label="projection",
                                           elem_id="uds-map-method")
                v["show_rejected"] = gr.Checkbox(True, label="show rejected candidates")
            v["map_step"] = gr.Slider(0, 1, value=0, step=1, label="buffer after step")
            v["map"] = gr.Plot(elem_id=MAP_ID, show_label=False)
            v["bridge"] = gr.HTML("<small>Click a point to inspect that candidate below.</small>",
                                  js_on_load=CLICK_BRIDGE_JS)
        with gr.Tab("Candidates"):
            with gr.Row():
                v["category"] = gr.Dropdown(["all"], value="all", label="category")
                v["status_filter"] = gr.Radio(list(STATUS_FILTERS), value="all", label="show")
                v["query"] = gr.Textbox("", label="search id or category")
            v["table"] = gr.Dataframe(h.empty_frame(TABLE_COLUMNS.values()), interactive=False, max_height=420,
                                      show_search="none", elem_id="uds-table",
                                      label="one row per candidate per step (after a run); click a row to inspect "
                                            "it")
        with gr.Tab("Utility over steps"):
            v["utility_field"] = gr.Dropdown(list(UTILITY_FIELDS), value="s_intra", label="quantity")
            v["utility"] = gr.Plot(show_label=False)
        with gr.Tab("Score decomposition"):
            v["decomposition"] = gr.Plot(show_label=False)
        with gr.Tab("Compare runs", id="compare"):
            v["comparison"] = gr.Plot(show_label=False)
            v["comparison_table"] = gr.Dataframe(h.empty_frame(COMPARISON_COLUMNS), interactive=False,
                                                 label="runs kept in this session (one row per run)")
            v["length_bias"] = gr.Plot(show_label=False, elem_id="uds-length-bias")
            v["seeds"] = gr.Dataframe(interactive=False, elem_id="uds-seeds",
                                      label="seeds: mean ± sd per configuration loaded at two seeds or more")
    gr.Markdown("#### Inspect a candidate")
    with gr.Row():
        v["pick_step"] = gr.Number(None, label="step", precision=0, minimum=0, elem_id="uds-pick-step")
        v["pick_position"] = gr.Number(None, label="position", precision=0, minimum=0,
                                       elem_id="uds-pick-position")
        v["show"] = gr.Button("Show", size="sm")
    with gr.Row():
        with gr.Column(scale=1):
            v["text"] = gr.Markdown(DETAIL_EMPTY, elem_id="uds-detail-text")
        with gr.Column(scale=1):
            v["scores"] = gr.Dataframe(h.empty_frame(SCORE_COLUMNS), interactive=False,
                                       label="scores (of the picked candidate)", elem_id="uds-detail-scores",
                                       column_widths=["60%", "40%"], max_height=360)
            v["neighbours"] = gr.Dataframe(h.empty_frame(NEIGHBOUR_COLUMNS), interactive=False,
                                           label="nearest buffer entries when it was scored",
                                           elem_id="uds-neighbours")
    v["strip"] = gr.Plot(show_label=False, elem_id="uds-strip", visible=False)  # shown once a candidate is picked
    return v


def _as_components(result: dict[str, Any], comps: dict[str, Any], state) -> dict[Any, Any]:
    """A handler's named results -> {component: value} for Gradio."""
    out = {comps[k]: val for k, val in result.items() if k in comps}
    if "state" in result:
        out[state] = result["state"]
    return out


def _wire(state, c: dict[str, Any], v: dict[str, Any]) -> None:
    comps = {**c, **v}
    view_names = ("summary", "table", "category", "utility", "decomposition", "map", "map_method", "map_step",
                  "comparison", "comparison_table", "length_bias", "seeds", "runs", "status")
    view_outs = [state] + [comps[n] for n in view_names]
    detail_outs = [v[n] for n in ("text", "scores", "neighbours", "strip", "pick_step", "pick_position")]
    detail_names = {"step": "pick_step", "position": "pick_position"}
    run_inputs = [state] + [c[n] for n in ("selector", "steps", "batch", "keep", "alpha", "lora", "seed", "dataset",
                                           "upload", "prompt_col", "response_col", "messages_col", "category_col",
                                           "answer_col", "model", "cutoff", "eval_items", "hub_id")]
    map_inputs = [state, c["runs"], v["color_by"], v["map_method"], v["map_step"], v["show_rejected"],
                  v["pick_step"], v["pick_position"]]

    def run(state_value, selector, steps, batch, keep, alpha, lora, seed, dataset, upload, prompt_col, response_col,
            messages_col, category_col, answer_col, model, cutoff, eval_items, hub_id,
            progress=gr.Progress()) -> Iterator[dict[Any, Any]]:  # named: the API shows these names
        for result in h.run_events(state_value, selector, steps, batch, keep, alpha, lora, seed, dataset, upload,
                                   prompt_col, response_col, messages_col, category_col, answer_col, model, cutoff,
                                   eval_items, hub_id, progress=progress):
            yield _as_components(result, comps, state) if result else {c["status"]: gr.skip()}

    run_event = c["run"].click(run, run_inputs, view_outs, api_name="selection_run", concurrency_limit=1,
                               concurrency_id="selection_run")
    # The message comes in a follow-up event so that it lands after any progress update already in flight.
    c["cancel"].click(None, None, None, cancels=[run_event], api_name="selection_cancel", queue=False).then(
        lambda: "Cancelled: the run stopped before its next step.", None, c["status"],
        api_name="selection_cancelled", queue=False)

    def show_run(st, name, field, color_by, method, show_rejected, category, status, query):
        result = h.run_views(st, name, field, color_by, method, None, show_rejected, category, status, query)
        return _as_components(result, comps, state)

    c["runs"].input(show_run, [state, c["runs"], v["utility_field"], v["color_by"], v["map_method"],
                               v["show_rejected"], v["category"], v["status_filter"], v["query"]], view_outs,
                    api_name="selection_show_run")

    def redraw_map(st, name, color_by, method, map_step, show_rejected, step, position) -> dict[Any, Any]:
        return _as_components(h.map_view(st, name, color_by, method, map_step, show_rejected, step, position), comps,
                              state)

    for key in ("color_by", "map_method", "show_rejected"):
        v[key].input(redraw_map, map_inputs, [state, v["map"], v["map_method"]], api_name=f"selection_map_{key}")
    v["map_step"].release(redraw_map, map_inputs, [state, v["map"], v["map_method"]], api_name="selection_map_step")

    v["utility_field"].input(h.utility_view, [state, c["runs"], v["utility_field"]], v["utility"],
                             api_name="selection_utility")
    for key in ("category", "status_filter", "query"):
        v[key].input(h.filtered_table, [state, c["runs"], v["category"], v["status_filter"], v["query"]],
                     v["table"], api_name=f"selection_table_{key}")

    def open_detail(st, name, step, position, color_by, method, map_step, show_rejected):
        result = h.detail(st, name, step, position)
        shown = h.map_view(st, name, color_by, method, map_step, show_rejected, result["step"], result["position"])
        named = {detail_names.get(k, k): val for k, val in result.items()}
        named["strip"] = gr.update(value=result["strip"], visible=result["strip"] is not None)
        return {**_as_components(named, comps, state), **_as_components(shown, comps, state)}

    detail_inputs = [state, c["runs"], v["pick_step"], v["pick_position"], v["color_by"], v["map_method"],
                     v["map_step"], v["show_rejected"]]
    outs = detail_outs + [state, v["map"], v["map_method"]]
    gr.on([v["show"].click, v["pick_step"].submit, v["pick_position"].submit], open_detail, detail_inputs, outs,
          api_name="selection_detail")  # Show, or Enter in either box

    def from_row(st, name, color_by, method, map_step, show_rejected, evt: gr.SelectData):
        step, position = h.row_to_key(evt.row_value)
        return open_detail(st, name, step, position, color_by, method, map_step, show_rejected)

    def from_point(st, name, color_by, method, map_step, show_rejected, evt: gr.EventData):
        step, position = h.point_to_key(evt._data)
        return open_detail(st, name, step, position, color_by, method, map_step, show_rejected)

    pick_inputs = [state, c["runs"], v["color_by"], v["map_method"], v["map_step"], v["show_rejected"]]
    v["table"].select(from_row, pick_inputs, outs, api_name="selection_pick_row")
    v["bridge"].click(from_point, pick_inputs, outs, api_name="selection_pick_point")

    c["export"].click(h.export_selected, [state, c["runs"]], [state, c["file"]], api_name="selection_export")
    c["download"].click(h.export_runlog, [state, c["runs"]], [state, c["file"]],
                        api_name="selection_download_runlog")

    def load_log(st, upload, field, color_by, method, show_rejected):
        st, name = h.load_runlog_zip(st, upload)
        result = h.run_views(st, name, field, color_by, method, None, show_rejected)
        return _as_components({**result, "status": f"Loaded {name}."}, comps, state)

    def load_examples(st, label, field, color_by, method, show_rejected):
        st, names = h.load_example_set(st, label)
        result = h.run_views(st, names[0], field, color_by, method, None, show_rejected)
        return _as_components({**result, "view_tabs": gr.Tabs(selected="compare"),  # a set is for comparing
                               "status": f"Loaded {len(names)} run logs ({label}); Compare runs has the seeds table: "
                                         "mean ± sd per arm."}, comps, state)

    c["load_examples"].click(load_examples, [state, c["example_set"], v["utility_field"], v["color_by"],
                                             v["map_method"], v["show_rejected"]], view_outs + [v["view_tabs"]],
                             api_name="selection_load_examples")
    c["runlog_upload"].upload(load_log, [state, c["runlog_upload"], v["utility_field"], v["color_by"],
                                         v["map_method"], v["show_rejected"]], view_outs,
                              api_name="selection_load_runlog")

