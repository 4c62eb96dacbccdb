"""What the Selection Lab says while a run works: which phase it is in (loading, training, held-out evaluation,
projecting the buffer), how far along, for how long, and whether a small dataset's rows are drawn more than once.
Plain functions of the run's settings and the engine's progress messages; no model, no Gradio."""
from __future__ import annotations

import time

from engine.uds.config import SelectionConfig, TrainConfig
from engine.uds.data import Dataset

# engine progress message prefix -> (phase name, what it does)
PHASES = {
    "loading": ("loading the model", "once per process"),
    "step": ("training", "score B candidates, train on the top K"),
    "held-out evaluation": ("held-out evaluation", "loss on each held-out item, greedy answers to the maths ones"),
    "projecting": ("projecting the buffer", "UMAP; the first fit in a process compiles for up to a minute"),
}


def reuse_note(dataset: Dataset, selection: SelectionConfig, train: TrainConfig) -> str:
    """A sentence when the run draws more candidates than the dataset has training rows (rows come back, in a new
    order each pass); empty otherwise."""
    drawn, rows = train.steps * selection.batch, len(dataset.train)
    if drawn <= rows:
        return ""
    return (f"{rows} training rows for {train.steps} steps × B {selection.batch} = {drawn} candidates: rows are "
            f"reused, each drawn about {drawn / rows:.1f} times (a new order every pass).")


class RunPhases:
    """Turns the engine's progress messages into "phase k of n: name (details), t s" lines; `tick()` refreshes the
    elapsed time of the current phase while the engine is quiet (held-out evaluation and the UMAP fit report nothing
    until they end)."""

    def __init__(self, train: TrainConfig, has_heldout: bool) -> None:
        self.names = ["loading", "step", *(["held-out evaluation"] if train.eval_items and has_heldout else []),
                      "projecting"]
        self.eval_items = train.eval_items
        self.phase, self.detail, self.started = "loading", "", time.monotonic()

    def update(self, message: str) -> str:
        phase = next((name for name in PHASES if message.startswith(name)), self.phase)
        if phase != self.phase:
            self.phase, self.started = phase, time.monotonic()
        self.detail = message if phase == "step" else ""
        return self.text()

    def tick(self) -> str:
        return self.text()

    def text(self) -> str:
        name, what = PHASES[self.phase]
        number = self.names.index(self.phase) + 1 if self.phase in self.names else len(self.names)
        if self.phase == "step":
            what = self.detail
        elif self.phase == "held-out evaluation":
            what = f"{self.eval_items} items: {what}"
        return f"Phase {number} of {len(self.names)}, {name}: {what} ({time.monotonic() - self.started:.0f} s)"
