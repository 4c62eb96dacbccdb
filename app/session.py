"""What one browser session owns, for both tabs: a cancel token, a private folder for the files it writes, and the
worker thread a long job (a decode, a selection run) runs in while the event's generator streams its progress.

Closing the stream (Gradio does so when the client goes away or the event is cancelled) cancels the job's token, so
the job stops within one step and only then frees its slot: at most one decode and one selection run at a time
(DECODE_JOBS, SELECTION_JOBS), however many clients cancel. The folders are cleaned by app/session_files.py.
"""
from __future__ import annotations

import os
import re
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

from engine.jobs import CancelToken as JobToken
from engine.jobs import JobSlots, run_job

SESSION_ROOT = Path(tempfile.gettempdir()) / "dllm-app"  # one folder per session below it (Gradio serves from tmp)
DECODE_JOBS = JobSlots(1)  # decodes at once, process-wide (a decode uses every core of a 2-core CPU, and the GPU)
SELECTION_JOBS = JobSlots(1)  # selection runs at once, process-wide (a run trains a model copy on every core)


class CancelToken(JobToken):
    """Cancel for one session (kept in gr.State) or one run: an engine.jobs.CancelToken, which the decoding loop
    checks every step through its observer(). `start()` gives a new run its own token, which the session's
    `cancel()` reaches until the next `start()`; an earlier Cancel never stops a later run. A deep copy (gr.State
    copies its initial value per session) is a fresh token, never a shared one."""

    def __deepcopy__(self, memo: dict) -> "CancelToken":
        return CancelToken()

    def start(self) -> "CancelToken":
        """A fresh token for a new run of this session."""
        self._event = threading.Event()
        return CancelToken(self._event)


def session_folder(session_id: str | None = None) -> Path:
    """The session's private folder under SESSION_ROOT (created on first use): named for the session when an id is
    given (Gradio's session hash, cleaned of anything but letters, digits, - and _), else a fresh one whose path the
    caller keeps in its gr.State."""
    SESSION_ROOT.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9_-]", "", session_id or "")
    if not safe:
        return Path(tempfile.mkdtemp(prefix="session-", dir=SESSION_ROOT))
    folder = SESSION_ROOT / safe
    folder.mkdir(exist_ok=True)
    os.utime(folder)  # in use: the janitor (app/session_files.py) removes folders untouched for long
    return folder


def run_in_worker(job: Callable[[Callable[[Any], None]], Any], token: CancelToken, slots: JobSlots, *, name: str,
                  poll_seconds: float = 0.25, newest_only: bool = True) -> Iterator[tuple[str, Any]]:
    """Run `job(emit)` as a model job (engine.jobs.run_job: a worker thread holding one of `slots` until the job has
    really returned); yield ("starting" | "waiting" | "running", None) keep-alives (waiting: another job holds the
    slot), ("progress", item) with the newest item it emitted (every item with newest_only=False), then ("done", its
    result). An exception of the job is
    raised here, in the reading thread. The job checks the token between its steps (a decode: through
    token.observer()); closing this iterator cancels the token, so the job stops within one step and only then frees
    its slot."""
    return run_job(lambda run, emit: job(emit), slots, token, poll_seconds, name, newest_only)
