"""Hostile trace files (issue 16, items 1 and 6): bounded decompression and parsing, declared shapes checked before
anything is built, traces the views cannot draw refused with the reason, and views that draw a capped window of a
long trace and say so."""
import gzip
import json
import tracemalloc

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analysis.trace_data import MAX_PAGE_STEPS, MAX_PAGE_WIDTH, MAX_VIEW_POSITIONS, MAX_VIEW_STEPS, PAGE_POSITIONS
from app import decoding_panels as views
from app.decoding_runs import trace_summary
from engine.decoding import Credit, TraceFormatError, generate, load_trace
from engine.decoding.trace import ARRAYS, Trace
from engine.decoding.trace_checks import TraceCaps
from engine.decoding.trace_io import save_trace, trace_json

MiB = 2**20


@pytest.fixture(scope="module")
def good() -> dict:
    from tests.conftest import ToyModel
    result = generate(ToyModel(), torch.zeros(1, 3, dtype=torch.long), Credit(threshold=0.7), gen_length=8,
                      block_length=4, mask_id=39, top_k=2)
    result.trace.meta.update(prompt="toy", answer="toy answer", model="toy", answer_tokens=8)
    return trace_json(result.trace)


def write(tmp_path, obj, name="t.json"):
    path = tmp_path / name
    path.write_text(json.dumps(obj))
    return path


def edited(good, edit):
    obj = json.loads(json.dumps(good))
    edit(obj)
    return obj


def test_a_gzip_bomb_is_cut_at_the_cap_with_bounded_memory(tmp_path):
    bomb = tmp_path / "bomb.json.gz"
    bomb.write_bytes(gzip.compress(b" " * (64 * MiB)))  # 64 MB of spaces in about 64 KB
    assert bomb.stat().st_size < MiB
    tracemalloc.start()
    with pytest.raises(TraceFormatError, match="unpacks to more than 1 MB of JSON; the limit is 1 MB"):
        load_trace(bomb, caps=TraceCaps(json_bytes=MiB))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 4 * MiB, f"reading a bomb capped at 1 MB held {peak / MiB:.1f} MB"


def test_too_many_values_are_refused_before_parsing(tmp_path, good):
    path = write(tmp_path, edited(good, lambda o: o["meta"].update(filler=[0] * 5000)))
    with pytest.raises(TraceFormatError, match="about 5,[0-9]{3} JSON values; the limit is 2,000"):
        load_trace(path, caps=TraceCaps(json_values=2000))


def test_declared_shapes_are_checked_against_the_caps_before_any_array_is_built(tmp_path, good):
    def claim(o):  # 200k positions, as in the issue: gen_length and every (B, G) array
        o["meta"]["gen_length"] = 200_000
        for name in ("tokens", "commit_step", "stable_step"):
            o["arrays"][name] = {"dtype": "int64", "shape": [1, 200_000], "data": [0] * 200_000}
    path = write(tmp_path, edited(good, claim))
    with pytest.raises(TraceFormatError, match="answer positions G=200,000; traces are read up to G=4,096"):
        load_trace(path)
    lying = write(tmp_path, edited(good, lambda o: o["arrays"]["topk_ids"].update(shape=[3, 1, 4, 2])), "lie.json")
    with pytest.raises(TraceFormatError, match=r"declares shape \[3, 1, 4, 2\] \(24 values\) but holds"):
        load_trace(lying)


def zero_batch(o):
    for name, (_, dims) in ARRAYS.items():
        if "B" in dims:
            shape = [0 if dim == "B" else size for dim, size in zip(dims, o["arrays"][name]["shape"])]
            o["arrays"][name].update(shape=shape, data=[])


