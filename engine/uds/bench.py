"""Speed of the Selection Lab engine: `python -m engine.uds.bench [--part gram|overhead|demo] [--json]`.

* gram: the Gram route (float64 N x N eigenvalues) vs torch.linalg.svdvals on the same (N, V) logits.
* overhead: per micro-batch, the scoring pass (forward over B + Gram + sketch + buffer distances, buffer full) vs a
  plain LoRA SFT step (forward + backward + AdamW) on the K kept samples, on real SmolLM2 logits of the bundled mix.
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


def bench_gram(n: int = 512, vocab: int = 49152, repeats: int = 3, device: str = "cpu") -> dict[str, Any]:
    from engine.uds.scorer import nuclear_norm

    logits = (torch.randn(1, n, vocab, generator=torch.Generator().manual_seed(0)) * 4).to(device)  # (1, N, V)
    gram = _median_seconds(lambda: nuclear_norm(logits), repeats)
    svd = _median_seconds(lambda: torch.linalg.svdvals(logits[0]).sum(), repeats)
    rel = float((nuclear_norm(logits)[0] - torch.linalg.svdvals(logits[0].double()).sum()).abs()
                / torch.linalg.svdvals(logits[0].double()).sum())
    return {"device": str(logits.device), "n": n, "vocab": vocab, "gram_s": gram, "svdvals_s": svd, "speedup": svd / gram, "rel_error": rel}


def bench_overhead(batch: int = 8, keep: int = 2, cutoff: int = 256, repeats: int = 3, seed: int = 21) -> dict[str, Any]:
    from engine.uds.batching import collate, encode
    from engine.uds.config import TrainConfig
    from engine.uds.data import bundled_dataset
    from engine.uds.loop import train_step, prepare_trainable
    from engine.uds.models import load_sft_model
    from engine.uds.scorer import FFTSketch
    from engine.uds.scoring import score_batch

    base, tokenizer = load_sft_model("smollm2")
    torch.manual_seed(seed)
    model = prepare_trainable(base, TrainConfig(cutoff=cutoff))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    ds = bundled_dataset()
    # One batch of typical chat / maths candidates (HumanEval rows would dominate both sides equally).
    pool = [s for s in ds.train if s.source != "humaneval"][::25][:batch]
    b = collate([encode(tokenizer, s, cutoff) for s in pool], tokenizer.pad_token_id)
    sketch = FFTSketch(len(tokenizer), seed=seed)
    buffer_z = torch.randn(1024, sketch.dim, generator=torch.Generator().manual_seed(seed)) * 3e7  # a full buffer
    scores = score_batch(model, b, sketch, buffer_z, as_released=False)
    kept = b.select(torch.topk(scores.s_intra, keep).indices.sort().values)
    out: dict[str, Any] = {"batch": batch, "keep": keep, "tokens_per_candidate": b.attention.sum(1).tolist()}
    for mode in ("default", "as_released"):
        out[f"scoring_{mode}_s"] = _median_seconds(
            lambda: score_batch(model, b, sketch, buffer_z, as_released=mode == "as_released"), repeats)
    logits = scores.logits
    from engine.uds.scorer import mean_distance, singular_values

    out["gram_s"] = _median_seconds(lambda: singular_values(logits, b.attention), repeats)
    out["sketch_s"] = _median_seconds(lambda: sketch(logits, b.attention), repeats)
    out["buffer_s"] = _median_seconds(lambda: mean_distance(scores.z, buffer_z), repeats)
    out["forward_s"] = out["scoring_default_s"] - out["gram_s"] - out["sketch_s"] - out["buffer_s"]
    out["sft_step_kept_s"] = _median_seconds(lambda: train_step(model, optimizer, kept, 1.0), repeats)
    out["sft_step_full_batch_s"] = _median_seconds(lambda: train_step(model, optimizer, b, 1.0), repeats)
    added = out["gram_s"] + out["sketch_s"] + out["buffer_s"]
    out["overhead_incl_forward_pct"] = 100 * out["scoring_default_s"] / out["sft_step_kept_s"]
    out["overhead_excl_forward_pct"] = 100 * added / out["sft_step_kept_s"]
    out["uds_step_vs_full_step_pct"] = 100 * (out["scoring_default_s"] + out["sft_step_kept_s"]) / out[
        "sft_step_full_batch_s"]
    return out


def bench_demo() -> dict[str, Any]:
    from engine.uds.config import SelectionConfig, TrainConfig
    from engine.uds.data import bundled_dataset
    from engine.uds.loop import run_selection
    from engine.uds.models import load_sft_model

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
    parser = argparse.ArgumentParser(prog="python -m engine.uds.bench", description=__doc__)
    parser.add_argument("--part", choices=("gram", "overhead", "demo", "all"), default="all")
    parser.add_argument("--device", default="cpu", help="device of the gram part (cpu or cuda)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="cpu: time by process CPU seconds (use with --threads 1 on a shared machine)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.clock == "cpu":
        # On a shared CPU wall time measures the neighbours; with one thread, process CPU time is the work itself.
        CLOCK["wall"] = time.process_time
    results: dict[str, Any] = {"threads": torch.get_num_threads(), "clock": args.clock,
                               "load_avg_1m": os.getloadavg()[0]}
    parts = (("gram", lambda: bench_gram(device=args.device)), ("overhead", bench_overhead), ("demo", bench_demo))
    for part, fn in parts:
        if args.part in (part, "all"):
            results[part] = fn()
    results["load_avg_1m_after"] = os.getloadavg()[0]
    print(json.dumps(results, indent=None if args.json else 1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
