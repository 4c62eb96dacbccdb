"""Decoding Explorer handlers, called directly (no server): live decoding with Cancel, views from the trace alone,
export / import (every panel follows the new trace), compare, sweep, the /decode payload, and a clear gr.Error for
every bad input."""
import copy
import gzip
import json
import os
import threading
import time
from pathlib import Path

import gradio as gr
import numpy as np
import pytest

from app import decoding_api
from app import decoding_experiments as experiments
from app import decoding_panels as views
from app import decoding_runs as handlers
from app import session
from app.session import CancelToken
from app.streaming import LiveStep, stream_decode
from engine.decoding import Trace, load_trace
from engine.models import MODELS, model_ids, unavailable
from engine.pipeline import DecodeOutcome

KNOBS = dict(gen_length=32, block_length=16, steps=0, tau=0.9, preset="paper", alpha=0.65, beta=0.7, gamma=0.2, seed=0)


def request(prompt="What is the capital of France?", rule="credit", **changes):
    return handlers.make_request(prompt, rule, **{**KNOBS, **changes})


def test_model_picker_lists_hub_models_with_the_reason():
    choices, default = handlers.model_choices()
    values = [value for _, value in choices]
    gpu_models = [m.id for m in MODELS.values() if "gpu" in m.needs and m.dllm is not None]
    assert values == model_ids("dllm") and values[:2] == ["bundled", "tiny-random"] and gpu_models
    assert default == ("bundled" if unavailable(MODELS["bundled"]) is None else "tiny-random")
    gpu_label = dict((v, label) for label, v in choices)[gpu_models[0]]
    assert "unavailable" in gpu_label and "GPU" in gpu_label and MODELS[gpu_models[0]].size in gpu_label  # no GPU here
    with pytest.raises(gr.Error, match="cannot run here.*needs a GPU"):
        handlers.get_model(gpu_models[0])
    with pytest.raises(gr.Error, match="not allowed"):
        handlers.get_model("someone/evil-remote-code")


@pytest.mark.parametrize("prompt, changes, message", [
    ("", {}, "prompt is empty"),
    ("   ", {}, "prompt is empty"),
    ("x" * (handlers.MAX_PROMPT_CHARS + 1), {}, "shorten it"),
    ("hi", {"rule": "low_confidence", "steps": 3}, "steps=3 must be a multiple"),
    ("hi", {"tau": 0.0}, r"threshold=0.0 must be a finite number in \(0, 1\]"),
    ("hi", {"preset": "custom", "beta": 1.5}, r"beta=1.5 must be a finite number in \[0, 1\]"),
    ("hi", {"gen_length": 40, "block_length": 16}, "multiple of block_length"),
    ("hi", {"rule": "greedy"}, "rule 'greedy' is unknown"),
    ("hi", {"rule": "credit in fixed steps", "preset": "parameter_free"}, "not defined for rule credit_low_confidence"),
])
def test_bad_knobs_give_a_sentence_saying_what_to_change(prompt, changes, message):
    with pytest.raises(gr.Error, match=message):
        request(prompt, **changes)


def test_presets_only_matter_to_credit_rules():
    assert request("hi", rule="threshold", preset="parameter_free").rule == "threshold"


def frames_of(stream):
    """The frames a page shows (None is a keep-alive)."""
    return [frame for frame in stream if frame is not None]


def test_live_decode_streams_then_matches_a_plain_decode(tiny_model):
    token = CancelToken()
    frames = frames_of(handlers.decode_frames("tiny-random", request(), token))
    assert frames[0].html.count("masked") == 32 and "32 positions masked" in frames[0].status
    steps = [int(f.status.split()[1].rstrip(",")) for f in frames[1:-1]]
    assert steps == sorted(steps) and all(s.startswith("step ") for s in (f.status for f in frames[1:-1]))
    final = frames[-1].outcome
    assert isinstance(final, DecodeOutcome) and frames[-1].status.startswith(f"done: NFE {final.result.nfe}")
    assert "masked" not in frames[-1].html
    plain = handlers.decode_once("tiny-random", request())
    assert plain.answer == final.answer and plain.result.nfe == final.result.nfe
    np.testing.assert_array_equal(plain.trace.arrays["tokens"], final.trace.arrays["tokens"])


