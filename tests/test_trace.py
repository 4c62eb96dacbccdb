"""Trace: recorded fields, stable_step, exact save/load round trip, and refusal of files that fail the schema."""
import gzip
import json

import numpy as np
import pytest
import torch

from engine.decoding import Credit, Threshold, TraceFormatError, generate, load_trace, save_trace
from engine.decoding.trace import ARRAYS, stable_steps


@pytest.fixture(scope="module")
def trace():
    from tests.conftest import ToyModel
    ids = torch.randint(0, 38, (2, 5), generator=torch.Generator().manual_seed(0))
    result = generate(ToyModel(), ids, Credit(threshold=0.6), gen_length=16, block_length=8, mask_id=39, top_k=3)
    result.trace.token_text = {i: f"t{i}" for i in result.trace.ids_in_use().tolist()}
    return result.trace


def test_shapes_never_grow_with_vocab(trace):
    S = trace.meta["nfe"]
    assert trace.arrays["topk_ids"].shape == (S, 2, 8, 3)
    assert trace.arrays["raw_top1_prob"].shape == (S, 2, 8)
    assert set(trace.arrays) == set(ARRAYS)


@pytest.mark.parametrize("suffix", [".json", ".json.gz"])
def test_round_trip_is_exact(trace, tmp_path, suffix):
    path = save_trace(trace, tmp_path / f"t{suffix}")
    loaded = load_trace(path)
    assert loaded.meta == trace.meta and loaded.token_text == trace.token_text
    for name, array in trace.arrays.items():
        assert loaded.arrays[name].dtype == array.dtype
        np.testing.assert_array_equal(loaded.arrays[name], array)


def test_stable_step_by_hand():
    # One block of 2 positions over 4 steps; position 0 committed at step 3, position 1 at step 1.
    arrays = {
        "tokens": np.array([[5, 6]]), "commit_step": np.array([[3, 1]]), "step_block": np.array([0, 0, 0, 0]),
        "raw_top1_id": np.array([[[5, 6]], [[9, 6]], [[5, 1]], [[5, 1]]]),  # (S, B, Lb)
    }
    # pos 0: top-1 is 5 at steps 0, 2, 3 but 9 at step 1 -> stable from 2. pos 1: 6 at steps 0-1 -> stable from 0.
    assert stable_steps(arrays, 2).tolist() == [[2, 0]]


def test_credit_forced_commits_are_identifiable(trace):
    forced = (trace.arrays["raw_top1_prob"] < 0.6) & (trace.arrays["fused_top1_prob"] >= 0.6) & trace.arrays["committed"]
    assert (trace.arrays["credit_top1"][forced] > 0).all()


def corrupt(tmp_path, trace, edit):
    obj = trace.to_dict()
    edit(obj)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(obj))
    return path


@pytest.mark.parametrize("edit, reason", [
    (lambda o: o.pop("schema"), "not a decoding trace"),
    (lambda o: o.update(version=99), "version 99"),
    (lambda o: o["meta"].pop("nfe"), "meta lacks nfe"),
    (lambda o: o["arrays"].pop("tokens"), "tokens is missing"),
    (lambda o: o["arrays"]["tokens"].update(dtype="float32"), "dtype 'float32'"),
    (lambda o: o["arrays"]["tokens"].update(shape=[2, 3]), r"declares shape \[2, 3\] \(6 values\) but holds 32"),
    (lambda o: o["arrays"]["commit_step"].update(data=[999] * 32), "commit_step holds a step"),
    (lambda o: o["meta"].update(gen_length=64), "disagree with meta"),
])
def test_files_failing_the_schema_are_refused_with_the_reason(trace, tmp_path, edit, reason):
    with pytest.raises(TraceFormatError, match=reason):
        load_trace(corrupt(tmp_path, trace, edit))


def test_not_json_and_truncated_gzip_are_refused(tmp_path, trace):
    (tmp_path / "a.json").write_text("hello")
    with pytest.raises(TraceFormatError, match="not a readable JSON trace"):
        load_trace(tmp_path / "a.json")
    good = gzip.compress(json.dumps(trace.to_dict()).encode())
    (tmp_path / "b.json.gz").write_bytes(good[: len(good) // 2])
    with pytest.raises(TraceFormatError, match="not a readable JSON trace"):
        load_trace(tmp_path / "b.json.gz")


def test_threshold_trace_fused_equals_raw():
    from tests.conftest import ToyModel
    result = generate(ToyModel(), torch.zeros(1, 3, dtype=torch.long), Threshold(0.7), gen_length=8, block_length=8,
                      mask_id=39)
    np.testing.assert_array_equal(result.trace.arrays["fused_top1_id"], result.trace.arrays["raw_top1_id"])
    assert (result.trace.arrays["credit_top1"] == 0).all()


@pytest.mark.parametrize("version", [1, 2])
def test_older_traces_load_as_uncached_decodes(trace, tmp_path, version):
    def downgrade(obj):
        obj["version"] = version
        obj["meta"].pop("cache")
        obj["arrays"].pop("step_recomputed")
        if version == 1:
            obj["meta"]["strategy"] = obj["meta"].pop("rule")
            obj["meta"].pop("capabilities")

    loaded = load_trace(corrupt(tmp_path, trace, downgrade))
    assert loaded.version == 3 and loaded.meta["cache"] == {"mode": "none", "refresh": None}
    assert loaded.arrays["step_recomputed"].tolist() == [True] * trace.n_steps
    assert loaded.meta["rule"] == trace.meta["rule"]
