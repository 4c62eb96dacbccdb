"""Tab 1, the Decoding Explorer: `build_decoding_tab` creates the components (inside the current Blocks) into a dict
by name, and `_wire` connects events to the handlers by those names. No maths here: the handlers
(decoding_panels, decoding_runs, decoding_experiments) return plain values or dicts keyed by component name."""
from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Iterator

import gradio as gr
import pandas as pd

from analysis import colors
from analysis.trace_compare import COMPARE_COLUMNS
from app import decoding_api
from app import decoding_experiments as experiments
from app import decoding_panels as panels
from app import decoding_runs as runs
from app import examples as cached
from app.session import DECODE_JOBS, CancelToken
from engine.decoding import DEFAULT_CREDIT_PRESET, RULES
from engine.decoding.cache import CACHE_MODES
from engine.decoding.registry import BASELINE

EXAMPLES = ["What is the capital of France?", "Write a short poem about the sea.",
            "Give three tips for learning to code.", "Explain what a diffusion language model is in one sentence."]
MODEL_JOBS = "dllm-model"  # events that run the model share these queue slots
MODEL_SLOTS = DECODE_JOBS.slots  # queue slots of model jobs: as many as the engine-side limit (app/session.py)
LONGEST = max(runs.GEN_LENGTHS)  # slider ranges before a trace narrows them (API callers never get narrowed)
CREDIT_PRESET_CHOICES = [*RULES["credit"].presets, "custom"]
INTRO = ("Watch a diffusion LLM fill in its answer, see what it believed at every step before committing each "
         "token, and tune CreditDecoding's knobs. Views are drawn from the recorded trace: changing a view never "
         "re-runs the model. Symbols follow the paper (arXiv 2510.06133): τ threshold, α fusion, β decay, γ boost.")


def build_decoding_tab() -> None:
    """Create the tab's components inside the current Blocks / Tab context and wire them."""
    c: dict[str, Any] = {"trace": gr.State(None),  # the trace on screen (this session only)
                         "token": gr.State(CancelToken()),  # deep-copied per session: a fresh token each
                         "compared": gr.State(None)}  # the traces of the last comparison (to pick one)
    gr.Markdown(INTRO)
    with gr.Row():
        with gr.Column(scale=1, min_width=320):
            c.update(_controls())
        with gr.Column(scale=2):
            c.update(_top_panel())
    c.update(_views())
    _wire(c)


def _controls() -> dict[str, Any]:
    c: dict[str, Any] = {}
    defaults = runs.DEFAULTS
    knobs = RULES["credit"].presets[DEFAULT_CREDIT_PRESET]
    model_choices, default_model = runs.model_choices()
    c["model"] = gr.Dropdown(model_choices, value=default_model, label="model", elem_id="dllm-model")
    c["prompt"] = gr.Textbox(label="prompt", value=EXAMPLES[0], lines=3, max_lines=8,
                             max_length=runs.MAX_PROMPT_CHARS, elem_id="dllm-prompt")
    gr.Examples([[e] for e in EXAMPLES], inputs=[c["prompt"]], label="examples")
    c["rule"] = gr.Radio(runs.RULE_CHOICES, value=defaults["rule"], label="decoding rule",
                         info="fixed steps = LLaDA; threshold = Fast-dLLM; credit = CreditDecoding")
    with gr.Row():
        c["gen_length"] = gr.Dropdown(list(runs.GEN_LENGTHS), value=defaults["gen_length"], label="gen_length (tokens)",
                                      elem_id="dllm-gen-length")
        c["block_length"] = gr.Dropdown(list(runs.BLOCK_LENGTHS), value=defaults["block_length"], label="block_length")
    c["steps"] = gr.Slider(0, LONGEST, value=defaults["steps"] or 0, step=1, label=colors.knob_label("steps"),
                           visible=False,
                           info="0 = gen_length (one token per step); a multiple of the number of blocks")
    c["tau"] = gr.Slider(0.05, 1.0, value=defaults["threshold"], step=0.01, label=colors.knob_label("threshold"))
    c["preset"] = gr.Radio(CREDIT_PRESET_CHOICES, value=defaults["preset"], label="credit preset",
                           info="paper (default): α .65 β .7 γ .2 · dinfer: α .7 β .8 γ .2 · "
                                "parameter_free: α_k = β_k = 1 - mask ratio, γ = 1")
    c["alpha"] = gr.Slider(0.0, 5.0, value=knobs["alpha"], step=0.05, label=colors.knob_label("alpha"))
    c["beta"] = gr.Slider(0.0, 1.0, value=knobs["beta"], step=0.05, label=colors.knob_label("beta"),
                          elem_id="dllm-beta")
    c["gamma"] = gr.Slider(0.0, 1.0, value=knobs["gamma"], step=0.05, label=colors.knob_label("gamma"))
    c["cache"] = gr.Radio(list(CACHE_MODES), value=defaults["cache"], label="key/value cache",
                          info="Fast-dLLM: prefix reuses the prompt's and finished blocks' keys, dual also the masked "
                               "suffix's; refreshed on each block's first step (LLaDA2: exact, prefix only)")
    with gr.Row():
        c["seed"] = gr.Number(value=defaults["seed"], precision=0, label="seed", minimum=0)
        c["auto"] = gr.Checkbox(value=True, label="re-decode when α or β is released")
    with gr.Row():
        c["decode"] = gr.Button("Decode", variant="primary", elem_id="dllm-decode")
        c["cancel"] = gr.Button("Cancel", variant="stop", elem_id="dllm-cancel")
    return c


