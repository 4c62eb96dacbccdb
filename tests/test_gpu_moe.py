"""lab/benchmarks/gpu_moe.py --smoke: both MoE families decode on the CPU through the same code a GPU run uses."""
from tests.conftest import smoke_json


def test_gpu_moe_smoke_measures_both_families(tmp_path):
    families = smoke_json("gpu_moe.py", tmp_path / "moe.json")["families"]
    assert set(families) == {"llada_moe", "llada2"}
    for result in families.values():
        assert result["shape"] == {"batch": 1, "prompt": 8, "gen_length": 32, "block_length": 32}
        assert result["decode_credit_trace"]["nfe"] >= 1
        touched = result["experts_touched_per_moe_layer"]
        assert all(0 < n <= result["experts_per_layer"] for n in touched["first_canvas"] + touched["decoded_canvas"])
        floor = result["floor"]
        assert 0 < floor["floor_ms"] <= result["floor_ms_all_experts_read"]
        assert floor["params_per_expert"] > 0 and result["step_over_floor"] > 1
    cache = families["llada2"]["block_cache"]  # the block-causal family also decodes through its exact cache
    assert cache["nfe"] >= 1 and cache["refreshes"] == 1 and cache["floor"]["floor_ms"] < families["llada2"]["floor"][
        "floor_ms"]
    assert "block_cache" not in families["llada_moe"]
