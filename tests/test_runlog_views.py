"""Selection Lab views: pure functions of real run logs (toy causal Llama, bundled mixture), checked against the
run log's own records and against quantities recomputed here from the stored embeddings."""
import json
import math

import numpy as np
import pytest

from analysis import colors, runlog_figures, runlog_views
from analysis.buffer_map import COLOR_BY, buffer_map_figure, build_buffer_map
from analysis.projection import GrowingMap, ProjectionConfig, Projector


def test_candidate_table_has_one_row_per_candidate_in_order(uds_runlogs):
    log = uds_runlogs["uds"]
    table = runlog_views.candidate_table(log)
    assert len(table) == len(log.candidates) == 12 * 8
    assert list(table.columns) == list(runlog_views.TABLE_COLUMNS.values())
    assert list(zip(table["step"], table["pos"])) == [(c.step, c.position) for c in log.candidates]
    assert table["selected"].sum() == 12 * 2


def test_filters_select_exactly_the_matching_rows(uds_runlogs):
    table = runlog_views.candidate_table(uds_runlogs["uds"])
    category = table["category"].value_counts().index[0]
    picked = runlog_views.filter_table(table, category=category)
    assert len(picked) == (table["category"] == category).sum() and set(picked["category"]) == {category}
    assert runlog_views.filter_table(table, status="selected")["selected"].all()
    assert not runlog_views.filter_table(table, status="rejected")["selected"].any()
    assert len(runlog_views.filter_table(table, status="flipped by α·s_inter")) == table["flip_util"].sum()
    needle = table["sample_id"].iloc[5].upper()
    assert (runlog_views.filter_table(table, query=needle)["sample_id"].str.upper().str.contains(needle)).all()
    with pytest.raises(ValueError, match="status='chosen'"):
        runlog_views.filter_table(table, status="chosen")


def test_scale_check_agrees_with_the_runs_flip_flags(uds_runlogs):
    log = uds_runlogs["uds"]
    scale = runlog_views.scale_check(log)
    frame = log.candidates_frame()
    flipped_steps = set(frame.loc[frame["flips_utility_only"], "step"])
    assert len(scale) == 12
    assert set(scale.loc[scale["changed"], "step"]) == flipped_steps
    # Diversity can only reorder the top K when its spread reaches the utility gap at the K-th place.
    assert (scale["could_change"] | ~scale["changed"]).all()
    assert scale.loc[0, "spread"] == 0.0  # the buffer is empty at step 0, so s_inter is 0 for everyone


def test_scale_check_skips_runs_that_keep_everything(uds_runlogs):
    assert runlog_views.scale_check(uds_runlogs["full"]).empty
    fig = runlog_figures.score_decomposition(uds_runlogs["full"])
    assert "in 0 of 0 steps" in fig.layout.annotations[0].text


def test_summary_numbers_match_the_records(uds_runlogs):
    log = uds_runlogs["uds"]
    s = runlog_views.run_summary(log)
    frame = log.candidates_frame()
    assert s["steps"] == 12 and s["keep"] == 2 and s["batch"] == 8
    assert s["mean_s_intra_selected"] == pytest.approx(frame.loc[frame["selected"], "s_intra"].mean())
    assert s["categories_selected"] == frame.loc[frame["selected"], "category"].nunique()
    assert s["eval_loss"] == pytest.approx(log.eval_summary.loss)
    text = runlog_views.summary_markdown(log)
    assert "K = 2 of B = 8" in text and f"top-K in {s['steps_changed_by_diversity']} of 12 steps" in text
    assert "α = 0.0025" in text and "padding rows masked" in text and "Scale check" in text


@pytest.mark.parametrize("selector", ["random", "full"])
def test_summary_shows_only_what_applies_to_the_selector(uds_runlogs, selector):
    """Issue 17, item 7: Random and Full read no logit score, so their summary has no α, no padding mode and no
    scale check (Full keeps everything, so it has no rejected candidates either); the comparison table says "–"."""
    text = runlog_views.summary_markdown(uds_runlogs[selector])
    assert text.startswith(f"**{colors.selector_label(selector)}**, ") and "K = " in text
    assert "α" not in text and "padding" not in text and "Scale check" not in text
    assert ("Every candidate was kept" in text) == (selector == "full")
    row = runlog_views.comparison_table(uds_runlogs).set_index("run").loc[selector]
    assert row["α"] == "–" and row["mode"] == "–"


