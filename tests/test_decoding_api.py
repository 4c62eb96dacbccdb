"""The Decoding Explorer through gradio_client against a launched app: /decode returns the answer, NFE and the trace;
the streaming endpoint ends with the same answer; bad input comes back as a clear error; every event is named."""
import concurrent.futures

import pytest
from gradio_client import Client, handle_file

from app import examples
from engine.decoding import Trace, load_trace

SMALL = dict(model="tiny-random", gen_length=32, block_length=16)


@pytest.fixture(scope="module")
def client(app_url):
    return Client(app_url, verbose=False)


def test_decode_returns_answer_nfe_and_trace(client):
    payload = client.predict(prompt="What is the capital of France?", rule="credit", api_name="/decode", **SMALL)
    trace = Trace.from_dict(payload["trace"])
    assert payload["nfe"] == trace.meta["nfe"] == trace.n_steps and 2 <= payload["nfe"] <= 32
    assert trace.meta["prompt"] == "What is the capital of France?" and trace.meta["rule"] == "credit"
    assert isinstance(payload["answer"], str) and payload["tokens_per_second"] > 0


def test_streaming_decode_ends_with_the_same_answer(client):
    direct = client.predict(prompt="hi", rule="threshold", api_name="/decode", **SMALL)
    live, status, answer, summary = client.predict(
        "tiny-random", "hi", "threshold", 32, 16, 0, 0.9, "paper", 0.65, 0.7, 0.2, 0, api_name="/decode_live")
    assert status.startswith(f"done: NFE {direct['nfe']}") and answer == direct["answer"]
    assert summary["nfe"] == direct["nfe"] and "dllm-tokens" in live


def test_export_downloads_the_sessions_trace(app_url):
    session = Client(app_url, verbose=False)  # one client = one session: the trace stays in its gr.State
    *_, summary = session.predict("tiny-random", "export me", "credit", 32, 16, 0, 0.9, "paper", 0.65, 0.7, 0.2, 0,
                                  api_name="/decode_live")
    trace = load_trace(session.predict(api_name="/export_trace"))
    assert trace.meta["prompt"] == "export me" and trace.meta["nfe"] == summary["nfe"]


def test_importing_a_trace_replaces_the_top_panel(app_url):
    session = Client(app_url, verbose=False)
    trace = examples.example_trace("capital_threshold")
    live, status, answer, summary = session.predict(handle_file(str(examples.FOLDER / "capital_threshold.json.gz")),
                                                    api_name="/import_trace")
    assert status.startswith("imported trace of bundled") and f"NFE {trace.meta['nfe']}" in status
    assert answer == trace.meta["answer"] and summary["rule"] == "threshold" and "dllm-tokens" in live
    info, *_ = session.predict(api_name="/render_views_imported")
    assert f"NFE {trace.meta['nfe']}" in info


def test_moving_a_credit_knob_re_decodes_with_the_custom_preset(client):
    preset, _, status, _, summary = client.predict(True, "tiny-random", "hi", "credit", 32, 16, 0, 0.9, "paper", 0.65,
                                                   0.3, 0.2, 0, api_name="/retune")
    assert preset == "custom" and status.startswith("done") and summary["params"]["beta"] == 0.3


@pytest.mark.parametrize("changes, message", [
    ({"prompt": ""}, "prompt is empty"),
    ({"prompt": "hi", "model": "someone/remote-code"}, "not allowed"),
    ({"prompt": "hi", "rule": "low_confidence", "steps": 5}, "steps=5 must be a multiple"),
    ({"prompt": "hi", "rule": "fixed steps (LLaDA)", "steps": 5}, "steps=5 must be a multiple"),  # a label works too
    ({"prompt": "hi", "rule": "magic"}, "rule 'magic' is unknown"),
])
def test_bad_input_is_a_clear_error_not_a_traceback(client, changes, message):
    with pytest.raises(Exception, match=message) as caught:
        client.predict(api_name="/decode", **{**SMALL, **changes})
    assert "Traceback" not in str(caught.value)


def test_sessions_do_not_cross_talk(app_url):
    prompts = ["first prompt", "second prompt", "third prompt"]

    def run(prompt):
        return Client(app_url, verbose=False).predict(prompt=prompt, api_name="/decode", **SMALL)

    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        payloads = list(pool.map(run, prompts))
    assert [p["trace"]["meta"]["prompt"] for p in payloads] == prompts


def test_every_event_has_a_name(client):
    endpoints = set(client.view_api(return_format="dict", print_info=False)["named_endpoints"])
    assert {"/decode", "/decode_live", "/cancel", "/render_views", "/heatmap", "/scrub", "/inspect", "/compare",
            "/sweep", "/export_trace", "/import_trace", "/retune", "/preset", "/rule_knobs", "/compare_pick",
            "/example_trace", "/render_views_imported"} <= endpoints
    assert not any(name.startswith("/lambda") or name.startswith("/fn") for name in endpoints)
