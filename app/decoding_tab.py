"""Tab 1, the Decoding Explorer: the components (inside the current Blocks) and their wiring. No maths here: the
handlers (decoding_handlers, decoding_views, decoding_experiments) do the work; this module maps their plain
results onto components."""
from __future__ import annotations

import gradio as gr

from analysis import colors
from app import decoding_api
from app import decoding_experiments as experiments
from app import decoding_handlers as handlers
from app import decoding_views as views
from app import examples as cached
from app.streaming import MODEL_SLOTS, CancelToken
from engine.decoding import CREDIT_PRESETS, DEFAULT_CREDIT_PRESET
from engine.pipeline import PRESETS

EXAMPLES = ["What is the capital of France?", "Write a short poem about the sea.",
            "Give three tips for learning to code.", "Explain what a diffusion language model is in one sentence."]
MODEL_JOBS = "dllm-model"  # events that run the model share these queue slots
LONGEST = max(handlers.GEN_LENGTHS)  # slider ranges before a trace narrows them (API callers never get narrowed)
STEP_RULES = ("fixed steps", "credit in fixed steps")
CREDIT_RULES = ("credit", "credit in fixed steps")
INTRO = ("Watch a diffusion LLM fill in its answer, see what it believed at every step before committing each "
         "token, and tune CreditDecoding's knobs. Views are drawn from the recorded trace: changing a view never "
         "re-runs the model. Symbols follow the paper (arXiv 2510.06133): τ threshold, α fusion, β decay, γ boost.")


def _knob_defaults() -> dict[str, float]:
    return CREDIT_PRESETS[DEFAULT_CREDIT_PRESET]