def test_neighbours_are_the_nearest_buffer_entries_and_average_to_s_inter(uds_runlogs):
    log = uds_runlogs["uds"]
    step = 5
    buffer = log.buffer_at(step - 1)
    for position in range(8):
        z = log.embedding(step, position).astype(np.float64)
        dist = np.linalg.norm(buffer.embeddings.astype(np.float64) - z, axis=1)
        record = next(c for c in log.candidates if c.step == step and c.position == position)
        assert dist.mean() == pytest.approx(record.s_inter, rel=1e-4)  # the recorded diversity term
        near = runlog_views.buffer_neighbours(log, step, position, k=3)
        assert list(near["distance"]) == pytest.approx(np.sort(dist)[:3].round(3).tolist(), abs=1e-3)
        assert list(near["sample_id"]) == [buffer.sample_ids[i] for i in np.argsort(dist, kind="stable")[:3]]
    assert runlog_views.buffer_neighbours(log, 0, 0).empty  # nothing was in the buffer yet


def test_candidate_text_and_scores(uds_runlogs):
    log = uds_runlogs["uds"]
    record = log.candidates[10]
    text = runlog_views.candidate_text(log, record.step, record.position)
    sample = log.sample(record.sample_id)
    assert record.sample_id in text and sample.prompt in text and sample.response in text
    scores = runlog_views.candidate_scores(log, record.step, record.position)
    assert len(scores) == len(runlog_views.DETAIL_FIELDS)
    assert float(scores.loc[0, "value"]) == pytest.approx(record.s_intra, rel=1e-5)
    with pytest.raises(ValueError, match="no candidate at step 99"):
        runlog_views.candidate_text(log, 99, 0)


def test_selected_jsonl_is_the_selected_subset_in_step_order(uds_runlogs):
    log = uds_runlogs["uds"]
    rows = [json.loads(line) for line in runlog_views.selected_jsonl(log).splitlines()]
    assert [r["sample_id"] for r in rows] == [i for ids in log.selected_ids() for i in ids]
    for row in rows:
        sample = log.sample(row["sample_id"])
        assert (row["prompt"], row["response"]) == (sample.prompt, sample.response)


def test_comparison_table_and_figure_cover_every_run(uds_runlogs):
    table = runlog_views.comparison_table(uds_runlogs)
    assert list(table["run"]) == ["uds", "random", "full"]
    assert table.loc[2, "K of B"] == "8 of 8"
    fig = runlog_figures.compare_runs(uds_runlogs)
    loss_lines = [t for t in fig.data if t.type == "scatter"]
    assert len(loss_lines) == 3 and all(len(t.y) == 12 for t in loss_lines)
    shares = {}
    for t in fig.data:
        if t.type == "bar" and t.name is not None and t.xaxis == "x4":
            shares[t.name] = list(t.y)
    assert np.allclose(np.sum(list(shares.values()), axis=0), 1.0)  # category shares of each run add up to 1
    # Issue 17, item 6: at most 8 categories named (the rest summed as "other"), in a legend of their own
    named = {c.category for log in uds_runlogs.values() for c in log.candidates if c.selected}
    assert len(named) > runlog_figures.MAX_CATEGORIES and len(shares) == runlog_figures.MAX_CATEGORIES
    assert runlog_figures.OTHER in shares and fig.layout.legend2.title.text == "category (selected)"
    assert all(t.legend == "legend2" for t in fig.data if t.name in shares)


def test_utility_over_steps_points_are_keyed_by_step_and_position(uds_runlogs):
    log = uds_runlogs["uds"]
    fig = runlog_figures.utility_over_steps(log, "s_intra")
    selected = next(t for t in fig.data if t.name == "selected")
    keys = {tuple(k) for k in selected.customdata}
    assert keys == {(c.step, c.position) for c in log.candidates if c.selected}
    with pytest.raises(ValueError, match="field='rank'"):
        runlog_figures.utility_over_steps(log, "rank")


def test_score_decomposition_title_reports_the_scale_check(uds_runlogs):
    log = uds_runlogs["uds"]
    scale = runlog_views.scale_check(log)
    fig = runlog_figures.score_decomposition(log)
    title = fig.layout.annotations[0].text
    assert f"top-K in {int(scale['changed'].sum())} of 12 steps" in title


def test_token_strip_greys_prompt_and_padding(uds_runlogs):
    log = uds_runlogs["uds"]
    strip = next(s for s in log.strips if s.is_pad.any())
    fig = runlog_figures.token_strip(strip)
    z = np.array(fig.data[0].z, dtype=float)  # (3, N)
    greyed = strip.is_pad | strip.is_prompt
    assert np.isnan(z[:, greyed]).all()
    assert np.isfinite(z[:2, ~greyed][:, :-1]).all()  # the last real row has no next token to score
    # Issue 17, item 6: the title says why cells are grey, and padding is cut from the view
    real = np.flatnonzero(~strip.is_pad)
    assert list(fig.layout.xaxis.range) == [real[0] - 0.5, real[-1] + 0.5]
    n_prompt = int((strip.is_prompt & ~strip.is_pad).sum())
    assert f"grey: the {n_prompt} prompt tokens, which the loss skips" in fig.layout.title.text
    assert f"; {int(strip.is_pad.sum())} padding tokens not drawn" in fig.layout.title.text
    with pytest.raises(ValueError, match="token strings"):
        runlog_figures.token_strip(strip, ["a"])