def test_cancel_stops_the_decode_and_keeps_no_trace(tiny_model):
    token = CancelToken()
    frames = []
    long = request(gen_length=256, block_length=16)  # 256 steps: the Cancel lands long before the end
    for frame in handlers.decode_frames("tiny-random", long, token):
        frames += [frame] if frame is not None else []
        if frame is not None and frame.status.startswith("step "):
            token.cancel()
    assert frames[-1].status.startswith("cancelled after step") and frames[-1].outcome is None
    assert all(f.outcome is None for f in frames)
    assert len(frames) < 32  # far fewer than one frame per position


def test_closing_the_stream_cancels_the_worker(tiny_model):
    token = CancelToken()
    run = token.start()
    stream = stream_decode(tiny_model, request(), run)
    assert isinstance(next(item for item in stream if not isinstance(item, str)), LiveStep)
    stream.close()
    assert run.cancelled
    deadline = time.monotonic() + 60
    while session.DECODE_JOBS.running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert session.DECODE_JOBS.running == 0  # the worker stopped within a step and freed its slot


def test_cancel_tokens_are_per_session():
    token = CancelToken()
    fresh = copy.deepcopy(token)  # what gr.State does for each new session
    run = token.start()
    token.cancel()
    assert run.cancelled and token.cancelled and not fresh.cancelled
    later = token.start()
    assert not later.cancelled and run.cancelled  # a new run is not stopped by an earlier Cancel
    token.cancel()
    assert later.cancelled


def test_views_render_from_the_trace_alone(tiny_decodes):
    trace = tiny_decodes["credit"].trace
    out = views.render_views(trace, colors_label("fused"), 5)
    assert out["pages"] == 1 and out["last_step"] == trace.n_steps - 1 and out["position"] == 5
    assert out["heatmap"].data[0].z.shape[1] == 32 and "tiny-random" in out["info"]
    assert views.heatmap(trace, "entropy", 1).data[0].zmin == 0.0
    assert views.scrub(trace, 0).count("masked") == 32 - int(trace.arrays["committed"][0, 0].sum())
    figure, table = views.inspect(trace, 31)
    assert "position 31" in figure.layout.title.text and len(table) > 0
    with pytest.raises(gr.Error, match="Position 32 is outside"):
        views.inspect(trace, 32)
    with pytest.raises(gr.Error, match="unknown"):
        views.heatmap(trace, "loudness", 1)
    with pytest.raises(gr.Error, match="no trace yet"):
        views.render_views(None, "raw", 0)


def colors_rule_label(rule):
    from analysis.colors import rule_label
    return rule_label(rule)


def colors_label(metric):
    from analysis.colors import HEATMAP_METRICS
    return HEATMAP_METRICS[metric]


def test_export_then_import_gives_every_view_back(tiny_decodes):
    trace = tiny_decodes["threshold"].trace
    path = Path(views.export_trace(trace, "session-A"))
    assert path.parent == session.session_folder("session-A") and path.name.endswith(".json.gz")
    loaded = handlers.import_trace(str(path))
    assert loaded.meta == json.loads(json.dumps(trace.meta)) and loaded.token_text == trace.token_text
    for name, array in trace.arrays.items():
        np.testing.assert_array_equal(loaded.arrays[name], array)
    assert views.render_views(loaded, "raw", 0)["order"] == views.render_views(trace, "raw", 0)["order"]