def build_decoding_tab() -> None:
    """Create the tab's components inside the current Blocks / Tab context and wire them."""
    model_choices, default_model = handlers.model_choices()
    knobs = _knob_defaults()
    trace_state = gr.State(None)  # the trace on screen (this session only)
    cancel_state = gr.State(CancelToken())  # deep-copied per session: a fresh token each
    gr.Markdown(INTRO)
    with gr.Row():
        with gr.Column(scale=1, min_width=320):
            model = gr.Dropdown(model_choices, value=default_model, label="model", elem_id="dllm-model")
            prompt = gr.Textbox(label="prompt", value=EXAMPLES[0], lines=3, max_lines=8,
                                max_length=handlers.MAX_PROMPT_CHARS, elem_id="dllm-prompt")
            gr.Examples([[e] for e in EXAMPLES], inputs=[prompt], label="examples")
            rule = gr.Radio(list(handlers.RULES), value="credit", label="decoding rule",
                            info="fixed steps = LLaDA; threshold = Fast-dLLM; credit = CreditDecoding")
            with gr.Row():
                gen_length = gr.Dropdown(list(handlers.GEN_LENGTHS), value=64, label="gen_length (tokens)")
                block_length = gr.Dropdown(list(handlers.BLOCK_LENGTHS), value=32, label="block_length")
            steps = gr.Slider(0, 1024, value=0, step=1, label=colors.KNOB_LABELS["steps"], visible=False,
                              info="0 = gen_length (one token per step); a multiple of the number of blocks")
            tau = gr.Slider(0.05, 1.0, value=0.9, step=0.01, label=colors.KNOB_LABELS["threshold"])
            preset = gr.Radio(list(PRESETS), value=DEFAULT_CREDIT_PRESET, label="credit preset",
                              info="paper (default): α .65 β .7 γ .2 · dinfer: α .7 β .8 γ .2 · "
                                   "parameter_free: α_k = β_k = 1 - mask ratio, γ = 1")
            alpha = gr.Slider(0.0, 5.0, value=knobs["alpha"], step=0.05, label=colors.KNOB_LABELS["alpha"])
            beta = gr.Slider(0.0, 1.0, value=knobs["beta"], step=0.05, label=colors.KNOB_LABELS["beta"])
            gamma = gr.Slider(0.0, 1.0, value=knobs["gamma"], step=0.05, label=colors.KNOB_LABELS["gamma"])
            with gr.Row():
                seed = gr.Number(value=0, precision=0, label="seed", minimum=0)
                auto = gr.Checkbox(value=True, label="re-decode when α or β is released")
            with gr.Row():
                decode_button = gr.Button("Decode", variant="primary", elem_id="dllm-decode")
                cancel_button = gr.Button("Cancel", variant="stop", elem_id="dllm-cancel")
        with gr.Column(scale=2):
            status = gr.Markdown("Press **Decode** to start.", elem_id="dllm-status")
            live = gr.HTML(label="answer, live", elem_id="dllm-live")
            answer = gr.Textbox(label="answer (text)", interactive=False, lines=3, elem_id="dllm-answer")
            stats = gr.JSON(label="summary")
            example = gr.Dropdown(cached.example_names(), value=(cached.example_names() or [None])[0],
                                  label="cached example traces (shown at once, no model call)",
                                  elem_id="dllm-example")
    info = gr.Markdown(elem_id="dllm-trace-info")
    with gr.Tabs():
        with gr.Tab("Heatmap"):
            with gr.Row():
                metric = gr.Radio(list(colors.HEATMAP_METRICS.values()), value=colors.HEATMAP_METRICS["raw"],
                                  label="colour cells by")
                page = gr.Number(1, minimum=1, precision=0, label=f"page ({views.PAGE_POSITIONS} positions each)",
                                 elem_id="dllm-page")
            heatmap = gr.Plot(label="step x position", elem_id="dllm-heatmap")
        with gr.Tab("Timeline"):
            timeline = gr.Plot(label="timeline")
        with gr.Tab("Stable vs committed"):
            stability = gr.Plot(label="stable since vs committed at (the paper's Figure 1)")
            order = gr.HTML(label="answer by decode order")
        with gr.Tab("Scrub"):
            step = gr.Slider(0, LONGEST - 1, value=0, step=1, label="step", elem_id="dllm-step")
            scrubbed = gr.HTML(elem_id="dllm-scrub")
        with gr.Tab("Inspect token"):
            position = gr.Slider(0, LONGEST - 1, value=0, step=1, label="answer position", elem_id="dllm-position")
            inspector = gr.Plot(label="token inspector", elem_id="dllm-inspector")
            topk = gr.Dataframe(label="top-k across the block's steps", interactive=False)
        with gr.Tab("Compare rules"):
            compare_rules = gr.CheckboxGroup(list(handlers.RULES), value=["fixed steps", "threshold", "credit"],
                                             label=f"rules (2 to {handlers.MAX_COMPARE}; same prompt, seed, knobs)")
            compare_button = gr.Button("Compare")
            compare_table = gr.Dataframe(label="answers, NFE, tokens/s", interactive=False, wrap=True)
            compare_plot = gr.Plot(label="where commit orders differ")
        with gr.Tab("Tune credit"):
            with gr.Row():
                sweep_knob = gr.Radio(list(experiments.SWEEP_KNOBS), value="beta", label="sweep")
                sweep_grid = gr.Textbox(experiments.DEFAULT_GRIDS["beta"], label="values")
            sweep_button = gr.Button("Sweep (one fixed-steps decode + one credit decode per value)")
            sweep_plot = gr.Plot(label="NFE and agreement with fixed steps")
            sweep_table = gr.Dataframe(label="sweep", interactive=False, wrap=True)
        with gr.Tab("Export / import"):
            export_button = gr.Button("Export the trace")
            exported = gr.File(label="trace (engine schema, gzipped JSON)", interactive=False)
            uploaded = gr.File(label="import a trace: every view, no model needed", file_types=[".json", ".gz"],
                               type="filepath")

    knob_inputs = [rule, gen_length, block_length, steps, tau, preset, alpha, beta, gamma, seed]
    view_outputs = [info, heatmap, timeline, stability, order, scrubbed, inspector, topk, page, step, position]

    def show_views(trace, metric_label, at_position):
        if trace is None:
            return [gr.skip()] * len(view_outputs)
        out = views.render_views(trace, metric_label, at_position)
        return [out["info"], out["heatmap"], out["timeline"], out["stability"], out["order"], out["scrub"],
                out["inspector"], out["topk"],
                gr.update(maximum=out["pages"], value=1, label=f"page of {out['pages']} ({views.PAGE_POSITIONS} "
                                                                 "positions each)"),
                gr.update(maximum=max(out["last_step"], 1), value=out["last_step"]),
                gr.update(maximum=out["gen_length"] - 1, value=out["position"])]

    def live_decode(model_name, text, token, *knob_values):
        request = handlers.make_request(text, *knob_values)
        for frame in handlers.decode_frames(model_name, request, token):
            if frame is None:  # keep-alive: nothing new, but the server may close the stream here
                yield gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
            elif frame.outcome is None:
                yield frame.html, frame.status, gr.skip(), gr.skip(), gr.skip()
            else:
                yield (frame.html, frame.status, frame.outcome.answer, handlers.summary(frame.outcome),
                       frame.outcome.trace)

    def retune(enabled, model_name, text, token, *knob_values):
        if not enabled or knob_values[0] not in CREDIT_RULES:
            yield gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
            return
        values = list(knob_values)
        values[5] = "custom"  # a moved knob leaves the preset
        for outputs in live_decode(model_name, text, token, *values):
            yield "custom", *outputs

    def on_preset(name):
        if name == "parameter_free":
            return gr.update(interactive=False), gr.update(interactive=False), gr.update(value=1.0, interactive=False)
        if name in CREDIT_PRESETS:
            return tuple(gr.update(value=CREDIT_PRESETS[name][k], interactive=True) for k in ("alpha", "beta", "gamma"))
        return gr.update(interactive=True), gr.update(interactive=True), gr.update(interactive=True)

    def on_rule(name):
        credit = name in CREDIT_RULES
        return (gr.update(visible=name in STEP_RULES), gr.update(visible=name in ("threshold", "credit")),
                gr.update(visible=credit), gr.update(visible=credit), gr.update(visible=credit),
                gr.update(visible=credit))

    def show_example(name):
        if not name:
            return [gr.skip()] * 5
        trace = cached.example_trace(name)
        frame = handlers.trace_frame(trace)
        return frame.html, frame.status, trace.meta.get("answer", ""), handlers.trace_summary(trace), trace

    def export(trace, request: gr.Request):
        return views.export_trace(trace, request.session_hash if request else None)

    live_outputs = [live, status, answer, stats, trace_state]
    decoding = gr.on([decode_button.click, prompt.submit], live_decode,
                     inputs=[model, prompt, cancel_state, *knob_inputs], outputs=live_outputs,
                     api_name="decode_live", concurrency_id=MODEL_JOBS, concurrency_limit=MODEL_SLOTS)
    decoding.success(show_views, [trace_state, metric, position], view_outputs, api_name="render_views")
    cancel_button.click(lambda token: token.cancel(), [cancel_state], None, api_name="cancel",
                        concurrency_limit=None)
    retuning = gr.on([alpha.release, beta.release], retune, inputs=[auto, model, prompt, cancel_state, *knob_inputs],
                     outputs=[preset, *live_outputs], api_name="retune", concurrency_id=MODEL_JOBS,
                     concurrency_limit=MODEL_SLOTS)
    retuning.success(show_views, [trace_state, metric, position], view_outputs, api_name="render_views_retuned")
    preset.change(on_preset, [preset], [alpha, beta, gamma], api_name="preset")
    rule.change(on_rule, [rule], [steps, tau, preset, alpha, beta, gamma], api_name="rule_knobs")
    gr.on([metric.change, page.input], views.heatmap, [trace_state, metric, page], [heatmap], api_name="heatmap")
    step.change(views.scrub, [trace_state, step], [scrubbed], api_name="scrub", trigger_mode="always_last")
    position.change(views.inspect, [trace_state, position], [inspector, topk], api_name="inspect",
                    trigger_mode="always_last")
    compare_button.click(experiments.compare, [model, prompt, compare_rules, *knob_inputs[1:]],
                         [compare_table, compare_plot], api_name="compare", concurrency_id=MODEL_JOBS,
                         concurrency_limit=MODEL_SLOTS)
    sweep_knob.change(lambda knob: experiments.DEFAULT_GRIDS[knob], [sweep_knob], [sweep_grid], api_name="sweep_grid")
    sweep_button.click(experiments.sweep, [model, prompt, sweep_knob, sweep_grid, gen_length, block_length, tau, alpha,
                                           beta, gamma, seed], [sweep_table, sweep_plot], api_name="sweep",
                       concurrency_id=MODEL_JOBS, concurrency_limit=MODEL_SLOTS)
    export_button.click(export, [trace_state], [exported], api_name="export_trace")
    showing = gr.on(None, show_example, [example], [live, status, answer, stats, trace_state],
                    api_name="example_trace")
    showing.success(show_views, [trace_state, metric, position], view_outputs, api_name="render_views_example")
    importing = uploaded.upload(handlers.import_trace, [uploaded], [trace_state], api_name="import_trace")
    importing.success(show_views, [trace_state, metric, position], view_outputs, api_name="render_views_imported")
    gr.api(decoding_api.api_decode, api_name="decode", concurrency_id=MODEL_JOBS, concurrency_limit=MODEL_SLOTS)
