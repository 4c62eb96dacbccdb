"""Cancel through the served app (issue 16, item 2): a cancelled or disconnected /decode, /compare or /sweep stops its
work (the job ends "cancelled", never "done"), and the one-model-job limit holds while the cancelled work stops."""
import json
import time

import httpx
import pytest
from gradio_client import Client

from app.session import DECODE_JOBS

LONG = dict(model="tiny-random", rule="low_confidence", gen_length=1024, block_length=64)  # ~1024 steps: minutes
KNOBS = [1024, 64, 0, 0.9, "paper", 0.65, 0.7, 0.2, 0]  # gen, block, steps, tau, preset, alpha, beta, gamma, seed


def wait_for(condition, seconds: float = 120) -> bool:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    return condition()


@pytest.fixture
def counts():
    """Outcome counts before the test; the test reads what changed."""
    assert wait_for(lambda: DECODE_JOBS.running == 0)
    return dict(DECODE_JOBS.outcomes)


def changed(before):
    return {k: v - before.get(k, 0) for k, v in DECODE_JOBS.outcomes.items() if v != before.get(k, 0)}


def test_three_cancelled_decodes_stop_and_the_limit_holds(app_url, counts):
    jobs = [Client(app_url, verbose=False).submit(prompt=f"count to {n}", api_name="/decode", **LONG)
            for n in range(3)]
    assert wait_for(lambda: DECODE_JOBS.running == 1)
    for job in jobs:
        job.cancel()
    short = Client(app_url, verbose=False).predict(prompt="hi", model="tiny-random", gen_length=32, block_length=16,
                                                   api_name="/decode")
    assert short["nfe"] >= 1
    assert wait_for(lambda: DECODE_JOBS.running == 0)
    assert DECODE_JOBS.peak == 1
    outcomes = changed(counts)
    assert outcomes["done"] == 1 and 1 <= outcomes["cancelled"] <= 3 and set(outcomes) == {"done", "cancelled"}


def test_a_disconnected_client_stops_its_decode(app_url, counts):
    payload = {"data": ["a client that goes away", *LONG.values(), 0, 0.9, "paper", 0.65, 0.7, 0.2, 0, "none"]}
    with httpx.Client(base_url=app_url, timeout=60) as http:
        event_id = http.post("gradio_api/call/decode", json=payload).json()["event_id"]
        with http.stream("GET", f"gradio_api/call/decode/{event_id}") as stream:
            for line in stream.iter_lines():
                if line.startswith("data:") and "decoding" in line:
                    break  # the decode is running; the client hangs up
    assert wait_for(lambda: DECODE_JOBS.running == 0)
    assert changed(counts) == {"cancelled": 1}


@pytest.mark.parametrize("api_name, args", [
    ("/compare", ["tiny-random", "hi", ["low_confidence", "threshold"], *KNOBS, "none"]),
    ("/sweep", ["tiny-random", "hi", "beta", "0.1, 0.9", 1024, 64, 0.9, 0.65, 0.7, 0.2, 0]),
])
def test_cancelled_compare_and_sweep_stop(app_url, counts, api_name, args):
    job = Client(app_url, verbose=False).submit(*args, api_name=api_name)
    assert wait_for(lambda: DECODE_JOBS.running == 1)
    job.cancel()
    assert wait_for(lambda: DECODE_JOBS.running == 0)
    assert changed(counts) == {"cancelled": 1}


def test_api_answers_are_strict_json_and_hostile_knobs_get_the_reason(app_url):
    with httpx.Client(base_url=app_url, timeout=120) as http:
        def call(**changes):
            knobs = {"prompt": "hi", "model": "tiny-random", "rule": "threshold", "gen_length": 32,
                     "block_length": 16, "steps": 0, "tau": 0.9, "preset": "paper", "alpha": 0.65, "beta": 0.7,
                     "gamma": 0.2, "seed": 0, "cache": "none", **changes}
            body = json.dumps({"data": list(knobs.values())}, allow_nan=True)
            event_id = http.post("gradio_api/call/decode", content=body,
                                 headers={"content-type": "application/json"}).json()["event_id"]
            return http.get(f"gradio_api/call/decode/{event_id}").text

        answer = call()
        assert "event: complete" in answer and "NaN" not in answer and "Infinity" not in answer
        for changes, reason in (({"tau": float("nan")}, r"threshold=nan must be a finite number in (0, 1]"),
                                ({"prompt": "hi \ud83d"}, r"lone surrogate '\\ud83d' at character 3"),
                                ({"seed": 2**70}, "seed=1180591620717411303424 must be an integer in [0, "),
                                ({"gen_length": 1.5}, "gen_length=1.5 must be an integer in [1, 1024]"),
                                ({"gen_length": 1024, "block_length": 1024},
                                 "block_length=1024 must be an integer in [1, 64]")):
            text = call(**changes)
            assert "event: error" in text and reason in text, (changes, text)
