"""lab/benchmarks/bundled_cache.py --smoke: every variant decodes through the code the CPU measurement uses."""
from tests.conftest import smoke_json


def test_bundled_cache_smoke_reports_every_variant(tmp_path):
    variants = smoke_json("bundled_cache.py", tmp_path / "bundled_cache.json")["variants"]
    assert set(variants) == {"transformers", "native", "prefix", "dual", "fixed_steps_transformers"}
    assert variants["native"]["same_tokens_as_transformers"] == 1.0  # same network, same tokens
    assert all(0 <= v["same_tokens_as_transformers"] <= 1 and v["nfe"] >= 2 for v in variants.values())
