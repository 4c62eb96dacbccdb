"""The MoE families (LLaDA-MoE, LLaDA2): reference logits, routing, rows-only head, block-causal attention, a decode,
and the published parameter counts on the meta device."""
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from engine.decoding import Credit, Threshold, generate
from engine.models.cuda_graph import StaticForward
from engine.models.families import FAMILIES, build_module, load_native
from engine.models.llada2 import PUBLISHED_CONFIG as LLADA2_PUBLISHED, block_causal
from engine.models.llada_moe import PUBLISHED_CONFIG as LLADA_MOE_PUBLISHED
from engine.models.moe import RoutedExperts, SwiGLU

FIXTURES = Path(__file__).parent / "fixtures" / "models"
TOL = 1e-4


@pytest.fixture(scope="module", params=["llada_moe", "llada2"])
def family(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def loaded():
    return {name: load_native(name, source=FIXTURES / name, device="cpu") for name in ("llada_moe", "llada2")}


def reference(name: str) -> dict[str, torch.Tensor]:
    return load_file(str(FIXTURES / name / "reference.safetensors"))


def test_fixtures_match_reference_logits(loaded, family):
    model, ref = loaded[family], reference(family)
    ids, key_mask = ref["input_ids"], ref["key_mask"]
    real = key_mask.bool()
    with torch.no_grad():
        masked = model.model(input_ids=ids, attention_mask=key_mask).logits.float()  # (B, L, V)
    assert (masked - ref["logits_alone"])[real].abs().max() < TOL  # padded rows = each row run alone
    if family == "llada_moe":  # the reference attends to padding; without a mask so do we
        assert (model(ids) - ref["logits"]).abs().max() < TOL
    else:  # the reference given the engine's block-causal + padding mask
        assert (masked - ref["logits"])[real].abs().max() < TOL
    assert ref["logits_alone"][real].std() > 0.5  # logits far from flat: the comparison has teeth


def test_fixture_folders_are_small():
    total = sum(f.stat().st_size for name in ("llada_moe", "llada2") for f in (FIXTURES / name).iterdir())
    assert total < 1_000_000


def test_block_rows_head_equals_full_head_rows(loaded, family):
    model, ref = loaded[family], reference(family)
    ids, key_mask = ref["input_ids"], ref["key_mask"]
    full = model(ids)  # (B, L, V)
    lo, hi = ids.shape[1] - 16, ids.shape[1] - 8
    assert torch.allclose(model.block_logits(ids, lo, hi), full[:, lo:hi], atol=1e-6)
    fast = StaticForward(model, key_mask=key_mask[:, :20])  # CPU: graph-free, 4D mask built once per decode
    with torch.no_grad():
        masked = model.model(input_ids=ids, attention_mask=key_mask).logits.float()
    assert torch.allclose(fast.block_logits(ids, lo, hi), masked[:, lo:hi], atol=1e-6)


def test_routed_experts_equal_a_per_token_sum_and_keep_official_names():
    torch.manual_seed(0)
    experts = RoutedExperts(num_experts=6, hidden=8, inner=4)
    torch.nn.init.normal_(experts.gate_up)
    torch.nn.init.normal_(experts.down)
    x = torch.randn(11, 8)
    chosen = torch.stack([torch.randperm(6)[:3] for _ in range(11)])  # (T, k): distinct experts per token
    weights = torch.rand(11, 3)
    state = experts.state_dict()
    assert sorted(state) == sorted(f"{j}.{p}.weight" for j in range(6) for p in ("gate_proj", "up_proj", "down_proj"))
    mlps = []
    for j in range(6):
        mlp = SwiGLU(8, 4)
        mlp.load_state_dict({f"{p}.weight": state[f"{j}.{p}.weight"] for p in ("gate_proj", "up_proj", "down_proj")})
        mlps.append(mlp)
    expected = torch.stack([sum(weights[t, s] * mlps[int(chosen[t, s])](x[t]) for s in range(3)) for t in range(11)])
    assert torch.allclose(experts(x, chosen, weights), expected, atol=1e-5)
    copy = RoutedExperts(6, 8, 4)
    copy.load_state_dict(state)
    assert torch.equal(copy.gate_up, experts.gate_up) and torch.equal(copy.down, experts.down)


def test_llada2_routing_is_group_limited_with_a_choosing_only_bias(loaded):
    gate = loaded["llada2"].model.model.layers[1].mlp.gate
    c = gate.c
    flat = torch.randn(50, c.hidden_size)
    experts, weights = gate(flat)
    per_group = c.num_experts // c.n_group
    groups = experts // per_group  # (T, k)
    assert all(len(set(row.tolist())) <= c.topk_group for row in groups)
    assert torch.allclose(weights.sum(-1), torch.full((50,), c.routed_scaling_factor), atol=1e-5)
    scores = torch.sigmoid(flat @ gate.weight.float().T)
    assert torch.allclose(weights, scores.gather(1, experts) / scores.gather(1, experts).sum(-1, keepdim=True)
                          * c.routed_scaling_factor, atol=1e-6)  # unbiased scores weigh the chosen experts
    with torch.no_grad():
        bias = gate.expert_bias.clone()
        gate.expert_bias.fill_(0.0)
        gate.expert_bias[experts[0, 0]] = -10.0  # the bias alone can forbid an expert
        assert int(experts[0, 0]) not in gate(flat[:1])[0][0].tolist()
        gate.expert_bias.copy_(bias)


def test_llada_moe_routing_uses_unnormalised_top_k_softmax(loaded):
    moe = loaded["llada_moe"].model.model.layers[0].mlp
    flat = torch.randn(30, 32)
    experts, weights = moe.route(flat)
    probs = torch.softmax(flat @ moe.gate.weight.T, dim=-1)
    assert torch.equal(experts, probs.topk(8, dim=-1).indices)
    assert torch.allclose(weights, probs.topk(8, dim=-1).values, atol=1e-6)
    assert (weights.sum(-1) < 1).all()


def test_llada2_attention_is_block_causal_aligned_to_the_end(loaded):
    model = loaded["llada2"]
    assert torch.equal(block_causal(70, 32, torch.device("cpu"))[6:38, 6:38], torch.ones(32, 32, dtype=torch.bool))
    ids = reference("llada2")["input_ids"][:1, :].clone()  # (1, 40): blocks [0, 8) and [8, 40)
    base = model(ids)
    later = ids.clone()
    later[0, 30] = 7
    assert torch.equal(model(later)[:, :8], base[:, :8])  # a later block never reaches an earlier one
    assert not torch.allclose(model(later)[:, 8:30], base[:, 8:30])  # its own block sees it
    earlier = ids.clone()
    earlier[0, 3] = 7
    assert not torch.allclose(model(earlier)[:, 8:], base[:, 8:])  # earlier blocks are visible


@pytest.mark.parametrize("strategy", [Threshold(threshold=0.9), Credit(threshold=0.9, alpha=0.65, beta=0.7,
                                                                       gamma=0.2)])
def test_decode_steps_on_the_tiny_models(loaded, family, strategy):
    model = loaded[family]
    block = 32 if family == "llada2" else 16  # LLaDA2 decodes one attention block per loop block
    prompt = torch.tensor([[5, 17, 33, 2, 90, 41, 8, 77, 3, 64]])
    result = generate(model, prompt, strategy, gen_length=2 * block, block_length=block,
                      mask_id=model.spec.mask_id, eos_id=None)
    assert result.tokens.shape == (1, 2 * block)
    assert not (result.tokens == model.spec.mask_id).any()
    assert 2 <= result.nfe <= 2 * block
    fast = generate(StaticForward(model), prompt, strategy, gen_length=2 * block, block_length=block,
                    mask_id=model.spec.mask_id, eos_id=None)
    assert torch.equal(fast.tokens, result.tokens)


def count(config: dict, family: str) -> int:
    """Parameters implied by a published config.json, written out term by term (independent of the modules)."""
    c, h, v = config, config["hidden_size"], config["vocab_size"]
    swiglu = 3 * h  # per unit of inner width
    if family == "llada_moe":
        hd = h // c["num_attention_heads"]
        attention = 2 * h * h + 2 * h * c["num_key_value_heads"] * hd + 2 * hd  # q, o, k, v, q/k norms
        moe = c["num_experts"] * (swiglu * c["expert_intermediate_size"] + h)  # experts + router rows
        return 2 * v * h + c["num_hidden_layers"] * (attention + moe + 2 * h) + h
    hd, heads, kv = c["head_dim"], c["num_attention_heads"], c["num_key_value_heads"]
    attention = h * (heads + 2 * kv) * hd + heads * hd * h + 2 * hd
    moe = c["num_experts"] * (swiglu * c["moe_intermediate_size"] + h + 1) + swiglu * c["moe_intermediate_size"]
    dense = c["first_k_dense_replace"]
    return (2 * v * h + c["num_hidden_layers"] * (attention + 2 * h) + dense * swiglu * c["intermediate_size"]
            + (c["num_hidden_layers"] - dense) * moe + h)


@pytest.mark.parametrize("family, config, total, published", [
    ("llada_moe", LLADA_MOE_PUBLISHED, 7_356_880_896, 14.7e9 / 2),  # the repo's 14.7 GB of bf16 weights
    ("llada2", LLADA2_PUBLISHED, 16_255_643_392, 16e9),  # the Hub's "16B"
])
def test_real_size_parameter_count_on_meta(family, config, total, published):
    fam = FAMILIES[family]
    module = build_module(fam, fam.read_config(config), "meta", torch.bfloat16)
    params = sum(p.numel() for p in module.parameters())
    assert params == total == count(config, family)
    assert sum(t.numel() for t in module.state_dict().values()) == total  # checkpoint tensors, official names
    assert abs(params - published) / published < 0.02


def test_active_parameters_match_the_published_figures():
    c = LLADA_MOE_PUBLISHED
    h, layers = c["hidden_size"], c["num_hidden_layers"]
    routed_off = (c["num_experts"] - c["num_experts_per_tok"]) * 3 * h * c["expert_intermediate_size"] * layers
    assert round((7_356_880_896 - routed_off - c["vocab_size"] * h) / 1e9, 1) == 1.4  # "1.4B activated"
    c = LLADA2_PUBLISHED
    h = c["hidden_size"]
    routed_off = ((c["num_experts"] - c["num_experts_per_tok"]) * 3 * h * c["moe_intermediate_size"]
                  * (c["num_hidden_layers"] - c["first_k_dense_replace"]))
    active = 16_255_643_392 - routed_off
    assert round(active / 1e9, 2) == 1.43 and round((active - 2 * c["vocab_size"] * h) / 1e6) == 789


def test_bad_folders_give_one_clear_error(tmp_path):
    folder = tmp_path / "moe"
    shutil.copytree(FIXTURES / "llada_moe", folder)
    with pytest.raises(ValueError, match="describes a llada_moe model, not llada2"):
        load_native("llada2", source=folder)
    with pytest.raises(ValueError, match="describes a llada model, not llada_moe"):
        load_native("llada_moe", source=FIXTURES / "llada")
    raw = json.loads((folder / "config.json").read_text())
    raw["num_experts_per_tok"] = 100
    (folder / "config.json").write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="num_experts_per_tok=100 must be <= num_experts=64"):
        load_native("llada_moe", source=folder)
    raw["num_experts_per_tok"], raw["num_experts"] = 8, 32
    (folder / "config.json").write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="model.layers.0.mlp.experts.32.down_proj.weight"):
        load_native("llada_moe", source=folder)  # 64 experts' weights for a 32-expert config


def test_special_ids_come_from_config_and_tokenizer_else_published():
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    from engine.models.moe import EOS_ID, MASK_ID, ling_special_ids
    from engine.models.native import SpecialIds

    core = Tokenizer(models.WordLevel({"a": 0, "[UNK]": 1}, unk_token="[UNK]"))
    core.add_special_tokens(["<|role_end|>"])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core)
    assert ling_special_ids({}, None) == SpecialIds(MASK_ID, (EOS_ID,))
    named = ling_special_ids({"mask_token_id": 125, "pad_token_id": 120}, tokenizer)
    assert named.mask_id == 125 and named.eos_ids == (120, 2)
    assert loaded_spec_ids("llada2") == (125, (120,))


def loaded_spec_ids(name: str) -> tuple[int, tuple[int, ...]]:
    spec = load_native(name, source=FIXTURES / name).spec
    return spec.mask_id, spec.eos_ids