@pytest.mark.parametrize("edit, reason", [
    (zero_batch, "batch size 0"),
    (lambda o: o["meta"]["params"].pop("threshold"), "usable 'credit' rule: params lack threshold"),
    (lambda o: o["meta"].update(rule="beam"), "rule 'beam' is unknown"),
    (lambda o: o["meta"].update(capabilities=["credit", "step_budget"]), "capabilities .* are not the rule's"),
    (lambda o: o["meta"]["params"].update(alpha=-1.0), "alpha=-1.0 must be >= 0"),
    (lambda o: o["meta"]["params"].update(gamma=1e999), "Infinity, which strict JSON does not allow"),
    (lambda o: o["meta"].update(seconds=-2.0), "seconds=-2.0 must be a finite number >= 0"),
    (lambda o: o["meta"].update(prompt=["a"]), "meta prompt must be text"),
    (lambda o: o["meta"].update(answer_tokens=99), r"answer_tokens=99 must be an integer in \[0, 8\]"),
    (lambda o: o["meta"].update(cache={"mode": "lru", "refresh": None}), "trace meta cache: cache='lru' is unknown"),
    (lambda o: o["arrays"]["step_block"].update(data=list(reversed(o["arrays"]["step_block"]["data"]))),
     "goes back to an earlier block"),
    (lambda o: o["arrays"]["step_seconds"]["data"].__setitem__(0, 1e308 * 10), "Infinity"),
])
def test_traces_the_views_cannot_draw_are_refused_with_the_reason(tmp_path, good, edit, reason):
    with pytest.raises(TraceFormatError, match=reason):
        load_trace(write(tmp_path, edited(good, edit)))


def test_nan_is_written_as_null_and_read_back(tmp_path, good):
    trace = Trace.from_dict(json.loads(json.dumps(good)))
    trace.arrays["entropy"][0, 0, 0] = np.nan
    path = save_trace(trace, tmp_path / "nan.json")
    assert "NaN" not in path.read_text() and np.isnan(load_trace(path).arrays["entropy"][0, 0, 0])


def render_everything(trace):
    out = views.render_views(trace, "raw", 0)
    for page in range(1, out["pages"] + 1):
        views.heatmap(trace, "credit", page)
    views.scrub(trace, 0)
    json.dumps(trace_summary(trace), allow_nan=False)
    return out


mutations = st.one_of(
    st.tuples(st.sampled_from(["nfe", "gen_length", "block_length", "top_k", "mask_id", "eos_id", "seed",
                               "answer_tokens"]), st.integers(-2, 20)),
    st.tuples(st.sampled_from(["seconds", "threshold", "alpha", "beta", "gamma"]),
              st.floats(-1, 10, allow_nan=False)),
    st.tuples(st.sampled_from(["rule"]), st.sampled_from(["credit", "threshold", "low_confidence",
                                                          "credit_low_confidence", "x"])),
    st.tuples(st.sampled_from(["capabilities"]), st.lists(st.sampled_from(["threshold", "credit", "step_budget",
                                                                           "sampling"]), max_size=3)),
    st.tuples(st.sampled_from(sorted(ARRAYS)), st.lists(st.integers(-3, 12), min_size=1, max_size=3)))


@settings(max_examples=120, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=st.lists(mutations, min_size=1, max_size=3))
def test_whatever_loads_every_view_can_draw(tmp_path, good, changes):
    obj = json.loads(json.dumps(good))
    for key, value in changes:
        if key in ARRAYS:  # rewrite a few values of the array (in place, same length)
            data = obj["arrays"][key]["data"]
            for i, v in enumerate(value):
                data[i % len(data)] = bool(v % 2) if ARRAYS[key][0] == "bool" else v
        elif key in ("threshold", "alpha", "beta", "gamma"):
            obj["meta"]["params"][key] = value
        else:
            obj["meta"][key] = value
    try:
        trace = load_trace(write(tmp_path, obj))
    except TraceFormatError:
        return
    render_everything(trace)


