"""Make the LLaDA-MoE and LLaDA2 reference fixtures by running the reference modeling code, unmodified.

Reference code (the Hub repos' own remote code; the Hub itself is out of reach here, so verbatim copies on GitHub):
  LLaDA-MoE  inclusionAI/LLaDA-MoE-7B-A1B-Instruct: modeling_lladamoe.py (1186 lines) + configuration_lladamoe.py,
             copied into InfiniTensor/InfiniLM at commit 0a7e522afb6079a30c7ecb50ce8abafe6cc3f808 (modeling) and
             239f1d707f54c1e95ad2ec282842a3ed87038f05 (configuration). Cross-checked: inclusionAI/dInfer @ fce4e32
             tools/configuration_lladamoe.py is byte-identical, and tools/modeling_fused_lladamoe.py is this file
             plus a fused-MoE block (diff: only the additions).
  LLaDA2     inclusionAI/LLaDA2.0-mini: modeling_llada2_moe.py + configuration_llada2_moe.py, copied into
             ZHZisZZ/dllm at commit cbbda7a6f0e177a9e5cd20850b8782119a8688f0 (dllm/pipelines/llada2/models/; its
             header and imports match the Hub page). inclusionAI/dInfer's python/dinfer/model/modeling_llada2_moe.py
             is the same model on vLLM kernels (it cannot run on a CPU).
  Pinned by sha256 below. transformers 4.57.1: LLaDA2.1-mini's config.json names it; the LLaDA-MoE code runs
  unchanged on it (its imports and ROPE_INIT_FUNCTIONS["default"] still exist there).

Environment (throwaway, outside the repo; never the project venv):
    python3 -m venv /work/refenv-moe/venv
    /work/refenv-moe/venv/bin/pip install torch==2.13.0 transformers==4.57.1 safetensors
    git clone https://github.com/InfiniTensor/InfiniLM /tmp/infinilm
    git clone https://github.com/ZHZisZZ/dllm /tmp/dllm
    mkdir -p REF/lladamoe REF/llada2
    git -C /tmp/infinilm show 0a7e522a:modeling_lladamoe.py > REF/lladamoe/modeling_lladamoe.py
    git -C /tmp/infinilm show 239f1d70:configuration_lladamoe.py > REF/lladamoe/configuration_lladamoe.py
    git -C /tmp/dllm show cbbda7a6:dllm/pipelines/llada2/models/modeling_llada2_moe.py \
        > REF/llada2/modeling_llada2_moe.py
    git -C /tmp/dllm show cbbda7a6:dllm/pipelines/llada2/models/configuration_llada2_moe.py \
        > REF/llada2/configuration_llada2_moe.py
    touch REF/lladamoe/__init__.py REF/llada2/__init__.py
Run (from the repository root):
    /work/refenv-moe/venv/bin/python lab/reference/make_moe_fixtures.py --ref REF

It writes tests/fixtures/models/{llada_moe,llada2}/: config.json in the official layout (each family's published
keys at toy sizes with the published structure: LLaDA-MoE 64 experts, top-8, softmax router without expert bias or
shared expert, unnormalised weights, q/k norms, MHA, full RoPE, theta 50000; LLaDA2 256 experts in 8 groups, top-4
groups, top-8, sigmoid router with expert bias, scaling 2.5, one shared expert, first layer dense, q/k norms, 4 query
heads per KV head, half-width RoPE, theta 600000; both untied), random weights in the official tensor names as BF16
safetensors (LLaDA-MoE one file, LLaDA2 two shards + index), and reference.safetensors:
  input_ids (B, L), key_mask (B, L): rows left-padded with the pad id, 1 = real token;
  logits (B, L, V): LLaDA-MoE: the reference on input_ids (it sets every attention mask to None, measured here);
    LLaDA2: the reference on input_ids with the engine's mask (blocks of 32 aligned to the end, AND real keys, OR
    the diagonal) passed as its 4D additive attention mask, positions counting real tokens;
  logits_alone (B, L, V): each row run alone on its real tokens (LLaDA2: with the block-causal mask for that
    length, the very mask generate() builds when the length is a multiple of 32), placed at their positions, 0 at
    padding.
The reference runs in float32 on the BF16-rounded weights. reference.json records provenance and measurements.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import sys
from pathlib import Path

import torch
import transformers
from safetensors.torch import save_file

OUT = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "models"
TRANSFORMERS = "4.57.1"
SHA256 = {
    "lladamoe/modeling_lladamoe.py": "b4323caf7eed2deb3447ae8c3e9b6535f1b828ce8f554037e731a0238f27f00c",
    "lladamoe/configuration_lladamoe.py": "6370ad5bb8b69fb89f940fc9f3a51f83aa1cdb5aa0a341a3a694e66edaf9598b",
    "llada2/modeling_llada2_moe.py": "9bf235abec90ee513b62c34a78bfbeaac3383923b2e7100f690fba8b777f2d76",
    "llada2/configuration_llada2_moe.py": "21c8ae7a3694e7dea425ca7858eac0fdd1276ebf60066bafc2e5665855f5e15a",
}
PAD, EOS, MASK, BLOCK = 120, 120, 125, 32  # toy stand-ins for 156892 (pad = eos) and 156895; LLaDA2's block

LLADA_MOE_CONFIG = {
    "architectures": ["LLaDAMoEModelLM"], "model_type": "llada", "vocab_size": 128, "hidden_size": 32,
    "dense_intermediate_size": 64, "expert_intermediate_size": 8, "shared_expert_intermediate_size": None,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4, "hidden_act": "silu",
    "max_position_embeddings": 128, "rms_norm_eps": 1e-05, "rope_theta": 50000, "partial_rotary_factor": 1.0,
    "rope_scaling": None, "attention_bias": False, "attention_dropout": 0.0, "clip_qkv": None, "num_experts": 64,
    "num_experts_per_tok": 8, "norm_topk_prob": False, "qk_layernorm": True, "moe_layer_freq": [1, 1],
    "moe_router_enable_expert_bias": False, "moe_router_score_function": "softmax", "routed_scaling_factor": 1,
    "router_aux_loss_coef": 0.01, "output_router_logits": False, "tie_word_embeddings": False, "use_cache": False,
    "pad_token_id": PAD, "eos_token_id": EOS, "mask_token_id": MASK, "torch_dtype": "bfloat16",
}
LLADA2_CONFIG = {
    "architectures": ["LLaDA2MoeModelLM"], "model_type": "llada2_moe", "vocab_size": 128, "hidden_size": 32,
    "intermediate_size": 80, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 1,
    "head_dim": 8, "hidden_act": "silu", "use_qkv_bias": False, "use_qk_norm": True, "use_bias": False,
    "rms_norm_eps": 1e-06, "norm_head": False, "tie_word_embeddings": False, "max_position_embeddings": 256,
    "rope_theta": 600000, "rope_scaling": None, "partial_rotary_factor": 0.5, "rotary_dim": 4, "num_experts": 256,
    "num_shared_experts": 1, "num_experts_per_tok": 8, "n_group": 8, "topk_group": 4, "routed_scaling_factor": 2.5,
    "moe_intermediate_size": 4, "first_k_dense_replace": 1, "score_function": "sigmoid", "norm_topk_prob": True,
    "moe_router_enable_expert_bias": True, "router_dtype": "fp32", "attention_dropout": 0.0,
    "embedding_dropout": 0.0, "output_dropout": 0.0, "output_router_logits": False, "use_cache": False,
    "pad_token_id": PAD, "eos_token_id": EOS, "mask_token_id": MASK, "dtype": "bfloat16",
}


def check_sources(ref: Path) -> None:
    for rel, digest in SHA256.items():
        found = hashlib.sha256((ref / rel).read_bytes()).hexdigest()
        if found != digest:
            raise SystemExit(f"{ref / rel}: sha256 {found} is not the pinned reference file ({digest})")


def import_reference(name: str, folder: Path, modules: tuple[str, str]):
    """Import a reference package's configuration and modeling modules with their relative imports intact."""
    spec = importlib.util.spec_from_file_location(name, folder / "__init__.py",
                                                  submodule_search_locations=[str(folder)])
    package = importlib.util.module_from_spec(spec)
    sys.modules[name] = package
    spec.loader.exec_module(package)
    return tuple(importlib.import_module(f"{name}.{module}") for module in modules)


