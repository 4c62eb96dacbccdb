"""Users' own SFT data: JSONL / CSV / Parquet files with a column mapping, or a Hub dataset id when online.

Files are parsed as data only (json, csv, pyarrow): nothing is unpickled or evaluated. Every failure is a ValueError
that names the problem, the value and the fix.
"""
from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from engine.uds.data import Dataset, Sample, split_heldout

MAX_UPLOAD_BYTES = 50 * 1024 * 1024
FORMATS = (".jsonl", ".json", ".csv", ".parquet")


@dataclass(frozen=True)
class ColumnMapping:
    prompt: str = "prompt"  # column with the user turn (ignored when `messages` is set)
    response: str = "response"  # column with the assistant turn (ignored when `messages` is set)
    messages: str = ""  # column with a chat: a list of {"role", "content"}; first user turn -> first assistant turn
    category: str = ""  # optional column with a category label; "" labels every row "upload"
    answer: str = ""  # optional column with an exact reference answer (scored by the held-out accuracy)

    def required(self) -> list[str]:
        return [self.messages] if self.messages else [self.prompt, self.response]


def _decode(raw: bytes, name: str) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise ValueError(f"{name} is not UTF-8 text (invalid byte at offset {err.start}, line {line}); "
                         f"re-save it as UTF-8") from None


def _jsonl_rows(text: str, name: str) -> list[dict[str, Any]]:
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{name} line {number} is not valid JSON ({err.msg} at column {err.colno}); each line "
                             f"must be one JSON object") from None
        if not isinstance(row, dict):
            raise ValueError(f"{name} line {number} is a JSON {type(row).__name__}, expected an object with columns")
        rows.append(row)
    return rows


def _csv_rows(text: str, name: str) -> list[dict[str, Any]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows = []
    try:
        for row in reader:
            if None in row:
                raise ValueError(f"{name} line {reader.line_num} has more fields than the header's "
                                 f"{len(reader.fieldnames or [])}; quote fields that contain commas")
            rows.append(row)
    except csv.Error as err:
        raise ValueError(f"{name} line {reader.line_num} is not valid CSV: {err}") from None
    return rows


def _parquet_rows(raw: bytes, name: str) -> list[dict[str, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(pa.BufferReader(raw)).to_pylist()
    except (pa.ArrowException, OSError) as err:
        raise ValueError(f"{name} is not a readable Parquet file: {err}") from None


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """The rows of an uploaded file, by extension; refuses files over 50 MB."""
    path = Path(path)
    name = path.name
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"{name}: unsupported file type {suffix!r}; upload one of {', '.join(FORMATS)}")
    if not path.is_file():
        raise ValueError(f"{str(path)!r} is not a file; give the path of a .jsonl, .csv or .parquet file")
    size = path.stat().st_size
    if size > MAX_UPLOAD_BYTES:
        raise ValueError(f"{name} is {size / 2**20:.1f} MB, over the 50 MB limit; upload a smaller sample")
    raw = path.read_bytes()
    if suffix == ".parquet":
        return _parquet_rows(raw, name)
    text = _decode(raw, name)
    return _csv_rows(text, name) if suffix == ".csv" else _jsonl_rows(text, name)


def _chat_pair(value: Any, row_number: int, column: str) -> tuple[str, str]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise ValueError(f"row {row_number}: column {column!r} is not a JSON list of messages") from None
    if not isinstance(value, list) or not all(isinstance(m, dict) for m in value):
        raise ValueError(f"row {row_number}: column {column!r} must be a list of {{'role', 'content'}} messages")
    user = next((str(m.get("content", "")) for m in value if m.get("role") == "user"), "")
    after_user = value[[m.get("role") for m in value].index("user") + 1:] if user else []
    reply = next((str(m.get("content", "")) for m in after_user if m.get("role") == "assistant"), "")
    return user, reply


def rows_to_samples(rows: Iterable[dict[str, Any]], mapping: ColumnMapping, source: str, name: str) -> list[Sample]:
    rows = list(rows)
    if not rows:
        raise ValueError(f"{name} is empty: no data rows found")
    found = sorted({key for row in rows for key in row})
    missing = [c for c in mapping.required() + [c for c in (mapping.category, mapping.answer) if c] if c not in found]
    if missing:
        raise ValueError(f"{name}: column(s) {missing} not found; columns found: {found}; expected "
                         f"{mapping.required()} (set the column mapping to the names your file uses)")
    samples = []
    for number, row in enumerate(rows, start=1):
        if mapping.messages:
            prompt, response = _chat_pair(row.get(mapping.messages), number, mapping.messages)
        else:
            prompt, response = str(row.get(mapping.prompt) or ""), str(row.get(mapping.response) or "")
        if not prompt.strip() or not response.strip():
            continue
        samples.append(Sample(sample_id=f"{source}-{number}", source=source,
                              category=str(row.get(mapping.category) or source) if mapping.category else source,
                              prompt=prompt, response=response,
                              answer=str(row.get(mapping.answer) or "") if mapping.answer else ""))
    if not samples:
        raise ValueError(f"{name}: none of its {len(rows)} rows has both a non-empty prompt and response")
    return samples


def load_upload(path: str | Path, mapping: ColumnMapping = ColumnMapping(), heldout_fraction: float = 0.1,
                seed: int = 0) -> Dataset:
    rows = read_rows(path)
    return split_heldout(Path(path).name, rows_to_samples(rows, mapping, "upload", Path(path).name),
                         heldout_fraction, seed)


def load_hub(dataset_id: str, mapping: ColumnMapping = ColumnMapping(), split: str = "train",
             max_rows: int = 5000, heldout_fraction: float = 0.1, seed: int = 0) -> Dataset:
    """A Hub dataset through the `datasets` library; only when the machine is online."""
    if os.environ.get("HF_DATASETS_OFFLINE") == "1" or os.environ.get("HF_HUB_OFFLINE") == "1":
        raise ValueError(f"cannot load Hub dataset {dataset_id!r}: offline mode is on (HF_HUB_OFFLINE / "
                         f"HF_DATASETS_OFFLINE); upload a JSONL, CSV or Parquet file instead")
    try:
        import datasets
    except ImportError:
        raise ValueError("Hub datasets need the `datasets` package (pinned in requirements.txt); install it, or "
                         "upload a JSONL, CSV or Parquet file instead") from None
    try:
        table = datasets.load_dataset(dataset_id, split=f"{split}[:{max_rows}]")
    except Exception as err:  # the Hub client raises many types (connection, missing repo, bad split)
        raise ValueError(f"cannot load Hub dataset {dataset_id!r} split {split!r}: {type(err).__name__}: {err}; "
                         f"check the id and the network, or upload a file instead") from None
    rows = [dict(row) for row in table]
    return split_heldout(dataset_id, rows_to_samples(rows, mapping, "hub", dataset_id), heldout_fraction, seed)
