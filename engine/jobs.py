"""Model jobs: a cancel token the decoding loop checks at every step, a limit on concurrent model jobs that holds,
and a worker thread that runs one job and hands its progress to the caller.

A web server frees its queue slot as soon as a client cancels or disconnects, but a thread doing the work goes on
until the work itself looks at a token. So the limit lives here: a job holds its slot from when its work starts to
when its work has really returned, and a job still waiting for a slot can be cancelled too. Closing the iterator of
`run_job` (what Gradio does to a cancelled or abandoned event) cancels the job; its decode stops within one step.
"""
from __future__ import annotations

import collections
import queue
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator, TypeVar

from engine.decoding.contracts import DecodeCancelled, StepEvent, StepObserver

T = TypeVar("T")
Emit = Callable[[Any], None]  # hands one progress item to the caller
Work = Callable[["CancelToken", Emit], T]  # the job: checks the token (a decode: passes token.observer() to the loop)


class JobCancelled(DecodeCancelled):
    """A model job stopped by its token (Cancel, or the caller gave up)."""


class CancelToken:
    """One job's cancel flag. Pass `token.observer()` to `generate` / `decode`: it stops the decode at the end of the
    step in progress. Work that is not a decode calls `check()` between its own steps. Tokens made from one event (a
    session's holder and its current run, app/session.py) share the flag."""

    def __init__(self, event: threading.Event | None = None) -> None:
        self._event = event or threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        if self._event.is_set():
            raise JobCancelled("cancelled")

    def observer(self) -> "CancelObserver":
        return CancelObserver(self)


class CancelObserver(StepObserver):
    """An observer of the decoding loop that stops the decode at the end of the step in progress once its token is
    cancelled (no copies beyond what any observer gets)."""

    def __init__(self, token: CancelToken) -> None:
        self.token = token

    def step(self, event: StepEvent) -> None:
        if self.token.cancelled:
            raise JobCancelled(f"cancelled after step {event.step}")


class JobSlots:
    """At most `slots` jobs run at once, counted from when a job's work starts to when it has returned. Also keeps
    counts a benchmark or a test reads: jobs running now, the most ever at once, and how finished jobs ended."""

    def __init__(self, slots: int) -> None:
        if type(slots) is not int or slots < 1:
            raise ValueError(f"slots={slots!r} must be an integer >= 1")
        self.slots = slots
        self._semaphore = threading.BoundedSemaphore(slots)
        self._lock = threading.Lock()
        self.running = 0  # jobs whose work is running now
        self.peak = 0  # most jobs ever running at once
        self.outcomes: collections.Counter[str] = collections.Counter()  # "done" / "cancelled" / "error" -> count

    @contextmanager
    def hold(self, token: CancelToken, poll_seconds: float = 0.05) -> Iterator[None]:
        """Wait for a slot (leaving the line with JobCancelled if the token is cancelled meanwhile), hold it while
        the body runs."""
        while not self._semaphore.acquire(timeout=poll_seconds):
            token.check()
        with self._lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            yield
        finally:
            with self._lock:
                self.running -= 1
            self._semaphore.release()

    def record(self, outcome: str) -> None:
        with self._lock:
            self.outcomes[outcome] += 1


def run_job(work: Work, slots: JobSlots, token: CancelToken | None = None, poll_seconds: float = 0.25,
            name: str = "model-job", newest_only: bool = True) -> Iterator[tuple[str, Any]]:
    """Run `work(token, emit)` in a worker thread once `slots` has room. Yields (kind, payload): ("starting", None)
    first, before the worker starts (a server that can close an iterator only after its first step, as Gradio, never
    loses a running job); then ("waiting", None) / ("running", None) every poll_seconds in which nothing else
    happened (keep-alive ticks: a caller can be closed only while it is suspended); ("progress", item) with the newest
    item emitted since the last yield (older ones are skipped; with newest_only=False every item, in order); then
    ("done", the work's return value). The work's
    exception (JobCancelled included) is raised here. Closing the iterator early cancels the token; the slot is freed
    when the work stops. `name` names the worker thread."""
    token = token or CancelToken()
    messages: queue.Queue = queue.Queue()

    def worker() -> None:
        outcome = "error"
        try:
            with slots.hold(token):
                messages.put(("running", None))
                messages.put(("done", work(token, lambda item: messages.put(("progress", item)))))
            outcome = "done"
        except DecodeCancelled as err:
            outcome = "cancelled"
            messages.put(("error", err))
        except BaseException as err:  # handed to the caller's thread, which raises it
            messages.put(("error", err))
        finally:
            slots.record(outcome)

    state = "waiting"
    try:
        yield "starting", None
        threading.Thread(target=worker, name=name, daemon=True).start()
        while True:
            try:
                pending = [messages.get(timeout=poll_seconds)]
            except queue.Empty:
                yield state, None
                continue
            while not messages.empty():
                pending.append(messages.get())
            progress = [payload for kind, payload in pending if kind == "progress"]
            state = "running" if any(kind == "running" for kind, _ in pending) else state
            for item in progress[-1:] if newest_only else progress:
                yield "progress", item
            for kind, payload in pending:
                if kind == "done":
                    yield "done", payload
                    return
                if kind == "error":
                    raise payload
    finally:
        token.cancel()
