"""`python -m lab.bundled eval`: the eval table of a bundled weights file on the held-out sets.

    python -m lab.bundled eval --out runs/eval                       # the shipped weights, full table (GPU)
    python -m lab.bundled eval --out /tmp/e --per-set 5 --gen-lengths 64 --device cpu   # a quick look on CPU
"""
from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

NAME = "eval"


def add_parser(subparsers) -> str:
    p = subparsers.add_parser(NAME, help="evaluate the bundled diffusion LLM (and its AR teacher) on held-out sets")
    p.add_argument("--out", required=True, help="folder for eval_table.md and eval.json")
    p.add_argument("--weights", default=None, help="a weights file; default the shipped assets/bundled one")
    p.add_argument("--per-set", type=int, default=100, help="questions per held-out set")
    p.add_argument("--gen-lengths", type=int, nargs="+", default=[64, 128])
    p.add_argument("--batch", type=int, default=100, help="questions decoded together")
    p.add_argument("--device", default=None, help="cuda or cpu; default cuda when present")
    return NAME


def run(args: argparse.Namespace) -> int:
    from engine.models.bundled import load_bundled
    from engine.models.smollm import load_smollm
    from lab.bundled import data
    from lab.bundled.config import RecipeConfig
    from lab.bundled.evaluate import evaluate, table_markdown

    config = replace(RecipeConfig(), eval_per_set=args.per_set, eval_gen_lengths=tuple(args.gen_lengths),
                     eval_batch=args.batch)  # validates the lengths against the block length
    dllm = load_bundled(args.device, weights=args.weights)
    teacher, tokenizer = load_smollm(dllm.device, dllm.dtype)
    train_prompts = {e.prompt for e in data.ground_truth_examples(config)} | {
        e.prompt for e in data.teacher_prompts(config)}
    sets = data.heldout_sets(config, train_prompts)
    spec = dllm.spec
    rows, samples = evaluate(dllm.model, teacher, tokenizer, sets, spec.mask_id, spec.eos_id, spec.shift,
                             config.eval_gen_lengths, config.eval_block_length, config.eval_batch)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval_table.md").write_text(table_markdown(rows) + "\n")
    (out / "eval.json").write_text(json.dumps({"rows": rows, "samples": samples, "device": str(dllm.device)},
                                              indent=1))
    print(table_markdown(rows))
    return 0

