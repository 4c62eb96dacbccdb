"""The janitor of temporary files: session folders (app/session.py) and Gradio's cache go away.

Every file the app writes for a session (exported traces, selected JSONL, run-log zips, unpacked uploads) lives in a
folder under app/session.py's SESSION_ROOT. A folder is removed when its session ends (the page is closed:
demo.unload for the Decoding Explorer, gr.State's delete_callback for the Selection Lab), when it has not been touched
for MAX_AGE_SECONDS (a janitor thread sweeps every SWEEP_SECONDS; API clients never "close"), and, oldest first,
whenever the folders together pass MAX_TEMP_BYTES. Gradio's own cache (uploads, files handed to the page) is aged
out by its delete_cache with the same period and age (app/main.py), and capped by the janitor at
MAX_GRADIO_CACHE_BYTES.
"""
from __future__ import annotations

import logging
import re
import shutil
import threading
import time
from pathlib import Path
from typing import Callable, Iterable

import gradio as gr

from app.session import SESSION_ROOT

MAX_TEMP_BYTES = 2 * 2**30  # all session folders together; the oldest are removed past this
MAX_GRADIO_CACHE_BYTES = 2 * 2**30  # Gradio's files of this app (uploads, downloads); the oldest are removed past this
MAX_AGE_SECONDS = 6 * 3600  # a folder untouched this long is removed (its downloads are gone from the page too)
SWEEP_SECONDS = 600  # the janitor's period, and Gradio's delete_cache frequency
LOG = logging.getLogger(__name__)


def root() -> Path:
    SESSION_ROOT.mkdir(parents=True, exist_ok=True)
    return SESSION_ROOT


def remove_folder(folder: str | Path | None) -> None:
    """Remove a session folder (only ever one directly under SESSION_ROOT)."""
    if folder and Path(folder).resolve().parent == root().resolve():
        shutil.rmtree(folder, ignore_errors=True)


def end_session(request: gr.Request) -> None:
    """demo.unload: the page was closed; its folder named by the session hash (the Decoding Explorer's) goes."""
    safe = re.sub(r"[^A-Za-z0-9_-]", "", (request.session_hash if request is not None else None) or "")
    if safe:
        remove_folder(root() / safe)


def size_of(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def sweep(entries: Iterable[Path], max_bytes: int, max_age_seconds: float | None = None,
          keep: Iterable[Path] = ()) -> list[Path]:
    """Remove entries (files or folders) older than max_age_seconds, then the oldest until the rest weigh at most
    max_bytes, never one in `keep`; returns what was removed."""
    keep = {Path(k).resolve() for k in keep}
    now, removed, alive = time.time(), [], []
    for entry in entries:
        try:
            alive.append((entry.stat().st_mtime, entry, size_of(entry)))
        except FileNotFoundError:
            continue
    alive.sort(key=lambda item: item[0])
    total = sum(size for _, _, size in alive)
    for mtime, entry, size in alive:
        old = max_age_seconds is not None and now - mtime > max_age_seconds
        if entry.resolve() in keep or not (old or total > max_bytes):
            continue
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
        total -= size
    return removed


def make_room(folder: Path, max_bytes: int | None = None) -> None:
    """Before a session writes into `folder`: sweep the other folders, oldest first, until all fit max_bytes; refuse
    with a clear message if this session's own files already fill it."""
    max_bytes = MAX_TEMP_BYTES if max_bytes is None else max_bytes
    sweep(root().iterdir(), max_bytes, MAX_AGE_SECONDS, keep=[folder])
    used = sum(size_of(entry) for entry in root().iterdir())
    if used > max_bytes:
        raise gr.Error(f"The server's temporary space is full ({used / 2**20:.0f} MB of {max_bytes / 2**20:.0f} MB "
                       "in use); reload the page to start a fresh session, or try again later.")


def start_janitor(gradio_files: Callable[[], Iterable[str]] = lambda: (),
                  period_seconds: float = SWEEP_SECONDS) -> threading.Thread:
    """A daemon thread that sweeps the session folders (age and MAX_TEMP_BYTES) and Gradio's files of this app
    (MAX_GRADIO_CACHE_BYTES) every period_seconds."""
    def loop() -> None:
        while True:
            try:
                sweep(root().iterdir(), MAX_TEMP_BYTES, MAX_AGE_SECONDS)
                sweep([Path(f) for f in gradio_files()], MAX_GRADIO_CACHE_BYTES)
            except OSError as err:
                LOG.warning("temporary-file sweep failed: %s", err)
            time.sleep(period_seconds)

    thread = threading.Thread(target=loop, name="temp-janitor", daemon=True)
    thread.start()
    return thread
