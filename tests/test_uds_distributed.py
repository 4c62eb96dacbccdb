"""Data-parallel selection with two CPU processes (torchrun, gloo): one buffer on every process at every step, the
same run as one process scoring both groups, and a process that dies ends the run, named, with the log kept."""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from engine.uds.runlog_io import load_runlog

ROOT = Path(__file__).resolve().parents[1]
PROBE = ROOT / "tests" / "uds_ddp_probe.py"
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}


@pytest.fixture(scope="module")
def probes(tmp_path_factory):
    """rank 0 and rank 1 of a two-process run (one group of B = 4 each) and one process scoring both groups."""
    two, one = tmp_path_factory.mktemp("two"), tmp_path_factory.mktemp("one")
    subprocess.run([*TORCHRUN, str(PROBE), str(two), "1"], check=True, cwd=ROOT, env=ENV, capture_output=True,
                   timeout=300)
    subprocess.run([sys.executable, str(PROBE), str(one), "2"], check=True, cwd=ROOT, env=ENV, capture_output=True,
                   timeout=300)
    return [np.load(two / "rank0.npz"), np.load(two / "rank1.npz"), np.load(one / "rank0.npz")]


def test_every_process_holds_the_same_buffer_after_every_step(probes):
    rank0, rank1, _ = probes
    buffers = sorted(k for k in rank0.files if k.startswith("buffer"))
    assert len(buffers) == 3 * 2  # 3 optimizer steps of 2 micro-batches
    for key in buffers:
        assert np.array_equal(rank0[key], rank1[key]), key  # identical, not close: the same pushes in the same order
    assert [rank0[k].shape[0] for k in buffers] == [2, 4, 6, 8, 10, 12]  # K = 1 per process per step
    assert np.array_equal(rank0["picks"], rank1["picks"])


def test_two_processes_equal_one_process_accumulating_the_same_micro_batches(probes):
    rank0, _, one = probes
    assert np.array_equal(rank0["picks"], one["picks"])
    for key in (k for k in one.files if k.startswith("buffer")):
        scale = np.abs(one[key]).max()
        assert np.abs(rank0[key] - one[key]).max() <= 1e-5 * scale, key  # weights differ by summation order only
    weights = [k for k in one.files if k.startswith("w:")]
    assert weights and max(np.abs(rank0[k] - one[k]).max() for k in weights) <= 1e-5
    assert max(np.abs(one[k]).max() for k in weights if "lora_B" in k) > 1e-3  # the adapters did train


def _pids_of_rank(tag: str, rank: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if f"UDS_TEST_TAG={tag}".encode() in environ and f"RANK={rank}".encode() in environ:
            found.append(int(entry.name))
    return found


def test_a_process_that_dies_ends_the_run_named_and_the_log_keeps_its_steps(tmp_path):
    out = tmp_path / "run"
    tag = f"{os.getpid()}-{time.monotonic_ns()}"
    command = [*TORCHRUN, "-m", "engine", "select", "--model", "tiny-random", "--device", "cpu", "--steps", "500",
               "--batch", "4", "--keep", "1", "--cutoff", "64", "--eval-items", "0", "--out", str(out)]
    launcher = subprocess.Popen(command, cwd=ROOT, env={**ENV, "UDS_TEST_TAG": tag}, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 240
    while not (out / "meta.json").exists() and time.monotonic() < deadline and launcher.poll() is None:
        time.sleep(0.5)
    time.sleep(2)  # a few more steps
    victims = _pids_of_rank(tag, 1)
    assert victims and launcher.poll() is None
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    output, _ = launcher.communicate(timeout=120)
    assert launcher.returncode != 0
    assert re.search(r"Root Cause.*?rank\s*:\s*1 \(local_rank: 1\)", output, re.S), output[-2000:]
    assert "error: process 0 of 2 failed" in output and f"the run log in {out} keeps every step" in output
    log = load_runlog(out)
    assert len(log.steps) >= 1 and log.config["status"] == "running"  # ended by the failure, not by its own end
    assert [s.step for s in log.steps] == list(range(len(log.steps)))
