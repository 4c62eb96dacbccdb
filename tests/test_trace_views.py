"""Decoding Explorer views: pure functions of a trace. Exact cases on a hand-built trace; every view on real traces
of every rule (tiny-random, and the seeded toy model for credit-forced commits and long answers)."""
import copy

import numpy as np
import pytest
import torch

from analysis.trace_compare import commit_order_figure, compare_table, order_discordance, sweep_figure, token_agreement
from analysis.trace_data import (commit_confidence, credit_forced, grid, page, page_count, sequence_at, token_label,
                                 tokens_per_second)
from analysis.trace_heatmap import heatmap_figure
from analysis.trace_inspector import inspector_figure, topk_table
from analysis.trace_timeline import stability_figure, timeline_figure
from analysis.trace_tokens import collapse_eos_tail, live_html, order_html, scrub_html
from engine.decoding import Credit, Trace, generate
from engine.decoding.trace import stable_steps
from engine.pipeline import DecodeRequest, decode

MASK = 99


def hand_trace() -> Trace:
    """G=4, Lb=2, 3 steps, tau=0.9, dual cache. Step 0 commits position 1 (p .95); step 1 commits position 0
    because of credit (raw .5 < tau <= fused .92); step 2 commits positions 2 and 3. Steps 0 and 2 refresh."""
    f32 = lambda rows: np.array(rows, dtype=np.float32)[:, None, :]  # noqa: E731  (S, Lb) -> (S, 1, Lb)
    arrays = {
        "prompt_ids": np.array([[7]]), "tokens": np.array([[10, 11, 12, 13]]), "commit_step": np.array([[1, 0, 2, 2]]),
        "step_block": np.array([0, 0, 1]), "step_in_block": np.array([0, 1, 0]),
        "step_seconds": np.array([0.1, 0.1, 0.2]), "step_active": np.ones((3, 1), dtype=bool),
        "step_recomputed": np.array([True, False, True]),
        "masked_before": np.array([[True, True], [True, False], [True, True]])[:, None, :],
        "committed": np.array([[False, True], [True, False], [True, True]])[:, None, :],
        "raw_top1_id": np.array([[14, 11], [10, 11], [12, 13]])[:, None, :],
        "raw_top1_prob": f32([[0.4, 0.95], [0.5, 0.97], [0.93, 0.91]]),
        "fused_top1_id": np.array([[10, 11], [10, 11], [12, 13]])[:, None, :],
        "fused_top1_prob": f32([[0.6, 0.96], [0.92, 0.98], [0.95, 0.93]]),
        "credit_top1": f32([[0.3, 1.0], [0.7, 0.0], [1.0, 1.0]]),
        "entropy": f32([[2.0, 0.2], [1.5, 0.1], [0.3, 0.4]]),
        "topk_ids": np.array([[[14, 10], [11, 14]], [[10, 14], [11, 10]], [[12, 10], [13, 12]]])[:, None],
        "topk_probs": np.array([[[0.4, 0.3], [0.95, 0.01]], [[0.5, 0.4], [0.97, 0.01]],
                                [[0.93, 0.02], [0.91, 0.05]]], dtype=np.float32)[:, None],
    }
    arrays["stable_step"] = stable_steps(arrays, 2)
    meta = {"rule": "credit", "capabilities": ["credit", "threshold"],
            "params": {"threshold": 0.9, "alpha": 0.65, "beta": 0.7, "gamma": 0.2, "parameter_free": False},
            "gen_length": 4, "block_length": 2, "mask_id": MASK, "eos_id": None, "shift": False, "seed": 0,
            "top_k": 2, "nfe": 3, "seconds": 0.4, "answer_tokens": 4, "prompt": "hi", "model": "hand",
            "cache": {"mode": "dual", "refresh": None}}
    trace = Trace(meta=meta, arrays=arrays, token_text={10: "a", 11: " b", 12: "\n", 13: "<b>", 14: "x"})
    trace.validate()
    return trace


