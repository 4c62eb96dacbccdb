"""The one registry of models: each registered once with its loaders, needs and picker text. The decode and select
CLIs, the benchmark and both app tabs list models from here; a web user can pick a registered id, never a folder.

A model may serve the Decoding Explorer (a diffusion LLM: `dllm` loader -> LoadedModel) and / or the Selection Lab (a
causal LM to fine-tune: `sft` loader -> (model, tokenizer)). The tiny random model serves both, so tests exercise
every path offline.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from engine.models.base import LoadedModel, hub_offline
from engine.models.families import PUBLISHED, load_native

NEEDS = {"gpu": "a GPU", "hub": "Hugging Face Hub access", "weights": "the bundled weights file"}


@dataclass(frozen=True)
class ModelEntry:
    id: str  # the name on the CLI, in the API and in traces
    picker: str  # one line for the model pickers: what it is
    size: str  # parameter count as people say it ("135M", "8B")
    needs: frozenset[str] = frozenset()  # keys of NEEDS this model cannot run without
    dllm: Callable[[str | Path | None, str | None], LoadedModel] | None = None  # (source, device) -> decodable
    sft: Callable[[str | None], tuple[torch.nn.Module, Any]] | None = None  # device -> (causal model, tokenizer)
    tokenizer: Callable[[], Any] | None = None  # the tokenizer alone (to show a saved run's tokens without a model)


MODELS: dict[str, ModelEntry] = {}


def register(entry: ModelEntry) -> ModelEntry:
    if entry.id in MODELS or not entry.needs <= NEEDS.keys() or (entry.dllm is None and entry.sft is None):
        raise ValueError(f"model {entry.id!r}: duplicate id, unknown needs or no loader")
    MODELS[entry.id] = entry
    return entry


def model_entry(model_id: str, role: str | None = None) -> ModelEntry:
    """The entry of a registered id (for `role` "dllm" or "sft": one that can serve it); ValueError listing them."""
    entry = MODELS.get(model_id)
    if entry is None or (role is not None and getattr(entry, role) is None):
        allowed = ", ".join(model_ids(role))
        raise ValueError(f"model={model_id!r} is unknown{f' for {role}' if role else ''}; allowed: {allowed}")
    return entry


def model_ids(role: str | None = None) -> list[str]:
    return [m.id for m in MODELS.values() if role is None or getattr(m, role) is not None]


def unavailable(entry: ModelEntry) -> str | None:
    """Why this machine cannot run the model (a sentence naming the need), or None."""
    from engine.models.bundled import WEIGHTS_PATH

    missing = [NEEDS[need] for need in sorted(entry.needs) if
               (need == "gpu" and not torch.cuda.is_available()) or (need == "hub" and hub_offline())
               or (need == "weights" and not WEIGHTS_PATH.is_file())]
    return f"needs {' and '.join(missing)}, which this machine lacks" if missing else None


def _bundled(source, device):
    from engine.models.bundled import load_bundled
    return load_bundled(device, weights=source)


def _tiny(source, device):
    from engine.models.tiny import load_tiny
    return load_tiny(device)


def _smollm2_sft(device):
    from engine.models.smollm import load_smollm
    return load_smollm(device)


def _tiny_sft(device):
    from engine.models.tiny import tiny_causal
    return tiny_causal(device)


def _smollm2_tokenizer():
    from engine.models.smollm import load_smollm_tokenizer
    return load_smollm_tokenizer()


def _byte_tokenizer():
    from engine.models.tiny import byte_tokenizer
    return byte_tokenizer()


register(ModelEntry("bundled", "bundled dLLM: SmolLM2-135M-Instruct adapted to masked diffusion (CPU, offline)",
                    "135M", frozenset({"weights"}), dllm=_bundled))
register(ModelEntry("smollm2", "SmolLM2-135M-Instruct, causal (the installed GGUF; CPU, offline)", "135M",
                    sft=_smollm2_sft, tokenizer=_smollm2_tokenizer))
register(ModelEntry("tiny-random", "tiny random Llama, bundled architecture (seconds; answers are noise)", "0.1M",
                    dllm=_tiny, sft=_tiny_sft, tokenizer=_byte_tokenizer))
for _id, _published in PUBLISHED.items():  # the native families' released checkpoints (no remote code runs)
    register(ModelEntry(_id, _published.description, _published.size, frozenset({"gpu", "hub"}),
                        dllm=functools.partial(load_native, _id)))
