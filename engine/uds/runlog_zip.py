"""A run log as one zip file (its folder's files at the top level, runlog_io's layout): what the app downloads and
reads back, with bounds.

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
MB = 2**20


@dataclass(frozen=True)
class ZipCaps:
    """The largest run log a zip may hold. The Selection Lab's own runs stay far below: 24 steps of B = 8 unpack to
    about 1 MB; its largest (2000 steps of B = 64) have 128,000 candidates."""

    max_zip_bytes: int = 50 * MB  # the zip as stored (the app's upload limit)
    max_unzipped_bytes: int = 400 * MB  # all members together, counted as they are decompressed
    max_rows: int = 200_000  # rows of any one table (Parquet footer), checked before the table is read
    max_strip_values: int = 4_000_000  # per-token values over all strips (list column leaves), before they are read

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if type(value) is not int or value < 1:
                raise ValueError(f"ZipCaps.{item.name}={value!r} must be an integer >= 1")


def export_runlog_zip(log: RunLog, folder: str | Path, caps: ZipCaps = ZipCaps(), name: str = "runlog") -> Path:
    """Write `log` as folder/<name>.zip (the files at the top level, deflated: what import_runlog_zip reads back); a
    zip the import would refuse for its size is not kept."""
    folder = Path(folder)
    archive = folder / f"{name}.zip"
    with tempfile.TemporaryDirectory(prefix="runlog-", dir=folder) as staging:
        save_runlog(log, staging)
        with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as out:
            for member in RUNLOG_FILES:
                out.write(Path(staging) / member, arcname=member)
    size = archive.stat().st_size
    if size > caps.max_zip_bytes:
        archive.unlink()
        raise ValueError(f"the run log zips to {size / MB:.1f} MB, over the {caps.max_zip_bytes / MB:.3g} MB limit; "
                         "run fewer steps")
    return archive


def import_runlog_zip(path: str | Path, folder: str | Path, caps: ZipCaps = ZipCaps()) -> RunLog:
    """Read a run log zip, unpacking it into a fresh folder under `folder` that is removed before this returns or
    raises. Anything else, or anything over `caps`, raises RunLogFormatError (a ValueError) naming the file and
    what is wrong."""
    path = Path(path)
    if path.suffix.lower() != ".zip":
        raise RunLogFormatError(f"{path.name} is not a .zip; give the zip a run log export produced ('Download run "
                                "log')")
    size = path.stat().st_size
    if size > caps.max_zip_bytes:
        raise RunLogFormatError(f"{path.name} is {size / MB:.1f} MB, over the {caps.max_zip_bytes / MB:.3g} MB "
                                "limit; use a shorter run")
    target = Path(tempfile.mkdtemp(prefix="runlog-", dir=folder))
    try:
        _unpack(path, target, caps)
        _check_sizes(target, caps)
        log = load_runlog(target)
    except RunLogFormatError as err:
        raise RunLogFormatError(f"{path.name}: {str(err).replace(str(target), 'the run log')}") from None
    finally:
        shutil.rmtree(target, ignore_errors=True)
    if not log.steps:
        raise RunLogFormatError(f"{path.name} holds a run log with no steps; nothing to show")
    return log


def _unpack(path: Path, target: Path, caps: ZipCaps) -> None:
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            names = sorted(m.filename for m in members)
            unexpected = [n for n in names if n not in RUNLOG_FILES]
            missing = [n for n in RUNLOG_FILES if n not in names]
            if unexpected or missing or len(names) != len(RUNLOG_FILES):
                raise RunLogFormatError(f"not a run log: it should hold exactly {', '.join(RUNLOG_FILES)} at its top "
                                        f"level; missing {missing or 'none'}, unexpected {unexpected[:5] or 'none'}")
            odd = [m.filename for m in members if m.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)]
            if odd:
                raise RunLogFormatError(f"{', '.join(odd)} use a compression other than deflate; zip the run log "
                                        "folder with ordinary (deflate) compression, as 'Download run log' does")
            unpacked = 0
            for member in members:  # names were checked against RUNLOG_FILES: no paths, no '..'
                with archive.open(member) as source, (target / member.filename).open("wb") as sink:
                    while chunk := source.read(CHUNK_BYTES):
                        unpacked += len(chunk)
                        if unpacked > caps.max_unzipped_bytes:
                            raise RunLogFormatError(f"unpacks to more than {caps.max_unzipped_bytes / MB:.3g} MB; "
                                                    "use a shorter run")
                        sink.write(chunk)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError) as err:
        raise RunLogFormatError(f"not a readable zip file ({err}); give the zip a run log export produced") from None


def _check_sizes(folder: Path, caps: ZipCaps) -> None:
    """Row counts (and the strips' per-token values) from the Parquet footers, before any table is read."""
    for name in (*TABLES, "strips"):
        try:
            meta = pq.ParquetFile(folder / f"{name}.parquet").metadata
        except (pa.ArrowException, OSError) as err:
            raise RunLogFormatError(f"{name}.parquet is not a readable Parquet file: {err}") from None
        if meta.num_rows > caps.max_rows:
            raise RunLogFormatError(f"{name}.parquet has {meta.num_rows:,} rows, over the {caps.max_rows:,} a run log "
                                    "may hold; use a shorter run")
        if name == "strips":
            values = sum(meta.row_group(g).column(c).num_values for g in range(meta.num_row_groups)
                         for c in range(meta.num_columns))
            if values > caps.max_strip_values:
                raise RunLogFormatError(f"strips.parquet holds {values:,} values, over the {caps.max_strip_values:,} "
                                        "a run log may hold; use a shorter run")
