"""Model adapters and the model registry (registry.py): `load_model(id)` for every registered model."""
from __future__ import annotations

from pathlib import Path

from engine.models.base import LoadedModel, ModelSpec, pick_device_dtype
from engine.models.registry import MODELS, ModelEntry, model_entry, model_ids, unavailable


def load_model(model_id: str, source: str | Path | None = None, device: str | None = None) -> LoadedModel:
    """A registered diffusion LLM, loaded now (long-lived callers share one copy through engine/models/cache.py).
    `source`: a local folder in the model's official layout instead of the default location."""
    return model_entry(model_id, "dllm").dllm(source, device)


def load_sft_model(model_id: str, device: str | None = None) -> tuple:
    """(causal model, tokenizer) for the Selection Lab, loaded now: runs train a copy."""
    return model_entry(model_id, "sft").sft(device)


__all__ = ["LoadedModel", "ModelSpec", "ModelEntry", "MODELS", "load_model", "load_sft_model", "model_entry",
           "model_ids", "unavailable", "pick_device_dtype"]
