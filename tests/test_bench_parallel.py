"""Data-parallel `python -m engine bench`: two CPU processes under `accelerate launch --multi_gpu` give the one-process
answers in one merged report, and a failing rank is named."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from engine.__main__ import main
from engine.bench.parallel import Shard, launched_shard, throughput

ROOT = Path(__file__).resolve().parents[1]
GRID = ["--model", "tiny-random", "--device", "cpu", "--quiet", "--tasks", "addition,chat", "--n", "3",
        "--rules", "low_confidence,credit:paper", "--gen-lengths", "16", "--blocks", "8"]


def two_processes(*args):
    """`accelerate launch --multi_gpu` with two processes (it starts them through torchrun; --device cpu keeps them
    on the CPU), on a free port so that parallel test runs do not meet."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
              "--main_process_port", str(port)]
    return subprocess.run([*launch, "-m", "engine", "bench", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


def test_two_processes_merge_to_the_one_process_answers(tmp_path, monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert main(["bench", *GRID, "--out", str(tmp_path / "one")]) == 0
    out = two_processes(*GRID, "--out", str(tmp_path / "two"))
    assert out.returncode == 0, out.stderr
    one, two = (json.loads((tmp_path / name / "bench.json").read_text()) for name in ("one", "two"))
    timing = {"seconds", "wall_s", "tokens_per_s"}

    def untimed(rows):
        return [{k: v for k, v in row.items() if k not in timing} for row in rows]

    assert len(two["samples"]) == 12 and untimed(two["samples"]) == untimed(one["samples"])
    assert untimed(two["cells"]) == untimed(one["cells"]) and one["parallel"] is None
    speed = two["parallel"]
    assert speed["processes"] == 2
    assert [p["questions"] for p in speed["per_process"]] == [8, 4]  # 2 + 1 questions in each of the 4 cells
    assert speed["questions_per_s"] == pytest.approx(12 / max(p["seconds"] for p in speed["per_process"]))
    table = (tmp_path / "two" / "bench.md").read_text()
    assert "Data-parallel over 2 processes: 12 questions (each once per cell)" in table


def test_a_failing_rank_ends_the_run_naming_it(tmp_path):
    # HumanEval questions 0 and 1 take 409 and 815 tiny-random tokens: with gen 1280 only rank 1's prompt overflows
    # the 2048-token context, a real error in one process.
    out = two_processes("--model", "tiny-random", "--device", "cpu", "--quiet", "--tasks", "humaneval",
                        "--n", "2", "--rules", "threshold", "--gen-lengths", "1280", "--blocks", "1280",
                        "--out", str(tmp_path))
    assert out.returncode != 0 and not (tmp_path / "bench.json").exists()
    assert "error: rank 1 of 2: prompts of 815 tokens + gen_length=1280 exceed the model's context" in out.stderr


def test_shards_split_every_question_once_and_deterministically():
    items = list(range(7))
    parts = [Shard(rank, 3).take(items) for rank in range(3)]
    assert parts == [[0, 3, 6], [1, 4], [2, 5]] and sorted(sum(parts, [])) == items
    assert Shard(0, 1).take(items) == items and Shard(0, 1).device("cpu") == "cpu"
    with pytest.raises(ValueError, match="rank=2, world=2"):
        Shard(2, 2)


def test_launcher_variables_and_throughput(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert launched_shard() == Shard(1, 2, 1)
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE='two' must be an integer"):
        launched_shard()
    speed = throughput([{"rank": 0, "device": "cuda:0", "questions": 10, "seconds": 5.0},
                        {"rank": 1, "device": "cuda:1", "questions": 10, "seconds": 4.0}])
    assert speed["questions_per_s"] == 4.0 and [p["questions_per_s"] for p in speed["per_process"]] == [2.0, 2.5]


def test_gpu_bench_dp_smoke_decodes_fixed_length_answers(tmp_path):
    script = ROOT / "lab" / "benchmarks" / "gpu_bench_dp.py"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(name, None)
    subprocess.run([sys.executable, str(script), "--smoke", "--out-dir", str(tmp_path)], check=True, cwd=ROOT,
                   env=env, timeout=300, capture_output=True)
    run = json.loads((tmp_path / "bench.json").read_text())
    assert run["config"]["model"] == "llada-8b-random" and len(run["samples"]) == 4
    assert all(s["answer_tokens"] == 16 and not s["ended_eos"] for s in run["samples"])  # no early stop
    ratio = tmp_path / "ratio.json"
    run_json = str(tmp_path / "bench.json")
    subprocess.run([sys.executable, str(script), "--compare", run_json, run_json, "--out", str(ratio)], check=True,
                   cwd=ROOT, env=env, timeout=120, capture_output=True)
    result = json.loads(ratio.read_text())
    assert result["speedup"] == pytest.approx(1.0) and result["identical_answers"] == "4 of 4"
