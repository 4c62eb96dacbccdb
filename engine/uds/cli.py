"""`python -m engine select`: one SFT run with online batch selection; prints a JSON summary, writes the run log."""
from __future__ import annotations

import argparse
import json
import math
import sys

from engine.uds.config import MODES, SelectionConfig, TrainConfig
from engine.models import model_ids
from engine.uds.runlog_io import save_runlog
from engine.uds.selectors import SELECTORS

NAME = "select"


def add_parser(subparsers) -> str:
    p = subparsers.add_parser(NAME, help="SFT with UDS (or a baseline) online batch selection")
    p.add_argument("--dataset", default="bundled", help="bundled, a .jsonl/.csv/.parquet file, or hub:<id>")
    p.add_argument("--prompt-col", default="prompt", help="upload column with the user turn")
    p.add_argument("--response-col", default="response", help="upload column with the assistant turn")
    p.add_argument("--messages-col", default="", help="upload column with a chat (list of role/content)")
    p.add_argument("--category-col", default="", help="upload column with a category label")
    p.add_argument("--answer-col", default="", help="upload column with an exact reference answer")
    p.add_argument("--selector", default="uds", choices=sorted(SELECTORS))
    p.add_argument("--mode", default="default", choices=MODES,
                   help="default: padding rows masked; as_released: all rows incl. padding")
    p.add_argument("--steps", type=int, default=TrainConfig.steps)
    p.add_argument("--batch", type=int, default=SelectionConfig.batch, help="B candidates per micro-batch")
    p.add_argument("--keep", type=int, default=SelectionConfig.keep, help="K kept per micro-batch")
    p.add_argument("--alpha", type=float, default=SelectionConfig.alpha)
    p.add_argument("--cutoff", type=int, default=TrainConfig.cutoff)
    p.add_argument("--lr", type=float, default=TrainConfig.lr)
    p.add_argument("--full-finetune", action="store_true", help="train all weights instead of LoRA")
    p.add_argument("--eval-items", type=int, default=TrainConfig.eval_items)
    p.add_argument("--seed", type=int, default=21)
    p.add_argument("--model", default="smollm2", choices=model_ids("sft"))
    p.add_argument("--device", default=None, help="cpu or cuda; default cuda when present")
    p.add_argument("--out", default=None, help="folder to write the run log to")
    p.add_argument("--json", action="store_true", help="print one JSON summary (else a short text summary)")
    return NAME


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


def run(args: argparse.Namespace) -> int:
    from engine.uds.loop import run_selection
    from engine.models import load_sft_model

    selection = SelectionConfig(selector=args.selector, mode=args.mode, batch=args.batch, keep=args.keep,
                                alpha=args.alpha, seed=args.seed)
    train = TrainConfig(steps=args.steps, cutoff=args.cutoff, lr=args.lr, lora=not args.full_finetune,
                        eval_items=args.eval_items, seed=args.seed)
    dataset = _dataset(args, args.seed)
    model, tokenizer = load_sft_model(args.model, args.device)

    def progress(done: int, total: int, message: str) -> None:
        print(f"[select] {message}", file=sys.stderr, flush=True)

    log = run_selection(model, tokenizer, dataset, selection, train, model_name=args.model, progress=progress)
    if args.out:
        save_runlog(log, args.out)
    steps = log.steps_frame()
    summary = log.eval_summary
    out = {"selector": args.selector, "mode": args.mode, "mode_label": log.config["mode_label"],
           "steps": len(log.steps), "batch": selection.batch, "keep": log.config["keep"],
           "selected_ids": log.selected_ids(), "train_loss": [_finite(x) for x in steps["train_loss"]],
           "eval_loss": _finite(summary.loss) if summary else None,
           "maths_accuracy": _finite(summary.maths_accuracy) if summary else None,
           "eval_items": summary.n_items if summary else 0, "truncated": log.config["truncated"],
           "seconds": round(float(steps["seconds"].sum()), 3), "run_log": args.out}
    print(json.dumps(out) if args.json else
          f"{args.selector} ({log.config['mode_label']}): {out['steps']} steps, final train loss "
          f"{out['train_loss'][-1]}, held-out loss {out['eval_loss']}, maths accuracy {out['maths_accuracy']}")
    return 0
