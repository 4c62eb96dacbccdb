"""Make the LLaDA and Dream reference fixtures by running the reference modeling code, unmodified.

Reference code: NVlabs/Fast-dLLM at commit 24cc59e75f20a6384bae8c905965bb090b96388e (2025-06-27), the packages
`llada/model/` (configuration_llada.py, modeling_llada.py: "Modified from LLaDA repos", the Hub's LLaDA code plus
cache options that are off by default) and `dream/model/` (configuration_dream.py, modeling_dream.py,
generation_utils.py: the Hub's Dream code plus cache options). Fast-dLLM pins transformers==4.49.0.

Environment (throwaway, outside the repo; never the project venv):
    python3 -m venv /work/refenv-dense
    /work/refenv-dense/bin/pip install torch==2.13.0 transformers==4.49.0 einops safetensors
    git clone https://github.com/NVlabs/Fast-dLLM /work/refsrc/fastdllm   # then: git checkout 24cc59e
Run (from the repository root):
    /work/refenv-dense/bin/python lab/reference/make_dense_fixtures.py --fastdllm /work/refsrc/fastdllm

It writes tests/fixtures/models/{llada,dream}/: config.json in the official layout (the published keys at toy
sizes, same structure: LLaDA's own keys, untied head, no biases, MHA; Dream's Qwen2 keys, q/k/v biases, 7 query
heads per KV head, untied head), random weights in the official tensor names as BF16 safetensors (LLaDA sharded
with model.safetensors.index.json, Dream one file), a byte-level tokenizer in each family's layout (LLaDA:
tokenizer.json; Dream: vocab.json + merges.txt) with a chat template, and reference.safetensors:
  input_ids (B, L), key_mask (B, L): rows left-padded with the pad id, 1 = real token;
  logits (B, L, V): the reference on input_ids with no mask;
  logits_alone (B, L, V): each row run alone on its real tokens, placed at their positions (0 at padding);
  logits_generation (Dream only): what Dream's own generation passes for a padded batch (a boolean mask, real
    query AND real key, and positions counting real tokens), real rows only (0 at padding).
The reference is run in float32 on the BF16-rounded weights. reference.json records the provenance and what each
reference does with a padding mask (measured here, not assumed).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import torch
import transformers
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

COMMIT = "24cc59e75f20a6384bae8c905965bb090b96388e"
OUT = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "models"
ROWS = ([5, 9, 33, 100, 7, 0, 0, 0, 41, 72], [0, 0, 0, 12, 77, 0, 63, 8, 8, 90], [0, 0, 0, 0, 0, 0, 19, 0, 4, 55])
PADS = (0, 3, 6)  # left padding per row; 0 in ROWS marks where the mask id goes (real positions) or padding

LLADA_SPECIALS = ("<|startoftext|>", "<|endoftext|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
                  "<|mdm_mask|>")
LLADA_TEMPLATE = ("{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
                  "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + "
                  "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
                  "{{ content }}{% endfor %}{% if add_generation_prompt %}"
                  "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")
DREAM_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|mask|>")
DREAM_TEMPLATE = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
                  "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}<|im_start|>"
                  "{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"
                  "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")

# Published config.json keys at toy sizes (published values: engine/models/registry.py / docs/MODELS.md).
LLADA_CONFIG = {
    "activation_type": "silu", "alibi": False, "alibi_bias_max": 8.0, "architectures": ["LLaDAModelLM"],
    "attention_dropout": 0.0, "attention_layer_norm": False, "attention_layer_norm_with_affine": True,
    "bias_for_layer_norm": False, "block_group_size": 1, "block_type": "llama", "d_model": 32,
    "embedding_dropout": 0.0, "embedding_size": 288, "eos_token_id": 257, "flash_attention": False,
    "include_bias": False, "include_qkv_bias": False, "init_cutoff_factor": None, "init_device": "meta",
    "init_fn": "mitchell", "init_std": 0.02, "input_emb_norm": False, "layer_norm_type": "rms",
    "layer_norm_with_affine": True, "mask_token_id": 261, "max_sequence_length": 64, "mlp_hidden_size": 48,
    "mlp_ratio": 4, "model_type": "llada", "multi_query_attention": None, "n_heads": 4, "n_kv_heads": 4,
    "n_layers": 2, "pad_token_id": 257, "precision": "amp_bf16", "residual_dropout": 0.0, "rms_norm_eps": 1e-05,
    "rope": True, "rope_full_precision": True, "rope_theta": 500000.0, "scale_logits": False, "use_cache": False,
    "vocab_size": 288, "weight_tying": False,
}
DREAM_CONFIG = {
    "architectures": ["DreamModel"], "attention_dropout": 0.0, "bos_token_id": 256, "eos_token_id": 256,
    "hidden_act": "silu", "hidden_size": 56, "initializer_range": 0.02, "intermediate_size": 64,
    "mask_token_id": 259, "max_position_embeddings": 128, "max_window_layers": 2, "model_type": "Dream",
    "num_attention_heads": 7, "num_hidden_layers": 2, "num_key_value_heads": 1, "pad_token_id": 256,
    "rms_norm_eps": 1e-06, "rope_scaling": None, "rope_theta": 1000000.0, "sliding_window": None,
    "tie_word_embeddings": False, "torch_dtype": "bfloat16", "use_cache": False, "use_sliding_window": False,
    "vocab_size": 272,
}


def import_package(name: str, folder: Path):
    """Import a reference package (its relative imports intact) under a private name: both are called `model`."""
    spec = importlib.util.spec_from_file_location(name, folder / "__init__.py",
                                                  submodule_search_locations=[str(folder)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def random_weights(state: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """Weights large enough that attention is far from uniform, rounded to BF16 (the published dtype)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, t in state.items():
        noise = torch.randn(t.shape, generator=g)
        if name.endswith("norm.weight") or name.endswith("ln_f.weight"):
            value = 1.0 + 0.1 * noise
        elif t.dim() == 2 and ("wte" in name or "embed_tokens" in name):
            value = noise
        elif t.dim() == 2:
            value = noise / t.shape[1] ** 0.5
        else:
            value = 0.1 * noise
        out[name] = value.to(torch.bfloat16)
    return out


