"""The benchmark command on tiny-random (a CPU smoke of the whole path), its task sets and its scoring parts."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.bench.config import BenchConfig, make_rule
from engine.bench.humaneval_check import check_completions
from engine.bench.runner import row_nfe
from engine.bench.tasks import load_tasks
from engine.decoding import Credit, LowConfidence

ROOT = Path(__file__).resolve().parents[1]


def bench(*args):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "engine", "bench", "--model", "tiny-random", "--device", "cpu",
                           "--quiet", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_bench_command_writes_table_and_json(tmp_path):
    out = bench("--tasks", "math,humaneval,chat", "--n", "2", "--rules", "low_confidence,credit:paper", "--gen-lengths", "16",
                "--blocks", "8", "--batch", "2", "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr
    obj = json.loads((tmp_path / "bench.json").read_text())
    assert obj["environment"]["commit"] and obj["environment"]["device"] == "cpu"
    assert len(obj["cells"]) == 6 and len(obj["samples"]) == 12
    for cell in obj["cells"]:
        assert cell["n"] == 2 and 0.0 <= cell["accuracy"] <= 100.0 and cell["tokens_per_s"] > 0
        assert 2 <= cell["mean_nfe"] <= 16  # at least one step per block (2 blocks), at most one per token
    fixed = [s for s in obj["samples"] if s["rule"] == "low_confidence"]
    assert all(s["nfe"] == 8 * (1 + (s["answer_tokens"] > 8)) for s in fixed)  # one token per step, EOS stop
    assert {s["check"] for s in obj["samples"] if s["task_set"] == "humaneval"} != {""}  # the checker ran
    table = (tmp_path / "bench.md").read_text()
    assert table.count("\n| ") == 7 and "| humaneval | credit:paper | 16 | 8 | none | 2 |" in table


@pytest.mark.parametrize("args, words", [
    (["--rules", "bogus"], "rule 'bogus' is unknown"),
    (["--rules", "credit:alpha=0.5,beta=2"], "beta=2.0"),
    (["--gen-lengths", "30", "--blocks", "16"], "gen_length=30"),
    (["--tasks", "poetry"], "task set 'poetry' is unknown"),
    (["--caches", "none,warm"], "cache mode 'warm' is not available in this engine; allowed: none, prefix, dual"),
])
def test_bench_bad_input_is_one_line_and_exit_2(args, words, tmp_path, capsys):
    from engine.__main__ import main

    code = main(["bench", "--model", "tiny-random", "--device", "cpu", *args, "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and words in err and len(err.strip().splitlines()) == 1


def test_row_nfe_counts_distinct_commit_steps():
    commit_step = np.array([[0, 0, 1, 3], [2, 2, 2, -1]])
    assert row_nfe(commit_step).tolist() == [3, 1]


def test_rules_and_custom_credit():
    fixed = make_rule("low_confidence", 64)
    assert isinstance(fixed, LowConfidence) and fixed.steps == 64
    assert make_rule("fixed steps (LLaDA)", 64) == fixed  # a label names the same rule
    assert make_rule("credit:dinfer", 64).beta == 0.8 and make_rule("credit:parameter_free", 64).parameter_free
    assert make_rule("credit", 64) == make_rule("credit:paper", 64)  # the default preset
    custom = make_rule("credit:alpha=0.3,beta=0.5", 64)
    assert isinstance(custom, Credit) and (custom.alpha, custom.beta, custom.gamma) == (0.3, 0.5, 0.2)
    with pytest.raises(ValueError, match="knob 'delta'"):
        make_rule("credit:delta=1", 64)
    with pytest.raises(ValueError, match="gen_length=64 must be a positive multiple of block_length=48"):
        BenchConfig(gen_lengths=(64,), block_lengths=(48,))


def test_task_sets_are_held_out_and_reproducible():
    from engine.data.heldout import chat_split
    from engine.data.prompts import HELDOUT_ADDITION
    from lab.bundled.config import RecipeConfig

    maths = load_tasks("math", 4, seed=3)
    assert maths == load_tasks("math", 4, seed=3) and all(t.target for t in maths)
    assert len({t.task_id.split("/")[0] for t in maths}) == 4  # round-robin over the modules
    config = RecipeConfig()
    train_chat, _ = chat_split(config.seed, config.chat_heldout)
    assert not {t.prompt for t in load_tasks("chat", 10)} & set(train_chat)
    stems = [p.split("{")[0] for p in HELDOUT_ADDITION]
    assert all(any(t.prompt.startswith(s) for s in stems) for t in load_tasks("addition", 10))
    with pytest.raises(ValueError, match="task set 'poems'"):
        load_tasks("poems", 1)


def test_humaneval_checker_runs_code_in_a_subprocess_with_a_limit():
    from engine.data.sources import humaneval_problems

    canonical = {p["task_id"]: p["canonical_solution"] for p in humaneval_problems()[:1]}
    verdicts = check_completions({**canonical, "HumanEval/1": "    return []\n",
                                  "HumanEval/2": "    while True:\n        pass\n"}, timeout=1.0)
    assert verdicts["HumanEval/0"] == {"passed": True, "result": "passed"}
    assert not verdicts["HumanEval/1"]["passed"] and verdicts["HumanEval/2"]["result"] == "timed out"


def test_cache_vs_none_compares_each_mode_with_the_same_rule():
    from engine.bench.report import cache_vs_none

    def cell(cache, rule, accuracy, nfe):
        return {"task_set": "addition", "gen_length": 64, "block_length": 32, "cache": cache, "rule": rule,
                "accuracy": accuracy, "mean_nfe": nfe}

    def sample(cache, rule, task_id, answer):
        return {"task_set": "addition", "gen_length": 64, "block_length": 32, "cache": cache, "rule": rule,
                "task_id": task_id, "answer": answer}

    cells = [cell("none", "threshold", 50.0, 4.0), cell("dual", "threshold", 25.0, 5.0),
             cell("none", "credit", 50.0, 3.0)]
    samples = [sample("none", "threshold", "a/0", "7"), sample("none", "threshold", "a/1", "9"),
               sample("dual", "threshold", "a/0", "7"), sample("dual", "threshold", "a/1", "8"),
               sample("none", "credit", "a/0", "8"), sample("none", "credit", "a/1", "8")]
    (row,) = cache_vs_none(cells, samples)
    assert (row["rule"], row["cache"], row["accuracy_delta"]) == ("threshold", "dual", -25.0)
    assert row["identical_answers"] == 50.0 and row["nfe_ratio"] == 1.25
