"""Selection Lab handlers, called directly (no server): a real run with progress, Cancel, linked detail, exports, run
log upload, and a clear gr.Error for each bad input."""
import json
import time
import zipfile
from pathlib import Path

import gradio as gr
import pytest

from app import selection_handlers as h
from app.selection_progress import reuse_note
from app.selection_runs import MODEL_CHOICES, SELECTOR_CHOICES, build_configs, load_dataset, run_in_background
from app.session import SELECTION_JOBS

TINY = next(label for label, name in MODEL_CHOICES.items() if name == "tiny-random")
UDS = next(iter(SELECTOR_CHOICES))


def _run(selector=UDS, steps=4, batch=4, keep=2, alpha=2.5e-3, progress=None, **overrides):
    args = dict(selector=selector, steps=steps, batch=batch, keep=keep, alpha=alpha, lora=True, seed=21,
                dataset_source="bundled mixture", upload=None, prompt_col="prompt", response_col="response",
                messages_col="", category_col="", answer_col="", model_label=TINY, cutoff=128, eval_items=2)
    args.update(overrides)
    return h.run_events(h.new_state(), progress=progress or (lambda *a, **k: None), **args)


@pytest.fixture(scope="module")
def session():
    """One real run through the Run handler (toy causal Llama, 4 steps), with every progress call recorded."""
    calls = []
    results = list(_run(progress=lambda value, desc=None: calls.append((value, desc))))
    return results, calls


def test_run_reports_progress_and_ends_with_every_view(session):
    results, calls = session
    statuses = [r["status"] for r in results if r.get("status")]
    assert any("step 4/4" in s for s in statuses) and statuses[-1].startswith("Done: #1 uds")
    # Issue 17, item 8: every phase is named with its number and elapsed time, in order
    phases = [line.split(",")[0] for s in statuses[:-1] for line in s.splitlines() if line.startswith("Phase")]
    assert list(dict.fromkeys(phases)) == ["Phase 1 of 4", "Phase 2 of 4", "Phase 3 of 4", "Phase 4 of 4"]
    assert any("held-out evaluation: 2 items" in s for s in statuses) and any("projecting the buffer" in s
                                                                               for s in statuses)
    assert "reused" not in " ".join(statuses)  # 16 candidates from the bundled mixture: no row drawn twice
    done = [value[0] for value, _ in calls]
    assert done == sorted(done) and done[-1] == 4 and calls[-1][0][1] == 4
    final = results[-1]
    for key in ("summary", "table", "utility", "decomposition", "map", "comparison", "comparison_table", "length_bias",
                "seeds", "runs"):
        assert key in final
    state = final["state"]
    assert list(state["runs"]) == ["#1 uds K2/B4 seed 21"] and len(final["table"]) == 4 * 4
    assert ("#1 uds K2/B4 seed 21", "UMAP") in state["maps"]  # fitted once, in the worker
    # Issue 17, item 7: 8 buffer points are too few for UMAP; the radio says PCA, as the map's title does
    assert final["map_method"] == "PCA" and "PCA is drawn" in final["map"].layout.title.text


