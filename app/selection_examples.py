"""Run logs shipped with the app (assets/examples/<set>/*.zip): whole experiments the Selection Lab loads without a
model, e.g. the fair test's runs (docs/UDS_RESULTS.md), so its seeds view shows mean +- sd per arm at once.

A set is a folder of compact run-log zips (engine/uds/runlog_compact.py), one per run, named ARM-sSEED.zip; they are
read with the same bounded zip reader as an upload and kept once per process (views only read run logs)."""
from __future__ import annotations

import functools
import tempfile
from pathlib import Path

from engine.uds.runlog import RunLog
from engine.uds.runlog_zip import import_runlog_zip

FOLDER = Path(__file__).resolve().parents[1] / "assets" / "examples"
# label on the page -> folder under FOLDER; one entry per shipped set.
SETS = {"fair test: 5 arms x 3 seeds (compact run logs)": "fair_test"}


def example_sets(folder: Path | None = None) -> list[str]:
    """Labels of the sets whose folder (under `folder`, default FOLDER) holds at least one run-log zip."""
    return [label for label, name in SETS.items() if any(((folder or FOLDER) / name).glob("*.zip"))]


def load_set(label: str, folder: Path | None = None) -> list[tuple[str, RunLog]]:
    """Every run of the set as (name, run log), in file-name order; a ValueError names an unknown or empty set."""
    if label not in SETS:
        raise ValueError(f"example set {label!r} is unknown; pick one of: {', '.join(SETS)}")
    return list(_load(SETS[label], str(folder or FOLDER)))


@functools.lru_cache(maxsize=4)
def _load(name: str, folder: str) -> tuple[tuple[str, RunLog], ...]:
    files = sorted((Path(folder) / name).glob("*.zip"))
    if not files:
        raise ValueError(f"no run logs are shipped in {name}/ (expected ARM-sSEED.zip files)")
    with tempfile.TemporaryDirectory(prefix="runlog-examples-") as scratch:
        return tuple((f"{name} {path.stem}", import_runlog_zip(path, scratch)) for path in files)