def _top_panel() -> dict[str, Any]:
    c: dict[str, Any] = {}
    c["status"] = gr.Markdown("Press **Decode** to start.", elem_id="dllm-status")
    c["live"] = gr.HTML(label="answer, live", elem_id="dllm-live")
    c["answer"] = gr.Textbox(label="answer (text)", interactive=False, lines=3, elem_id="dllm-answer")
    c["stats"] = gr.JSON(label="summary", elem_id="dllm-stats")
    c["example"] = gr.Dropdown(cached.example_names(), value=(cached.example_names() or [None])[0],
                               label="cached example traces (shown at once, no model call)", elem_id="dllm-example")
    return c


def _views() -> dict[str, Any]:
    c: dict[str, Any] = {}
    c["stale"] = gr.Markdown(elem_id="dllm-stale")
    c["info"] = gr.Markdown(elem_id="dllm-trace-info")
    with gr.Tabs():
        with gr.Tab("Heatmap"):
            with gr.Row():
                c["metric"] = gr.Radio(list(colors.HEATMAP_METRICS.values()), value=colors.HEATMAP_METRICS["raw"],
                                       label="colour cells by")
                c["page"] = gr.Number(1, minimum=1, precision=0, label=panels.page_label(None, 1),
                                      elem_id="dllm-page")
            c["overview"] = gr.Plot(label="overview of a long answer: every position once, one row per page",
                                    visible=False, elem_id="dllm-overview")
            c["heatmap"] = gr.Plot(label="step x position (one page)", elem_id="dllm-heatmap")
        with gr.Tab("Timeline"):
            c["timeline"] = gr.Plot(label="timeline")
        with gr.Tab("Stable vs committed"):
            c["stability"] = gr.Plot(label="stable since vs committed at (the paper's Figure 1)")
            c["order"] = gr.HTML(label="answer by decode order")
        with gr.Tab("Scrub"):
            c["step"] = gr.Slider(0, LONGEST - 1, value=0, step=1, label="step", elem_id="dllm-step")
            c["scrub"] = gr.HTML(elem_id="dllm-scrub")
        with gr.Tab("Inspect token"):
            c["position"] = gr.Slider(0, LONGEST - 1, value=0, step=1, label="answer position",
                                      elem_id="dllm-position")
            c["inspector"] = gr.Plot(label="token inspector", elem_id="dllm-inspector")
            c["topk"] = gr.Dataframe(label="top-k across the block's steps", interactive=False)
        with gr.Tab("Compare rules"):
            c["compare_rules"] = gr.CheckboxGroup(runs.RULE_CHOICES, value=[BASELINE, "threshold", "credit"],
                                                  label=f"rules (2 to {runs.MAX_COMPARE}; same prompt, seed, knobs)")
            with gr.Row():
                c["compare"] = gr.Button("Compare")
                c["compare_cache"] = gr.Button("Compare cache modes (the rule above; none / prefix / dual)")
            c["compare_table"] = gr.Dataframe(pd.DataFrame(columns=list(COMPARE_COLUMNS)), interactive=False,
                                              label="one row per rule after Compare; click a row to show that decode "
                                                    "above (same tokens / order: against the first rule)",
                                              wrap=True, elem_id="dllm-compare-table",
                                              column_widths=["20%", "6%", "8%", "7%", "10%", "10%", "39%"])
            c["compare_plot"] = gr.Plot(label="where commit orders differ")
        with gr.Tab("Tune credit"):
            with gr.Row():
                c["sweep_knob"] = gr.Radio(list(experiments.SWEEP_KNOBS), value="beta", label="sweep")
                c["sweep_grid"] = gr.Textbox(experiments.DEFAULT_GRIDS["beta"], label="values",
                                             elem_id="dllm-sweep-grid")
            c["sweep"] = gr.Button("Sweep (one fixed-steps decode + one credit decode per value)")
            c["sweep_status"] = gr.Markdown("Press **Sweep**: the table lists every value at once and fills in as "
                                            "each decode ends.", elem_id="dllm-sweep-status")
            c["sweep_plot"] = gr.Plot(label="NFE and agreement with fixed steps", elem_id="dllm-sweep-plot")
            c["sweep_table"] = gr.Dataframe(experiments.empty_sweep_table("beta"), label="sweep: one row per value",
                                            interactive=False, wrap=True, elem_id="dllm-sweep-table",
                                            column_widths=["9%", "9%", "14%", "12%", "56%"])
        with gr.Tab("Export / import"):
            c["export"] = gr.Button("Export the trace")
            c["exported"] = gr.File(label="trace (engine schema, gzipped JSON)", interactive=False)
            c["uploaded"] = gr.File(label="import a trace: every view, no model needed", file_types=[".json", ".gz"],
                                    type="filepath", elem_id="dllm-upload")
    return c


