"""Selection Lab: turning the tab's controls into a real selection run, with progress and a Cancel that stops it.

Plain functions: values in, a RunLog or a gr.Error out. The model (engine/models/cache.py) and the bundled mixture
are loaded once per process and shared read-only (`run_selection`, engine/uds/run.py, trains a copy through
UDSTrainer).
"""
from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any, Callable, Iterator

import gradio as gr

from app.session import SELECTION_JOBS, CancelToken, run_in_worker
from engine.models import MODELS, model_ids
from engine.models.cache import shared_sft_model
from engine.uds.config import SelectionConfig, TrainConfig
from engine.uds.data import Dataset

# Selector choices as the page shows them -> (engine selector, scoring mode).
SELECTOR_CHOICES = {
    "UDS (default: padding rows masked)": ("uds", "default"),
    "UDS as released (all rows incl. padding)": ("uds", "as_released"),
    "Random": ("random", "default"),
    "MaxLoss": ("maxloss", "default"),
    "Utility only (α = 0)": ("utility", "default"),
    "Diversity only": ("diversity", "default"),
    "Full (no selection)": ("full", "default"),
}
MODEL_CHOICES = {MODELS[model_id].picker: model_id for model_id in model_ids("sft")}  # label -> registry id
DATASET_CHOICES = ("bundled mixture", "upload", "Hub dataset id")
POLL_SECONDS = 0.3  # how often the run generator yields while the worker trains, so Cancel can close it promptly


@functools.lru_cache(maxsize=1)
def bundled(seed: int = 0) -> Dataset:
    """The bundled mixture (chatterbot, mathematics-dataset, HumanEval), built once per process."""
    from engine.uds.data import bundled_dataset

    return bundled_dataset(seed=seed)


def build_configs(selector: str, steps: float, batch: float, keep: float, alpha: float, lora: bool, seed: float,
                  cutoff: float = TrainConfig.cutoff,
                  eval_items: float = TrainConfig.eval_items) -> tuple[SelectionConfig, TrainConfig]:
    """Check the controls and build the run's configuration; a gr.Error says what to change."""
    if selector not in SELECTOR_CHOICES:
        raise gr.Error(f"Selector {selector!r} is not offered; pick one of: {', '.join(SELECTOR_CHOICES)}.")
    numbers = {"steps": steps, "B": batch, "K": keep, "seed": seed, "cut-off": cutoff, "held-out items": eval_items}
    for name, value in numbers.items():
        if value is None or not float(value).is_integer():
            raise gr.Error(f"{name} = {value} must be a whole number; enter an integer.")
    if alpha is None or not math.isfinite(alpha) or alpha < 0:
        raise gr.Error(f"α = {alpha} is not allowed: α weighs the diversity term and must be a number ≥ 0 "
                       f"(the trainer's default is 2.5e-3; 0 means utility only).")
    steps, batch, keep = int(steps), int(batch), int(keep)
    name, mode = SELECTOR_CHOICES[selector]
    if batch < 1:
        raise gr.Error(f"B = {batch}: at least one candidate must be scored per step; set B ≥ 1 (the paper uses 8).")
    if name != "full" and not 1 <= keep <= batch:
        raise gr.Error(f"K = {keep} with B = {batch}: K is how many of the B scored candidates are trained on, so "
                       f"it must lie between 1 and B; lower K or raise B.")
    try:
        selection = SelectionConfig(selector=name, mode=mode, batch=batch, keep=min(keep, batch), alpha=float(alpha),
                                    seed=int(seed))
        train = TrainConfig(steps=steps, cutoff=int(cutoff), lora=bool(lora), eval_items=int(eval_items),
                            seed=int(seed))
    except ValueError as err:
        raise gr.Error(f"Invalid setting: {err}.") from None
    return selection, train


def load_dataset(source: str, upload: str | None, prompt_col: str = "prompt", response_col: str = "response",
                 messages_col: str = "", category_col: str = "", answer_col: str = "", seed: int = 0,
                 hub_id: str = "") -> Dataset:
    """The bundled mixture, an uploaded JSONL / CSV / Parquet file, or a Hub dataset id (online only), the last two
    read with the column mapping."""
    if source == "bundled mixture":
        return bundled()
    if source not in DATASET_CHOICES:
        raise gr.Error(f"Dataset {source!r} is not offered; choose one of {', '.join(DATASET_CHOICES)}.")
    from engine.uds.uploads import ColumnMapping, load_hub, load_upload

    mapping = ColumnMapping(prompt=(prompt_col or "").strip(), response=(response_col or "").strip(),
                            messages=(messages_col or "").strip(), category=(category_col or "").strip(),
                            answer=(answer_col or "").strip())
    if source == "Hub dataset id":
        if not (hub_id or "").strip():
            raise gr.Error("Dataset is set to 'Hub dataset id' but the id is empty; type one such as "
                           "'tatsu-lab/alpaca', or switch back to the bundled mixture.")
        try:
            return load_hub(hub_id.strip(), mapping, seed=int(seed))
        except ValueError as err:
            raise gr.Error(str(err)) from None
    if not upload:
        raise gr.Error("Dataset is set to 'upload' but no file was uploaded; upload a .jsonl, .csv or .parquet file "
                       "or switch back to the bundled mixture.")
    try:
        return load_upload(upload, mapping, seed=int(seed))
    except ValueError as err:
        raise gr.Error(_without_folder(str(err), upload)) from None


def run_in_background(model_name: str, dataset: Dataset, selection: SelectionConfig, train: TrainConfig,
                      finish: Callable[[Any], Any] | None = None,
                      token: CancelToken | None = None) -> Iterator[tuple[str, Any]]:
    """Run one selection as a model job in the session's worker thread (app/session.py: one selection run at a
    time); yield ("progress", (done, total, message)) while it runs or waits for the model, ("tick", None) every
    POLL_SECONDS otherwise, then ("done", finish(log)) or ("error", message).

    Closing the iterator (Gradio does so when the event is cancelled or the client goes away) cancels the token: the
    run stops after the step in progress, in training or in the held-out evaluation, and only then frees its slot.
    `finish` (e.g. fitting the buffer map) runs in the worker too, so a slow finish keeps the page responsive."""
    token = token or CancelToken()

    def job(emit: Callable[[tuple[int, int, str]], None]) -> Any:
        emit((0, train.steps, "loading the model (once per process)"))
        model, tokenizer = shared_sft_model(model_name)
        from engine.uds.run import run_selection

        def progress(done: int, total: int, text: str) -> None:
            emit((done, total, text))
            token.check()

        log = run_selection(model, tokenizer, dataset, selection, train, model_name=model_name, progress=progress,
                            should_stop=lambda: token.cancelled)
        token.check()
        emit((train.steps, train.steps, "projecting the buffer (the first UMAP fit in a process compiles for a while)"))
        return finish(log) if finish else log

    waiting = (0, train.steps, "waiting: another selection run is using the model (one at a time)")
    try:
        for kind, payload in run_in_worker(job, token, SELECTION_JOBS, name="selection-run",
                                          poll_seconds=POLL_SECONDS, newest_only=False):  # every phase, in order
            if kind == "waiting":
                yield "progress", waiting
            else:
                yield ("tick", None) if kind in ("starting", "running") else (kind, payload)
    except ValueError as err:
        yield "error", str(err)


def _without_folder(message: str, path: str | Path) -> str:
    """Engine messages may name the server-side upload folder; the page shows only the file's own name."""
    return message.replace(str(Path(path).parent) + "/", "").replace(str(Path(path).parent), "the upload")
