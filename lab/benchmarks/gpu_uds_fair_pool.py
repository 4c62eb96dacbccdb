"""The fair test as concurrent worker processes, several per GPU, within one deadline (lab/gpu/plans/fair_v2.plan).

SmolLM2-135M is launch-bound on an H200 (docs/UDS_SPEED.md), so one run leaves most of the card idle; several
processes per GPU (CUDA_VISIBLE_DEVICES) fill it. The runs are dealt out in priority order, each to the worker whose
expected load is lowest (costs relative to a Random run: Full 1.3, UDS as released 1.2, measured at pool 1,200), so
the first wave covers every arm at the first seeds and a run cut by the deadline costs a later seed. Each worker is
`gpu_uds_fair.py --runs ...` (its own model copy; results written per run), logging to OUT/logs/worker-K.log. At
`--deadline-s` the workers still running are stopped, leaving the finished runs in place for `--summarize`.

Run: python lab/benchmarks/gpu_uds_fair_pool.py --out OUT --gpus 2 --workers 10 --deadline-s 440 -- --train 2400
     (arguments after `--` go to every worker; add --smoke there to check the whole thing on a CPU)
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

COST = {"full": 1.3, "uds_released": 1.2, "base": 0.1}  # expected time relative to a Random run; others 1.0


def deal(runs: list[str], workers: int) -> list[list[str]]:
    """Runs in priority order, each to the least-loaded worker (ties: the lowest index); a worker keeps that order.
    Within a wave, the costlier runs are dealt first, so they land on the workers with the least behind them."""
    loads, lists = [0.0] * workers, [[] for _ in range(workers)]
    for wave in range(0, len(runs), workers):
        for run in sorted(runs[wave:wave + workers], key=lambda r: -COST.get(r.split(":")[0], 1.0)):
            k = min(range(workers), key=lambda i: (loads[i], i))
            lists[k].append(run)
            loads[k] += COST.get(run.split(":")[0], 1.0)
    return [w for w in lists if w]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--arms", default="random,uds_released,uds_default,utility,full")
    parser.add_argument("--seeds", default="21,22,23")
    parser.add_argument("--base", action="store_true", help="also score the untrained model (one worker, first)")
    parser.add_argument("--gpus", type=int, default=1, help="worker K runs on GPU K mod gpus")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--deadline-s", type=float, default=440.0, help="seconds from now; workers stop there")
    parser.add_argument("--threads", type=int, default=3, help="CPU threads per worker (OMP_NUM_THREADS)")
    args, worker_args = parser.parse_known_args()
    worker_args = [a for a in worker_args if a != "--"]
    out = Path(args.out)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    runs = (["base"] if args.base else []) + [f"{arm}:{seed}" for seed in args.seeds.split(",")
                                              for arm in args.arms.split(",")]
    deadline = time.time() + args.deadline_s
    script = Path(__file__).with_name("gpu_uds_fair.py")
    procs = []
    for k, assigned in enumerate(deal(runs, args.workers)):
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": str(k % args.gpus), "OMP_NUM_THREADS": str(args.threads),
               "MKL_NUM_THREADS": str(args.threads)}
        command = [sys.executable, str(script), "--out", str(out), "--runs", ",".join(assigned),
                   "--deadline", f"{deadline:.0f}", *worker_args]
        print(f"worker {k} on GPU {k % args.gpus}: {', '.join(assigned)}", flush=True)
        log = (out / "logs" / f"worker-{k}.log").open("w")
        procs.append((k, subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT), log))
    began = time.time()
    while any(p.poll() is None for _, p, _ in procs) and time.time() < deadline:
        time.sleep(1.0)
    for k, proc, log in procs:
        if proc.poll() is None:
            print(f"worker {k}: still running at the deadline, stopped", flush=True)
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
        print(f"worker {k}: exit {proc.returncode}", flush=True)
    finished = sorted(p.stem for p in (out / "results").glob("*-s*.json"))
    print(f"{len(finished)} of {len(runs) - args.base} runs finished in {time.time() - began:.0f} s: "
          f"{', '.join(finished)}", flush=True)


if __name__ == "__main__":
    main()
