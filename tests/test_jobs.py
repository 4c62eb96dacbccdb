"""Model jobs (issue 16, item 2): a cancelled decode stops within one step, a cancelled job frees its slot only when
its work has stopped (so the limit holds), a job waiting for a slot can leave the line, errors reach the caller."""
import threading

import pytest
import torch

from engine.decoding import LowConfidence, generate
from engine.jobs import CancelToken, JobCancelled, JobSlots, run_job
from tests.conftest import ToyModel


class GatedModel(ToyModel):
    """The toy dLLM, whose forward number `gate_at` waits until the test opens the gate (a step in progress)."""

    def __init__(self, gate_at: int = 0) -> None:
        super().__init__()
        self.gate_at, self.entered, self.gate = gate_at, threading.Event(), threading.Event()

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        if self.calls == self.gate_at:
            self.entered.set()
            self.gate.wait(timeout=60)
        return super().__call__(ids)


def decode_work(model):
    def work(token, emit):
        return generate(model, torch.zeros(1, 3, dtype=torch.long), LowConfidence(steps=64), gen_length=64,
                        block_length=16, mask_id=39, observers=[token.observer()])
    return work


def test_a_cancel_stops_the_decode_at_the_end_of_the_step_in_progress():
    token = CancelToken()

    class CancelOnThirdForward(ToyModel):
        def __call__(self, ids):
            if self.calls == 2:
                token.cancel()  # a Cancel arriving while the third forward runs
            return super().__call__(ids)

    model = CancelOnThirdForward()
    with pytest.raises(JobCancelled, match="cancelled after step 2"):
        decode_work(model)(token, None)
    assert model.calls == 3  # no forward pass after the cancelled step


def test_the_slot_is_freed_only_when_the_cancelled_work_has_stopped():
    slots = JobSlots(1)
    first, second = GatedModel(gate_at=2), GatedModel(gate_at=-1)
    running = run_job(decode_work(first), slots, poll_seconds=0.02)
    next(running), next(running)  # the worker starts on the second next()
    assert first.entered.wait(timeout=30)  # the first job is inside its third forward pass
    running.close()  # its caller gives up (Gradio frees its own queue slot here)
    waiting = run_job(decode_work(second), slots, poll_seconds=0.02)
    assert [next(waiting)[0] for _ in range(3)] == ["starting", "waiting", "waiting"]
    assert slots.running == 1 and second.calls == 0
    first.gate.set()  # the step in progress ends; the cancelled decode stops there
    kinds = [kind for kind, _ in waiting]
    assert kinds[-1] == "done" and first.calls == 3 and second.calls == 64
    assert slots.peak == 1 and slots.outcomes == {"cancelled": 1, "done": 1}


def test_a_job_waiting_for_a_slot_leaves_the_line_when_cancelled():
    slots = JobSlots(1)
    holder = GatedModel(gate_at=0)
    running = run_job(decode_work(holder), slots, poll_seconds=0.02)
    next(running), next(running)
    assert holder.entered.wait(timeout=30)
    queued_model = ToyModel()
    queued = run_job(decode_work(queued_model), slots, poll_seconds=0.02)
    assert [next(queued)[0] for _ in range(3)] == ["starting", "waiting", "waiting"]
    queued.close()
    holder.gate.set()
    assert [kind for kind, _ in running][-1] == "done"
    assert queued_model.calls == 0 and slots.outcomes == {"cancelled": 1, "done": 1}


def test_progress_is_the_newest_item_and_errors_reach_the_caller():
    slots = JobSlots(2)

    def work(token, emit):
        for i in range(5):
            emit(i)
        return "result"

    events = list(run_job(work, slots, poll_seconds=0.02))
    assert events[-1] == ("done", "result") and [p for k, p in events if k == "progress"][-1] == 4

    def broken(token, emit):
        raise ValueError("gen_length=3 is refused")

    with pytest.raises(ValueError, match="gen_length=3"):
        list(run_job(broken, slots))
    assert slots.outcomes == {"done": 1, "error": 1}
    with pytest.raises(ValueError, match="slots=0"):
        JobSlots(0)
