"""`python -m engine select`: one SFT run with online batch selection (UDSTrainer); prints a JSON summary, writes the
run log. Data-parallel under `accelerate launch -m engine select ...` or `torchrun -m engine select ...`: every process
scores its own candidates, the buffer is global, the main process writes the one merged log and prints the summary.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys

from engine.models import model_ids
from engine.uds.config import (CANDIDATE_ORDERS, LORA_INITS, LOSS_REDUCTIONS, MODES, SCHEDULES, SelectionConfig,
                               TrainConfig)
from engine.uds.presets import PRESETS, resolve
from engine.uds.selectors import SELECTORS

NAME = "select"
# Options a preset may set: left unset (None) unless given, so a preset and a contradicting value are caught.
PROTOCOL_OPTIONS = {"batch": int, "keep": int, "alpha": float, "steps": int, "epochs": int, "grad_accumulation": int,
                    "groups": int, "warmup_ratio": float, "cutoff": int, "lr": float, "eval_items": int, "seed": int}
CHOICE_OPTIONS = {"loss_reduction": LOSS_REDUCTIONS, "schedule": SCHEDULES, "candidate_order": CANDIDATE_ORDERS,
                  "lora_init": LORA_INITS}


def add_parser(subparsers) -> str:
    p = subparsers.add_parser(NAME, help="SFT with UDS (or a baseline) online batch selection")
    p.add_argument("--dataset", default="bundled", help="bundled, a .jsonl/.csv/.parquet file, or hub:<id>")
    p.add_argument("--prompt-col", default="prompt", help="upload column with the user turn")
    p.add_argument("--response-col", default="response", help="upload column with the assistant turn")
    p.add_argument("--messages-col", default="", help="upload column with a chat (list of role/content)")
    p.add_argument("--category-col", default="", help="upload column with a category label")
    p.add_argument("--answer-col", default="", help="upload column with an exact reference answer")
    p.add_argument("--preset", default=None, choices=sorted(PRESETS),
                   help="a named protocol (docs/UDS_TRAINER.md traces each value); options may not contradict it")
    p.add_argument("--selector", default="uds", choices=sorted(SELECTORS))
    p.add_argument("--mode", default="default", choices=MODES,
                   help="default: right padding, padding rows masked; as_released: left padding, all rows scored")
    for name, kind in PROTOCOL_OPTIONS.items():
        p.add_argument("--" + name.replace("_", "-"), type=kind, default=None,
                       help=f"default {_default(name)} (engine/uds/config.py), or the preset's")
    for name, choices in CHOICE_OPTIONS.items():
        p.add_argument("--" + name.replace("_", "-"), choices=choices, default=None)
    p.add_argument("--loss-on-prompt", action=argparse.BooleanOptionalAction, default=None,
                   help="train on the prompt tokens too (the released script's train_on_inputs)")
    p.add_argument("--full-finetune", action="store_true", default=None, help="train all weights instead of LoRA")
    p.add_argument("--model", default="smollm2", choices=model_ids("sft"))
    p.add_argument("--device", default=None, help="cpu or cuda; default cuda when present")
    p.add_argument("--out", default=None, help="folder to write the run log to (rewritten after every step)")
    p.add_argument("--json", action="store_true", help="print one JSON summary (else a short text summary)")
    return NAME


def _default(name: str) -> object:
    return getattr(TrainConfig, name) if name in TrainConfig.__dataclass_fields__ else getattr(SelectionConfig, name)


def _dataset(args: argparse.Namespace, seed: int):
    from engine.uds.data import bundled_dataset
    from engine.uds.uploads import ColumnMapping, load_hub, load_upload

    mapping = ColumnMapping(prompt=args.prompt_col, response=args.response_col, messages=args.messages_col,
                            category=args.category_col, answer=args.answer_col)
    if args.dataset == "bundled":
        return bundled_dataset(seed=0)
    if args.dataset.startswith("hub:"):
        return load_hub(args.dataset[4:], mapping, seed=seed)
    return load_upload(args.dataset, mapping, seed=seed)


def _finite(x: float) -> float | None:
    return None if x is None or math.isnan(x) else round(x, 6)


def explicit_settings(args: argparse.Namespace) -> dict[str, object]:
    """The settings given on the command line (what a preset must not contradict)."""
    values = {name: getattr(args, name) for name in [*PROTOCOL_OPTIONS, *CHOICE_OPTIONS, "loss_on_prompt"]
              if getattr(args, name) is not None}
    if args.full_finetune:
        values["lora"] = False
    return {**values, "selector": args.selector, "mode": args.mode}


def run(args: argparse.Namespace) -> int:
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    try:
        return _run(args, rank, world)
    except Exception as err:  # one line naming the process, on every process that fails
        if world == 1 and isinstance(err, ValueError):
            raise
        print(f"error: process {rank} of {world} failed: {type(err).__name__}: {err}"
              + (f"; the run log in {args.out} keeps every step finished before" if args.out else ""),
              file=sys.stderr, flush=True)
        return 2 if isinstance(err, ValueError) else 1


def _run(args: argparse.Namespace, rank: int, world: int) -> int:
    from engine.models import load_sft_model
    from engine.uds.run import run_selection

    selection, train = resolve(args.preset, explicit_settings(args))
    dataset = _dataset(args, train.seed)
    device = args.device
    if world > 1 and (device or "cuda").startswith("cuda"):
        device = f"cuda:{os.environ.get('LOCAL_RANK', '0')}"  # one GPU per process
    model, tokenizer = load_sft_model(args.model, device)

    def progress(done: int, total: int, message: str) -> None:
        print(f"[select] {message}", file=sys.stderr, flush=True)

    log = run_selection(model, tokenizer, dataset, selection, train, model_name=args.model, progress=progress,
                        out=args.out, preset=args.preset)
    if rank != 0:
        return 0
    steps = log.steps_frame()
    summary = log.eval_summary
    out = {"selector": args.selector, "mode": args.mode, "mode_label": log.config["mode_label"],
           "preset": args.preset, "processes": world, "steps": int(steps["optimizer_step"].nunique()),
           "selection_steps": len(log.steps), "batch": selection.batch, "keep": log.config["keep"],
           "grad_accumulation": train.grad_accumulation, "selected_ids": log.selected_ids(),
           "train_loss": [_finite(x) for x in steps["train_loss"]],
           "eval_loss": _finite(summary.loss) if summary else None,
           "maths_accuracy": _finite(summary.maths_accuracy) if summary else None,
           "eval_items": summary.n_items if summary else 0, "truncated": log.config["truncated"],
           "seconds": round(float(steps["seconds"].sum()), 3), "run_log": args.out}
    print(json.dumps(out) if args.json else
          f"{args.selector} ({log.config['mode_label']}): {out['steps']} steps, final train loss "
          f"{out['train_loss'][-1]}, held-out loss {out['eval_loss']}, maths accuracy {out['maths_accuracy']}")
    return 0
