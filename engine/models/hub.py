"""Allowlisted diffusion LLMs from the Hugging Face Hub (remote code runs only for these ids)."""
from __future__ import annotations

from pathlib import Path

from engine.models.base import LoadedModel, ModelSpec, hub_offline, pick_device_dtype

# Special ids and alignment from each model's release (docs/CREDITDECODING.md, "Real models").
HUB_MODELS: dict[str, ModelSpec] = {
    spec.name: spec for spec in (
        ModelSpec("GSAI-ML/LLaDA-8B-Instruct", mask_id=126336, eos_ids=(126348, 126081), shift=False,
                  max_length=4096, description="LLaDA 8B instruct (GPU, ~16 GB bf16)"),
        ModelSpec("GSAI-ML/LLaDA-8B-Base", mask_id=126336, eos_ids=(126081,), shift=False, max_length=4096,
                  description="LLaDA 8B base (GPU, ~16 GB bf16)"),
        ModelSpec("GSAI-ML/LLaDA-1.5", mask_id=126336, eos_ids=(126348, 126081), shift=False, max_length=4096,
                  description="LLaDA 1.5 (GPU, ~16 GB bf16)"),
        ModelSpec("inclusionAI/LLaDA-MoE-7B-A1B-Instruct", mask_id=156895, eos_ids=(156892,), shift=False,
                  max_length=4096, description="LLaDA-MoE 7B-A1B instruct (GPU)"),
        ModelSpec("Dream-org/Dream-v0-Instruct-7B", mask_id=151666, eos_ids=(151643,), shift=True,
                  max_length=4096, description="Dream 7B instruct (GPU, shifted logits)"),
    )
}


def load_hub(model_id: str, source: str | Path | None = None, device: str | None = None) -> LoadedModel:
    """Load an allowlisted model with trust_remote_code. `source` may point at a local copy (a folder holding the
    model files, e.g. one made by `huggingface-cli download`); by default the Hub id itself."""
    if model_id not in HUB_MODELS:
        allowed = ", ".join(HUB_MODELS)
        raise ValueError(f"model={model_id!r} is not on the allowlist of Hub models; allowed: {allowed}")
    if source is None and hub_offline():
        raise ValueError(f"model={model_id!r} needs the Hugging Face Hub, but HF_HUB_OFFLINE=1; go online (unset "
                         "HF_HUB_OFFLINE) or download the model and pass its folder")
    from transformers import AutoModel, AutoTokenizer

    device_, dtype = pick_device_dtype(device)
    where = str(source) if source is not None else model_id
    try:
        tokenizer = AutoTokenizer.from_pretrained(where, trust_remote_code=True)
        model = AutoModel.from_pretrained(where, trust_remote_code=True, dtype=dtype)
    except OSError as err:
        raise ValueError(f"model={model_id!r} could not be loaded from {where!r} ({str(err).splitlines()[0]}); "
                         "check the network / HF_HUB_OFFLINE, or download it first") from None
    return LoadedModel(HUB_MODELS[model_id], model.to(device_), tokenizer, device_, dtype, graph_safe=False)