def early_stop_trace() -> Trace:
    """The hand-built trace stopped after block 0 (EOS = 13 at position 1): positions 2-3 are EOS fills, block 1 never
    ran."""
    trace = hand_trace()
    per_step = [name for name in trace.arrays if name.startswith(("step", "masked", "committed", "raw", "fused",
                                                                  "credit", "entropy", "topk"))]
    arrays = {name: (a[:2] if name in per_step else a) for name, a in trace.arrays.items()}
    arrays.update(tokens=np.array([[10, 13, 13, 13]]), commit_step=np.array([[1, 0, -1, -1]]))
    arrays["raw_top1_id"] = np.array([[14, 13], [10, 13]])[:, None, :]
    arrays["fused_top1_id"] = arrays["raw_top1_id"]
    arrays["stable_step"] = stable_steps(arrays, 2)
    stopped = Trace(meta={**trace.meta, "eos_id": 13, "nfe": 2, "answer_tokens": 2}, arrays=arrays,
                    token_text=trace.token_text)
    stopped.validate()
    return stopped


@pytest.fixture(scope="module")
def toy_traces(tiny_model):
    """Real decodes: tiny-random with credit at tau 0.3, alpha 5 (credit-forced commits happen), and the seeded
    toy model over a 256-token answer (two heatmap pages)."""
    from tests.conftest import ToyModel
    ids = torch.randint(0, 38, (1, 5), generator=torch.Generator().manual_seed(0))
    result = generate(ToyModel(), ids, Credit(threshold=0.6), gen_length=256, block_length=16, mask_id=39, top_k=3)
    result.trace.token_text = {i: f"t{i}" for i in result.trace.ids_in_use().tolist()}
    result.trace.meta["answer_tokens"] = 256
    forced = decode(tiny_model, DecodeRequest(prompt="hi", rule="credit", gen_length=32, block_length=16,
                                              threshold=0.3, preset="custom", alpha=5.0))
    return {"long": result.trace, "credit": forced.trace}


def test_grid_is_exact_on_a_hand_built_trace():
    trace = hand_trace()
    values, ids, committed = grid(trace, "raw", page(trace, 0))
    nan = np.nan
    np.testing.assert_allclose(values, [[0.4, 0.95, nan, nan], [0.5, nan, nan, nan], [nan, nan, 0.93, 0.91]], rtol=1e-6)
    assert ids.tolist() == [[14, 11, -1, -1], [10, -1, -1, -1], [-1, -1, 12, 13]]
    assert np.argwhere(committed).tolist() == [[0, 1], [1, 0], [2, 2], [2, 3]]
    fused, fused_ids, _ = grid(trace, "fused", page(trace, 0))
    assert fused_ids[0, 0] == 10 and fused[1, 0] == pytest.approx(0.92)


def test_credit_forced_and_commit_confidence():
    trace = hand_trace()
    assert credit_forced(trace).tolist() == [True, False, False, False]
    np.testing.assert_allclose(commit_confidence(trace), [0.92, 0.96, 0.95, 0.93], rtol=1e-6)
    trace.meta.update(rule="threshold", capabilities=["threshold"])  # raw == fused: nothing is credit-forced
    assert not credit_forced(trace).any()


def test_sequence_at_each_step():
    trace = hand_trace()
    first = sequence_at(trace, 0)
    assert first.ids.tolist() == [MASK, 11, MASK, MASK]
    assert first.just_committed.tolist() == [False, True, False, False]
    assert first.guess.tolist() == [10, -1, -1, -1]
    assert sequence_at(trace, 2).ids.tolist() == [10, 11, 12, 13]
    assert sequence_at(trace, 99).committed.all()  # clipped to the last step


def test_token_labels_make_whitespace_visible():
    trace = hand_trace()
    assert [token_label(trace, t) for t in (10, 11, 12, MASK, 555)] == ["a", "␣b", "↵", "[MASK]", "#555"]


