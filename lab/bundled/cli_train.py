"""`python -m lab.bundled train`: run the bundled dLLM's whole recipe (GPU) or its smoke configuration (CPU)."""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

NAME = "train"


def add_parser(subparsers) -> str:
    p = subparsers.add_parser(NAME, help="build data, train and evaluate the bundled diffusion LLM")
    p.add_argument("--out", required=True, help="folder for the weights, eval table and recipe log")
    p.add_argument("--smoke", action="store_true", help="tiny random model, a few steps (CPU, seconds)")
    p.add_argument("--train-seconds", type=float, default=None, help="optimisation time budget")
    p.add_argument("--device", default=None, help="cuda or cpu; default cuda when present")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--method", choices=("lora", "full"), default=None,
                   help="lora: adapters trained directly (default); full: full fine-tune compressed to the same rank")
    p.add_argument("--pool-cache", type=Path, default=None,
                   help="JSON file of the training examples: reused when present, written otherwise")
    p.add_argument("--data-only", action="store_true", help="stop once the training examples exist (fills the cache)")
    p.add_argument("--no-teacher-eval", action="store_true", help="leave the AR teacher's rows out of the table")
    return NAME


def run(args: argparse.Namespace) -> int:
    from lab.bundled.config import RecipeConfig, smoke_config
    from lab.bundled.recipe import run_recipe

    config = smoke_config() if args.smoke else RecipeConfig()
    if args.train_seconds is not None:
        config = replace(config, train_seconds=args.train_seconds)
    if args.seed is not None:
        config = replace(config, seed=args.seed)
    if args.method is not None:
        config = replace(config, method=args.method)
    run_recipe(config, Path(args.out), device=args.device, pool_cache=args.pool_cache, data_only=args.data_only,
               teacher_eval=not args.no_teacher_eval)
    return 0

