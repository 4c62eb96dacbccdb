"""The run log schema: exact save/load round trip, derived buffer snapshots, and refusal of broken folders."""
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.uds.runlog import (CandidateRecord, EvalItem, EvalSummary, EvictionRecord, RunLog, SampleRecord,
                               StepRecord, TokenStrip)
from engine.uds.runlog_io import RunLogFormatError, load_runlog, save_runlog


def _build_log(seed: int = 0, steps: int = 4, batch: int = 3, keep: int = 1, capacity: int = 2) -> RunLog:
    """A hand-built log of a FIFO buffer of `capacity` slots, with seeded numbers."""
    rng = np.random.default_rng(seed)
    log = RunLog(config={"selector": "uds", "mode": "default", "alpha": 0.0025, "batch": batch, "keep": keep,
                         "snapshot_every": 2})
    buffer: list[tuple[int, int, str]] = []
    for step in range(steps):
        totals = rng.normal(size=batch)
        order = np.argsort(-totals, kind="stable")
        kth = totals[order[keep - 1]]
        cands = []
        for pos in range(batch):
            rank = int(np.where(order == pos)[0][0])
            cands.append(CandidateRecord(
                step=step, position=pos, process=0, sample_id=f"s{step}-{pos}", category="ai", source="chatterbot",
                length=int(rng.integers(5, 20)), n_rows=20, s_intra=float(totals[pos]), s_inter=0.0,
                alpha_s_inter=0.0, total=float(totals[pos]), selector_score=float(totals[pos]), rank=rank,
                selected=rank < keep, margin_to_kth=float(totals[pos] - kth), flips_utility_only=False,
                flips_diversity_only=False, loss=float(rng.random()), fro_norm=1.0, flatness=1.0,
                effective_rank=float("nan") if pos == 0 else 1.5, sigma1_share=0.5))
        evictions = []
        for c in cands:
            if c.selected:
                buffer.append((c.step, c.position, c.sample_id))
                if len(buffer) > capacity:
                    old = buffer.pop(0)
                    evictions.append(EvictionRecord(step=step, sample_id=old[2], insert_step=old[0], position=old[1]))
        n = 6
        strips = [TokenStrip(step=step, position=p, sample_id=f"s{step}-{p}",
                             token_ids=rng.integers(0, 100, n), token_loss=rng.random(n).astype(np.float32),
                             logit_norm=rng.random(n).astype(np.float32), entropy=rng.random(n).astype(np.float32),
                             is_pad=np.arange(n) > 4, is_prompt=np.arange(n) < 2) for p in range(batch)]
        log.add_step(StepRecord(step=step, optimizer_step=step, learning_rate=1e-3, train_loss=float(rng.random()),
                                seconds=0.1, scoring_seconds=0.01, n_kept=keep, buffer_size=len(buffer)),
                     cands, rng.normal(size=(batch, 8)).astype(np.float32), evictions, strips)
    log.samples = [SampleRecord(sample_id="s0-0", source="chatterbot", category="ai", prompt="Hi", response="Hello",
                                split="train")]
    log.eval_items = [EvalItem(sample_id="m1", source="mathematics", category="arithmetic__add_or_sub", loss=1.2,
                               is_maths=True, prediction="3", correct=True)]
    log.eval_summary = EvalSummary(loss=1.2, maths_accuracy=float("nan"), n_items=1, n_maths=1)
    return log


def test_round_trip_is_exact(tmp_path):
    log = _build_log()
    save_runlog(log, tmp_path / "run")
    again = load_runlog(tmp_path / "run")
    assert again.equals(log)
    assert again.steps == log.steps
    assert [c for c in again.candidates if c.position] == [c for c in log.candidates if c.position]  # 0: NaN
    assert not again.equals(_build_log(seed=1))


def test_buffer_at_matches_fifo_and_evictions():
    log = _build_log(steps=4, keep=1, capacity=2)
    snap = log.buffer_at(3)
    assert snap.sample_ids == tuple(ids[0] for ids in log.selected_ids()[2:4])
    assert snap.embeddings.shape == (2, 8)
    np.testing.assert_array_equal(snap.embeddings[0], log.embedding(snap.insert_steps[0], snap.positions[0]))
    assert log.snapshot_steps() == [0, 2, 3]
    assert snap.evicted_ids == (log.selected_ids()[1][0],)


def test_frames_have_schema_columns_when_empty():
    frames = RunLog(config={}).to_frames()
    assert "margin_to_kth" in frames["candidates"].columns and len(frames["candidates"]) == 0


@pytest.mark.parametrize("breakage, message", [
    ("no_meta", "no meta.json"),
    ("bad_version", "schema_version"),
    ("drop_column", "columns are"),
    ("wrong_type", "has type"),
    ("embeddings_rows", "one row per candidate"),
    ("pickled_embeddings", "plain numeric"),
    ("ranks", "not a permutation"),
])
def test_broken_folders_are_refused_with_reason(tmp_path, breakage, message):
    folder = tmp_path / "run"
    save_runlog(_build_log(), folder)
    if breakage == "no_meta":
        (folder / "meta.json").unlink()
    elif breakage == "bad_version":
        meta = json.loads((folder / "meta.json").read_text())
        meta["schema_version"] = 99
        (folder / "meta.json").write_text(json.dumps(meta))
    elif breakage in ("drop_column", "wrong_type", "ranks"):
        table = pq.read_table(folder / "candidates.parquet")
        if breakage == "drop_column":
            table = table.drop_columns(["loss"])
        elif breakage == "wrong_type":
            table = table.set_column(table.schema.get_field_index("length"), "length",
                                     table.column("length").cast(pa.float64()))
        else:
            ranks = [0] * table.num_rows
            table = table.set_column(table.schema.get_field_index("rank"), "rank", pa.array(ranks, pa.int64()))
        pq.write_table(table, folder / "candidates.parquet")
    elif breakage == "embeddings_rows":
        np.save(folder / "embeddings.npy", np.zeros((3, 8), np.float32))
    else:
        np.save(folder / "embeddings.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(RunLogFormatError, match=message):
        load_runlog(folder)
