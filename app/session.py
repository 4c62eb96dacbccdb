"""What one browser session owns, for both tabs: a cancel token, a private folder for the files it writes, and the
worker thread a long job (a decode, a selection run) runs in while the event's generator streams its progress.

Closing the stream (Gradio does so when the client goes away or the event is cancelled) cancels the job's token, so
the job stops at its next step and frees its slot.
"""
from __future__ import annotations

import queue
import re
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

SESSION_ROOT = Path(tempfile.gettempdir()) / "dllm-app"  # one folder per session below it (Gradio serves from tmp)
JOIN_SECONDS = 30.0  # how long closing a stream waits for its worker to stop (a model job frees the model first)


class CancelToken:
    """Cancel for one session (kept in gr.State) or one run. `start()` gives a new run its own token, which the
    session's `cancel()` reaches until the next `start()`; an earlier Cancel never stops a later run. A deep copy
    (gr.State copies its initial value per session) is a fresh token, never a shared one."""

    def __init__(self, event: threading.Event | None = None) -> None:
        self._event = event or threading.Event()

    def __deepcopy__(self, memo: dict) -> "CancelToken":
        return CancelToken()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def cancel(self) -> None:
        self._event.set()

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
    return folder


def run_in_worker(job: Callable[[Callable[[Any], None]], Any], token: CancelToken, *, name: str,
                  poll_seconds: float | None = None, newest_only: bool = False,
                  join_seconds: float = JOIN_SECONDS) -> Iterator[tuple[str, Any]]:
    """Run `job(emit)` in a worker thread; yield ("progress", item) for what it emits, ("tick", None) every
    poll_seconds while it is quiet (when given), then ("done", its result). An exception of the job is raised here,
    in the reading thread. newest_only skips progress items the reader was too slow to take. The job checks
    `token.cancelled` between its steps; closing this iterator cancels the token and waits up to join_seconds."""
    messages: queue.Queue = queue.Queue()

    def work() -> None:
        try:
            messages.put(("done", job(lambda item: messages.put(("progress", item)))))
        except BaseException as err:  # handed to the reading thread, which raises it
            messages.put(("error", err))

    worker = threading.Thread(target=work, name=name, daemon=True)
    worker.start()
    try:
        while True:
            try:
                kind, payload = messages.get(timeout=poll_seconds)
            except queue.Empty:
                yield "tick", None
                continue
            while newest_only and kind == "progress" and not messages.empty():
                kind, payload = messages.get()
            if kind == "error":
                raise payload
            yield kind, payload
            if kind == "done":
                return
    finally:
        token.cancel()
        worker.join(timeout=join_seconds)
