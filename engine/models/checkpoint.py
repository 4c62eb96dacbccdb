"""Official checkpoint folders, read and checked before anything is built.

A folder holds `config.json` and its weights as safetensors: one `model.safetensors`, or shards listed by
`model.safetensors.index.json` (its `weight_map`: tensor name -> shard file). It may also hold tokenizer files
(`tokenizer.json`, or `vocab.json` + `merges.txt`) and `tokenizer_config.json` with the chat template. Everything is
validated from the files' headers first (names, shapes, shards present and complete), so a bad folder raises one
ValueError naming the file and the fix, and no tensor is read before the whole checkpoint is known to fit the model.
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

import torch

from engine.models.base import hub_offline

CONFIG_FILE = "config.json"
SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
TOKENIZER_FILE = "tokenizer.json"
BPE_FILES = ("vocab.json", "merges.txt")
HUB_PATTERNS = ["*.json", "*.safetensors", "*.jinja"]  # what a download needs: no remote code, no .bin weights
MAX_HEADER_BYTES = 100_000_000  # a safetensors header larger than this is a corrupt file, not a big model


def resolve_folder(model_id: str | None, source: str | Path | None) -> Path:
    """The local folder of a checkpoint: `source` when given, else the Hub snapshot of `model_id` (downloaded once
    into the Hugging Face cache; weights and JSON files only)."""
    if source is not None:
        folder = Path(source).expanduser()
        if not folder.is_dir():
            raise ValueError(f"source={str(source)!r} is not a folder; pass the folder that holds config.json and "
                             "the .safetensors files")
        return folder
    if model_id is None:
        raise ValueError("no model id and no source folder; name a registered model id or pass source=FOLDER")
    if hub_offline():
        raise ValueError(f"model={model_id!r} needs the Hugging Face Hub, but HF_HUB_OFFLINE=1; go online (unset "
                         "HF_HUB_OFFLINE) or download the model and pass its folder as source")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError
    try:
        return Path(snapshot_download(repo_id=model_id, allow_patterns=HUB_PATTERNS))
    except RepositoryNotFoundError:
        raise ValueError(f"model={model_id!r} is not on the Hugging Face Hub (or is private); check the id") from None
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ValueError(f"model={model_id!r} could not be downloaded ({first}); check the network, or download "
                         "it elsewhere and pass its folder as source") from None


def read_config(folder: Path) -> dict:
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise ValueError(f"{path} is missing; a checkpoint folder needs the model's config.json")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}); download it again") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path} holds a {type(config).__name__}, not a JSON object; download it again")
    return config


@dataclass(frozen=True)
class TensorInfo:
    file: str  # shard file name inside the folder
    dtype: str  # safetensors dtype name, e.g. "BF16", "F32"
    shape: tuple[int, ...]


def read_header(path: Path) -> dict[str, TensorInfo]:
    """Tensor names, dtypes and shapes from a safetensors header (8-byte length + JSON), reading no tensor data; a
    file cut short (an interrupted download) is caught here by comparing the data offsets with the file size."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        n = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
        if not 0 < n <= min(MAX_HEADER_BYTES, size - 8):
            raise ValueError(f"{path} is not a safetensors file (bad header); download it again")
        try:
            header = json.loads(f.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ValueError(f"{path} has a corrupt safetensors header; download it again") from None
    header.pop("__metadata__", None)
    end = max((int(meta["data_offsets"][1]) for meta in header.values()), default=0)
    if 8 + n + end > size:
        raise ValueError(f"{path} is truncated ({size} bytes, its header needs {8 + n + end}); download it again")
    return {name: TensorInfo(path.name, meta["dtype"], tuple(meta["shape"])) for name, meta in header.items()}


def weight_table(folder: Path) -> dict[str, TensorInfo]:
    """Every tensor of the checkpoint, from the index's shards or the single file; shards checked to exist, to hold
    what the index says, and to be complete."""
    index_path, single = folder / INDEX_FILE, folder / SINGLE_FILE
    if index_path.is_file():
        try:
            weight_map = json.loads(index_path.read_text())["weight_map"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
            raise ValueError(f"{index_path} is not a safetensors index (no weight_map); download it again") from None
        table: dict[str, TensorInfo] = {}
        for shard in sorted(set(weight_map.values())):
            if not (folder / shard).is_file():
                raise ValueError(f"{folder / shard} is missing (listed in {INDEX_FILE}); download every shard")
            header = read_header(folder / shard)
            listed = sorted(name for name, where in weight_map.items() if where == shard)
            absent = [name for name in listed if name not in header]
            if absent:
                raise ValueError(f"{folder / shard} lacks {absent[0]!r} (and {len(absent) - 1} more) that "
                                 f"{INDEX_FILE} puts there; download the shard again")
            table.update({name: header[name] for name in listed})
        return table
    if single.is_file():
        return read_header(single)
    raise ValueError(f"{folder} has neither {SINGLE_FILE} nor {INDEX_FILE}; download the weights (safetensors) "
                     "into the folder")


def check_tensors(folder: Path, table: dict[str, TensorInfo], expected: dict[str, tuple[int, ...]]) -> None:
    """The checkpoint's names and shapes are exactly the model's (built from config.json), or one ValueError."""
    missing = sorted(set(expected) - set(table))
    extra = sorted(set(table) - set(expected))
    if missing:
        raise ValueError(f"{folder}: the weights lack {missing[0]!r} (and {len(missing) - 1} more) that "
                         f"{CONFIG_FILE} implies; the folder holds another model or an incomplete download")
    if extra:
        raise ValueError(f"{folder}/{table[extra[0]].file}: tensor {extra[0]!r} (and {len(extra) - 1} more) is not "
                         f"part of the model {CONFIG_FILE} describes; the weights belong to another model")
    for name, shape in expected.items():
        if table[name].shape != tuple(shape):
            raise ValueError(f"{folder}/{table[name].file}: tensor {name!r} has shape {list(table[name].shape)}, but "
                             f"{CONFIG_FILE} implies {list(shape)}; config and weights come from different models")


def load_tensors(folder: Path, table: dict[str, TensorInfo], device: torch.device,
                 dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Read every tensor straight onto `device`, cast to `dtype` (call check_tensors first)."""
    from safetensors import safe_open

    tensors: dict[str, torch.Tensor] = {}
    for shard in sorted({info.file for info in table.values()}):
        with safe_open(str(folder / shard), framework="pt", device=str(device)) as f:
            for name in (n for n, info in table.items() if info.file == shard):
                tensors[name] = f.get_tensor(name).to(dtype)
    return tensors


def load_tokenizer(folder: Path, bpe_class: str | None = None):
    """The folder's tokenizer through a stock transformers class (never remote code), or None when it has none.

    tokenizer.json -> PreTrainedTokenizerFast; else vocab.json + merges.txt -> `bpe_class` (the family's stock
    byte-level BPE class, e.g. Qwen2Tokenizer for Dream, whose Hub repos ship these files and a remote-code
    tokenizer class that is ignored here). Special tokens, added tokens and the chat template come from
    tokenizer_config.json (or chat_template.jinja)."""
    import transformers

    if (folder / TOKENIZER_FILE).is_file():
        cls = transformers.PreTrainedTokenizerFast
    elif bpe_class is not None and all((folder / name).is_file() for name in BPE_FILES):
        cls = getattr(transformers, bpe_class)
    else:
        return None
    try:
        return cls.from_pretrained(str(folder), local_files_only=True)
    except Exception as err:  # tokenizers / transformers raise many types for a corrupt file
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ValueError(f"{folder}: the tokenizer files could not be read ({first}); download them again, or "
                         "remove them to load the model for logits only") from None