def test_importing_a_trace_updates_every_panel_that_shows_it(tiny_decodes, tmp_path):
    """Issue 17: after a cached example is on screen, an import replaces the prompt's answer, token strip, summary
    and status above as well as the views below; nothing keeps showing the example."""
    from app import examples

    example = views.show_example("capital_credit")
    imported = tiny_decodes["threshold"].trace
    path = views.export_trace(imported, "session-import")
    top = views.import_file(path)
    assert set(top) == set(views.TOP_PANEL_NAMES)
    assert top["trace"].meta["prompt"] == imported.meta["prompt"] and top["trace"].meta["model"] == "tiny-random"
    assert top["status"].startswith("imported trace of tiny-random") and f"NFE {imported.meta['nfe']}" in top["status"]
    assert top["answer"] == imported.meta["answer"] and top["stats"] == handlers.trace_summary(imported)
    assert top["live"] == handlers.trace_frame(imported).html and top["live"] != example["live"]
    assert example["trace"].meta["model"] == examples.example_trace("capital_credit").meta["model"] == "bundled"
    shown = views.view_panels(top["trace"], "raw", 0)
    assert set(shown) == set(views.VIEW_PANEL_NAMES)
    assert "tiny-random" in shown["info"] and colors_rule_label("threshold") in shown["info"]
    assert shown["order"] == views.render_views(imported, "raw", 0)["order"]
    assert shown["step"]["value"] == imported.n_steps - 1 and shown["position"]["maximum"] == 31
    assert views.view_panels(None, "raw", 0) == {}


def test_session_folders_stay_under_the_temp_root():
    root = session.session_folder("x").parent
    assert root == session.SESSION_ROOT and session.session_folder("../../etc").parent == root
    fresh = session.session_folder(None)  # no id: a private folder of its own, never a shared "anonymous" one
    assert fresh.parent == root and fresh != session.session_folder(None)


def test_import_refuses_files_that_are_not_our_traces(tmp_path, tiny_decodes):
    corrupt = tmp_path / "corrupt.json.gz"
    corrupt.write_bytes(gzip.compress(b'{"schema": "dllm-decoding-trace", "version": 1, "meta": ')[:-5])
    foreign = tmp_path / "foreign.json"
    foreign.write_text(json.dumps({"hello": "world"}))
    cut = tmp_path / "cut.json"
    bad = tiny_decodes["credit"].trace.to_dict()
    bad["arrays"]["tokens"]["shape"] = [1, 31]
    cut.write_text(json.dumps(bad))
    huge = tmp_path / "huge.json"
    with huge.open("wb") as handle:
        handle.truncate(handlers.MAX_TRACE_BYTES + 1)  # sparse: costs no disk
    for path, message in ((corrupt, "not a readable JSON trace"), (foreign, "not a decoding trace"),
                          (cut, r"declares shape \[1, 31\]"), (huge, "MB are accepted"),
                          (None, "No file was uploaded")):
        with pytest.raises(gr.Error, match=message):
            handlers.import_trace(str(path) if path else None)


def test_compare_three_rules_on_one_prompt_then_pick_one(tiny_model):
    knobs = list(KNOBS.values())
    shown = list(views.compare("tiny-random", "hi", ["low_confidence", "threshold", "credit"], *knobs))[-1]
    table, figure = shown["compare_table"], shown["compare_plot"]
    assert len(table) == 3 and table["same tokens as first"][0] == 1.0
    assert table["NFE"][0] == 32  # fixed steps with steps = gen_length: one token per step
    assert len(figure.data) == 5  # three commit-step lines, two discordance bars
    picked = views.pick_compared(shown["compared"], 1)
    assert picked["trace"].meta["rule"] == "threshold" and picked["stats"]["rule"] == "threshold"
    assert picked["status"].startswith("compared decode") and picked["answer"] == table["answer"][1]
    with pytest.raises(gr.Error, match="tick 2 or 3"):
        next(views.compare("tiny-random", "hi", ["credit"], *knobs))
    with pytest.raises(gr.Error, match="Row 3 is not in the comparison"):
        views.pick_compared(shown["compared"], 3)


