"""The natively implemented families and the one loader that builds any of them from an official checkpoint.

`load_native(name, source, device)` takes a published model id (downloaded from the Hub, or read from `source`) or a
family name with a `source` folder (a scaled-down checkpoint, as the tests use). Everything is checked before a
tensor is read: the folder, config.json's family, the config's values, every tensor's name and shape; then the
weights load straight onto the device. A folder without tokenizer files loads for logits only.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from engine.models.base import LoadedModel, ModelSpec, pick_device_dtype
from engine.models.checkpoint import check_tensors, load_tensors, load_tokenizer, read_config, resolve_folder, \
    weight_table
from engine.models.dream import DREAM
from engine.models.llada import LLADA
from engine.models.llada2 import LLADA2
from engine.models.llada_moe import LLADA_MOE
from engine.models.native import Family, NativeLM
from engine.models.stacked import stack_in_place

FAMILIES: dict[str, Family] = {family.name: family for family in (LLADA, DREAM, LLADA_MOE, LLADA2)}


@dataclass(frozen=True)
class Published:
    family: str  # key of FAMILIES
    size: str  # parameter count as people say it ("8B")
    description: str  # one line for the model picker: what it is, memory and needs


PUBLISHED: dict[str, Published] = {
    "GSAI-ML/LLaDA-8B-Instruct": Published("llada", "8B", "LLaDA 8B instruct, native (GPU, ~16 GB bf16)"),
    "GSAI-ML/LLaDA-8B-Base": Published("llada", "8B", "LLaDA 8B base, native (GPU, ~16 GB bf16)"),
    "GSAI-ML/LLaDA-1.5": Published("llada", "8B", "LLaDA 1.5 (8B), native (GPU, ~16 GB bf16)"),
    "Dream-org/Dream-v0-Instruct-7B": Published("dream", "7B", "Dream 7B instruct, native (GPU, ~15 GB bf16)"),
    "Dream-org/Dream-v0-Base-7B": Published("dream", "7B", "Dream 7B base, native (GPU, ~15 GB bf16)"),
    "inclusionAI/LLaDA-MoE-7B-A1B-Instruct": Published("llada_moe", "7B (1.4B active)",
                                                       "LLaDA-MoE 7B-A1B instruct, native (GPU, ~15 GB bf16)"),
    "inclusionAI/LLaDA-MoE-7B-A1B-Base": Published("llada_moe", "7B (1.4B active)",
                                                   "LLaDA-MoE 7B-A1B base, native (GPU, ~15 GB bf16)"),
    "inclusionAI/LLaDA2.0-mini": Published("llada2", "16B (1.4B active)",
                                           "LLaDA2.0-mini, block diffusion, native (GPU, ~33 GB bf16)"),
    "inclusionAI/LLaDA2.1-mini": Published("llada2", "16B (1.4B active)",
                                           "LLaDA2.1-mini, block diffusion, native (GPU, ~33 GB bf16)"),
}


def family_for(name: str, source: str | Path | None) -> tuple[Family, str | None]:
    """(family, Hub id or None) for a published id, or for a family name with a source folder."""
    if name in PUBLISHED:
        return FAMILIES[PUBLISHED[name].family], name
    if name in FAMILIES:
        if source is None:
            raise ValueError(f"model={name!r} is a family, not a checkpoint; pass source=FOLDER (a {name} "
                             f"checkpoint folder) or a published id: {', '.join(PUBLISHED)}")
        return FAMILIES[name], None
    raise ValueError(f"model={name!r} is unknown; use a published id ({', '.join(PUBLISHED)}) or a family name "
                     f"({', '.join(FAMILIES)}) with a checkpoint folder")


def family_of_config(raw: dict, where: Path) -> Family:
    """The family by config.json's "architectures" (LLaDA-MoE shares model_type "llada" with LLaDA), else by its
    "model_type"."""
    architectures = set(raw.get("architectures") or ())
    for family in FAMILIES.values():
        if architectures & set(family.architectures):
            return family
    model_type = raw.get("model_type")
    for family in FAMILIES.values():
        if model_type in family.model_types:
            return family
    raise ValueError(f"{where / 'config.json'}: model_type={model_type!r} is none of the native families "
                     f"({', '.join(t for f in FAMILIES.values() for t in f.model_types)}); pass a folder of one")


def build_module(family: Family, config, device: torch.device | str, dtype: torch.dtype) -> NativeLM:
    """The family's module for `config` in `dtype` with uninitialised storage on `device` (meta: none at all); the
    caller loads weights or calls native.init_random. Built on meta first, so no float32 copy is ever made."""
    with torch.device("meta"):
        module = family.build(config).to(dtype)
    return module if torch.device(device).type == "meta" else module.to_empty(device=device)


def load_native(name: str, source: str | Path | None = None, device: str | None = None) -> LoadedModel:
    """A published id or a family name (+ `source` folder) -> LoadedModel; one ValueError if anything is off."""
    family, model_id = family_for(name, source)
    folder = resolve_folder(model_id, source)
    raw = read_config(folder)
    found = family_of_config(raw, folder)
    if found is not family:
        raise ValueError(f"{folder / 'config.json'} describes a {found.name} model, not {family.name}; pass a "
                         f"{family.name} folder or load it as {found.name!r}")
    config = family.read_config(raw)
    table = weight_table(folder)
    skeleton = build_module(family, config, "meta", torch.float32)
    check_tensors(folder, table, {k: tuple(v.shape) for k, v in skeleton.state_dict().items()})
    tokenizer = load_tokenizer(folder, family.bpe_tokenizer)
    ids = family.special_ids(raw, tokenizer)
    device_, dtype = pick_device_dtype(device)
    tensors = load_tensors(folder, table, device_, dtype)
    stack_in_place(skeleton, tensors)  # stacked projections built part by part, not beside a full second copy
    skeleton.load_state_dict(tensors, strict=True, assign=True)
    spec = ModelSpec(name=model_id or f"{family.name}:{folder}", mask_id=ids.mask_id, eos_ids=ids.eos_ids,
                     shift=family.shift, max_length=family.context_length(config),
                     description=PUBLISHED[model_id].description if model_id else f"{family.name} from {folder}")
    return LoadedModel(spec, skeleton, tokenizer, device_, dtype)
