"""Torch thread counts (issue 16, item 8): chosen on purpose at start-up, changeable by environment, and the
benchmark that shows their effect runs (--smoke)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.threads import ENV, chosen_threads, usable_cores

ROOT = Path(__file__).resolve().parents[1]


def test_the_default_leaves_one_core_to_the_server_and_the_environment_overrides_it():
    assert chosen_threads({}) == (max(1, usable_cores() - 1), "usable cores - 1")
    assert chosen_threads({ENV: "3"}) == (3, ENV)
    assert chosen_threads({"OMP_NUM_THREADS": "2"}) == (None, "OMP_NUM_THREADS")  # torch reads it itself
    for bad in ("0", "two", "-1", "1.5"):
        with pytest.raises(ValueError, match=f"{ENV}='{bad}' must be an integer >= 1"):
            chosen_threads({ENV: bad})


def test_start_up_sets_torch_threads_in_a_fresh_process():
    code = ("import torch; from engine.threads import configure_threads; s = configure_threads(); "
            "print(s.intra_op, s.inter_op, torch.get_num_threads(), s.source)")
    env = {**{k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}, ENV: "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                         cwd=ROOT).stdout.split()
    assert out == ["1", "1", "1", ENV]


def test_the_threads_benchmark_runs(tmp_path):
    from lab.benchmarks.threads import main

    result = main(["--smoke", "--threads", "1", "--out", str(tmp_path)])
    row = result["rows"][0]
    assert row["intra_op"] == 1 and row["decode_s"] > 0 and row["views_per_s_during_decodes"] > 0
    assert json.loads((tmp_path / "threads.json").read_text())["rows"] == result["rows"]
    assert "| 1 |" in (tmp_path / "threads.md").read_text()
