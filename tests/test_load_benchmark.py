"""The load test of issue 16 (lab/benchmarks/load.py) runs end to end on tiny-random (--smoke): concurrent clients
get their own answers, cancelled and disconnected decodes end "cancelled", the one-model-job limit holds."""
import json
import subprocess
import sys
from pathlib import Path


def test_the_load_benchmark_runs(tmp_path):
    subprocess.run([sys.executable, "-m", "lab.benchmarks.load", "--smoke", "--out", str(tmp_path)], check=True,
                   capture_output=True, text=True, timeout=600, cwd=Path(__file__).resolve().parents[1])
    result = json.loads((tmp_path / "load.json").read_text())
    crowds = [p for p in result["phases"] if "clients decode at once" in p["phase"]]
    assert [p["traces_matching_their_prompt"] for p in crowds] == ["2/2", "4/4"]
    cancelled, disconnected = result["phases"][-2:]
    assert cancelled["most_jobs_at_once"] == 1 and cancelled["short_decode_after"]
    assert cancelled["outcomes"].get("cancelled", 0) >= 1 and cancelled["outcomes"].get("done") == 1
    assert disconnected["outcomes"] == {"cancelled": 1}
    assert "| phase | wall s |" in (tmp_path / "load.md").read_text()
