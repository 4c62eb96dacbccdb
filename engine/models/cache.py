"""The process-wide model caches the app (and anything long-lived) reads: each model is loaded once, on first use,
and shared read-only; two threads asking at once load it once. Loading is the registry's (engine/models/registry.py);
this module only remembers."""
from __future__ import annotations

import threading
from typing import Any, Callable

from engine.models import LoadedModel, load_model, load_sft_model, model_entry

_LOCK = threading.Lock()  # one load at a time: a second caller waits and then reads the cache
_LOADED: dict[tuple[str, str], Any] = {}  # (kind, name) -> what the loader returned


def _shared(kind: str, name: str, load: Callable[[str], Any]) -> Any:
    with _LOCK:
        if (kind, name) not in _LOADED:
            _LOADED[(kind, name)] = load(name)
        return _LOADED[(kind, name)]


def shared_dllm(name: str) -> LoadedModel:
    """A registered decoding model on its default device."""
    return _shared("dllm", name, load_model)


def shared_sft_model(name: str) -> tuple[Any, Any]:
    """(model, tokenizer) of a Selection Lab model; callers never modify it (a selection run trains a copy)."""
    return _shared("sft", name, load_sft_model)


def shared_sft_tokenizer(name: str) -> Any:
    """A Selection Lab model's tokenizer alone (token strings of a loaded run log, without loading the model)."""
    def load(model_id: str) -> Any:
        entry = model_entry(model_id, "sft")
        if entry.tokenizer is None:
            raise ValueError(f"no tokenizer is known for model {model_id!r}")
        return entry.tokenizer()

    return _shared("sft-tokenizer", name, load)
