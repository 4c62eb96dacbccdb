"""Every knob of a decode request held to one set of limits (issue 16, items 4 and 5): finite, in range, integral
where it must be, whole Unicode text; the message names the value and the range. The /decode answer is strict JSON
with a stated size bound."""
import json
import math

import pytest

from app import decoding_api
from engine.pipeline import MAX_SEED, DecodeRequest

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("changes, message", [
    *[({knob: NAN}, rf"{knob}=nan must be a finite number in ") for knob in
      ("threshold", "alpha", "beta", "gamma", "temperature")],
    ({"alpha": INF}, r"alpha=inf must be a finite number in \[0, 5\]"),
    ({"threshold": True}, r"threshold=True must be a finite number in \(0, 1\]"),
    ({"beta": "0.5"}, r"beta='0.5' must be a finite number in \[0, 1\]"),
    ({"gen_length": 1.5}, r"gen_length=1.5 must be an integer in \[1, 1024\]"),
    ({"gen_length": 2048, "block_length": 64}, r"gen_length=2048 must be an integer in \[1, 1024\]"),
    ({"gen_length": 1024, "block_length": 1024}, r"block_length=1024 must be an integer in \[1, 64\]"),
    ({"steps": 2.5}, r"steps=2.5 must be an integer in \[1, 64\]"),
    ({"seed": 2**70}, rf"seed=1180591620717411303424 must be an integer in \[0, {MAX_SEED}\]"),
    ({"seed": -1}, r"seed=-1 must be an integer in \[0, "),
    ({"top_k": 0}, r"top_k=0 must be an integer in \[1, 20\]"),
    ({"prompt": "hi \ud83d"}, r"lone surrogate '\\ud83d' at character 3"),
    ({"prompt": "x" * 2001}, "2001 characters; shorten it to at most 2000"),
    ({"prompt": " "}, "the prompt is empty"),
    ({"rule": ["credit"]}, "rule=\\['credit'\\] must be a rule id or label"),
])
def test_hostile_knobs_are_refused_with_the_value_and_the_range(changes, message):
    with pytest.raises(ValueError, match=message):
        DecodeRequest(**{"prompt": "hi", "rule": "low_confidence", **changes})


def test_whole_valued_floats_are_stored_as_integers():
    request = DecodeRequest(prompt="hi", gen_length=64.0, block_length=32.0, seed=7.0, steps=None)
    assert (request.gen_length, request.block_length, request.seed) == (64, 32, 7)
    assert all(type(v) is int for v in (request.gen_length, request.block_length, request.seed))
    assert math.isfinite(request.threshold) and type(request.alpha) is float


def test_a_response_over_the_size_bound_leaves_the_trace_out(tiny_model, monkeypatch):
    *_, full = decoding_api.api_decode("hi", model="tiny-random", gen_length=32, block_length=16)
    size = len(json.dumps(full, allow_nan=False, separators=(",", ":")))
    assert full["trace"] is not None and size < decoding_api.MAX_RESPONSE_BYTES
    monkeypatch.setattr(decoding_api, "MAX_RESPONSE_BYTES", size // 2)
    *_, cut = decoding_api.api_decode("hi", model="tiny-random", gen_length=32, block_length=16)
    assert cut["trace"] is None and "over the" in cut["trace_omitted"] and "/export_trace" in cut["trace_omitted"]
    assert cut["answer"] == full["answer"] and cut["nfe"] == full["nfe"]
