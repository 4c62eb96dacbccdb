"""UDS scoring overhead on a GPU, per micro-batch: the scoring pass against a plain SFT step on the kept samples,
with the scoring forward eager (as before) and replayed from CUDA graphs (engine/uds/static_forward.py).

Model SmolLM2-135M-Instruct, CUDA bf16, LoRA r 8 on all 7 projections; the bundled mixture; B = 8, K = 2 and the
default cut-off (TrainConfig). The micro-batches are the first `--batches` a run draws at seed 21. Per micro-batch,
medians of `--repeats` after warm-up (CUDA events; both sides end on a host copy, so they are synchronised):
* scoring_eager_ms: score_batch as the loop ran it before (samples of similar length share an eager forward);
* scoring_graph_ms: score_batch with the bucketed forward replayed from a CUDA graph (graphs captured beforehand;
  the capture time is reported apart);
* scoring_graph_as_released_ms: the same in the as-released mode (every padded row scored);
* forward_graph_ms: the replay alone (the lower bound of the scoring pass);
* step_ms: sft_step (forward + backward + grad clip + AdamW, the loop's plain SFT step) on the K = 2 that UDS keeps;
  step_fused_ms: the same with a fused AdamW, the cheapest stock optimizer step;
* part_*_ms: the pass part by part (forward, spectra, sketch, loss, buffer distances, statistics);
* agreement of graph and eager scores (s_intra, z) and of their picks.
Scoring runs on the logits route: in bf16 the head rounds the logits, so "auto" does not take the factored route.
Then whole runs of `--steps` steps: UDS with graphs on and off, and plain SFT on all B (no scoring).

Run: python lab/benchmarks/gpu_uds_graphs.py --out OUT.json [--batches N] [--repeats R] [--steps S] [--smoke]
"""
from __future__ import annotations

import argparse
import statistics
import time
import traceback
from pathlib import Path

import torch
from gpu_common import header, median_ms, write_json

from engine.models import load_sft_model
from engine.uds import logit_scores
from engine.uds.batch_scores import score_batch
from engine.uds.batching import collate, encode, response_loss
from engine.uds.config import SelectionConfig, TrainConfig
from engine.uds.data import bundled_dataset
from engine.uds.run import prepare_trainable, run_selection
from engine.uds.selectors import CandidateScores, make_selector, top_k
from engine.uds.static_forward import StaticScoringForward
from lab.benchmarks.plain_sft import candidate_batches, sft_step


def _relative(got: torch.Tensor, expected: torch.Tensor) -> float:
    got, expected = got.double(), expected.double()
    if got.dim() == 1:
        return float(((got - expected).abs() / expected.abs()).max())
    return float(((got - expected).norm(dim=1) / expected.norm(dim=1)).max())


def _summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "mean": statistics.fmean(values), "min": min(values),
            "max": max(values)}


def _attempt(fn, *args) -> dict:
    """fn(*args), or {"error": traceback} so that one failing part leaves the others' numbers."""
    try:
        return fn(*args)
    except Exception:  # noqa: BLE001 - a benchmark records any failure and goes on
        print(traceback.format_exc(), flush=True)
        return {"error": traceback.format_exc()}


def parts(model, batch, static, sketch, buffer_z, device: torch.device, repeats: int) -> dict:
    """The scoring pass part by part (default mode, logits route)."""
    rows = batch.attention.to(device)
    labels = batch.labels.to(device)
    logits = static(batch).masked_fill_(~rows.unsqueeze(-1), 0.0)  # (B, N, V)

    spectra = logit_scores.singular_values(logits, rows)
    z = sketch(logits, rows)
    timed = {"part_forward_ms": lambda: static(batch),
             "part_spectra_ms": lambda: logit_scores.singular_values(logits, rows),
             "part_sketch_ms": lambda: sketch(logits, rows),
             "part_loss_ms": lambda: response_loss(logits, labels)[0].cpu(),
             "part_buffer_ms": lambda: logit_scores.mean_distance(z, buffer_z),
             "part_stats_ms": lambda: [logit_scores.spectrum_stats(s.cpu()) for s in spectra]}
    return {name: median_ms(fn, device, repeats=repeats, warmup=1) for name, fn in timed.items()}


