"""Speed of the Selection Lab engine: `python -m lab.benchmarks.uds_bench [--part gram|precision|overhead|demo] [--json]`.

* gram: the nuclear-norm routes (svdvals, float64 Gram, float32 Gram, factored from the hidden states) on the same
  real SmolLM2 logits at N = 512 (lab/benchmarks/uds_bench_gram.py).
* precision: their relative errors vs float64 svdvals on random, real (default and as released, padded to 512) and
  adversarial near-duplicate logits, with the float32 route's guard numbers.
* overhead: per micro-batch, the scoring pass (forward over B + Gram + sketch + buffer distances + loss, buffer full)
  by either route, part by part, vs a plain LoRA SFT step (forward + backward + AdamW) on the K kept samples, on real
  SmolLM2 logits of the bundled mix; and the forward-to-step ratio behind the lower bound of docs/UDS_SPEED.md.
* demo: the default demo run end to end (bundled mixture, UDS, K = 2 of B = 8, default steps and cut-off), model load
  included.
Timings are medians of repeats after one warm-up; the numbers go to docs/UDS_SPEED.md by hand, never into tests.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Any, Callable

import torch


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


CLOCK: dict[str, Callable[[], float]] = {"wall": time.perf_counter}


def _median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    clock = CLOCK["wall"]
    fn()
    times = []
    for _ in range(repeats):
        _sync()
        start = clock()
        fn()
        _sync()
        times.append(clock() - start)
    return statistics.median(times)


def bench_overhead(batch: int = 8, keep: int = 2, cutoff: int = 256, repeats: int = 3, seed: int = 21) -> dict[str, Any]:
    from engine.models import load_sft_model
    from engine.uds.batch_scores import _forward, _grouped, score_batch
    from engine.uds.batching import collate, encode, response_loss
    from engine.uds.config import TrainConfig
    from engine.uds.data import bundled_dataset
    from engine.uds.factored import factored_head
    from engine.uds.logit_scores import FFTSketch, mean_distance, singular_values, token_stats
    from engine.uds.run import prepare_trainable
    from lab.benchmarks.plain_sft import sft_step

    base, tokenizer = load_sft_model("smollm2")
    torch.manual_seed(seed)
    model = prepare_trainable(base, TrainConfig(cutoff=cutoff))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    ds = bundled_dataset()
    # One batch of typical chat / maths candidates (HumanEval rows would dominate both sides equally).
    pool = [s for s in ds.train if s.source != "humaneval"][::25][:batch]
    b = collate([encode(tokenizer, s, cutoff) for s in pool], tokenizer.pad_token_id)
    sketch = FFTSketch(len(tokenizer), seed=seed)
    factored = factored_head(model, sketch, "factored")  # the loop's route under LoRA (a ValueError where not exact)
    buffer_z = torch.randn(1024, sketch.dim, generator=torch.Generator().manual_seed(seed)) * 3e7  # a full buffer
    scores = score_batch(model, b, sketch, buffer_z, False, factored, keep_logits=False)
    kept = b.select(torch.topk(scores.s_intra, keep).indices.sort().values)

    def med(fn: Callable[[], Any]) -> float:
        return _median_seconds(fn, repeats)

    out: dict[str, Any] = {"batch": batch, "keep": keep, "tokens_per_candidate": b.attention.sum(1).tolist(),
                           "prompt_tokens_per_candidate": b.prompt.sum(1).tolist(),
                           "tokens_per_kept": kept.attention.sum(1).tolist()}
    for mode in ("default", "as_released"):
        as_released = mode == "as_released"
        out[f"scoring_{mode}_logits_route_s"] = med(lambda: score_batch(model, b, sketch, buffer_z, as_released))
        out[f"scoring_{mode}_factored_s"] = med(
            lambda: score_batch(model, b, sketch, buffer_z, as_released, factored, keep_logits=False))
    out["scoring_default_factored_strip_step_s"] = med(
        lambda: score_batch(model, b, sketch, buffer_z, False, factored, keep_logits=True))
    model.eval()
    with torch.no_grad():
        logits = _grouped(b, lambda part: _forward(model, part))  # (B, N, V)
        hidden = _grouped(b, factored.hidden)  # (B, N, d)
        rows = b.attention
        parts = {"logits_forward": lambda: _grouped(b, lambda part: _forward(model, part)),
                 "logits_gram": lambda: singular_values(logits, rows),
                 "logits_sketch": lambda: sketch(logits, rows),
                 "logits_loss": lambda: response_loss(logits, b.labels),
                 "decoder_forward": lambda: _grouped(b, factored.hidden),
                 "factored_gram": lambda: factored.singular_values(hidden, rows),
                 "factored_sketch": lambda: factored.sketch_embeddings(hidden, rows),
                 "factored_loss": lambda: factored.response_loss(hidden, b.labels),
                 "buffer": lambda: mean_distance(scores.z, buffer_z),
                 "strip_signals": lambda: [token_stats(logits[i], b.ids[i]) for i in range(batch)],
                 "decoder_forward_kept": lambda: factored.hidden(kept)}
        for name, fn in parts.items():
            out[f"{name}_s"] = med(fn)
        # Per candidate alone: the cheapest scoring forward (no head) against a training step on that candidate.
        alone = [b.select(torch.tensor([i])) for i in range(batch)]
        forward_alone = [med(lambda: factored.hidden(one)) for one in alone]
    step_alone = [med(lambda: sft_step(model, optimizer, one, 1.0)) for one in alone]
    out["forward_over_step_per_candidate"] = [f / s for f, s in zip(forward_alone, step_alone)]
    out["sft_step_kept_s"] = med(lambda: sft_step(model, optimizer, kept, 1.0))
    out["sft_step_full_batch_s"] = med(lambda: sft_step(model, optimizer, b, 1.0))
    step = out["sft_step_kept_s"]
    for route in ("logits_route", "factored"):
        out[f"overhead_{route}_pct"] = 100 * out[f"scoring_default_{route}_s"] / step
        out[f"uds_step_vs_full_step_{route}_pct"] = 100 * (out[f"scoring_default_{route}_s"] + step) / out[
            "sft_step_full_batch_s"]
    out["overhead_factored_strip_step_pct"] = 100 * (out["scoring_default_factored_strip_step_s"]
                                                     + out["strip_signals_s"]) / step
    out["overhead_factored_excl_forward_pct"] = 100 * (out["factored_gram_s"] + out["factored_sketch_s"]
                                                       + out["factored_loss_s"] + out["buffer_s"]) / step
    out["lower_bound_forward_b_pct"] = 100 * out["decoder_forward_s"] / step  # the head-less forward over B alone
    out["lower_bound_forward_k_pct"] = 100 * out["decoder_forward_kept_s"] / step  # F(K) / S(K) = r for the kept
    return out


def bench_demo() -> dict[str, Any]:
    from engine.models import load_sft_model
    from engine.uds.config import SelectionConfig, TrainConfig
    from engine.uds.data import bundled_dataset
    from engine.uds.run import run_selection

    start, cpu_start = time.perf_counter(), time.process_time()
    model, tokenizer = load_sft_model("smollm2")
    loaded = time.perf_counter()
    train = TrainConfig()
    log = run_selection(model, tokenizer, bundled_dataset(), SelectionConfig(), train, model_name="smollm2")
    done = time.perf_counter()
    steps = log.steps_frame()
    # CPU seconds over the thread count: the wall time the run would take on otherwise idle cores.
    return {"steps": train.steps, "cutoff": train.cutoff, "eval_items": train.eval_items,
            "load_s": loaded - start, "run_s": done - loaded, "total_s": done - start,
            "cpu_s_per_thread": (time.process_time() - cpu_start) / torch.get_num_threads(),
            "train_steps_s": float(steps["seconds"].sum()), "scoring_s": float(steps["scoring_seconds"].sum()),
            "eval_loss": log.eval_summary.loss, "maths_accuracy": log.eval_summary.maths_accuracy}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.benchmarks.uds_bench", description=__doc__)
    parser.add_argument("--part", choices=("gram", "precision", "overhead", "demo", "all"), default="all")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="cpu: time by process CPU seconds (on a shared machine use --threads 1, or set "
                             "OMP_WAIT_POLICY=PASSIVE so that threads waiting for a descheduled partner do not spin)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.clock == "cpu":
        # On a shared CPU wall time measures the neighbours; with one thread, process CPU time is the work itself.
        CLOCK["wall"] = time.process_time
    results: dict[str, Any] = {"threads": torch.get_num_threads(), "clock": args.clock,
                               "load_avg_1m": os.getloadavg()[0]}
    if args.part in ("gram", "precision", "all"):
        from lab.benchmarks.uds_bench_gram import bench_gram, bench_precision, real_inputs

        inputs = real_inputs()
        if args.part in ("gram", "all"):
            results["gram"] = bench_gram(lambda fn: _median_seconds(fn, 3), inputs)
        if args.part in ("precision", "all"):
            results["precision"] = bench_precision(inputs)
        del inputs
    parts = (("overhead", bench_overhead), ("demo", bench_demo))
    for part, fn in parts:
        if args.part in (part, "all"):
            results[part] = fn()
    results["load_avg_1m_after"] = os.getloadavg()[0]
    print(json.dumps(results, indent=None if args.json else 1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
