"""Published diffusion LLMs from the Hugging Face Hub, loaded by the native families (no remote code runs)."""
from __future__ import annotations

from pathlib import Path

from engine.models.base import LoadedModel, ModelSpec
from engine.models.checkpoint import hub_offline
from engine.models.families import PUBLISHED, load_native, published_spec

__all__ = ["HUB_MODELS", "hub_offline", "load_hub"]

HUB_MODELS: dict[str, ModelSpec] = {model_id: published_spec(model_id) for model_id in PUBLISHED}


def load_hub(model_id: str, source: str | Path | None = None, device: str | None = None) -> LoadedModel:
    """A published id, from the Hub or from `source` (a downloaded folder of that model)."""
    if model_id not in HUB_MODELS:
        raise ValueError(f"model={model_id!r} is not a published model; allowed: {', '.join(HUB_MODELS)}")
    return load_native(model_id, source=source, device=device)