def per_batch(base, tokenizer, dataset, train: TrainConfig, selection: SelectionConfig, n_batches: int,
              repeats: int, device: torch.device, graphs: bool) -> dict:
    torch.manual_seed(train.seed)
    model = prepare_trainable(base, train)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=train.lr)
    fused = torch.optim.AdamW(params, lr=train.lr, fused=device.type == "cuda")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    encoded = [e for e in (encode(tokenizer, s, train.cutoff) for s in dataset.train) if len(e.ids) > e.prompt_len]
    draws = candidate_batches(encoded, selection.batch, train.seed)
    batches = [collate(next(draws), pad_id) for _ in range(n_batches)]
    sketch = logit_scores.FFTSketch(model.get_output_embeddings().weight.shape[0], seed=selection.seed)
    buffer_z = torch.randn(selection.buffer_size, sketch.dim, generator=torch.Generator().manual_seed(0)) * 3e7
    static = StaticScoringForward(model, None, graphs=graphs)
    began = time.perf_counter()
    for length in sorted({-(-b.ids.shape[1] // static.bucket) for b in batches}):  # capture every bucket once
        static(next(b for b in batches if -(-b.ids.shape[1] // static.bucket) == length))
    capture_s = time.perf_counter() - began
    uds = make_selector("uds")
    rows = []
    for batch in batches:
        eager = score_batch(model, batch, sketch, buffer_z, False)
        graphed = score_batch(model, batch, sketch, buffer_z, False, static=static)
        picks = [top_k(uds.score(CandidateScores(s.s_intra, s.s_inter, s.loss, selection.alpha), None),
                       selection.keep)[0] for s in (eager, graphed)]
        kept = batch.select(picks[1].nonzero().flatten())
        row = {"length": int(batch.ids.shape[1]), "tokens": int(batch.attention.sum()),
               "kept_tokens": int(kept.attention.sum()), "kept_length": int(kept.ids.shape[1]),
               "s_intra_rel_diff": _relative(graphed.s_intra, eager.s_intra),
               "z_rel_diff": _relative(graphed.z, eager.z), "same_picks": bool(torch.equal(*picks))}
        del eager, graphed
        row["scoring_eager_ms"] = median_ms(lambda: score_batch(model, batch, sketch, buffer_z, False), device,
                                            repeats=repeats, warmup=1)
        row["scoring_graph_ms"] = median_ms(lambda: score_batch(model, batch, sketch, buffer_z, False,
                                                                static=static), device, repeats=repeats, warmup=1)
        row.update(parts(model, batch, static, sketch, buffer_z, device, repeats))
        row["scoring_graph_as_released_ms"] = median_ms(
            lambda: score_batch(model, batch, sketch, buffer_z, True, static=static), device, repeats=repeats, warmup=1)
        row["forward_graph_ms"] = median_ms(lambda: static(batch), device, repeats=repeats, warmup=1)
        row["step_ms"] = median_ms(lambda: sft_step(model, optimizer, kept, train.grad_clip), device,
                                   repeats=repeats, warmup=1)
        row["step_fused_ms"] = median_ms(lambda: sft_step(model, fused, kept, train.grad_clip), device,
                                         repeats=repeats, warmup=1)
        for name in ("eager", "graph"):
            row[f"overhead_{name}_pct"] = 100 * row[f"scoring_{name}_ms"] / row["step_ms"]
        row["overhead_graph_vs_fused_step_pct"] = 100 * row["scoring_graph_ms"] / row["step_fused_ms"]
        row["overhead_graph_as_released_pct"] = 100 * row["scoring_graph_as_released_ms"] / row["step_ms"]
        rows.append(row)
    out = {"batches": rows, "capture_s": capture_s, "graphs_captured": static.captures,
           "all_picks_same": all(r["same_picks"] for r in rows),
           "s_intra_rel_diff_max": max(r["s_intra_rel_diff"] for r in rows),
           "z_rel_diff_max": max(r["z_rel_diff"] for r in rows)}
    out["host_threads"] = torch.get_num_threads()
    for key in ("scoring_eager_ms", "scoring_graph_ms", "forward_graph_ms", "step_ms",
                "step_fused_ms", *(k for k in rows[0] if k.startswith("part_")),
                "overhead_eager_pct", "overhead_graph_pct", "overhead_graph_vs_fused_step_pct",
                "scoring_graph_as_released_ms", "overhead_graph_as_released_pct"):
        out[key] = _summary([r[key] for r in rows])
    # Over the whole set: total scoring time against total step time (long batches weigh more).
    out["overhead_graph_pct_pooled"] = 100 * sum(r["scoring_graph_ms"] for r in rows) / sum(r["step_ms"] for r in rows)
    return out


def whole_run(base, tokenizer, dataset, train: TrainConfig, selection: SelectionConfig) -> dict:
    log = run_selection(base, tokenizer, dataset, selection, train)
    frame = log.steps_frame()
    seconds, scoring = float(frame["seconds"].sum()), float(frame["scoring_seconds"].sum())
    return {"scoring_forward": log.config["scoring_forward"], "steps": train.steps, "seconds": seconds,
            "scoring_seconds": scoring, "step_ms_median": 1e3 * float(frame["seconds"].median()),
            "scoring_ms_median": 1e3 * float(frame["scoring_seconds"].median()),
            "samples_per_s": selection.batch * train.steps / seconds, "selected_ids": log.selected_ids()}


def plain_sft(base, tokenizer, dataset, train: TrainConfig, batch: int, device: torch.device) -> dict:
    torch.manual_seed(train.seed)
    model = prepare_trainable(base, train)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=train.lr)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    encoded = [e for e in (encode(tokenizer, s, train.cutoff) for s in dataset.train) if len(e.ids) > e.prompt_len]
    draws = candidate_batches(encoded, batch, train.seed)
    batches = [collate(next(draws), pad_id) for _ in range(train.steps)]
    sft_step(model, optimizer, batches[0], train.grad_clip)  # warm-up
    began = time.perf_counter()
    for b in batches:
        sft_step(model, optimizer, b, train.grad_clip)  # ends on float(loss): synchronised
    seconds = time.perf_counter() - began
    return {"steps": train.steps, "seconds": seconds, "samples_per_s": batch * train.steps / seconds}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=30, help="steps of each whole run (0: no whole runs)")
    parser.add_argument("--smoke", action="store_true", help="tiny-random causal model on the CPU, no graphs")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    graphs = device.type == "cuda"
    base, tokenizer = load_sft_model("tiny-random" if args.smoke else "smollm2", str(device))
    dataset = bundled_dataset(seed=0)
    n_batches, repeats, steps = (2, 1, 2) if args.smoke else (args.batches, args.repeats, args.steps)
    selection = SelectionConfig()
    train = TrainConfig(steps=max(steps, 1), eval_items=0, strip_max_steps=0)
    out: dict = {"environment": header(device), "model": "tiny-random" if args.smoke else "smollm2",
                 "cutoff": train.cutoff, "batch": selection.batch, "keep": selection.keep, "graphs": graphs}
    out["per_batch"] = _attempt(per_batch, base, tokenizer, dataset, train, selection, n_batches, repeats, device,
                                graphs)
    write_json(Path(args.out), out)
    p = out["per_batch"]
    if "error" not in p:
            print(f"scoring graph {p['scoring_graph_ms']['median']:.1f} ms (eager {p['scoring_eager_ms']['median']:.1f}) "
              f"vs step {p['step_ms']['median']:.1f} ms: overhead {p['overhead_graph_pct']['median']:.1f}% median, "
              f"{p['overhead_graph_pct']['max']:.1f}% max (eager {p['overhead_eager_pct']['median']:.1f}%)", flush=True)
    if steps == 0:  # --steps 0: the per-batch measurement only
        return
    eager = TrainConfig(steps=steps, eval_items=0, strip_max_steps=0, cuda_graphs=False)
    _attempt(whole_run, base, tokenizer, dataset, TrainConfig(steps=3, eval_items=0, strip_max_steps=0), selection)
    runs = {"uds_graphs": _attempt(whole_run, base, tokenizer, dataset, train, selection),
            "uds_eager": _attempt(whole_run, base, tokenizer, dataset, eager, selection),
            "uds_graphs_with_strips": _attempt(whole_run, base, tokenizer, dataset,
                                               TrainConfig(steps=steps, eval_items=0), selection),
            "plain_sft_all_b": _attempt(plain_sft, base, tokenizer, dataset, train, selection.batch, device)}
    runs["same_picks_graphs_vs_eager"] = (runs["uds_graphs"].get("selected_ids")
                                          == runs["uds_eager"].get("selected_ids"))
    out["runs"] = runs
    write_json(Path(args.out), out)
    print(" ".join(f"{k}: {v.get('samples_per_s', v.get('error'))} samples/s" for k, v in runs.items()
                   if isinstance(v, dict)), flush=True)


if __name__ == "__main__":
    main()