def test_heatmap_cells_markers_and_hover():
    fig = heatmap_figure(hand_trace(), "raw")
    cells, committed, forced = fig.data
    assert cells.text[0][0] == "x" and cells.text[1][0] == "a"  # cell text = that step's top-1
    assert "credit 0.700" in cells.customdata[1][0] and "'x' 0.40, 'a' 0.30" in cells.customdata[0][0]
    assert list(forced.x) == [0] and list(forced.y) == [1]
    assert sorted(zip(committed.x, committed.y)) == [(1, 0), (2, 2), (3, 2)]
    assert heatmap_figure(hand_trace(), "credit").data[0].zmax == pytest.approx(1.0)
    with pytest.raises(ValueError, match="metric='bogus'"):
        heatmap_figure(hand_trace(), "bogus")


def test_long_answers_are_paged_and_lose_cell_text(toy_traces):
    trace = toy_traces["long"]
    assert page_count(trace, 128) == 2
    second = page(trace, 1, 128)
    assert second.positions == (128, 256)
    assert set(trace.arrays["step_block"][second.steps[0]:second.steps[1]]) == set(range(8, 16))
    fig = heatmap_figure(trace, "fused", page_index=1)
    assert fig.data[0].z.shape == (second.steps[1] - second.steps[0], 128)
    assert np.isfinite(fig.data[0].z).sum() == trace.arrays["masked_before"][second.steps[0]:second.steps[1]].sum()
    assert heatmap_figure(trace, "raw", text_limit=10).data[0].text is None
    assert page(trace, 7, 128).index == 1  # clipped


def test_timeline_and_stability_on_the_hand_trace():
    trace = hand_trace()
    timeline = timeline_figure(trace)
    assert list(timeline.data[0].y) == [1, 1, 2] and list(timeline.data[1].y) == [1, 2, 4]
    assert "= 10.0 tokens/s" in timeline.layout.title.text and tokens_per_second(trace) == pytest.approx(10.0)
    refresh = timeline.data[-1]
    assert refresh.name == "cache refresh" and list(refresh.x) == [0, 2]
    assert "cache dual, refreshed each block" in timeline.layout.title.text
    uncached = Trace(meta={**trace.meta, "cache": {"mode": "none", "refresh": None}}, arrays=trace.arrays)
    assert "cache refresh" not in [d.name for d in timeline_figure(uncached).data]
    stability = stability_figure(trace)
    names = [d.name for d in stability.data]
    forced = stability.data[names.index("committed because of credit")]
    assert list(forced.x) == [0] and list(forced.y) == [1]
    stable = stability.data[names.index("stable since")]
    assert dict(zip(stable.x, stable.y)) == dict(enumerate(trace.arrays["stable_step"][0].tolist()))
    assert "1 credit-forced" in stability.layout.title.text


def test_inspector_and_topk_table():
    trace = hand_trace()
    fig = inspector_figure(trace, 0)
    assert list(fig.data[0].x) == [0, 1]
    np.testing.assert_allclose(fig.data[0].y, [0.4, 0.5], rtol=1e-6)
    np.testing.assert_allclose(fig.data[1].y, [0.6, 0.92], rtol=1e-6)
    assert any(getattr(s, "y0", None) == 0.9 for s in fig.layout.shapes)  # the tau line
    assert "committed because of credit" in fig.layout.title.text
    table = topk_table(trace, 1)
    assert table["state"].tolist() == ["committed", "done"]
    assert table["top-1"].tolist() == ["␣b (0.950)", "␣b (0.970)"]
    with pytest.raises(ValueError, match="position=4"):
        topk_table(trace, 4)


def test_token_html_escapes_and_marks():
    trace = hand_trace()
    order = order_html(trace)
    assert "&lt;b&gt;" in order and "<b>" not in order.replace("<b>", "", 0).split("dllm-tokens")[0]
    assert "committed because of credit" in order and "committed at step 1" in order
    scrub = scrub_html(trace, 0)
    assert "current top-1 guess &#x27;a&#x27;" in scrub and "1 of 4 committed" in scrub
    frame = live_html(np.array([10, MASK, 3]), np.array([True, False, True]), np.array([0.5, np.nan, np.nan]),
                      lambda t: f"t{t}")
    assert frame.count("masked") == 1 and "confidence 0.500" in frame and "t3&#x27;, early-stop fill" in frame


