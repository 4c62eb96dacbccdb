"""Property tests: whatever bytes or JSON reach the trace loader, it returns a valid Trace or raises TraceFormatError."""
import json

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.decoding import Threshold, TraceFormatError, generate, load_trace
from engine.decoding.trace import ARRAYS, Trace

json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
                           max_leaves=20)


@pytest.fixture(scope="module")
def good():
    from tests.conftest import ToyModel
    result = generate(ToyModel(), torch.zeros(1, 3, dtype=torch.long), Threshold(0.7), gen_length=8,
                      block_length=4, mask_id=39, top_k=2)
    return result.trace.to_dict()


def load_bytes(tmp_path, data: bytes):
    path = tmp_path / "fuzz.json"
    path.write_bytes(data)
    try:
        trace = load_trace(path)
    except TraceFormatError:
        return None
    assert isinstance(trace, Trace)
    return trace


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=300))
def test_arbitrary_bytes(tmp_path, data):
    load_bytes(tmp_path, data)


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=json_values)
def test_arbitrary_json(tmp_path, value):
    assert load_bytes(tmp_path, json.dumps(value).encode()) is None


@settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(sorted(ARRAYS)), field=st.sampled_from(["dtype", "shape", "data"]), value=json_values)
def test_one_array_field_replaced(tmp_path, good, name, field, value):
    obj = json.loads(json.dumps(good))
    obj["arrays"][name][field] = value
    load_bytes(tmp_path, json.dumps(obj).encode())


@settings(max_examples=100, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(["meta", "token_text", "arrays", "version", "schema"]), value=json_values)
def test_one_top_level_field_replaced(tmp_path, good, key, value):
    obj = json.loads(json.dumps(good))
    obj[key] = value
    load_bytes(tmp_path, json.dumps(obj).encode())


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(["rule", "capabilities", "params", "gen_length", "block_length", "nfe", "seconds", "eos_id", "top_k"]),
       value=json_values)
def test_one_meta_field_replaced(tmp_path, good, key, value):
    obj = json.loads(json.dumps(good))
    obj["meta"][key] = value
    load_bytes(tmp_path, json.dumps(obj).encode())


@pytest.mark.parametrize("shape", [[float("inf")], [1e400], [-1], [2.5], "16", [True]])
def test_bad_shapes_found_by_fuzzing_are_refused(tmp_path, good, shape):
    obj = json.loads(json.dumps(good))
    obj["arrays"]["commit_step"]["shape"] = shape
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(obj))
    with pytest.raises(TraceFormatError, match="commit_step shape|Infinity, which strict JSON"):
        load_trace(path)
