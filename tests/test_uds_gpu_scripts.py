"""The UDS GPU scripts of lab/gpu/plans/uds_trainer.plan run on a CPU with --smoke and write what the docs read."""
import json
import os
import subprocess
import sys
from pathlib import Path

from engine.uds.runlog_compact import is_compact
from engine.uds.runlog_io import load_runlog
from engine.uds.runlog_zip import import_runlog_zip

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "lab" / "benchmarks"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def _run(*args: str) -> None:
    subprocess.run([sys.executable, *args], check=True, cwd=ROOT, env=ENV, capture_output=True, timeout=600)


def test_speed_script_measures_every_arm_against_full_sft(tmp_path):
    _run(str(BENCH / "gpu_uds_speed.py"), "--smoke", "--out", str(tmp_path / "speed.json"))
    result = json.loads((tmp_path / "speed.json").read_text())
    arms = result["arms"]
    assert set(arms) == {"full_sft", "uds_default_graphs", "uds_default_eager", "uds_as_released"}
    assert all(row["samples_per_s"] > 0 and row["steps"] == 3 for row in arms.values())
    assert arms["full_sft"]["trained_per_step"] == 8 and arms["uds_default_graphs"]["trained_per_step"] == 1
    assert arms["uds_default_graphs"]["scoring_forward"] == "eager"  # no CUDA here
    assert set(result["speedup_over_full_sft"]) == set(arms) - {"full_sft"}


def test_ddp_script_compares_two_processes_with_one(tmp_path):
    _run(str(BENCH / "gpu_uds_ddp.py"), "--smoke", "--out-dir", str(tmp_path))
    _run("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(BENCH / "gpu_uds_ddp.py"),
         "--smoke", "--out-dir", str(tmp_path))
    _run(str(BENCH / "gpu_uds_ddp.py"), "--out-dir", str(tmp_path), "--compare")
    two = json.loads((tmp_path / "ddp_w2.json").read_text())
    compared = json.loads((tmp_path / "ddp_compare.json").read_text())
    assert two["processes"] == 2 and two["steps"] == 3
    assert compared["ratio"] == two["samples_per_s"] / compared["one_gpu_samples_per_s"] and compared["target"] == 1.8


def test_fair_test_script_writes_runs_and_a_paired_summary(tmp_path):
    _run(str(BENCH / "gpu_uds_fair.py"), "--smoke", "--out", str(tmp_path), "--arms", "random,uds_default,full",
         "--seeds", "21", "--base")
    _run(str(BENCH / "gpu_uds_fair.py"), "--out", str(tmp_path), "--summarize")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary["arms"]) == {"random", "uds_default", "full"} and "accuracy" in summary["base"]
    assert set(summary["paired_vs_random"]) == {"uds_default", "full"}
    uds = summary["arms"]["uds_default"]
    assert abs(sum(uds["kept_module_mix"].values()) - 1) < 1e-9 and uds["accuracy"]["n"] == 1
    log = load_runlog(tmp_path / "runs" / "uds_default-s21")
    assert log.config["preset"].startswith("paper") and log.config["train"]["candidate_order"] == "length_grouped"
    assert (log.steps_frame()["n_kept"] == 1).all() and log.config["status"] == "completed"
    assert log.eval_summary.n_items == 16 and log.eval_summary.maths_accuracy == uds["accuracy"]["mean"]
    compact = import_runlog_zip(tmp_path / "compact" / "uds_default-s21.zip", tmp_path)
    assert is_compact(compact) and compact.eval_summary == log.eval_summary
    assert compact.candidates_frame()[["sample_id", "selected"]].equals(log.candidates_frame()[["sample_id",
                                                                                                "selected"]])


def test_fair_pool_deals_runs_by_priority_and_load():
    sys.path.insert(0, str(BENCH))
    from gpu_uds_fair_pool import deal
    runs = ["base"] + [f"{arm}:{seed}" for seed in (21, 22, 23)
                       for arm in ("random", "uds_released", "uds_default", "utility", "full")]
    lists = deal(runs, 10)
    assert sorted(r for w in lists for r in w) == sorted(runs) and len(lists) == 10
    first_wave = {w[0] for w in lists}
    assert all(f"{arm}:21" in first_wave for arm in ("random", "uds_released", "uds_default", "utility", "full"))
    assert max(len(w) for w in lists) == 2 and ["base", "full:22"] in lists  # base is short: a full run follows it


def test_fair_pool_runs_workers_concurrently_and_summarizes(tmp_path):
    _run(str(BENCH / "gpu_uds_fair_pool.py"), "--out", str(tmp_path), "--gpus", "2", "--workers", "2",
         "--arms", "random,full", "--seeds", "21,22", "--deadline-s", "300", "--", "--smoke")
    _run(str(BENCH / "gpu_uds_fair.py"), "--out", str(tmp_path), "--summarize")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert {arm: s["accuracy"]["n"] for arm, s in summary["arms"].items()} == {"random": 2, "full": 2}
    assert sorted(p.name for p in (tmp_path / "compact").glob("*.zip")) == [
        "full-s21.zip", "full-s22.zip", "random-s21.zip", "random-s22.zip"]
    assert all("training" in (tmp_path / "logs" / f"worker-{k}.log").read_text() for k in (0, 1))
