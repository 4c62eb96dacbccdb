"""The bundled model's cache modes on this machine's CPU, side by side: why it runs natively for the caches, and
what a cache buys end to end.

The bundled dLLM is a transformers LlamaForCausalLM made bidirectional; the caches run it as the native LLaDA module
over the same weight tensors (engine/models/llama_native.py). Measured on the same prompts (chat-templated, batch 1,
gen 64, block 32, the credit rule with the trace): a decode with the transformers module (cache none), the native
module without a cache, and the native module with cache prefix and dual; plus LLaDA's fixed steps (one token a
step) without a cache, the end-to-end reference: forwards x step time = the decode's seconds. Reported per variant:
NFE, seconds, step ms, the share of answer tokens equal to the no-cache decode's, and ratios to the transformers
decode. Speed claims are these ratios only.

Run:  python lab/benchmarks/bundled_cache.py --out lab/benchmarks/results/bundled_cache.json
Test: python lab/benchmarks/bundled_cache.py --smoke --out /tmp/bundled_cache.json  (tiny-random, one prompt, gen 32,
block 16)
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch
from gpu_common import header, write_json

from engine.decoding import LowConfidence, generate, make_rule
from engine.decoding.cache import CacheConfig
from engine.models import load_model
from engine.models.base import LoadedModel
from engine.models.kv_forward import CachedForward
from engine.models.llama_native import native_model

PROMPTS = ("What is the capital of France?", "Give three tips for learning to code.", "What is 7 plus 5?")


def variants(loaded: LoadedModel, gen: int) -> dict:
    """name -> (model callable factory, rule factory)."""
    native = LoadedModel(loaded.spec, native_model(loaded), loaded.tokenizer, loaded.device, loaded.dtype)
    credit = lambda: make_rule("credit")  # noqa: E731 - a rule factory
    return {"transformers": (lambda: loaded, credit), "native": (lambda: native, credit),
            "prefix": (lambda: CachedForward(loaded, CacheConfig("prefix")), credit),
            "dual": (lambda: CachedForward(loaded, CacheConfig("dual")), credit),
            "fixed_steps_transformers": (lambda: loaded, lambda: LowConfidence(steps=gen))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--smoke", action="store_true", help="tiny-random, gen 32, block 16")
    args = parser.parse_args()
    if args.smoke:
        torch.set_num_threads(1)  # toy matrices gain nothing from threads, and a shared CPU makes them stall
    loaded = load_model("tiny-random" if args.smoke else "bundled", device="cpu")
    prompts = PROMPTS[:1] if args.smoke else PROMPTS
    gen, block = (32, 16) if args.smoke else (64, 32)
    kw = dict(gen_length=gen, block_length=block, mask_id=loaded.spec.mask_id, eos_id=loaded.spec.eos_id,
              shift=loaded.spec.shift)
    rows: dict[str, list[dict]] = {}
    for prompt in prompts:
        ids = loaded.encode_prompt(prompt)
        reference = None
        for name, (make_fn, make_rule_) in variants(loaded, gen).items():
            generate(make_fn(), ids, make_rule_(), **kw)  # warm-up (allocator, threads)
            result = generate(make_fn(), ids, make_rule_(), **kw)
            reference = result.tokens if reference is None else reference
            rows.setdefault(name, []).append({"nfe": result.nfe, "seconds": result.seconds,
                                              "same_tokens": float((result.tokens == reference).float().mean())})
    base = statistics.mean(r["seconds"] for r in rows["transformers"])
    summary = {name: {"nfe": statistics.mean(r["nfe"] for r in runs),
                      "seconds": statistics.mean(r["seconds"] for r in runs),
                      "step_ms": 1e3 * sum(r["seconds"] for r in runs) / sum(r["nfe"] for r in runs),
                      "same_tokens_as_transformers": statistics.mean(r["same_tokens"] for r in runs),
                      "seconds_over_transformers": statistics.mean(r["seconds"] for r in runs) / base}
               for name, runs in rows.items()}
    out = {"environment": header(torch.device("cpu")), "model": loaded.spec.name, "gen_length": gen,
           "block_length": block, "prompts": len(prompts), "variants": summary}
    write_json(Path(args.out), out)
    print(json.dumps(summary, indent=1), flush=True)


if __name__ == "__main__":
    main()