def test_compare_helpers_exact():
    assert order_discordance(np.array([0, 1, 2]), np.array([2, 1, 0])).tolist() == [1.0, 1.0, 1.0]
    assert order_discordance(np.array([0, 1, 2]), np.array([5, 6, 7])).tolist() == [0.0, 0.0, 0.0]
    assert order_discordance(np.array([0, 0, 1]), np.array([0, 1, 1])).tolist() == [0.5, 1.0, 0.5]
    assert token_agreement(np.array([1, 2, 3, 4]), np.array([1, 2, 0, 4])) == 0.75
    with pytest.raises(ValueError, match="same gen_length"):
        token_agreement(np.array([1]), np.array([1, 2]))


def test_every_view_renders_every_rule_without_touching_the_trace(tiny_decodes):
    for name, outcome in tiny_decodes.items():
        trace = outcome.trace
        before = copy.deepcopy(trace.arrays)
        figures = [heatmap_figure(trace, metric) for metric in ("raw", "fused", "credit", "entropy")]
        figures += [timeline_figure(trace), stability_figure(trace), inspector_figure(trace, 31)]
        assert all(fig.data for fig in figures), name
        assert len(topk_table(trace, 0)) == (trace.arrays["step_block"] == 0).sum()
        assert order_html(trace).count("<span") == 32 and scrub_html(trace, 0).count("<span") == 32
        for key, array in before.items():
            np.testing.assert_array_equal(trace.arrays[key], array)


def test_compare_and_sweep_views(tiny_decodes, toy_traces):
    traces = [tiny_decodes["low_confidence"].trace, tiny_decodes["credit"].trace]
    table = compare_table(traces, ["a", "b"])
    assert table["NFE"].tolist() == [t.meta["nfe"] for t in traces] and table["same tokens as first"][0] == 1.0
    assert table["positions decoded in another order than first"][0] == 0
    fig = commit_order_figure(traces)
    assert len(fig.data) == 3  # two commit-step lines and one discordance bar
    import pandas as pd
    sweep = pd.DataFrame({"value": [0.1, 0.9], "nfe": [30, 20], "agreement": [1.0, 0.5], "reference_nfe": [32, 32]})
    fig = sweep_figure(sweep, "beta")
    assert list(fig.data[0].y) == [30, 20] and list(fig.data[1].y) == [1.0, 0.5]
    assert "credit decay β" in fig.layout.xaxis.title.text


def test_credit_forced_commits_of_a_real_decode(toy_traces):
    trace = toy_traces["credit"]
    forced = credit_forced(trace)
    assert forced.any()  # raw p of tiny-random stays far below tau 0.3; credit (alpha 5) lifts some over it
    commit = trace.arrays["commit_step"][0]
    for position in np.flatnonzero(forced):
        slot = position % 16
        assert trace.arrays["raw_top1_prob"][commit[position], 0, slot] < 0.3
        assert trace.arrays["fused_top1_prob"][commit[position], 0, slot] >= 0.3
    stability = stability_figure(trace)
    diamonds = [d for d in stability.data if d.name == "committed because of credit"][0]
    assert sorted(diamonds.x) == np.flatnonzero(forced).tolist()


def test_early_stop_pages_only_decoded_blocks_and_collapses_the_eos_tail():
    trace = early_stop_trace()
    assert page_count(trace, 128) == 1 and page(trace, 0).positions == (0, 2)  # block 1 never ran
    assert heatmap_figure(trace, "raw").data[0].z.shape == (2, 2)
    order = order_html(trace)
    assert order.count('class="t"') == 4 and "×" not in order  # a run of 3 EOS is shown box by box
    spans = [f"<s{i}>" for i in range(6)]
    labels = ["a", "[EOS]", "[EOS]", "[EOS]", "[EOS]", "[EOS]"]
    collapsed = collapse_eos_tail(spans, labels, [True] * 6)
    assert collapsed[:2] == ["<s0>", "<s1>"] and len(collapsed) == 3 and "[EOS] × 4" in collapsed[2]
    assert collapse_eos_tail(spans, labels, [True] * 5 + [False]) == spans  # still masked at the end: no collapse
    assert "filled by early stop" in scrub_html(trace, 1) and "filled by early stop" not in scrub_html(trace, 0)
