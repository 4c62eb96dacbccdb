"""Trainer callbacks of a selection run: the run log (RunLogCallback) and progress with Cancel (ControlCallback).

Both receive `on_selection(args, state, control, step)` from UDSTrainer after each micro-batch's backward (a
`SelectionStep` holding every process's picks, so the log is the same merged log on every process) and the Trainer's
usual events. Cancel works through the Trainer's own control: `control.should_training_stop` ends the loop after the
current optimizer step.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
from transformers import TrainerCallback

from engine.uds.runlog import RunLog, SampleRecord, StepRecord
from engine.uds.runlog_io import save_runlog

Progress = Callable[[int, int, str], None]  # (optimizer steps done, total, message)


class RunLogCallback(TrainerCallback):
    """Appends one StepRecord, B records per group and the evictions per micro-batch to `log`.

    `samples` (sample id -> record) lets the log carry the text of every candidate it saw. With `folder`, the main
    process saves the log there after every `save_every` optimizer steps and at the end (written beside the folder,
    then swapped in), so a run that dies keeps every step finished before its last save.
    """

    def __init__(self, log: RunLog, samples: Mapping[str, SampleRecord] | None = None, folder: str | None = None,
                 save_every: int = 1) -> None:
        self.log, self.samples, self.folder, self.save_every = log, samples or {}, folder, save_every
        self._seen: dict[str, SampleRecord] = {}

    def on_selection(self, args: Any, state: Any, control: Any, step: Any) -> None:
        candidates = [c for pick in step.picks for c in pick.candidates]
        self.log.add_step(
            StepRecord(step=step.step, optimizer_step=step.optimizer_step, learning_rate=step.learning_rate,
                       train_loss=step.train_loss, seconds=step.seconds,
                       scoring_seconds=max(p.scoring_seconds for p in step.picks),
                       n_kept=sum(len(p.kept) for p in step.picks), buffer_size=step.buffer_size),
            candidates, np.concatenate([p.z for p in step.picks]), step.evictions,
            [s for pick in step.picks for s in pick.strips])
        for c in candidates:
            if c.sample_id in self.samples:
                self._seen.setdefault(c.sample_id, self.samples[c.sample_id])
        self.log.samples = list(self._seen.values())

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step % self.save_every == 0:
            self.save(state)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        stopped_early = control.should_training_stop and 0 < state.max_steps and state.global_step < state.max_steps
        self.log.config["status"] = "cancelled" if stopped_early else "completed"
        self.save(state)

    def save(self, state: Any) -> None:
        """Write the log to `folder` (main process only); a no-op without a folder."""
        if self.folder is None or not state.is_world_process_zero:
            return
        target = Path(self.folder)
        fresh, old = target.with_name(target.name + ".writing"), target.with_name(target.name + ".old")
        shutil.rmtree(fresh, ignore_errors=True)
        save_runlog(self.log, fresh)
        if target.exists():
            target.rename(old)
        fresh.rename(target)
        shutil.rmtree(old, ignore_errors=True)


class ControlCallback(TrainerCallback):
    """Calls `progress` after every optimizer step and stops training when `should_stop()` turns True."""

    def __init__(self, progress: Progress | None = None, should_stop: Callable[[], bool] | None = None) -> None:
        self.progress, self.should_stop = progress, should_stop
        self.cancelled = False
        self._losses: list[float] = []

    def on_selection(self, args: Any, state: Any, control: Any, step: Any) -> None:
        self._losses.append(step.train_loss)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        loss = float(np.nanmean(self._losses)) if any(x == x for x in self._losses) else float("nan")
        self._losses = []
        if self.progress is not None:
            self.progress(state.global_step, state.max_steps, f"step {state.global_step}/{state.max_steps}: "
                                                              f"loss {loss:.3f}")
        if self.should_stop is not None and self.should_stop():
            control.should_training_stop = True
            self.cancelled = True
