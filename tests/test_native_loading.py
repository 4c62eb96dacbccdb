"""Bad checkpoint folders and ids fail before anything loads, with one line naming the file or id and the fix;
and no project file runs remote code."""
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from engine.models.families import load_native

FIXTURES = Path(__file__).parent / "fixtures" / "models"
ROOT = Path(__file__).parent.parent


def _copy(family: str, tmp_path: Path) -> Path:
    folder = tmp_path / family
    shutil.copytree(FIXTURES / family, folder)
    return folder


def _fails(match: str, *args, **kwargs) -> str:
    with pytest.raises(ValueError, match=match) as info:
        load_native(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_folder_of_another_family_is_refused():
    message = _fails("describes a dream model, not llada", "llada", source=FIXTURES / "dream", device="cpu")
    assert "config.json" in message


def test_unknown_model_type_is_refused(tmp_path):
    folder = _copy("dream", tmp_path)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "qwen2"}))
    _fails("model_type='qwen2' is none of the native families", "dream", source=folder, device="cpu")


def test_missing_shard_is_named(tmp_path):
    folder = _copy("llada", tmp_path)
    (folder / "model-00002-of-00002.safetensors").unlink()
    _fails(r"model-00002-of-00002.safetensors is missing .* download every shard", "llada", source=folder)


def test_truncated_shard_is_named(tmp_path):
    folder = _copy("llada", tmp_path)
    shard = folder / "model-00001-of-00002.safetensors"
    shard.write_bytes(shard.read_bytes()[:-100])
    _fails(r"model-00001-of-00002.safetensors is truncated", "llada", source=folder)


def test_renamed_tensor_is_named(tmp_path):
    folder = _copy("dream", tmp_path)
    weights = load_file(str(folder / "model.safetensors"))
    weights["model.norm.scale"] = weights.pop("model.norm.weight")
    save_file(weights, str(folder / "model.safetensors"))
    _fails(r"lack 'model.norm.weight'", "dream", source=folder)


def test_shapes_that_do_not_match_the_config_are_named(tmp_path):
    folder = _copy("dream", tmp_path)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "intermediate_size": 80}))
    _fails(r"model.safetensors: tensor 'model.layers.0.mlp.gate_proj.weight' has shape \[64, 56\], but config.json "
           r"implies \[80, 56\]", "dream", source=folder)


def test_config_with_an_unsupported_structure_is_refused(tmp_path):
    folder = _copy("llada", tmp_path)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "block_type": "sequential"}))
    _fails(r"block_type='sequential'.* not a LLaDA", "llada", source=folder)


def test_missing_weights_and_config(tmp_path):
    _fails("config.json is missing", "llada", source=tmp_path)
    shutil.copy(FIXTURES / "llada" / "config.json", tmp_path / "config.json")
    _fails("has neither model.safetensors nor model.safetensors.index.json", "llada", source=tmp_path)
    _fails("is not a folder", "llada", source=tmp_path / "nowhere")


def test_unknown_id_family_without_folder_and_offline_hub(monkeypatch):
    _fails(r"model='GSAI-ML/LLaDA-9B' is unknown; use a published id", "GSAI-ML/LLaDA-9B")
    _fails("is a family, not a checkpoint; pass source=FOLDER", "dream")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _fails("needs the Hugging Face Hub, but HF_HUB_OFFLINE=1; go online", "GSAI-ML/LLaDA-8B-Instruct")


def test_no_project_file_passes_trust_remote_code():
    files = subprocess.run(["git", "ls-files", "*.py", "*.md", "*.sh", "*.toml", "*.cfg", "*.txt", "Makefile"],
                           cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    pattern = re.compile(r"trust_remote_code\s*=|--trust[-_]remote[-_]code")
    offenders = [name for name in files if (ROOT / name).is_file() and pattern.search((ROOT / name).read_text())]
    assert offenders == []


def test_cli_decodes_from_a_folder_and_refuses_a_bad_one(tmp_path):
    import os
    import sys

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "engine", "decode", "--prompt", "hi", "--gen-length", "16",
                               "--block-length", "8", "--json", "--device", "cpu", *args], cwd=ROOT,
                              env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=300)

    ok = cli("--model", "dream", "--source", str(FIXTURES / "dream"))
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["gen_length"] == 16
    folder = _copy("llada", tmp_path)
    (folder / "model-00001-of-00002.safetensors").unlink()
    bad = cli("--model", "llada", "--source", str(folder))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines() == [bad.stderr.strip()] and "download every shard" in bad.stderr