def _named(c: dict[str, Any], handler: Callable[..., Any]) -> Callable[..., Any]:
    """A handler's dict by component name -> the {component: value} Gradio applies (absent names stay as they are);
    generators stay generators."""
    def to_components(result: dict[str, Any]) -> dict[Any, Any]:
        return {c[name]: value for name, value in result.items()} if result else gr.skip()

    @functools.wraps(handler)  # the API shows the handler's parameter names
    def streamed(*args: Any) -> Iterator[dict[Any, Any]]:
        for result in handler(*args):
            yield to_components(result)

    @functools.wraps(handler)
    def single(*args: Any) -> dict[Any, Any]:
        return to_components(handler(*args))

    return streamed if inspect.isgeneratorfunction(handler) else single


def _wire(c: dict[str, Any]) -> None:
    pick = lambda *names: [c[n] for n in names]  # noqa: E731
    knobs = pick(*panels.KNOBS)
    top, views = pick(*panels.TOP_PANEL_NAMES), pick(*panels.VIEW_PANEL_NAMES)
    view_inputs = pick("trace", "metric", "position")
    model_job = dict(concurrency_id=MODEL_JOBS, concurrency_limit=MODEL_SLOTS)
    show_views = _named(c, panels.view_panels)

    decoding = gr.on([c["decode"].click, c["prompt"].submit], _named(c, panels.live_decode),
                     inputs=[*pick("model", "prompt", "token"), *knobs], outputs=top, api_name="decode_live",
                     **model_job)
    stale_inputs = pick("trace", "model", "prompt", *panels.KNOBS)

    def then_views(event: Any, suffix: str) -> None:
        """A trace-changing event: the views follow it, then the stale mark is checked against the knobs."""
        shown = event.success(show_views, view_inputs, views, api_name=f"render_views{suffix}")
        shown.then(panels.staleness, stale_inputs, [c["stale"]], api_name=f"staleness{suffix}",
                   show_progress="hidden")

    then_views(decoding, "")
    gr.on([c[name].change for name in ("model", "prompt", *panels.KNOBS)], panels.staleness, stale_inputs,
          [c["stale"]], api_name="staleness_knobs", trigger_mode="always_last", show_progress="hidden")
    c["cancel"].click(lambda token: token.cancel(), [c["token"]], None, api_name="cancel", concurrency_limit=None)
    retuning = gr.on([c["alpha"].release, c["beta"].release], _named(c, panels.retune),
                     inputs=[*pick("auto", "model", "prompt", "token"), *knobs], outputs=[c["preset"], *top],
                     api_name="retune", **model_job)
    then_views(retuning, "_retuned")
    gr.on([c[k].input for k in ("alpha", "beta", "gamma")], panels.custom_preset, None, [c["preset"]],
          api_name="custom_preset", trigger_mode="always_last", queue=False)
    c["preset"].change(_named(c, panels.preset_knobs), [c["preset"]], pick("alpha", "beta", "gamma"),
                       api_name="preset")
    c["rule"].change(_named(c, panels.rule_knobs), [c["rule"]], pick("steps", "tau", "preset", "alpha", "beta",
                                                                     "gamma"), api_name="rule_knobs")
    gr.on([c["metric"].change, c["page"].input], _named(c, panels.heatmaps), pick("trace", "metric", "page"),
          pick("heatmap", "overview"), api_name="heatmap")
    c["step"].change(panels.scrub, pick("trace", "step"), [c["scrub"]], api_name="scrub", trigger_mode="always_last")
    c["position"].change(panels.inspect, pick("trace", "position"), pick("inspector", "topk"), api_name="inspect",
                         trigger_mode="always_last")
    c["compare"].click(_named(c, panels.compare), [*pick("model", "prompt", "compare_rules"), *knobs[1:]],
                       pick("compare_table", "compare_plot", "compared"), api_name="compare", **model_job)
    c["compare_cache"].click(_named(c, panels.compare_caches), [*pick("model", "prompt"), *knobs[:-1]],
                             pick("compare_table", "compare_plot", "compared"), api_name="compare_cache", **model_job)

    def picked(compared, evt: gr.SelectData):
        return _named(c, panels.pick_compared)(compared, evt.index[0])

    comparing = c["compare_table"].select(picked, [c["compared"]], top, api_name="compare_pick")
    then_views(comparing, "_compared")
    sweeping = c["sweep"].click(_named(c, experiments.sweep),
                                pick("model", "prompt", "sweep_knob", "sweep_grid", "gen_length", "block_length",
                                     "tau", "alpha", "beta", "gamma", "seed"),
                                pick("sweep_status", "sweep_table", "sweep_plot"), api_name="sweep", **model_job)
    c["sweep_knob"].change(_named(c, experiments.sweep_knob_changed), [c["sweep_knob"]],
                           pick("sweep_grid", "sweep_status", "sweep_table", "sweep_plot"), api_name="sweep_grid",
                           cancels=[sweeping])
    c["cancel"].click(None, None, None, cancels=[sweeping], queue=False).then(
        experiments.sweep_cancelled, [c["sweep_status"]], [c["sweep_status"]], api_name="sweep_cancelled", queue=False)
    c["export"].click(panels.export, [c["trace"]], [c["exported"]], api_name="export_trace")
    showing = gr.on(None, _named(c, panels.show_example), [c["example"]], top, api_name="example_trace")
    then_views(showing, "_example")
    importing = c["uploaded"].upload(_named(c, panels.import_file), [c["uploaded"]], top, api_name="import_trace")
    then_views(importing, "_imported")
    gr.api(decoding_api.api_decode, api_name="decode", **model_job)
