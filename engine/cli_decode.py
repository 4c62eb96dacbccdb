"""`python -m engine decode`: decode one prompt, print the answer (or one JSON object), optionally save the trace."""
from __future__ import annotations

import argparse
import json

from engine.decoding import RULES, save_trace
from engine.decoding.cache import CACHE_MODES
from engine.models.families import FAMILIES
from engine.models.registry import model_ids
from engine.pipeline import DecodeRequest, decode

NAME = "decode"


def add_parser(subparsers) -> str:
    p = subparsers.add_parser(NAME, help="decode a prompt with a diffusion LLM and a decoding rule")
    p.add_argument("--model", default="bundled", help=f"a registered model: {', '.join(model_ids('dllm'))}; with "
                   f"--source also a family name: {', '.join(FAMILIES)}")
    p.add_argument("--source", default=None, help="a downloaded checkpoint folder (config.json + safetensors) to "
                   "load --model from instead of the Hub")
    p.add_argument("--prompt", required=True)
    p.add_argument("--rule", default="credit", help=f"a rule id or label: {', '.join(RULES)}")
    p.add_argument("--gen-length", type=int, default=64)
    p.add_argument("--block-length", type=int, default=32)
    p.add_argument("--steps", type=int, default=None, help="fixed-steps rules; default gen_length")
    p.add_argument("--threshold", type=float, default=0.9, help="tau")
    presets = sorted({name for entry in RULES.values() for name in entry.presets})
    p.add_argument("--preset", default="paper", help=f"the rule's preset ({', '.join(presets)}); custom uses the knobs")
    p.add_argument("--alpha", type=float, default=None, help="credit fusion strength (sets --preset custom)")
    p.add_argument("--beta", type=float, default=None, help="credit decay (sets --preset custom)")
    p.add_argument("--gamma", type=float, default=None, help="credit boost exponent (sets --preset custom)")
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", default="none", help=f"key/value cache: {', '.join(CACHE_MODES)} (Fast-dLLM; a "
                   "block-causal model's prefix cache is exact)")
    p.add_argument("--refresh", type=int, default=None, help="cache refresh every N steps inside a block (default: "
                   "each block's first step only)")
    p.add_argument("--device", default=None, help="cpu or cuda; default cuda when present")
    p.add_argument("--trace-out", default=None, help="write the trace (JSON; .json.gz compresses)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the answer")
    return NAME


def request_from_args(args: argparse.Namespace) -> DecodeRequest:
    knobs = {k: getattr(args, k) for k in ("alpha", "beta", "gamma") if getattr(args, k) is not None}
    preset = "custom" if knobs else args.preset  # knobs not given keep the default preset's values
    return DecodeRequest(prompt=args.prompt, rule=args.rule, gen_length=args.gen_length,
                         block_length=args.block_length, steps=args.steps, threshold=args.threshold, preset=preset,
                         temperature=args.temperature, seed=args.seed, top_k=args.top_k, cache=args.cache,
                         refresh=args.refresh, **knobs)


def run(args: argparse.Namespace) -> int:
    from engine.models import load_model, model_entry
    from engine.models.families import load_native

    request = request_from_args(args)  # validate knobs before loading any model
    if args.source is not None and args.model in FAMILIES:
        model = load_native(args.model, source=args.source, device=args.device)
    else:
        model = load_model(model_entry(args.model, "dllm").id, source=args.source, device=args.device)
    outcome = decode(model, request)
    if args.trace_out:
        save_trace(outcome.trace, args.trace_out)
    if not args.json:
        print(outcome.answer)
        return 0
    print(json.dumps({
        "answer": outcome.answer, "model": args.model, "rule": outcome.trace.meta["rule"],
        "params": outcome.trace.meta["params"], "nfe": outcome.result.nfe, "gen_length": args.gen_length,
        "block_length": args.block_length, "seconds": round(outcome.result.seconds, 4),
        "tokens_per_second": round(outcome.tokens_per_second, 3), "answer_tokens": outcome.trace.meta["answer_tokens"],
        "commit_step": outcome.result.commit_step[0].tolist(), "device": outcome.trace.meta["device"],
        "cache": outcome.trace.meta["cache"],
        "trace": args.trace_out,
    }))
    return 0
