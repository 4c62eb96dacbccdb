"""The bundled recipe's second method (full fine-tune, changes compressed to rank r) and its shared pool cache."""
import copy
import json
from dataclasses import replace

import pytest
import torch

from engine.models.adapter import merge_adapter
from engine.models.bundled import read_weights
from lab.bundled.config import smoke_config
from lab.bundled.full import compress_full, prepare_full
from lab.bundled.lora import adapted_linears
from lab.bundled.train import Tokenised, diffusion_loss


def _tuned(tiny_model):
    """(base copy, a copy after one real full fine-tuning step with a large SGD step)."""
    base = copy.deepcopy(tiny_model.model).float()
    tuned = copy.deepcopy(base)
    trainable = prepare_full(tuned, tiny_model.spec.mask_id)
    batch = [Tokenised(tuple(range(5, 12)), (20, 21, 22) + (tiny_model.spec.eos_id,) * 5, "t")] * 3
    diffusion_loss(tuned, batch, tiny_model.spec.mask_id, True, 0.02, torch.Generator().manual_seed(0),
                   torch.device("cpu")).backward()
    torch.optim.SGD(trainable, lr=5.0).step()
    return base, tuned


def _weights(model) -> dict[str, torch.Tensor]:
    return {name: linear.weight.detach().clone() for name, _, _, linear in adapted_linears(model)}


def test_full_training_moves_every_projection_and_only_the_mask_row(tiny_model) -> None:
    base, tuned = _tuned(tiny_model)
    before, after = _weights(base), _weights(tuned)
    assert all(not torch.equal(before[name], after[name]) for name in before)
    changed = (tuned.get_input_embeddings().weight - base.get_input_embeddings().weight).abs().sum(dim=1) > 0
    assert changed.nonzero().flatten().tolist() == [tiny_model.spec.mask_id]


def test_compression_at_full_rank_gives_back_the_fine_tune(tiny_model) -> None:
    base, tuned = _tuned(tiny_model)
    state, kept = compress_full(tuned, base, rank=128, mask_id=tiny_model.spec.mask_id)  # >= every matrix's rank
    assert min(kept.values()) == pytest.approx(1.0)
    merged = merge_adapter(copy.deepcopy(base), state, 1.0, tiny_model.spec.mask_id)
    for name, weight in _weights(tuned).items():
        delta = weight - _weights(base)[name]
        assert torch.allclose(_weights(merged)[name], weight, atol=2e-2 * float(delta.abs().max()) + 1e-6), name
    ids = torch.randint(4, 200, (2, 12), generator=torch.Generator().manual_seed(0))
    assert torch.allclose(merged(input_ids=ids).logits, tuned(input_ids=ids).logits, atol=5e-2)


def test_compression_keeps_the_best_rank_r_part_of_each_change(tiny_model) -> None:
    base, tuned = _tuned(tiny_model)
    state, kept = compress_full(tuned, base, rank=2, mask_id=tiny_model.spec.mask_id)
    merged = merge_adapter(copy.deepcopy(base), state, 1.0, tiny_model.spec.mask_id)
    for name, weight in _weights(tuned).items():
        delta = weight - _weights(base)[name]
        u, s, vh = torch.linalg.svd(delta, full_matrices=False)
        best = (u[:, :2] * s[:2]) @ vh[:2]
        got = _weights(merged)[name] - _weights(base)[name]
        assert torch.allclose(got, best, atol=2e-2 * float(best.abs().max()) + 1e-6), name
        assert kept[name] == pytest.approx(float((s[:2] ** 2).sum() / (s ** 2).sum()), rel=1e-4)
        assert kept[name] < 1.0
    assert state["mask_embedding"].shape == (tuned.config.hidden_size,)


def test_pool_cache_is_reused_and_refused_for_other_data(tmp_path) -> None:
    from lab.bundled.recipe import read_pool, run_recipe

    cache = tmp_path / "pool.json"
    made = run_recipe(smoke_config(), tmp_path / "a", device="cpu", workers=1, log=lambda line: None,
                      pool_cache=cache, data_only=True)
    pool = read_pool(cache, smoke_config())
    assert len(pool["ground"]) == made["ground"] and len(pool["taught"]) == made["taught"] > 0
    assert not (tmp_path / "a" / "smollm2-dllm.safetensors").exists()  # data only
    with pytest.raises(ValueError, match="seed.*delete it"):
        read_pool(cache, replace(smoke_config(), seed=3))


def test_full_method_ships_a_lora_format_file_and_both_tables(tmp_path) -> None:
    from lab.bundled.recipe import run_recipe

    config = replace(smoke_config(), method="full")
    result = run_recipe(config, tmp_path, device="cpu", workers=1, log=lambda line: None)
    tensors, metadata = read_weights(tmp_path / "smollm2-dllm.safetensors")
    assert metadata["lora_alpha"] == str(float(config.lora_rank))  # scale 1: the factors hold the change itself
    assert json.loads(metadata["recipe"])["method"] == "full"
    a = next(t for key, t in tensors.items() if key.endswith("q_proj.lora_A"))
    assert a.shape[0] == config.lora_rank and a.dtype == torch.bfloat16
    assert len(result["eval_uncompressed"]) == len(result["eval"]) - len(result["eval"]) // 4  # no AR rows
    assert (tmp_path / "eval_table_uncompressed.md").is_file() and result["kept_energy"]
