"""lab/benchmarks/gpu_families.py --smoke: every family decodes on the CPU through the same code a GPU run uses."""
from engine.models.families import FAMILIES

from tests.conftest import smoke_json


def test_gpu_families_smoke_writes_every_family(tmp_path):
    families = smoke_json("gpu_families.py", tmp_path / "families.json")["families"]
    assert set(families) == set(FAMILIES)
    for name in ("llada", "dream"):
        result = families[name]
        assert result["decode_credit_trace"]["nfe"] >= 32 // 16  # at least one step per block
        assert result["floor"]["floor_ms"] > 0 and result["step_over_floor"] > 1
        assert result["shape"] == {"batch": 1, "prompt": 8, "gen_length": 32, "block_length": 16}