def test_buffer_map_places_every_candidate_once(uds_runlogs, uds_buffer_map):
    log = uds_runlogs["uds"]
    assert uds_buffer_map.method == "umap"
    assert set(uds_buffer_map.coords) == {(c.step, c.position) for c in log.candidates}


@pytest.mark.parametrize("step", [0, 5, 11])
def test_buffer_map_figure_shows_the_buffer_at_that_step(uds_runlogs, uds_buffer_map, step):
    log = uds_runlogs["uds"]
    buffer = log.buffer_at(step)
    figures = {c: buffer_map_figure(log, uds_buffer_map, step, c, show_rejected=True) for c in COLOR_BY}
    age = figures["age"]
    in_buffer = next(t for t in age.data if t.name == "in buffer")
    assert {tuple(k) for k in in_buffer.customdata} == set(zip(buffer.insert_steps, buffer.positions))
    rejected = next(t for t in age.data if t.name == "rejected")
    assert len(rejected.x) == 6 * (step + 1)
    for fig in figures.values():  # recolouring never moves a point
        for trace in fig.data:
            for key, x, y in zip(trace.customdata if trace.customdata is not None else [], trace.x, trace.y):
                assert (x, y) == tuple(uds_buffer_map.coords[tuple(key)])


def test_buffer_map_highlight_and_bad_values(uds_runlogs, uds_buffer_map):
    log = uds_runlogs["uds"]
    fig = buffer_map_figure(log, uds_buffer_map, 3, "score", highlight=(2, 4))
    ring = next(t for t in fig.data if t.name == "chosen")
    assert (ring.x[0], ring.y[0]) == tuple(uds_buffer_map.coords[(2, 4)])
    with pytest.raises(ValueError, match="step=12"):
        buffer_map_figure(log, uds_buffer_map, 12)
    with pytest.raises(ValueError, match="color_by='size'"):
        buffer_map_figure(log, uds_buffer_map, 3, "size")


def test_pca_map_is_deterministic(uds_runlogs):
    log = uds_runlogs["random"]
    a = build_buffer_map(log, ProjectionConfig(method="pca"))
    b = build_buffer_map(log, ProjectionConfig(method="pca"))
    assert a.method == b.method == "pca"
    assert all(np.array_equal(a.coords[k], b.coords[k]) for k in a.coords)


def test_growing_map_fits_once_and_keeps_placed_points():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(40, 32))
    grow = GrowingMap(ProjectionConfig(method="pca", fit_after=10))
    grow.add(list(range(6)), points[:6])
    assert not grow.projector.fitted  # waits for fit_after points
    grow.add(list(range(4, 20)), points[4:20])
    first = grow.lookup(list(range(20))).copy()
    grow.add(list(range(40)), points + 5.0)  # known ids keep their place even if re-sent with other values
    assert np.array_equal(grow.lookup(list(range(20))), first)
    assert grow.lookup(list(range(40))).shape == (40, 2)
    with pytest.raises(ValueError, match="never added"):
        grow.lookup([99])


def test_projector_checks_its_inputs():
    with pytest.raises(ValueError, match="transform called before"):
        Projector().transform(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="NaN"):
        Projector(ProjectionConfig(method="pca")).fit_transform(np.array([[0.0, math.nan], [1.0, 2.0]]))
    with pytest.raises(ValueError, match="method='tsne'"):
        ProjectionConfig(method="tsne")
    small = Projector(ProjectionConfig(method="auto")).fit_transform(np.eye(5))
    assert small.shape == (5, 2)  # too few points for UMAP: PCA


def test_many_runs_are_ticked_by_number_and_named_in_full_in_the_legend(uds_runlogs):
    """Fifteen runs (the shipped fair test) must not write fifteen long names under each bar chart."""
    logs = {f"#{i + 1} run-{name}-s{i}": log for i, (name, log) in enumerate(list(uds_runlogs.items()) * 5)}
    fig = runlog_figures.compare_runs(logs)
    for axis in ("xaxis2", "xaxis3", "xaxis4"):
        assert list(fig.layout[axis].ticktext) == [f"#{i}" for i in range(1, 16)]
    assert {t.name.split(":")[0] for t in fig.data if t.type == "scatter"} == set(logs)
    assert runlog_figures.run_number("uds") == "uds" and runlog_figures.run_number("#12 fair_test x") == "#12"
