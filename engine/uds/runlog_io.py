"""Save a RunLog to a folder and load it back exactly, refusing anything that does not match the schema.

Folder layout (schema version in meta.json):
  meta.json            {"kind": "uds-runlog", "schema_version": 1, "config": {...}, "eval_summary": {...} | null,
                        "counts": {"candidates": n, "steps": n, ...}}
  candidates.parquet   CandidateRecord rows      steps.parquet      StepRecord rows
  evictions.parquet    EvictionRecord rows       samples.parquet    SampleRecord rows
  eval.parquet         EvalItem rows             strips.parquet     TokenStrip rows (list columns)
  embeddings.npy       float32 (n_candidates, D), row i = candidates row i; read with allow_pickle=False
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from engine.uds.runlog import (RUNLOG_KIND, SCHEMA_VERSION, CandidateRecord, EvalItem, EvalSummary, EvictionRecord,
                               RunLog, SampleRecord, StepRecord, TokenStrip)

ARROW_TYPES = {"int": pa.int64(), "float": pa.float64(), "bool": pa.bool_(), "str": pa.string()}
TABLES = {"candidates": CandidateRecord, "steps": StepRecord, "evictions": EvictionRecord, "samples": SampleRecord,
          "eval": EvalItem}
STRIP_SCHEMA = pa.schema([("step", pa.int64()), ("position", pa.int64()), ("sample_id", pa.string()),
                          ("token_ids", pa.list_(pa.int64())), ("token_loss", pa.list_(pa.float32())),
                          ("logit_norm", pa.list_(pa.float32())), ("entropy", pa.list_(pa.float32())),
                          ("is_pad", pa.list_(pa.bool_())), ("is_prompt", pa.list_(pa.bool_()))])
STRIP_DTYPES = {"token_ids": np.int64, "token_loss": np.float32, "logit_norm": np.float32, "entropy": np.float32,
                "is_pad": np.bool_, "is_prompt": np.bool_}


class RunLogFormatError(ValueError):
    """A folder that is not a valid run log; the message names the file and what is wrong."""


def _schema(cls: type) -> pa.Schema:
    return pa.schema([(f.name, ARROW_TYPES[f.type]) for f in fields(cls)])


def save_runlog(log: RunLog, folder: str | Path) -> None:
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    for name, cls in TABLES.items():
        records = getattr(log, {"eval": "eval_items"}.get(name, name))
        table = pa.Table.from_pylist([asdict(r) for r in records], schema=_schema(cls))
        pq.write_table(table, path / f"{name}.parquet")
    strips = pa.Table.from_pylist([{"step": s.step, "position": s.position, "sample_id": s.sample_id,
                                    **{k: getattr(s, k).tolist() for k in STRIP_DTYPES}} for s in log.strips],
                                  schema=STRIP_SCHEMA)
    pq.write_table(strips, path / "strips.parquet")
    np.save(path / "embeddings.npy", log.all_embeddings(), allow_pickle=False)
    meta = {"kind": RUNLOG_KIND, "schema_version": SCHEMA_VERSION, "config": log.config,
            "eval_summary": log.eval_summary_dict(),
            "counts": {"candidates": len(log.candidates), "steps": len(log.steps), "evictions": len(log.evictions),
                       "samples": len(log.samples), "eval": len(log.eval_items), "strips": len(log.strips)}}
    # NaN (e.g. maths accuracy without maths items) is written as null so the file stays strict JSON.
    (path / "meta.json").write_text(json.dumps(_nan_to_none(meta), indent=1, allow_nan=False), encoding="utf-8")


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return value


def load_runlog(folder: str | Path) -> RunLog:
    path = Path(folder)
    if not path.is_dir():
        raise RunLogFormatError(f"run log folder {str(path)!r} does not exist or is not a folder")
    meta = _read_meta(path)
    records = {name: _read_table(path, name, cls) for name, cls in TABLES.items()}
    for name, rows in records.items():
        if len(rows) != meta["counts"].get(name):
            raise RunLogFormatError(f"{name}.parquet has {len(rows)} rows but meta.json counts "
                                    f"{meta['counts'].get(name)}; the folder is incomplete or mixed")
    strips = _read_strips(path)
    embeddings = _read_embeddings(path, len(records["candidates"]))
    log = RunLog(config=meta["config"], evictions=records["evictions"], samples=records["samples"],
                 eval_items=records["eval"], strips=strips,
                 eval_summary=_eval_summary(meta["eval_summary"]))
    _fill_steps(log, records["steps"], records["candidates"], embeddings)
    return log


def _read_meta(path: Path) -> dict[str, Any]:
    meta_path = path / "meta.json"
    if not meta_path.is_file():
        raise RunLogFormatError(f"{str(path)!r} has no meta.json, so it is not a run log folder")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RunLogFormatError(f"meta.json is not valid UTF-8 JSON: {err}") from None
    if not isinstance(meta, dict) or meta.get("kind") != RUNLOG_KIND:
        raise RunLogFormatError(f"meta.json kind is {meta.get('kind') if isinstance(meta, dict) else meta!r}, "
                                f"expected {RUNLOG_KIND!r}")
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise RunLogFormatError(f"meta.json schema_version is {meta.get('schema_version')!r}; this code reads "
                                f"version {SCHEMA_VERSION} only")
    for key, kind in (("config", dict), ("counts", dict)):
        if not isinstance(meta.get(key), kind):
            raise RunLogFormatError(f"meta.json field {key!r} must be an object, found {meta.get(key)!r}")
    return meta


def _read_table(path: Path, name: str, cls: type) -> list[Any]:
    file = path / f"{name}.parquet"
    if not file.is_file():
        raise RunLogFormatError(f"missing {name}.parquet in {str(path)!r}")
    try:
        table = pq.read_table(file)
    except (pa.ArrowException, OSError) as err:
        raise RunLogFormatError(f"{name}.parquet is not a readable Parquet file: {err}") from None
    expected = _schema(cls)
    if table.schema.names != expected.names:
        raise RunLogFormatError(f"{name}.parquet columns are {table.schema.names}, expected {expected.names}")
    for column in expected:
        found = table.schema.field(column.name).type
        if found != column.type:
            raise RunLogFormatError(f"{name}.parquet column {column.name!r} has type {found}, expected {column.type}")
        if table.column(column.name).null_count:
            raise RunLogFormatError(f"{name}.parquet column {column.name!r} has missing values")
    return [cls(**row) for row in table.to_pylist()]


def _read_strips(path: Path) -> list[TokenStrip]:
    file = path / "strips.parquet"
    if not file.is_file():
        raise RunLogFormatError(f"missing strips.parquet in {str(path)!r}")
    try:
        table = pq.read_table(file)
    except (pa.ArrowException, OSError) as err:
        raise RunLogFormatError(f"strips.parquet is not a readable Parquet file: {err}") from None
    if table.schema != STRIP_SCHEMA:
        raise RunLogFormatError(f"strips.parquet schema is {table.schema}, expected {STRIP_SCHEMA}")
    strips = []
    for row in table.to_pylist():
        arrays = {k: np.asarray(row[k], dtype=dtype) for k, dtype in STRIP_DTYPES.items()}
        if len({a.shape for a in arrays.values()}) != 1:
            raise RunLogFormatError(f"strips.parquet: step {row['step']} position {row['position']} has per-token "
                                    f"arrays of different lengths {[a.shape[0] for a in arrays.values()]}")
        strips.append(TokenStrip(step=row["step"], position=row["position"], sample_id=row["sample_id"], **arrays))
    return strips


def _read_embeddings(path: Path, n_candidates: int) -> np.ndarray:
    file = path / "embeddings.npy"
    if not file.is_file():
        raise RunLogFormatError(f"missing embeddings.npy in {str(path)!r}")
    try:
        emb = np.load(file, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise RunLogFormatError(f"embeddings.npy is not a plain numeric .npy array: {err}") from None
    if emb.dtype != np.float32 or emb.ndim != 2 or emb.shape[0] != n_candidates:
        raise RunLogFormatError(f"embeddings.npy is {emb.dtype} {emb.shape}, expected float32 "
                                f"({n_candidates}, D): one row per candidate")
    return emb


def _eval_summary(raw: Any) -> EvalSummary | None:
    if raw is None:
        return None
    names = [f.name for f in fields(EvalSummary)]
    if not isinstance(raw, dict) or sorted(raw) != sorted(names):
        raise RunLogFormatError(f"meta.json eval_summary must have fields {names}, found {raw!r}")
    return EvalSummary(loss=float("nan") if raw["loss"] is None else float(raw["loss"]),
                       maths_accuracy=float("nan") if raw["maths_accuracy"] is None else float(raw["maths_accuracy"]),
                       n_items=int(raw["n_items"]), n_maths=int(raw["n_maths"]))


def _fill_steps(log: RunLog, steps: list[StepRecord], candidates: list[CandidateRecord], emb: np.ndarray) -> None:
    """Regroup candidates and embedding rows by step, checking that the steps agree with each other."""
    start = 0
    for step in steps:
        end = start
        while end < len(candidates) and candidates[end].step == step.step:
            end += 1
        group = candidates[start:end]
        if not group:
            raise RunLogFormatError(f"step {step.step} has no candidates in candidates.parquet (rows must be in "
                                    f"step order)")
        if [c.position for c in group] != list(range(len(group))):
            raise RunLogFormatError(f"step {step.step}: candidate positions {[c.position for c in group]} are not "
                                    f"0..{len(group) - 1} in order")
        size = int(log.config.get("batch", len(group)))
        for first in range(0, len(group), max(size, 1)):
            ranks = [c.rank for c in group[first:first + size]]
            if sorted(ranks) != list(range(len(ranks))):
                raise RunLogFormatError(f"step {step.step}: ranks {ranks} of the group at position {first} are not a "
                                        f"permutation of 0..{len(ranks) - 1}")
        if sum(c.selected for c in group) != step.n_kept:
            raise RunLogFormatError(f"step {step.step}: {sum(c.selected for c in group)} selected candidates but "
                                    f"n_kept is {step.n_kept}")
        log.add_step(step, group, emb[start:end])
        start = end
    if start != len(candidates):
        raise RunLogFormatError(f"candidates.parquet row {start} (step {candidates[start].step}) belongs to no step "
                                f"in steps.parquet")