def synthetic_trace(gen: int, block: int, top_k: int = 2) -> Trace:
    """A schema-valid fixed-steps trace with one commit per step (S = gen), built directly: a real decode of
    thousands of steps takes minutes here."""
    steps = np.arange(gen)
    block_of_step = steps // block
    slot = steps % block
    cells = (gen, 1, block)
    masked = np.arange(block)[None, None, :] >= slot[:, None, None]  # (S, 1, Lb): this slot onwards still masked
    committed = np.zeros(cells, dtype=bool)
    committed[steps, 0, slot] = True
    ids = np.broadcast_to((np.arange(block) % 7)[None, None, :], cells).astype(np.int64)
    probs = np.full(cells, 0.5, dtype=np.float32)
    arrays = {"prompt_ids": np.zeros((1, 3), np.int64), "tokens": (np.arange(gen) % 7)[None].astype(np.int64),
              "commit_step": steps[None].astype(np.int64), "stable_step": steps[None].astype(np.int64),
              "step_block": block_of_step.astype(np.int64), "step_in_block": slot.astype(np.int64),
              "step_seconds": np.full(gen, 0.01), "step_active": np.ones((gen, 1), bool), "masked_before": masked,
              "step_recomputed": np.ones(gen, bool),
              "committed": committed, "raw_top1_id": ids, "raw_top1_prob": probs, "fused_top1_id": ids,
              "fused_top1_prob": probs, "credit_top1": np.zeros(cells, np.float32), "entropy": probs,
              "topk_ids": np.repeat(ids[..., None], top_k, -1), "topk_probs": np.repeat(probs[..., None], top_k, -1)}
    meta = {"rule": "low_confidence", "capabilities": ["sampling", "step_budget"],
            "params": {"steps": gen, "temperature": 0.0}, "gen_length": gen,
            "block_length": block, "mask_id": 99, "eos_id": None, "shift": False, "seed": 0, "top_k": top_k,
            "nfe": gen, "seconds": 0.01 * gen, "cache": {"mode": "none", "refresh": None}}
    return Trace(meta=meta, arrays=arrays, token_text={i: f"w{i}" for i in range(7)})


def test_a_trace_at_the_position_cap_draws_capped_windows_and_says_so(tmp_path):
    trace = load_trace(save_trace(synthetic_trace(4096, 16, top_k=1), tmp_path / "long.json.gz"))
    out = render_everything(trace)
    assert out["heatmap"].data[0].z.shape == (PAGE_POSITIONS, PAGE_POSITIONS) and out["pages"] == 4096 // PAGE_POSITIONS
    assert out["order"].count('class="t"') <= MAX_VIEW_POSITIONS + 1
    assert f"positions 0-{MAX_VIEW_POSITIONS - 1} of 4096 shown" in out["order"]
    late = views.scrub(trace, 4095)
    assert "positions 3072-4095 of 4096 shown" in late and late.count('class="t"') <= MAX_VIEW_POSITIONS + 1
    assert len(out["timeline"].data[0].x) == MAX_VIEW_STEPS and "of 4096 shown" in out["timeline"].layout.title.text
    assert max(len(d.x) for d in out["stability"].data if d.x is not None) <= 3 * MAX_VIEW_POSITIONS
    assert "of 4096 shown" in out["stability"].layout.title.text


def test_long_blocks_are_paged_by_positions_and_by_steps(tmp_path):
    trace = load_trace(save_trace(synthetic_trace(512, 256, top_k=1), tmp_path / "wide.json.gz"))
    out = render_everything(trace)
    heat = out["heatmap"]
    assert heat.data[0].z.shape == (MAX_PAGE_STEPS, MAX_PAGE_WIDTH)
    assert f"{MAX_PAGE_STEPS} a page" in heat.layout.title.text
    assert out["pages"] == (512 // MAX_PAGE_WIDTH) * (256 // MAX_PAGE_STEPS)  # every (positions, steps) window once
    assert len(views.inspect(trace, 300)[1]) == 256 and MAX_VIEW_STEPS >= 256