def test_a_small_dataset_says_its_rows_are_reused(tmp_path):
    """Issue 17, item 8: 10 uploaded rows for 4 steps x B 8 reuse rows, and the page says so."""
    from engine.uds.config import SelectionConfig, TrainConfig

    path = tmp_path / "ten.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"q{i}", "response": f"a{i}"}) + "\n" for i in range(10)))
    dataset = load_dataset("upload", str(path))
    rows = len(dataset.train)
    note = reuse_note(dataset, SelectionConfig(batch=8, keep=2), TrainConfig(steps=4))
    assert note.startswith(f"{rows} training rows for 4 steps × 8 candidates = 32: rows are reused")
    assert f"about {32 / rows:.1f} times" in note
    assert reuse_note(dataset, SelectionConfig(batch=2, keep=1), TrainConfig(steps=rows // 2)) == ""


def test_cancel_stops_the_training_loop():
    """Closing the run generator (what Gradio does on Cancel) stops the worker after the step in progress; only then
    is its slot free."""
    cancelled = SELECTION_JOBS.outcomes["cancelled"]
    events = _run(steps=500)
    for result in events:
        if "step 1/500" in result.get("status", ""):
            break
    events.close()
    deadline = time.monotonic() + 60
    while SELECTION_JOBS.running and time.monotonic() < deadline:
        time.sleep(0.2)
    assert SELECTION_JOBS.running == 0 and SELECTION_JOBS.outcomes["cancelled"] == cancelled + 1


def test_background_runner_reports_engine_errors_as_messages(bundled_uds_dataset):
    selection, train = build_configs(UDS, 2, 4, 2, 0.0, True, 0, cutoff=600, eval_items=0)
    kinds = list(run_in_background("tiny-random", bundled_uds_dataset, selection, train))
    assert kinds[-1][0] == "error" and "cutoff=600" in kinds[-1][1]


def test_detail_links_text_scores_neighbours_and_strip(session):
    state = session[0][-1]["state"]
    name = next(iter(state["runs"]))
    log = state["runs"][name]
    record = next(c for c in log.candidates if c.step == 2 and c.position == 3)
    shown = h.detail(state, name, 2, 3)
    assert record.sample_id in shown["text"] and (shown["step"], shown["position"]) == (2, 3)
    assert len(shown["neighbours"]) == min(5, 2 * 2)  # the buffer after step 1 holds 2 picks per step
    assert shown["strip"].data[0].type == "heatmap"
    assert "'<|im_start|>'" in shown["strip"].data[0].text[0][0]  # token strings from the run's tokenizer, not ids
    map_only = h.map_view(state, name, "category", "UMAP", 3, False, 2, 3)
    assert any(t.name == "chosen" for t in map_only["map"].data)
    with pytest.raises(gr.Error, match="Pick a candidate first"):
        h.detail(state, name, None, None)
    with pytest.raises(gr.Error, match="no candidate at step 9"):
        h.detail(state, name, 9, 0)


def test_table_and_point_selection_give_the_same_key():
    assert h.row_to_key([3, 1, "chat-1", "ai"]) == (3, 1)
    assert h.point_to_key({"step": 3, "position": 1}) == (3, 1)
    with pytest.raises(gr.Error, match="click a point"):
        h.point_to_key({"x": 1})
    with pytest.raises(gr.Error, match="click a row"):
        h.row_to_key([])


def test_exports_stay_in_the_session_folder_and_reload(session):
    state = session[0][-1]["state"]
    name = next(iter(state["runs"]))
    state, jsonl = h.export_selected(state, name)
    folder = Path(state["folder"])
    assert Path(jsonl).parent == folder
    lines = Path(jsonl).read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["sample_id"] for line in lines] == sum(state["runs"][name].selected_ids(), [])
    state, archive = h.export_runlog(state, name)
    assert Path(archive).parent == folder
    state, loaded = h.load_runlog_zip(state, archive)
    assert loaded.startswith("#2 upload") and state["runs"][loaded].equals(state["runs"][name])
    views = h.run_views(state, loaded, map_method="PCA")
    assert views["summary"] == h.run_views(state, name, map_method="PCA")["summary"]
    assert h.new_state()["folder"] is None  # another session starts with no folder of its own


def test_sessions_keep_a_bounded_number_of_runs(session):
    log = next(iter(session[0][-1]["state"]["runs"].values()))
    state = h.new_state()
    for _ in range(h.MAX_RUNS + 2):
        state, name = h.add_run(state, log, "again")
    assert len(state["runs"]) == h.MAX_RUNS and name in state["runs"] and "#1 again" not in state["runs"]


@pytest.mark.parametrize("change, message", [
    (dict(keep=5), "K = 5 with B = 4"),
    (dict(alpha=-0.1), "α = -0.1 is not allowed"),
    (dict(steps=2.5), "steps = 2.5 must be a whole number"),
    (dict(selector="Best"), "Selector 'Best' is not offered"),
    (dict(dataset_source="upload"), "no file was uploaded"),
    (dict(model_label="GPT-9"), "Model 'GPT-9' is not offered"),
    (dict(dataset_source="Hub dataset id"), "the id is empty"),
    (dict(dataset_source="Hub dataset id", hub_id="tatsu-lab/alpaca"), "offline mode is on"),
])
def test_bad_controls_give_a_sentence_saying_what_to_change(change, message):
    with pytest.raises(gr.Error, match=message):
        next(_run(**change))


def test_upload_errors_name_the_problem(tmp_path):
    bad_line = tmp_path / "data.jsonl"
    bad_line.write_text('{"prompt": "a", "response": "b"}\n{"prompt": oops}\n', encoding="utf-8")
    with pytest.raises(gr.Error, match="line 2 is not valid JSON") as err:
        load_dataset("upload", str(bad_line))
    assert str(tmp_path) not in str(err.value)
    columns = tmp_path / "cols.csv"
    columns.write_text("question,answer\nhi,hello\n", encoding="utf-8")
    with pytest.raises(gr.Error, match=r"columns found: \['answer', 'question'\]"):
        load_dataset("upload", str(columns))
    mapped = load_dataset("upload", str(columns), prompt_col="question", response_col="answer")
    assert mapped.train[0].prompt == "hi"
    latin = tmp_path / "latin.csv"
    latin.write_bytes("prompt,response\ncaf\xe9,ok\n".encode("latin-1"))
    with pytest.raises(gr.Error, match="not UTF-8"):
        load_dataset("upload", str(latin))


def test_runlog_upload_refuses_what_is_not_a_run_log(tmp_path):
    state = h.new_state()
    text = tmp_path / "notes.txt"
    text.write_text("hello", encoding="utf-8")
    with pytest.raises(gr.Error, match="notes.txt is not a .zip"):
        h.load_runlog_zip(state, str(text))
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"PK not really")
    with pytest.raises(gr.Error, match="not a readable zip"):
        h.load_runlog_zip(state, str(broken))
    sneaky = tmp_path / "sneaky.zip"
    with zipfile.ZipFile(sneaky, "w") as archive:
        archive.writestr("../meta.json", "{}")
    with pytest.raises(gr.Error, match=r"unexpected \['../meta.json'\]"):
        h.load_runlog_zip(state, str(sneaky))
    huge = tmp_path / "huge.zip"
    with huge.open("wb") as f:
        f.truncate(51 * 1024 * 1024)  # sparse: the size check must refuse it before reading
    with pytest.raises(gr.Error, match="over the 50 MB limit"):
        h.load_runlog_zip(state, str(huge))
    with pytest.raises(gr.Error, match="No run yet"):
        h.get_run(state, "#1")
