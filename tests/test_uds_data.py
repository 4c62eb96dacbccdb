"""Selection Lab data: the bundled mixture and its held-out split, uploads (JSONL / CSV / Parquet) and their errors."""
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.uds.batching import encode
from engine.uds.data import Sample, bundled_dataset
from engine.uds.uploads import ColumnMapping, load_hub, load_upload


def test_bundled_mixture_sources_categories_and_heldout(bundled_uds_dataset):
    ds = bundled_uds_dataset
    assert {s.source for s in ds.train} == {"chatterbot", "mathematics", "humaneval"}
    assert len({s.category for s in ds.train if s.source == "chatterbot"}) > 5
    assert all(s.answer == s.response for s in ds.train if s.source == "mathematics")
    assert not {s.sample_id for s in ds.train} & {s.sample_id for s in ds.heldout}
    assert {s.source for s in ds.heldout[:3]} == {"chatterbot", "mathematics", "humaneval"}
    assert [s.sample_id for s in bundled_dataset().heldout] == [s.sample_id for s in ds.heldout]


def test_truncation_is_flagged(tiny_causal_lm):
    _, tokenizer = tiny_causal_lm
    sample = Sample("x", "upload", "upload", "Say it.", "answer " * 40)
    full = encode(tokenizer, sample, 4096)
    cut = full.prompt_len + 10
    short = encode(tokenizer, sample, cut)
    assert short.truncated and len(short.ids) == cut and not full.truncated
    assert full.ids[:cut] == short.ids and full.prompt_len == short.prompt_len


def _write_jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


ROWS = [{"q": f"What is {i} + 1?", "a": str(i + 1), "topic": "sums"} for i in range(20)]


def test_jsonl_csv_parquet_and_messages_uploads(tmp_path):
    mapping = ColumnMapping(prompt="q", response="a", category="topic")
    from_jsonl = load_upload(_write_jsonl(tmp_path / "d.jsonl", ROWS), mapping)
    csv_path = tmp_path / "d.csv"
    csv_path.write_text("q,a,topic\n" + "".join(f'"{r["q"]}",{r["a"]},{r["topic"]}\n' for r in ROWS))
    from_csv = load_upload(csv_path, mapping)
    pq.write_table(pa.Table.from_pylist(ROWS), tmp_path / "d.parquet")
    from_parquet = load_upload(tmp_path / "d.parquet", mapping)
    for ds in (from_csv, from_parquet):
        assert [s.prompt for s in ds.train] == [s.prompt for s in from_jsonl.train]
    assert len(from_jsonl.train) + len(from_jsonl.heldout) == 20 and from_jsonl.train[0].category == "sums"
    chats = [{"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": r["q"]},
                           {"role": "assistant", "content": r["a"]}]} for r in ROWS]
    from_chat = load_upload(_write_jsonl(tmp_path / "c.jsonl", chats), ColumnMapping(messages="messages"))
    assert (from_chat.train[0].prompt, from_chat.train[0].response) in {(r["q"], r["a"]) for r in ROWS}


def test_upload_errors_name_the_problem(tmp_path):
    bad_line = tmp_path / "bad.jsonl"
    bad_line.write_text('{"prompt": "a", "response": "b"}\n{"prompt": "c", \n', encoding="utf-8")
    with pytest.raises(ValueError, match="line 2"):
        load_upload(bad_line)
    latin = tmp_path / "latin.csv"
    latin.write_bytes("prompt,response\ncaf\xe9,ok\n".encode("latin-1"))
    with pytest.raises(ValueError, match="not UTF-8"):
        load_upload(latin)
    with pytest.raises(ValueError, match=r"columns found: \['a', 'q', 'topic'\]; expected \['prompt', 'response'\]"):
        load_upload(_write_jsonl(tmp_path / "cols.jsonl", ROWS))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(ValueError, match="empty"):
        load_upload(empty)
    big = tmp_path / "big.jsonl"
    with big.open("wb") as handle:
        handle.truncate(51 * 1024 * 1024)
    with pytest.raises(ValueError, match="50 MB"):
        load_upload(big)
    with pytest.raises(ValueError, match="is not a file"):
        load_upload(tmp_path / "missing.jsonl")
    with pytest.raises(ValueError, match="unsupported file type '.pkl'"):
        load_upload(tmp_path / "data.pkl")
    with pytest.raises(ValueError, match="offline"):
        load_hub("some/dataset")
