"""Compact run logs and shipped example sets: the writer, loading a set without a model, and the views of a compact
log (the seeds table complete, the buffer map and neighbours saying why they are missing)."""
import copy
import json
from pathlib import Path

import numpy as np
import pytest

from analysis.selection_bias import seeds_table
from app import selection_examples
from app import selection_handlers as h
from engine.uds.runlog_compact import COMPACT_KEY, compact_runlog, is_compact
from engine.uds.runlog_zip import export_runlog_zip, import_runlog_zip

LABEL = next(iter(selection_examples.SETS))


def _reseeded(log, seed, loss):
    again = copy.copy(log)
    again.config = copy.deepcopy(log.config)
    again.config["selection"]["seed"] = again.config["train"]["seed"] = seed
    again.eval_summary = type(log.eval_summary)(loss=loss, maths_accuracy=log.eval_summary.maths_accuracy,
                                                n_items=log.eval_summary.n_items, n_maths=log.eval_summary.n_maths)
    return again


@pytest.fixture(scope="module")
def shipped(tmp_path_factory, uds_runlogs):
    """A set folder as the fair test ships it: compact zips ARM-sSEED.zip of three arms at three seeds."""
    root = tmp_path_factory.mktemp("examples")
    folder = root / selection_examples.SETS[LABEL]
    folder.mkdir()
    for arm, log in uds_runlogs.items():
        for seed, loss in ((21, 1.0), (22, 2.0), (23, 4.0)):
            export_runlog_zip(compact_runlog(_reseeded(log, seed, loss)), folder, name=f"{arm}-s{seed}")
    return root


def test_compact_keeps_records_and_drops_sketches_and_strips(uds_runlogs, tmp_path):
    log = uds_runlogs["uds"]
    compact = compact_runlog(log)
    assert is_compact(compact) and not is_compact(log) and COMPACT_KEY not in log.config
    assert compact.strips == [] and all(e.shape == (8, 0) for e in compact.embeddings) and log.strips
    full, small = log.candidates_frame(), compact.candidates_frame()
    assert small.drop(columns=list(full.select_dtypes("float").columns)).equals(
        full.drop(columns=list(full.select_dtypes("float").columns)))
    floats = full.select_dtypes("float").columns
    assert np.allclose(small[floats], full[floats], rtol=1e-6, atol=0, equal_nan=True)
    assert (small[floats].to_numpy(np.float64) == small[floats].to_numpy(np.float32)).all()  # float32 values
    assert compact.steps == log.steps and compact.evictions == log.evictions and compact.samples == log.samples
    assert compact.eval_items == log.eval_items and compact.eval_summary == log.eval_summary
    small_zip = export_runlog_zip(compact, tmp_path, name="compact")
    full_zip = export_runlog_zip(log, tmp_path, name="full")
    assert small_zip.stat().st_size < full_zip.stat().st_size / 2
    assert import_runlog_zip(small_zip, tmp_path).equals(compact)


def test_a_shipped_set_loads_whole_without_a_model_and_fills_the_seeds_view(shipped, uds_runlogs):
    assert selection_examples.example_sets(shipped) == [LABEL]
    runs = selection_examples.load_set(LABEL, shipped)
    assert len(runs) == 9 and all(is_compact(log) for _, log in runs)
    table = seeds_table(dict(runs)).set_index("configuration")
    assert len(table) == 3 and (table["runs"] == 3).all() and set(table["seeds"]) == {"21, 22, 23"}
    losses = [1.0, 2.0, 4.0]
    assert (table["held-out loss"] == f"{np.mean(losses):.4g} ± {np.std(losses, ddof=1):.2g}").all()
    frame = uds_runlogs["uds"].candidates_frame()
    uds_row = table.loc[[c for c in table.index if c.startswith("UDS")][0]]
    assert uds_row["kept length"] == f"{frame.loc[frame['selected'], 'length'].mean():.4g} ± {0.0:.2g}"
    assert uds_row["candidate length"] == f"{frame['length'].mean():.4g} ± {0.0:.2g}"
    with pytest.raises(ValueError, match="unknown"):
        selection_examples.load_set("no such set", shipped)


def test_the_lab_loads_a_set_past_the_run_cap_and_says_what_a_compact_log_lacks(shipped, monkeypatch):
    monkeypatch.setattr(selection_examples, "FOLDER", shipped)
    state, first = h.add_run(h.new_state(), compact_runlog(next(iter(selection_examples.load_set(LABEL)))[1]), "old")
    state, names = h.load_example_set(state, LABEL)
    assert len(names) == 9 > h.MAX_RUNS and list(state["runs"]) == names  # the set is kept whole, the older run goes
    views = h.run_views(state, names[0])
    assert len(views["seeds"]) == 3 and "Compact run log" in views["summary"]
    assert "not available" in views["map"].layout.title.text and views["map_method"] == "UMAP"
    step = views["state"]["runs"][names[0]].steps[-1].step
    detail = h.detail(views["state"], names[0], step, 0)
    assert "compact run log" in detail["text"] and detail["neighbours"].empty and detail["strip"] is None
    assert "not available" in h.map_view(views["state"], names[0], "age", "PCA", step, True, None, None)[
        "map"].layout.title.text
    with pytest.raises(Exception, match="Pick a set"):
        h.load_example_set(state, None)


FAIR_SUMMARY = Path(__file__).resolve().parents[1] / "lab/benchmarks/results/2026-11-30_h200x2_fair/summary.json"
SHIPPED = pytest.mark.skipif(not selection_examples.example_sets(), reason="the fair test's run logs are not shipped yet")


def _arm(name: str) -> str:
    """'fair_test uds_default-s21' -> 'uds_default' (the set's files are ARM-sSEED.zip)."""
    return name.split()[-1].rsplit("-s", 1)[0]


@SHIPPED
def test_the_shipped_fair_test_is_five_arms_at_three_seeds():
    runs = dict(selection_examples.load_set(LABEL))
    table = seeds_table(runs).set_index("configuration")
    assert len(runs) == 15 and len(table) == 5 and (table["runs"] == 3).all()
    assert sum(p.stat().st_size for p in (selection_examples.FOLDER / "fair_test").glob("*.zip")) <= 4 * 2**20
    # the seeds view shows the recorded run's numbers: mean +- sd per arm as in its summary.json
    summary = json.loads(FAIR_SUMMARY.read_text())["arms"]
    assert {_arm(name) for name in runs} == set(summary)
    for arm, stats in summary.items():
        row = seeds_table({n: log for n, log in runs.items() if _arm(n) == arm})["configuration"].item()
        for column, key in (("held-out loss", "loss"), ("maths accuracy", "accuracy"),
                            ("kept length", "kept_mean_length"), ("candidate length", "candidate_mean_length")):
            assert table.loc[row, column] == f"{stats[key]['mean']:.4g} ± {stats[key]['sd']:.2g}", (arm, column)


@SHIPPED
def test_load_all_runs_puts_the_shipped_fair_test_in_the_lab_whole():
    state, names = h.load_example_set(h.add_run(h.new_state(), next(iter(selection_examples.load_set(LABEL)))[1],
                                                "old")[0], LABEL)
    assert len(names) == 15 > h.MAX_RUNS and list(state["runs"]) == names
    views = h.run_views(state, names[0])
    assert len(views["seeds"]) == 5 and (views["seeds"]["runs"] == 3).all() and "Compact run log" in views["summary"]
