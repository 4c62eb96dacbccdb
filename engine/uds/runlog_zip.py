"""A run log as one zip file (what the Selection Lab downloads and loads back), written and read with bounds.

Reading trusts nothing the archive declares: member names must be exactly the run-log files, members must be stored
or deflated (bzip2 and LZMA can expand gigabytes out of one small read), bytes are counted as they are decompressed
in 1 MB chunks and reading stops at the cap, table sizes are checked from the Parquet footers before any table is
read, and the unpacked folder is removed on every path, success or error.
"""
from __future__ import annotations

import shutil
import tempfile
import zipfile
from dataclasses import dataclass, fields
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from engine.uds.runlog import RunLog
from engine.uds.runlog_io import TABLES, RunLogFormatError, load_runlog, save_runlog

RUNLOG_FILES = ("meta.json", *(f"{name}.parquet" for name in (*TABLES, "strips")), "embeddings.npy")
CHUNK_BYTES = 2**20  # decompressed per read


@dataclass(frozen=True)
class RunLogZipCaps:
    """The largest run log a zip may hold. The Selection Lab's own runs stay far below: 24 steps of B = 8 unpack to
    about 1 MB; its largest (2000 steps of B = 64) have 128,000 candidates."""

    zip_bytes: int = 50 * 2**20  # the zip as stored
    unzipped_bytes: int = 400 * 2**20  # all members together, counted as they are decompressed
    rows: int = 200_000  # rows of any one table (Parquet footer), before the table is read
    strip_values: int = 4_000_000  # per-token values over all strips (list column leaves), before they are read

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if type(value) is not int or value < 1:
                raise ValueError(f"RunLogZipCaps.{item.name}={value!r} must be an integer >= 1")


def write_runlog_zip(log: RunLog, path: str | Path) -> Path:
    """Save `log` as a zip of its run-log folder (the files at the top level, deflated); returns the path."""
    path = Path(path)
    with tempfile.TemporaryDirectory(dir=path.parent) as folder:
        save_runlog(log, folder)
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name in RUNLOG_FILES:
                archive.write(Path(folder) / name, arcname=name)
    return path


def read_runlog_zip(path: str | Path, work_dir: str | Path, caps: RunLogZipCaps = RunLogZipCaps()) -> RunLog:
    """Read a zip written by write_runlog_zip, unpacking into a fresh folder under `work_dir` that is removed
    before this returns or raises. Anything else, or anything over `caps`, raises RunLogFormatError saying why."""
    path = Path(path)
    size = path.stat().st_size
    if size > caps.zip_bytes:
        raise RunLogFormatError(f"the zip is {size / 2**20:.1f} MB, over the {caps.zip_bytes / 2**20:.3g} MB limit; "
                                "upload a shorter run")
    target = Path(tempfile.mkdtemp(prefix="runlog-", dir=work_dir))
    try:
        _unpack(path, target, caps)
        _check_sizes(target, caps)
        return load_runlog(target)
    except RunLogFormatError as err:
        raise RunLogFormatError(str(err).replace(str(target), "the run log")) from None
    finally:
        shutil.rmtree(target, ignore_errors=True)


def _unpack(path: Path, target: Path, caps: RunLogZipCaps) -> None:
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            names = sorted(m.filename for m in members)
            unexpected = [n for n in names if n not in RUNLOG_FILES]
            missing = [n for n in RUNLOG_FILES if n not in names]
            if unexpected or missing or len(names) != len(RUNLOG_FILES):
                raise RunLogFormatError(f"this is not a run log: it should hold exactly {', '.join(RUNLOG_FILES)} "
                                        f"at its top level; missing {missing or 'none'}, unexpected "
                                        f"{unexpected[:5] or 'none'}")
            odd = [m.filename for m in members if m.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)]
            if odd:
                raise RunLogFormatError(f"{', '.join(odd)} use a compression other than deflate; zip the run log "
                                        "folder with ordinary (deflate) compression, as 'Download run log' does")
            unpacked = 0
            for member in members:  # names were checked against RUNLOG_FILES: no paths, no '..'
                with archive.open(member) as source, (target / member.filename).open("wb") as sink:
                    while chunk := source.read(CHUNK_BYTES):
                        unpacked += len(chunk)
                        if unpacked > caps.unzipped_bytes:
                            raise RunLogFormatError(f"the zip unpacks to more than "
                                                    f"{caps.unzipped_bytes / 2**20:.3g} MB; upload a shorter run")
                        sink.write(chunk)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError) as err:
        raise RunLogFormatError(f"this is not a readable zip file ({err}); upload the zip that 'Download run log' "
                                "produced") from None


def _check_sizes(folder: Path, caps: RunLogZipCaps) -> None:
    """Row counts (and the strips' per-token values) from the Parquet footers, before any table is read."""
    for name in (*TABLES, "strips"):
        try:
            meta = pq.ParquetFile(folder / f"{name}.parquet").metadata
        except (pa.ArrowException, OSError) as err:
            raise RunLogFormatError(f"{name}.parquet is not a readable Parquet file: {err}") from None
        if meta.num_rows > caps.rows:
            raise RunLogFormatError(f"{name}.parquet has {meta.num_rows:,} rows, over the {caps.rows:,} a run log "
                                    "may hold; upload a shorter run")
        if name == "strips":
            values = sum(meta.row_group(g).column(c).num_values for g in range(meta.num_row_groups)
                         for c in range(meta.num_columns))
            if values > caps.strip_values:
                raise RunLogFormatError(f"strips.parquet holds {values:,} values, over the {caps.strip_values:,} a "
                                        "run log may hold; upload a shorter run")
