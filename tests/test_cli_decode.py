"""The decode CLI, as a user runs it: one JSON object on success, one stderr line and exit 2 on bad input."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.decoding import load_trace

ROOT = Path(__file__).resolve().parents[1]


def cli(*args):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "engine", "decode", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_json_output_and_trace_file(tmp_path):
    out = cli("--model", "tiny-random", "--prompt", "hi", "--rule", "credit", "--json", "--gen-length", "32",
              "--block-length", "16", "--trace-out", str(tmp_path / "t.json"))
    assert out.returncode == 0, out.stderr
    obj = json.loads(out.stdout)
    for key in ("answer", "nfe", "tokens_per_second", "gen_length", "rule", "commit_step"):
        assert key in obj
    assert obj["gen_length"] == 32 and len(obj["commit_step"]) == 32 and 2 <= obj["nfe"] <= 32
    assert load_trace(tmp_path / "t.json").meta["nfe"] == obj["nfe"]


@pytest.mark.parametrize("args, words", [
    (["--gen-length", "30"], "gen_length=30"),
    (["--rule", "low_confidence", "--steps", "7", "--gen-length", "64", "--block-length", "32"], "steps=7"),
    (["--threshold", "1.5"], "threshold=1.5"),
    (["--alpha", "-0.1"], "alpha=-0.1"),
    (["--beta", "2"], "beta=2"),
    (["--model", "evil/model"], "model='evil/model' is unknown"),
    (["--prompt", ""], "prompt is empty"),
    (["--cache", "full"], "cache='full' is unknown; allowed: none, prefix, dual"),
    (["--cache", "dual", "--refresh", "0"], "refresh=0 must be an integer >= 1"),
    (["--model", "llada2", "--source", "tests/fixtures/models/llada2", "--cache", "dual"],
     "cache='dual' needs a full-attention model"),
])
def test_bad_arguments_give_one_line_and_exit_2(args, words):
    base = {"--model": "tiny-random", "--prompt": "hi"}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = value
    rest = [a for a in args if a not in base and a not in base.values()]
    out = cli(*[x for kv in base.items() for x in kv], *rest)
    assert out.returncode == 2
    assert words in out.stderr and len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr


def test_unknown_rule_is_refused():
    out = cli("--model", "tiny-random", "--prompt", "hi", "--rule", "magic")
    assert out.returncode == 2 and "rule 'magic' is unknown" in out.stderr
