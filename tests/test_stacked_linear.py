"""Stacked projections (engine/models/stacked.py: LLaDA's and Dream's q/k/v and gate/up each run as one matmul): the state dict keeps
the checkpoint's tensor names, a checkpoint loads into the stacked tensors exactly, and the split layout the GPU
benchmark compares against computes the same maths."""
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from engine.models.families import load_native
from engine.models.llada import LLaDABlock, LLaDAConfig, LLaDAModel
from engine.models.native import init_random
from engine.models.stacked import StackedLinear, stack_in_place

FIXTURES = Path(__file__).parent / "fixtures" / "models"
PARTS = ("q_proj", "k_proj", "v_proj", "ff_proj", "up_proj")


def grouped_config(bias: bool) -> LLaDAConfig:
    """Grouped-query attention, so q and k/v differ in width; biases on q/k/v when `bias`."""
    return LLaDAConfig(d_model=32, n_heads=4, n_kv_heads=2, n_layers=2, mlp_hidden_size=48, vocab_size=64,
                       rope_theta=10000.0, rms_norm_eps=1e-5, weight_tying=False, include_qkv_bias=bias,
                       max_sequence_length=64)


@pytest.mark.parametrize("bias", [False, True])
def test_state_dict_names_the_checkpoint_tensors_and_loads_back(bias):
    c = grouped_config(bias)
    model = init_random(LLaDAModel(c), seed=3)
    state = model.state_dict()
    block = {k.removeprefix("model.transformer.blocks.0."): tuple(v.shape) for k, v in state.items()
             if k.startswith("model.transformer.blocks.0.")}
    kv = c.n_kv_heads * c.head_dim
    want = {"q_proj.weight": (32, 32), "k_proj.weight": (kv, 32), "v_proj.weight": (kv, 32),
            "ff_proj.weight": (48, 32), "up_proj.weight": (48, 32), "attn_out.weight": (32, 32),
            "ff_out.weight": (32, 48), "attn_norm.weight": (32,), "ff_norm.weight": (32,)}
    if bias:
        want |= {"q_proj.bias": (32,), "k_proj.bias": (kv,), "v_proj.bias": (kv,)}
    assert block == want
    assert sum(v.numel() for v in state.values()) == sum(p.numel() for p in model.parameters())
    given = {k: v.clone() for k, v in state.items()}
    fresh = LLaDAModel(c)
    fresh.load_state_dict(given, strict=True)
    assert sorted(given) == sorted(state)  # loading stacks its own copy of the dict, never the caller's
    for (name, a), b in zip(model.named_parameters(), fresh.parameters()):
        assert torch.equal(a, b), name


def test_checkpoint_parts_load_into_the_stacked_tensors_exactly():
    model = load_native("llada", source=FIXTURES / "llada", device="cpu").model
    files = {}
    for shard in sorted((FIXTURES / "llada").glob("model-*.safetensors")):
        files |= load_file(str(shard))
    block = model.model.transformer.blocks[1]
    prefix = "model.transformer.blocks.1."
    assert torch.equal(block.qkv.weight, torch.cat([files[f"{prefix}{p}.weight"] for p in PARTS[:3]]))
    assert torch.equal(block.gate_up.weight, torch.cat([files[f"{prefix}{p}.weight"] for p in PARTS[3:]]))


def test_dream_checkpoint_parts_load_into_the_stacked_tensors_exactly():
    model = load_native("dream", source=FIXTURES / "dream", device="cpu").model
    files = load_file(str(FIXTURES / "dream" / "model.safetensors"))
    layer, prefix = model.model.layers[1], "model.layers.1."
    for kind in ("weight", "bias"):
        parts = [files[f"{prefix}self_attn.{p}.{kind}"] for p in ("q_proj", "k_proj", "v_proj")]
        assert torch.equal(getattr(layer.self_attn.qkv, kind), torch.cat(parts))
    parts = [files[f"{prefix}mlp.{p}.weight"] for p in ("gate_proj", "up_proj")]
    assert torch.equal(layer.mlp.gate_up.weight, torch.cat(parts))


def test_a_missing_part_is_named_by_strict_loading():
    c = grouped_config(False)
    state = init_random(LLaDAModel(c), seed=3).state_dict()
    del state["model.transformer.blocks.0.k_proj.weight"]
    with pytest.raises(RuntimeError, match="blocks.0.q_proj.weight") as info:
        LLaDAModel(c).load_state_dict(state, strict=True)
    assert "blocks.0.qkv.weight" in str(info.value)  # missing: the stacked tensor; unexpected: the parts left


@pytest.mark.parametrize("bias", [False, True])
def test_split_layout_computes_what_the_stacked_one_does(bias):
    layer = init_random(StackedLinear(16, {"a": 8, "b": 4, "c": 4}, bias=bias), seed=5)
    x = torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(0))
    stacked = layer(x)
    layer.stacked = False
    split = layer(x)
    assert [t.shape[-1] for t in stacked] == [8, 4, 4]
    for a, b in zip(stacked, split):
        assert torch.allclose(a, b, atol=1e-6, rtol=0)


def test_split_block_gives_the_stacked_block_output():
    c = grouped_config(True)
    block = init_random(LLaDABlock(c), seed=7)
    x = torch.randn(2, 6, c.d_model, generator=torch.Generator().manual_seed(1))
    cos, sin = torch.ones(1, 1, 6, c.head_dim), torch.zeros(1, 1, 6, c.head_dim)
    stacked = block(x, None, cos, sin)
    for layer in (block.qkv, block.gate_up):
        layer.stacked = False
    assert torch.allclose(block(x, None, cos, sin), stacked, atol=1e-5, rtol=0)


def test_stacking_in_place_drops_the_parts_and_loads():
    c = grouped_config(True)
    model = init_random(LLaDAModel(c), seed=3)
    state = model.state_dict()
    stack_in_place(LLaDAModel(c), state)
    assert not [k for k in state if k.rsplit(".", 2)[-2] in PARTS]
    assert "model.transformer.blocks.1.qkv.bias" in state and "model.transformer.blocks.1.gate_up.weight" in state
    fresh = LLaDAModel(c)
    fresh.load_state_dict(state, strict=True)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), fresh.parameters()))
