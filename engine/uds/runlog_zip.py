"""A run log as one zip file (its folder's files at the top level, runlog_io's layout): what the app downloads and
reads back. Reading is bounded: the zip's size, its unpacked size and its member names are checked before anything
is extracted, so a zip bomb or a path like ../x is refused with the reason."""
from __future__ import annotations

import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from engine.uds.runlog import RunLog
from engine.uds.runlog_io import load_runlog, save_runlog

RUNLOG_FILES = ("meta.json", "candidates.parquet", "steps.parquet", "evictions.parquet", "samples.parquet",
                "eval.parquet", "strips.parquet", "embeddings.npy")
MB = 2**20


@dataclass(frozen=True)
class ZipCaps:
    max_zip_bytes: int = 50 * MB  # a run log zip larger than this is refused (upload limit of the app)
    max_unzipped_bytes: int = 400 * MB  # the members' declared sizes together; refuses zip bombs before extracting

    def __post_init__(self) -> None:
        for name in ("max_zip_bytes", "max_unzipped_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be at least 1 byte")


def export_runlog_zip(log: RunLog, folder: str | Path, caps: ZipCaps = ZipCaps(), name: str = "runlog") -> Path:
    """Write `log` as folder/<name>.zip (the file import_runlog_zip reads back); a zip the import would refuse for
    its size is not kept."""
    folder = Path(folder)
    staging = Path(tempfile.mkdtemp(prefix="runlog-", dir=folder))
    try:
        save_runlog(log, staging)
        archive = Path(shutil.make_archive(str(folder / name), "zip", root_dir=staging))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    size = archive.stat().st_size
    if size > caps.max_zip_bytes:
        archive.unlink()
        raise ValueError(f"the run log zips to {size / MB:.1f} MB, over the {caps.max_zip_bytes / MB:.0f} MB limit; "
                         "run fewer steps")
    return archive


def import_runlog_zip(path: str | Path, folder: str | Path, caps: ZipCaps = ZipCaps()) -> RunLog:
    """Read a run log zip, unpacking it into a temporary folder under `folder` (removed afterwards). Raises
    ValueError naming the file and what is wrong."""
    path = Path(path)
    if path.suffix.lower() != ".zip":
        raise ValueError(f"{path.name} is not a .zip; give the zip a run log export produced ('Download run log')")
    size = path.stat().st_size
    if size > caps.max_zip_bytes:
        raise ValueError(f"{path.name} is {size / MB:.1f} MB, over the {caps.max_zip_bytes / MB:.0f} MB limit; "
                         "use a shorter run")
    target = Path(tempfile.mkdtemp(prefix="runlog-", dir=folder))
    try:
        _extract(path, target, caps)
        try:
            log = load_runlog(target)
        except ValueError as err:
            raise ValueError(f"{path.name}: {str(err).replace(str(target), 'the run log')}") from None
    finally:
        shutil.rmtree(target, ignore_errors=True)
    if not log.steps:
        raise ValueError(f"{path.name} holds a run log with no steps; nothing to show")
    return log


def _extract(path: Path, target: Path, caps: ZipCaps) -> None:
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            names = sorted(m.filename for m in members)
            unexpected = [n for n in names if n not in RUNLOG_FILES]
            missing = [n for n in RUNLOG_FILES if n not in names]
            if unexpected or missing:
                raise ValueError(f"{path.name} is not a run log: it should hold exactly {', '.join(RUNLOG_FILES)} at "
                                 f"its top level; missing {missing or 'none'}, unexpected {unexpected[:5] or 'none'}")
            if sum(m.file_size for m in members) > caps.max_unzipped_bytes:
                raise ValueError(f"{path.name} unpacks to more than {caps.max_unzipped_bytes / MB:.0f} MB; use a "
                                 "shorter run")
            for member in members:  # names were checked against RUNLOG_FILES: no paths, no '..'
                (target / member.filename).write_bytes(archive.read(member))
    except zipfile.BadZipFile:
        raise ValueError(f"{path.name} is not a readable zip file; give the zip a run log export produced") from None
