"""Decoding Explorer handlers, called directly (no server): live decoding with Cancel, views from the trace alone,
export / import, compare, sweep, the /decode payload, and a clear gr.Error for every bad input."""
import copy
import gzip
import json
from pathlib import Path

import gradio as gr
import numpy as np
import pytest

from app import decoding_api
from app import decoding_experiments as experiments
from app import decoding_handlers as handlers
from app import decoding_views as views
from app.streaming import CancelToken, LiveStep, stream_decode
from engine.decoding import Trace
from engine.models import HUB_MODELS
from engine.pipeline import DecodeOutcome

KNOBS = dict(gen_length=32, block_length=16, steps=0, tau=0.9, preset="paper", alpha=0.65, beta=0.7, gamma=0.2, seed=0)


def request(prompt="What is the capital of France?", rule="credit", **changes):
    return handlers.make_request(prompt, rule, **{**KNOBS, **changes})


def test_model_picker_lists_hub_models_with_the_reason():
    choices, default = handlers.model_choices()
    values = [value for _, value in choices]
    assert values[:2] == ["bundled", "tiny-random"] and set(HUB_MODELS) <= set(values)
    assert default == ("bundled" if handlers.bundled_available() else "tiny-random")
    hub_label = dict((v, label) for label, v in choices)[next(iter(HUB_MODELS))]
    assert "unavailable" in hub_label and "GPU" in hub_label  # this machine has no GPU
    with pytest.raises(gr.Error, match="cannot run here.*needs a GPU"):
        handlers.get_model(next(iter(HUB_MODELS)))
    with pytest.raises(gr.Error, match="not allowed"):
        handlers.get_model("someone/evil-remote-code")


@pytest.mark.parametrize("prompt, changes, message", [
    ("", {}, "prompt is empty"),
    ("   ", {}, "prompt is empty"),
    ("x" * (handlers.MAX_PROMPT_CHARS + 1), {}, "shorten it"),
    ("hi", {"rule": "fixed steps", "steps": 3}, "steps=3 must be a multiple"),
    ("hi", {"tau": 0.0}, r"threshold=0.0 must be a finite number in \(0, 1\]"),
    ("hi", {"preset": "custom", "beta": 1.5}, r"beta=1.5 must be a finite number in \[0, 1\]"),
    ("hi", {"gen_length": 40, "block_length": 16}, "multiple of block_length"),
    ("hi", {"rule": "greedy"}, "Rule 'greedy' is unknown"),
    ("hi", {"rule": "credit in fixed steps", "preset": "parameter_free"}, "credit rule only"),
])
def test_bad_knobs_give_a_sentence_saying_what_to_change(prompt, changes, message):
    with pytest.raises(gr.Error, match=message):
        request(prompt, **changes)


def test_presets_only_matter_to_credit_rules():
    assert request("hi", rule="threshold", preset="parameter_free").strategy == "threshold"


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
    job = token.start()
    stream = stream_decode(tiny_model, request(), job)
    assert isinstance(next(item for item in stream if not isinstance(item, str)), LiveStep)
    stream.close()
    assert job.cancelled


def test_cancel_tokens_are_per_session():
    token = CancelToken()
    job = token.start()
    fresh = copy.deepcopy(token)  # what gr.State does for each new session
    token.cancel()
    assert job.cancelled and not fresh.start().cancelled
    assert not token.start().cancelled  # a new run is not stopped by an earlier Cancel


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


def colors_label(metric):
    from analysis.colors import HEATMAP_METRICS
    return HEATMAP_METRICS[metric]


def test_export_then_import_gives_every_view_back(tiny_decodes):
    trace = tiny_decodes["threshold"].trace
    path = Path(views.export_trace(trace, "session-A"))
    assert path.parent == views.session_folder("session-A") and path.name.endswith(".json.gz")
    loaded = handlers.import_trace(str(path))
    assert loaded.meta == json.loads(json.dumps(trace.meta)) and loaded.token_text == trace.token_text
    for name, array in trace.arrays.items():
        np.testing.assert_array_equal(loaded.arrays[name], array)
    assert views.render_views(loaded, "raw", 0)["order"] == views.render_views(trace, "raw", 0)["order"]


def test_session_folders_stay_under_the_temp_root():
    root = views.session_folder("x").parent
    assert views.session_folder("../../etc").parent == root
    assert views.session_folder(None).name == "explorer-anonymous"


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


def test_compare_three_rules_on_one_prompt(tiny_model):
    table, figure = list(experiments.compare("tiny-random", "hi", ["fixed steps", "threshold", "credit"], **KNOBS))[-1]
    assert len(table) == 3 and table["same tokens as first"][0] == 1.0
    assert table["NFE"][0] == 32  # fixed steps with steps = gen_length: one token per step
    assert len(figure.data) == 5  # three commit-step lines, two discordance bars
    with pytest.raises(gr.Error, match="tick 2 or 3"):
        next(experiments.compare("tiny-random", "hi", ["credit"], **KNOBS))


def test_sweep_fills_in_point_by_point(tiny_model):
    knobs = {k: KNOBS[k] for k in ("gen_length", "block_length", "tau", "alpha", "beta", "gamma", "seed")}
    results = [r for r in experiments.sweep("tiny-random", "hi", "beta", "0.9, 0.1", **knobs)
               if not isinstance(r[0], dict)]  # (gr.skip(), gr.skip()) keep-alives are dicts
    assert [len(table) for table, _ in results] == [1, 2]
    table, figure = results[-1]
    assert table["value"].tolist() == [0.1, 0.9] and table["reference_nfe"].tolist() == [32, 32]
    assert table["agreement"].between(0, 1).all() and list(figure.data[0].y) == table["nfe"].tolist()
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
    from app.decoding_views import render_views

    names = examples.example_names()
    assert {"capital_credit", "capital_threshold", "capital_fixed_steps"} <= set(names)
    for name in names:
        trace = examples.example_trace(name)
        assert trace.meta["model"] == "bundled" and trace.meta["answer"]
        frame = handlers.trace_frame(trace)
        assert "masked" not in frame.html and f"NFE {trace.meta['nfe']}" in frame.status
        assert handlers.trace_summary(trace)["nfe"] == trace.n_steps
        assert render_views(trace, "raw", 0)["heatmap"] is not None
