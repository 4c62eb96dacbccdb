"""UDS speed: scoring overhead per micro-batch, Gram vs svdvals, samples/s of UDS (K = 2 of B = 8) vs Full.

Model: SmolLM2-135M-Instruct (causal, LoRA r 8 on all 7 projections, as the Selection Lab trains), the bundled
mixture, cut-off 256. After a 3-step warm-up run:
* uds       - run_selection, selector uds, B = 8, K = 2: score 8 (no-grad forward, Gram spectrum, sketch, buffer
              distance), train on 2;
* full      - run_selection, selector full (keeps all 8): the app's "Full" row, which still scores;
* plain_sft - the same micro-batches trained on all 8 with no scoring at all: the cost UDS is compared against.
Same number of optimizer steps for each; samples/s counts the candidates each step consumes (8).
Also lab.benchmarks.uds_bench.bench_overhead (the Selection Lab's CPU measurement of docs/UDS_SPEED.md) on the GPU.
Gram vs svdvals: the spectra of one scored micro-batch's logits (8 x N x 49,152) through the N x N Gram matrix
(float64 eigvalsh, the engine's route) and through torch.linalg.svdvals on each N x V matrix (float32, as released).

Run: python lab/benchmarks/gpu_uds.py --out OUT.json [--smoke]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from gpu_common import header, median_ms, write_json

from engine.models import load_sft_model
from engine.uds.batch_scores import score_batch
from engine.uds.batching import collate, encode
from engine.uds.config import SelectionConfig, TrainConfig
from engine.uds.data import bundled_dataset
from engine.uds.logit_scores import FFTSketch, singular_values
from engine.uds.run import prepare_trainable, run_selection
from lab.benchmarks.plain_sft import candidate_batches, sft_step


def selection_run(model, tokenizer, dataset, selector: str, steps: int, cutoff: int) -> dict:
    keep = 8 if selector == "full" else 2
    log = run_selection(model, tokenizer, dataset, SelectionConfig(selector=selector, batch=8, keep=keep),
                        TrainConfig(steps=steps, cutoff=cutoff, eval_items=0, strip_max_steps=0))
    frame = log.steps_frame()
    seconds, scoring = float(frame["seconds"].sum()), float(frame["scoring_seconds"].sum())
    return {"steps": steps, "seconds": seconds, "scoring_seconds": scoring, "scoring_share": scoring / seconds,
            "step_ms": 1e3 * seconds / steps, "samples_per_s": 8 * steps / seconds,
            "trained_samples_per_s": keep * steps / seconds}


def plain_sft(model, tokenizer, dataset, steps: int, cutoff: int) -> dict:
    train = TrainConfig(steps=steps, cutoff=cutoff, eval_items=0)
    trainable = prepare_trainable(model, train)
    optimizer = torch.optim.AdamW([p for p in trainable.parameters() if p.requires_grad], lr=train.lr)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    encoded = [e for e in (encode(tokenizer, s, cutoff) for s in dataset.train) if len(e.ids) > e.prompt_len]
    batches = candidate_batches(encoded, 8, train.seed)
    device = next(trainable.parameters()).device
    began = time.perf_counter()
    for _ in range(steps):
        sft_step(trainable, optimizer, collate(next(batches), pad_id), train.grad_clip)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - began
    return {"steps": steps, "seconds": seconds, "step_ms": 1e3 * seconds / steps, "samples_per_s": 8 * steps / seconds}


def spectra(model, tokenizer, dataset, cutoff: int, device: torch.device) -> dict:
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    items = [encode(tokenizer, s, cutoff) for s in dataset.train[:8]]
    batch = collate(items, pad_id)
    vocab = model.get_output_embeddings().weight.shape[0]
    sketch = FFTSketch(vocab)
    empty = torch.zeros(0, sketch.dim)
    score_ms = median_ms(lambda: score_batch(model, batch, sketch, empty, False), device, repeats=10)
    scores = score_batch(model, batch, sketch, empty, False)
    logits, rows = scores.logits, scores.rows.to(device)

    def svdvals() -> list[torch.Tensor]:
        return [torch.linalg.svdvals(logits[b][rows[b]]) for b in range(logits.shape[0])]

    gram_ms = median_ms(lambda: singular_values(logits, rows), device, repeats=10)
    svd_ms = median_ms(svdvals, device, repeats=3, warmup=1)
    gram = torch.stack([s.sum() for s in singular_values(logits, rows)]).cpu()
    svd = torch.stack([s.double().sum() for s in svdvals()]).cpu()
    return {"batch": 8, "padded_length": int(batch.ids.shape[1]), "vocab": vocab, "score_batch_ms": score_ms,
            "gram_ms": gram_ms, "svdvals_ms": svd_ms, "svdvals_over_gram": svd_ms / gram_ms,
            "nuclear_norm_max_rel_diff": float(((gram - svd).abs() / svd.abs()).max())}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--smoke", action="store_true", help="tiny-random causal model on the CPU, 3 steps")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    model, tokenizer = load_sft_model("tiny-random" if args.smoke else "smollm2", str(device))
    dataset = bundled_dataset(seed=0)
    steps, cutoff = (3, 64) if args.smoke else (args.steps, 256)
    out: dict = {"environment": header(device), "model": "tiny-random" if args.smoke else "smollm2",
                 "cutoff": cutoff}
    selection_run(model, tokenizer, dataset, "uds", 3, cutoff)  # warm-up: kernels, allocator, peft
    out["spectra"] = spectra(model, tokenizer, dataset, cutoff, device)
    write_json(Path(args.out), out)
    if not args.smoke:  # the Selection Lab's own overhead measurement (docs/UDS_SPEED.md), here on the GPU
        from lab.benchmarks.uds_bench import bench_overhead

        try:
            out["uds_bench_overhead"] = bench_overhead()
        except (TypeError, ValueError, RuntimeError) as err:  # recorded, not fatal: the runs below still count
            out["uds_bench_overhead"] = {"error": f"{type(err).__name__}: {err}"}
        write_json(Path(args.out), out)
    out["runs"] = {"uds": selection_run(model, tokenizer, dataset, "uds", steps, cutoff),
                   "full": selection_run(model, tokenizer, dataset, "full", steps, cutoff),
                   "plain_sft": plain_sft(model, tokenizer, dataset, steps, cutoff)}
    runs = out["runs"]
    out["uds_speedup_over_plain_sft"] = runs["uds"]["samples_per_s"] / runs["plain_sft"]["samples_per_s"]
    out["scoring_share_of_plain_step"] = (runs["uds"]["scoring_seconds"] / steps) / (runs["plain_sft"]["seconds"]
                                                                                     / steps)
    write_json(Path(args.out), out)
    s = out["spectra"]
    print(f"uds: gram {s['gram_ms']:.1f} ms vs svdvals {s['svdvals_ms']:.1f} ms; samples/s uds "
          f"{runs['uds']['samples_per_s']:.1f} full {runs['full']['samples_per_s']:.1f} plain "
          f"{runs['plain_sft']['samples_per_s']:.1f}; scoring {100 * runs['uds']['scoring_share']:.0f}% of a UDS step",
          flush=True)


if __name__ == "__main__":
    main()