def test_compare_cache_modes_on_one_prompt(tiny_model):
    shown = list(views.compare_caches("tiny-random", "hi", "credit", *KNOBS.values()))[-1]
    table, traces = shown["compare_table"], shown["compared"]
    assert [t.meta["cache"]["mode"] for t in traces] == ["none", "prefix", "dual"]
    assert table["rule"][2].endswith("· dual cache") and table["same tokens as first"][0] == 1.0
    assert table["same tokens as first"].between(0, 1).all() and (table["NFE"] >= 2).all()
    assert traces[1].arrays["step_recomputed"][0] and not traces[1].arrays["step_recomputed"][1:].all()
    assert views.pick_compared(traces, 2)["stats"]["cache"] == {"mode": "dual", "refresh": None}
    with pytest.raises(gr.Error, match="cache='full' is unknown"):
        request(cache="full")


def test_sweep_fills_in_point_by_point(tiny_model):
    """Issue 17, item 3: "k of n" from the first frame, every value listed at once (pending until decoded), the x axis
    fixed to the swept values, and the previous knob's rows cleared when the swept knob changes."""
    knobs = {k: KNOBS[k] for k in ("gen_length", "block_length", "tau", "alpha", "beta", "gamma", "seed")}
    frames = list(experiments.sweep("tiny-random", "hi", "beta", "0.9, 0.1", **knobs))
    statuses = [f["sweep_status"] for f in frames if "sweep_status" in f]
    assert statuses == ["decode 1 of 3: fixed steps, the reference answer…",
                        "1 of 3 decodes done; decode 2: credit with β = 0.1…",
                        "2 of 3 decodes done; decode 3: credit with β = 0.9…",
                        "done: 3 of 3 decodes (fixed steps NFE 32)."]
    tables = [f["sweep_table"] for f in frames if "sweep_table" in f]
    assert [(t["NFE"] == "pending").sum() for t in tables] == [2, 1, 0] and tables[0]["β"].tolist() == [0.1, 0.9]
    table, figure = tables[-1], [f["sweep_plot"] for f in frames if "sweep_plot" in f][-1]
    assert table["agreement"].between(0, 1).all() and list(figure.data[0].y) == table["NFE"].tolist()
    first = frames[0]["sweep_plot"]
    assert list(first.layout.xaxis.tickvals) == [0.1, 0.9] and first.layout.xaxis.range[0] < 0.1 < 0.9 < \
        first.layout.xaxis.range[1] and "0 of 2 values" in first.layout.title.text
    changed = experiments.sweep_knob_changed("alpha")
    assert changed["sweep_plot"] is None and changed["sweep_grid"] == experiments.DEFAULT_GRIDS["alpha"]
    assert "α" in changed["sweep_table"].columns and (changed["sweep_table"]["NFE"] == "pending").all()
    assert experiments.sweep_cancelled(statuses[1]) == "1 of 3 decodes done; cancelled, the rows above are the " \
                                                      "values decoded."
    for grid, message in (("1", "give 2 to"), ("0.1, x", "not numbers"), ("0.1, 1.5", "outside beta's range")):
        with pytest.raises(gr.Error, match=message):
            experiments.parse_grid("beta", grid)


def test_api_decode_returns_answer_nfe_and_a_loadable_trace(tiny_model):
    *statuses, payload = decoding_api.api_decode("hi", model="tiny-random", gen_length=32, block_length=16)
    assert all(set(s) == {"status"} for s in statuses)
    trace = Trace.from_dict(payload["trace"])
    assert payload["nfe"] == trace.meta["nfe"] == trace.n_steps
    assert payload["answer"] == handlers.decode_once("tiny-random", request("hi")).answer
    assert set(payload) >= {"answer", "nfe", "tokens_per_second", "seconds", "trace"}