def byte_tokenizer(specials: tuple[str, ...]) -> Tokenizer:
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    core = Tokenizer(models.BPE(vocab={ch: i for i, ch in enumerate(alphabet)}, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.add_special_tokens(list(specials))
    return core


def inputs(mask_id: int, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.tensor(ROWS)
    key_mask = torch.ones_like(ids)
    for row, pad in enumerate(PADS):
        key_mask[row, :pad] = 0
    ids = torch.where(ids == 0, torch.full_like(ids, mask_id), ids)  # masked positions, as in a decode
    return torch.where(key_mask == 0, torch.full_like(ids, pad_id), ids), key_mask


@torch.no_grad()
def alone(model, ids: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
    """Each row on its own real tokens, placed back at their positions (zeros at padding)."""
    first = model(input_ids=ids[:1]).logits
    out = torch.zeros(ids.shape[0], ids.shape[1], first.shape[-1])
    for row in range(ids.shape[0]):
        real = key_mask[row].bool()
        out[row, real] = model(input_ids=ids[row:row + 1, real]).logits[0].float()
    return out


def save_folder(folder: Path, config: dict, weights: dict[str, torch.Tensor], shards: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.safetensors"):
        old.unlink()
    (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    names = sorted(weights)
    if shards == 1:
        save_file({n: weights[n].contiguous() for n in names}, str(folder / "model.safetensors"),
                  metadata={"format": "pt"})
        return
    weight_map, per = {}, -(-len(names) // shards)
    for i in range(shards):
        file = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = names[i * per:(i + 1) * per]
        save_file({n: weights[n].contiguous() for n in part}, str(folder / file), metadata={"format": "pt"})
        weight_map.update({n: file for n in part})
    total = sum(t.numel() * t.element_size() for t in weights.values())
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2) + "\n")


def provenance(files: list[str], notes: dict) -> dict:
    return {"reference_repo": "https://github.com/NVlabs/Fast-dLLM", "commit": COMMIT, "files": files,
            "transformers": transformers.__version__, "torch": torch.__version__, "dtype_run": "float32",
            "weights_dtype": "bfloat16", "script": "lab/reference/make_dense_fixtures.py", **notes}


@torch.no_grad()
def make_llada(fastdllm: Path) -> None:
    ref = import_package("llada_reference", fastdllm / "llada" / "model")
    model = ref.LLaDAModelLM(ref.LLaDAConfig(**LLADA_CONFIG), init_params=False).eval()
    weights = random_weights(model.state_dict(), seed=13)
    model.load_state_dict({k: v.float() for k, v in weights.items()}, strict=True)
    ids, key_mask = inputs(LLADA_CONFIG["mask_token_id"], LLADA_CONFIG["pad_token_id"])
    plain = model(input_ids=ids).logits.float()
    masked = model(input_ids=ids, attention_mask=key_mask).logits.float()
    folder = OUT / "llada"
    save_folder(folder, LLADA_CONFIG, weights, shards=2)
    byte_tokenizer(LLADA_SPECIALS).save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
        "chat_template": LLADA_TEMPLATE, "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": 64}, indent=2) + "\n")
    save_file({"input_ids": ids, "key_mask": key_mask, "logits": plain.contiguous(),
               "logits_alone": alone(model, ids, key_mask).contiguous()}, str(folder / "reference.safetensors"))
    (folder / "reference.json").write_text(json.dumps(provenance(
        ["llada/model/configuration_llada.py", "llada/model/modeling_llada.py"],
        {"reference_ignores_attention_mask": bool(torch.equal(plain, masked)),
         "padding_note": "LLaDABlock.attention passes attn_mask=None to SDPA: a padding mask changes nothing"}),
        indent=2) + "\n")


@torch.no_grad()
def make_dream(fastdllm: Path) -> None:
    ref = import_package("dream_reference", fastdllm / "dream" / "model")
    torch.manual_seed(0)
    model = ref.DreamModel(ref.DreamConfig(**DREAM_CONFIG)).eval()
    weights = random_weights(model.state_dict(), seed=17)
    model.load_state_dict({k: v.float() for k, v in weights.items()}, strict=True)
    ids, key_mask = inputs(DREAM_CONFIG["mask_token_id"], DREAM_CONFIG["pad_token_id"])
    plain = model(input_ids=ids).logits.float()
    # Dream's generation_utils._sample for a padded batch: positions count real tokens (padding at 1), and a
    # boolean mask allowing real query x real key.
    positions = key_mask.long().cumsum(-1) - 1
    positions.masked_fill_(key_mask == 0, 1)
    pair = torch.logical_and(key_mask.bool()[:, None, None, :], key_mask.bool()[:, None, :, None])  # (B, 1, L, L)
    generation = model(input_ids=ids, attention_mask=pair, position_ids=positions).logits.float()
    generation = torch.where(key_mask.bool()[:, :, None], generation, torch.zeros_like(generation))
    folder = OUT / "dream"
    save_folder(folder, DREAM_CONFIG, weights, shards=1)
    byte_tokenizer(DREAM_SPECIALS).model.save(str(folder))  # vocab.json + merges.txt, as the Hub's Dream repos
    added = {str(256 + i): {"content": tok, "special": True, "lstrip": False, "rstrip": False,
                            "normalized": False, "single_word": False} for i, tok in enumerate(DREAM_SPECIALS)}
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "added_tokens_decoder": added, "bos_token": None, "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
        "mask_token": "<|mask|>", "chat_template": DREAM_TEMPLATE, "tokenizer_class": "DreamTokenizer",
        "auto_map": {"AutoTokenizer": ["tokenization_dream.DreamTokenizer", None]}, "model_max_length": 128},
        indent=2) + "\n")
    save_file({"input_ids": ids, "key_mask": key_mask, "logits": plain.contiguous(),
               "logits_alone": alone(model, ids, key_mask).contiguous(),
               "logits_generation": generation.contiguous()}, str(folder / "reference.safetensors"))
    (folder / "reference.json").write_text(json.dumps(provenance(
        ["dream/model/configuration_dream.py", "dream/model/modeling_dream.py", "dream/model/generation_utils.py"],
        {"generation_rows_finite": bool(torch.isfinite(generation).all()),
         "padding_note": "the attention mask goes to SDPA as given; Fast-dLLM's DreamBaseModel replaces "
                         "position_ids by arange(L), which leaves real rows unchanged (RoPE is relative)"}),
        indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fastdllm", type=Path, required=True, help="checkout of NVlabs/Fast-dLLM at " + COMMIT)
    args = parser.parse_args()
    if transformers.__version__ != "4.49.0":
        raise SystemExit(f"transformers {transformers.__version__}: the reference targets 4.49.0; use the refenv")
    make_llada(args.fastdllm)
    make_dream(args.fastdllm)
    total = sum(f.stat().st_size for f in OUT.glob("*/*") if f.parent.name in ("llada", "dream"))
    print(f"wrote {OUT}/llada and {OUT}/dream: {total / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
