"""lab/benchmarks/bundled_cache.py --smoke: every variant decodes through the code the CPU measurement uses."""
import json
import subprocess
import sys
from pathlib import Path


def test_bundled_cache_smoke_reports_every_variant(tmp_path):
    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "bundled_cache.json"
    subprocess.run([sys.executable, str(root / "lab" / "benchmarks" / "bundled_cache.py"), "--smoke", "--out",
                    str(out)], check=True, cwd=root, timeout=300, capture_output=True)
    variants = json.loads(out.read_text())["variants"]
    assert set(variants) == {"transformers", "native", "prefix", "dual", "fixed_steps_transformers"}
    assert variants["native"]["same_tokens_as_transformers"] == 1.0  # same network, same tokens
    assert all(0 <= v["same_tokens_as_transformers"] <= 1 and v["nfe"] >= 2 for v in variants.values())