def test_replayed_decode_shows_the_same_steps_as_the_live_one(tiny_model):
    """The ZeroGPU path (trace computed in one call, animated after) ends where the live path ends, step by step."""
    from app.streaming import replay_steps

    live = frames_of(handlers.decode_frames("tiny-random", request(), CancelToken(), replay=False))[-1].outcome
    frames = frames_of(handlers.decode_frames("tiny-random", request(), CancelToken(), replay=True))
    replayed = frames[-1].outcome
    assert replayed.answer == live.answer and replayed.result.nfe == live.result.nfe
    steps = list(replay_steps(replayed.trace))
    assert len(steps) == replayed.result.nfe
    committed_counts = [int(s.committed.sum()) for s in steps]
    assert committed_counts == sorted(committed_counts)
    np.testing.assert_array_equal(steps[-1].ids[steps[-1].committed],
                                  replayed.trace.arrays["tokens"][0][steps[-1].committed])
    per_step = replayed.trace.arrays["committed"][:, 0].sum(axis=1)
    assert committed_counts == np.cumsum(per_step).tolist()


def test_cached_examples_render_without_a_model():
    from app import examples
    from app.decoding_panels import render_views

    names = examples.example_names()
    assert {"capital_credit", "capital_threshold", "capital_fixed_steps"} <= set(names)
    for name in names:
        trace = examples.example_trace(name)
        assert trace.meta["model"] == "bundled" and trace.meta["answer"]
        frame = handlers.trace_frame(trace)
        assert "masked" not in frame.html and frame.status.startswith("recorded trace of bundled, ")
        assert f": NFE {trace.meta['nfe']} for" in frame.status and "recorded on a 2-core CPU" in frame.status
        # Issue 17: the end-of-answer id reads [EOS] (its run collapsed) as in live decodes, never the raw token text
        assert "[EOS] ×" in frame.html and "im_end" not in frame.html
        assert list(handlers.trace_summary(trace))[0] == "nfe"
        assert handlers.trace_summary(trace)["nfe"] == trace.n_steps
        assert render_views(trace, "raw", 0)["heatmap"] is not None


def test_views_are_marked_stale_when_the_knobs_leave_the_trace(tiny_decodes):
    """Issue 17, item 4: with re-decode off, a moved knob changes no view, so the page says the views show an
    earlier decode (and what differs); knobs that match the trace again clear the mark."""
    trace = tiny_decodes["credit"].trace
    knobs = dict(KNOBS, steps=0)
    args = lambda **changes: ["tiny-random", trace.meta["prompt"], "credit", *{**knobs, **changes}.values()]  # noqa
    assert views.staleness(trace, *args()) == "" and views.staleness(None, *args(beta=0.3)) == ""
    assert views.custom_preset() == "custom"  # a moved α / β / γ leaves the preset, so a Decode would use it
    moved = views.staleness(trace, *args(preset="custom", beta=0.3))
    assert "earlier decode" in moved and "credit decay β: 0.7 → 0.3" in moved and "Decode" in moved
    assert "rule: credit (CreditDecoding) → threshold τ (Fast-dLLM)" in views.staleness(
        trace, "tiny-random", trace.meta["prompt"], "threshold", *knobs.values())
    assert "seed: 0 → 5" in views.staleness(trace, *args(seed=5))
    assert "not a valid decode" in views.staleness(trace, *args(gen_length=40))
    assert views.staleness(trace, *args(preset="custom")) == ""  # custom with the paper's values is the same decode


def test_example_recorder_names_the_machine(tmp_path):
    """The script that records the cached examples (`python -m app.examples`; `--smoke`: the first example with
    tiny-random): the trace loads back and names the machine it was decoded on, which the page prints."""
    from app import examples

    examples.main(["--smoke", "--out", str(tmp_path)])
    for stem, prompt, rule, gen_length in examples.EXAMPLES[:1]:
        trace = load_trace(tmp_path / f"{stem}.json.gz")
        assert (trace.meta["prompt"], trace.meta["rule"], trace.meta["gen_length"]) == (prompt, rule, gen_length)
        assert trace.meta["machine"] == f"a {len(os.sched_getaffinity(0))}-core CPU"
        assert "recorded on " + trace.meta["machine"] in handlers.trace_frame(trace).status
