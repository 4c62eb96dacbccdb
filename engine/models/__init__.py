"""Model adapters: `load_model(name)` for the bundled dLLM, the tiny test model and allowlisted Hub dLLMs."""
from __future__ import annotations

from functools import lru_cache

from engine.models.base import LoadedModel, ModelSpec, pick_device_dtype
from engine.models.hub import HUB_MODELS

LOCAL_MODELS = ("bundled", "tiny-random")
MODEL_NAMES = (*LOCAL_MODELS, *HUB_MODELS)


def check_model_name(name: str) -> str:
    if name not in MODEL_NAMES:
        raise ValueError(f"model={name!r} is unknown; allowed: {', '.join(MODEL_NAMES)}")
    return name


@lru_cache(maxsize=2)
def load_model(name: str, device: str | None = None) -> LoadedModel:
    """Load once per process and share read-only (callers must not modify the model)."""
    check_model_name(name)
    if name == "tiny-random":
        from engine.models.tiny import load_tiny
        return load_tiny(device)
    if name == "bundled":
        from engine.models.bundled import load_bundled
        return load_bundled(device)
    from engine.models.hub import load_hub
    return load_hub(name, device=device)


__all__ = ["LoadedModel", "ModelSpec", "load_model", "check_model_name", "MODEL_NAMES", "LOCAL_MODELS",
           "HUB_MODELS", "pick_device_dtype"]