def random_weights(state: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """Weights large enough that attention and routing are far from uniform, rounded to BF16 (the published dtype)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, t in sorted(state.items()):
        noise = torch.randn(t.shape, generator=g)
        if "norm" in name and t.dim() == 1:
            value = 1.0 + 0.1 * noise
        elif t.dim() == 2 and ("embeddings" in name or "embed_tokens" in name):
            value = noise
        elif t.dim() == 2:
            value = noise / t.shape[1] ** 0.5
        else:
            value = 0.1 * noise  # LLaDA2's expert_bias: routing scores are sigmoids in (0, 1)
        out[name] = value.to(torch.bfloat16)
    return out


def inputs(rows: list[list[int]], pads: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows with 0 where the mask id goes (a decoding canvas), left-padded by `pads` (pad id, key_mask 0)."""
    ids = torch.tensor(rows)
    key_mask = torch.ones_like(ids)
    for row, pad in enumerate(pads):
        key_mask[row, :pad] = 0
    ids = torch.where(ids == 0, torch.full_like(ids, MASK), ids)
    return torch.where(key_mask == 0, torch.full_like(ids, PAD), ids), key_mask


def canvas_rows(length: int, pads: tuple[int, ...], seed: int) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    rows = torch.randint(1, 118, (len(pads), length), generator=g)
    rows[:, length // 2:][torch.rand(len(pads), length - length // 2, generator=g) < 0.6] = 0  # masked answer
    return rows.tolist()


def end_aligned_blocks(length: int) -> torch.Tensor:
    """(L, L) bool: query i sees key j iff j's block is not after i's, blocks of BLOCK ending at L."""
    block = torch.div(torch.arange(length) - length % BLOCK, BLOCK, rounding_mode="floor")
    return block[None, :] <= block[:, None]


def generate_grid(length: int) -> torch.Tensor:
    """The block mask generate() of modeling_llada2_moe.py builds for a canvas of `length` (a multiple of BLOCK)."""
    blocks = length // BLOCK
    return torch.tril(torch.ones(blocks, blocks)).repeat_interleave(BLOCK, 0).repeat_interleave(BLOCK, 1).bool()


def additive(allowed: torch.Tensor) -> torch.Tensor:
    return torch.zeros(allowed.shape).masked_fill(~allowed, float("-inf"))  # generate() passes mask.log()


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


def provenance(repo: str, commit: str, files: list[str], notes: dict) -> dict:
    return {"reference_repo": repo, "commit": commit, "files": files, "sha256": {f: SHA256[f] for f in files},
            "transformers": transformers.__version__, "torch": torch.__version__, "dtype_run": "float32",
            "weights_dtype": "bfloat16", "script": "lab/reference/make_moe_fixtures.py", **notes}


@torch.no_grad()
def make_llada_moe(ref: Path) -> None:
    configuration, modeling = import_reference("lladamoe_reference", ref / "lladamoe",
                                               ("configuration_lladamoe", "modeling_lladamoe"))
    config = configuration.LLaDAConfig(**LLADA_MOE_CONFIG)
    model = modeling.LLaDAMoEModelLM(config).eval()
    weights = random_weights(model.state_dict(), seed=23)
    model.load_state_dict({k: v.float() for k, v in weights.items()}, strict=True)
    ids, key_mask = inputs(canvas_rows(24, (0, 5, 11), seed=3), (0, 5, 11))
    plain = model(input_ids=ids).logits.float()
    masked = model(input_ids=ids, attention_mask=key_mask).logits.float()
    alone = torch.zeros_like(plain)
    for row in range(ids.shape[0]):
        real = key_mask[row].bool()
        alone[row, real] = model(input_ids=ids[row:row + 1, real]).logits[0].float()
    folder = OUT / "llada_moe"
    save_folder(folder, LLADA_MOE_CONFIG, weights, shards=1)
    save_file({"input_ids": ids, "key_mask": key_mask, "logits": plain.contiguous(), "logits_alone": alone},
              str(folder / "reference.safetensors"))
    (folder / "reference.json").write_text(json.dumps(provenance(
        "https://github.com/InfiniTensor/InfiniLM (verbatim copy of the Hub's inclusionAI/LLaDA-MoE-7B-A1B-Instruct "
        "remote code)", "0a7e522afb6079a30c7ecb50ce8abafe6cc3f808 (modeling), 239f1d707f54c1e95ad2ec282842a3ed87038f05 "
        "(configuration)", ["lladamoe/modeling_lladamoe.py", "lladamoe/configuration_lladamoe.py"],
        {"attn_implementation": config._attn_implementation,
         "reference_ignores_attention_mask": bool(torch.equal(plain, masked)),
         "padding_note": "LLaDAMoEModel sets causal_mask = None and every attention layer sets attention_mask = None: "
                         "pad tokens are attended; logits_alone is what a key padding mask must reproduce"}),
        indent=2) + "\n")


@torch.no_grad()
def make_llada2(ref: Path) -> None:
    configuration, modeling = import_reference("llada2_reference", ref / "llada2",
                                               ("configuration_llada2_moe", "modeling_llada2_moe"))
    config = configuration.LLaDA2MoeConfig(**LLADA2_CONFIG)
    model = modeling.LLaDA2MoeModelLM(config).eval()
    weights = random_weights(model.state_dict(), seed=29)
    model.load_state_dict({k: v.float() for k, v in weights.items()}, strict=True)
    pads = (0, 8, 19)  # real lengths 40, 32 (= generate()'s grid), 21
    ids, key_mask = inputs(canvas_rows(40, pads, seed=5), pads)
    length = ids.shape[1]
    real = key_mask.bool()
    allowed = (end_aligned_blocks(length)[None] & real[:, None, :]) | torch.eye(length, dtype=torch.bool)[None]
    positions = (key_mask.cumsum(-1) - 1).clamp(min=0)
    plain = model(input_ids=ids, attention_mask=additive(allowed[:, None]), position_ids=positions,
                  use_cache=False).logits.float()
    alone = torch.zeros_like(plain)
    matches_generate = []
    for row in range(ids.shape[0]):
        n = int(real[row].sum())
        grid = end_aligned_blocks(n)
        if n % BLOCK == 0:
            matches_generate.append(bool(torch.equal(grid, generate_grid(n))))
        alone[row, real[row]] = model(input_ids=ids[row:row + 1, real[row]], attention_mask=additive(grid[None, None]),
                                      use_cache=False).logits[0].float()
    if not all(matches_generate) or not matches_generate:
        raise SystemExit("the end-aligned block mask differs from generate()'s on a multiple-of-32 length")
    folder = OUT / "llada2"
    save_folder(folder, LLADA2_CONFIG, weights, shards=2)
    save_file({"input_ids": ids, "key_mask": key_mask, "logits": plain.contiguous(), "logits_alone": alone},
              str(folder / "reference.safetensors"))
    (folder / "reference.json").write_text(json.dumps(provenance(
        "https://github.com/ZHZisZZ/dllm (copy of the Hub's inclusionAI/LLaDA2.0-mini remote code)",
        "cbbda7a6f0e177a9e5cd20850b8782119a8688f0",
        ["llada2/modeling_llada2_moe.py", "llada2/configuration_llada2_moe.py"],
        {"attn_implementation": config._attn_implementation, "block_size": BLOCK,
         "end_aligned_grid_equals_generate_grid_at_multiples_of_32": matches_generate,
         "mask_note": "the reference takes its block-causal mask from the caller (4D, additive: generate() passes "
                      "log(0/1)); blocks here end at the sequence end, which is generate()'s grid on its canvases"}),
        indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", type=Path, required=True, help="folder with lladamoe/ and llada2/ (see docstring)")
    args = parser.parse_args()
    if transformers.__version__ != TRANSFORMERS:
        raise SystemExit(f"transformers {transformers.__version__}: the references run on {TRANSFORMERS}; use the "
                         "refenv")
    check_sources(args.ref)
    make_llada_moe(args.ref)
    make_llada2(args.ref)
    total = sum(f.stat().st_size for name in ("llada_moe", "llada2") for f in (OUT / name).iterdir())
    print(f"wrote {OUT}/llada_moe and {OUT}/llada2: {total / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
