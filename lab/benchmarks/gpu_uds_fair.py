"""A fair test of the paper's kind of claim, on one GPU in minutes: in-domain accuracy after one epoch at a 12.5%
budget (B = 8, K = 1), UDS against Random and the ablations, several seeds (docs/UDS_RESULTS.md, "The fair test").

Task: the 8 short-answer mathematics-dataset modules of the bundled mixture (engine/uds/data.py). Train pool:
`--train` problems (an equal share per module, generator seed 0); test set: `--test` fresh problems of the same
modules from generator seed 1, none of whose questions is in the pool. Model: SmolLM2-135M-Instruct (float32, so the
factored scoring route is exact), LoRA r 8 / alpha 16 on all 7 projections. Protocol: the `paper` preset
(engine/uds/presets.py: B 8, K 1, alpha 1.5e-3, length-grouped candidates, loss on the prompt, per-sample loss,
linear decay after 1% warm-up, one epoch) with three changes for a pool this small, the same for every arm:
accumulation 4 (32 candidates per optimizer step, not 128), learning rate 1e-3 (not 1.5e-4) and cut-off 128.
Arms: random, uds_released (UDS as released: left padding, every row scored), uds_default (padding rows masked),
utility (alpha = 0), each at every `--seeds`, and full (all candidates, the same epoch). A seed fixes the candidate
order (the same for every arm at that seed), the adapter init, the sketch and Random's draws. Scores on the test set:
greedy exact-match accuracy (16 new tokens, first line, trailing period dropped) and the mean response-token loss.

Each run writes OUT/runs/ARM-sSEED (its full run log), OUT/compact/ARM-sSEED.zip (the compact run log,
engine/uds/runlog_compact.py: what ships as the Selection Lab's fair-test example) and OUT/results/ARM-sSEED.json at
once, so a section cut short keeps its finished runs; `--summarize` reads them all and writes OUT/summary.json:
mean +- sd per arm, the paired difference to Random per seed, kept length against the candidates', module mix.
`--runs base,random:21,full:22` runs an explicit list instead of arms x seeds (what gpu_uds_fair_pool.py hands each
worker); with `--deadline` (Unix seconds) a run is not started when 0.8 times the previous run of this process would
end past it (a later wave shares the GPUs with fewer workers, so it runs faster).

Run: python lab/benchmarks/gpu_uds_fair.py --out OUT --arms random,uds_released [--seeds 21,22,23] [--smoke]
     python lab/benchmarks/gpu_uds_fair.py --out OUT --summarize
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from pathlib import Path

import torch
from gpu_common import header, write_json

from engine.uds.batching import collate, encode, encode_prompt, response_loss
from engine.uds.data import BUNDLED_MATH_MODULES, Dataset, Sample
from engine.uds.evaluate import normalise_answer
from engine.uds.presets import PRESETS, resolve
from engine.uds.run import train_selection
from engine.uds.runlog import EvalItem, EvalSummary, SampleRecord
from engine.uds.runlog_compact import compact_runlog
from engine.uds.runlog_io import save_runlog
from engine.uds.runlog_zip import export_runlog_zip

ARMS = {"random": ("random", "default"), "uds_released": ("uds", "as_released"), "uds_default": ("uds", "default"),
        "utility": ("utility", "default"), "full": ("full", "default")}
CHANGES = {"grad_accumulation": 4, "lr": 1e-3, "cutoff": 128}  # from the paper preset, for a pool this small


def maths_split(n_train: int, n_test: int) -> Dataset:
    """The pool (generator seed 0) and fresh test problems (seed 1, questions not in the pool), per module."""
    from engine.data.sources import math_qa

    train, test = [], []
    for module in BUNDLED_MATH_MODULES:
        pool = math_qa(module, n=n_train // len(BUNDLED_MATH_MODULES), seed=0)
        seen = {p["question"] for p in pool}
        fresh = [p for p in math_qa(module, n=2 * (n_test // len(BUNDLED_MATH_MODULES)), seed=1)
                 if p["question"] not in seen][: n_test // len(BUNDLED_MATH_MODULES)]
        for split, rows in ((train, pool), (test, fresh)):
            split += [Sample(sample_id=f"{module}-{'t' if split is test else 'p'}{j}", source="mathematics",
                             category=module, prompt=p["question"], response=p["answer"], answer=p["answer"])
                      for j, p in enumerate(rows)]
    return Dataset(name="mathematics (fair test)", train=tuple(train), heldout=tuple(test))


@torch.no_grad()
def evaluate_batched(model: torch.nn.Module, tokenizer, samples, batch: int = 128,
                     cutoff: int = 128) -> tuple[dict, list[EvalItem]]:
    """Greedy exact-match accuracy (left-padded batched generation) and mean response-token loss; per item too."""
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    was_training = model.training
    model.eval()
    correct, losses, predictions = [], [], []
    for start in range(0, len(samples), batch):
        part = samples[start:start + batch]
        prompts = [encode_prompt(tokenizer, s.prompt) for s in part]
        width = max(map(len, prompts))
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=device)  # (b, P), left-padded
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=16, do_sample=False,
                             pad_token_id=pad, eos_token_id=tokenizer.eos_token_id)
        answers = tokenizer.batch_decode(out[:, width:].tolist(), skip_special_tokens=True)
        correct += [normalise_answer(a) == normalise_answer(s.answer) for a, s in zip(answers, part)]
        predictions += answers
        scored = collate([encode(tokenizer, s, cutoff) for s in part], pad)
        logits = model(input_ids=scored.ids.to(device), attention_mask=scored.attention.to(device).long()).logits
        loss_sum, count = response_loss(logits.float(), scored.labels.to(device))
        losses += (loss_sum / count.clamp_min(1)).tolist()
    model.train(was_training)
    by_module: dict[str, list[bool]] = {}
    for s, ok in zip(samples, correct):
        by_module.setdefault(s.category, []).append(ok)
    items = [EvalItem(sample_id=s.sample_id, source=s.source, category=s.category, loss=loss, is_maths=True,
                      prediction=answer, correct=ok)
             for s, loss, answer, ok in zip(samples, losses, predictions, correct)]
    return {"accuracy": sum(correct) / len(correct), "loss": sum(losses) / len(losses), "n": len(correct),
            "accuracy_by_module": {m: sum(v) / len(v) for m, v in sorted(by_module.items())}}, items


def run_arm(arm: str, seed: int, base, tokenizer, dataset: Dataset, out: Path) -> dict:
    selector, mode = ARMS[arm]
    selection, train = resolve(None, {**PRESETS["paper"], **CHANGES, "selector": selector, "mode": mode,
                                      "seed": seed, "eval_items": 0, "strip_max_steps": 0})
    began = time.perf_counter()
    folder = out / "runs" / f"{arm}-s{seed}"
    train_only = Dataset(name=dataset.name, train=dataset.train, heldout=())
    run = train_selection(base, tokenizer, train_only, selection, train, model_name="smollm2", out=str(folder),
                          preset="paper (accumulation 4, lr 1e-3, cut-off 128)")
    seconds = time.perf_counter() - began
    log = run.log
    scores, items = evaluate_batched(run.model, tokenizer, list(dataset.heldout))
    # The test-set scores go into the run log, so the Selection Lab's comparison and seeds views show them.
    log.eval_items = items
    log.eval_summary = EvalSummary(loss=scores["loss"], maths_accuracy=scores["accuracy"], n_items=scores["n"],
                                   n_maths=scores["n"])
    log.samples += [SampleRecord(s.sample_id, s.source, s.category, s.prompt, s.response, "heldout")
                    for s in dataset.heldout]
    save_runlog(log, folder)
    (out / "compact").mkdir(parents=True, exist_ok=True)
    export_runlog_zip(compact_runlog(log), out / "compact", name=f"{arm}-s{seed}")
    frame = log.candidates_frame()
    kept = frame[frame["selected"]]
    row = {"arm": arm, "seed": seed, "train_seconds": seconds, **scores, "steps": len(log.steps),
           "kept_mean_length": float(kept["length"].mean()), "candidate_mean_length": float(frame["length"].mean()),
           "kept_module_mix": (kept["category"].value_counts(normalize=True).sort_index()).to_dict(),
           "candidate_module_mix": (frame["category"].value_counts(normalize=True).sort_index()).to_dict()}
    write_atomic(out / "results" / f"{arm}-s{seed}.json", row)
    return row


def write_atomic(path: Path, row: dict) -> None:
    """Results land whole or not at all: a worker stopped at the deadline leaves no half-written file."""
    partial = path.with_name(path.name + ".part")
    write_json(partial, row)
    os.replace(partial, path)


def run_list(args: argparse.Namespace) -> list[tuple[str, int]]:
    """The runs of this process in order: `--runs` as given ("base" scores the untrained model), else `--base`
    first, then every arm at every seed, seed by seed."""
    if args.runs:
        runs = [("base", 0) if item == "base" else (item.split(":")[0], int(item.split(":")[1]))
                for item in args.runs.split(",")]
    else:
        runs = [("base", 0)] * args.base + [(arm, int(seed)) for seed in args.seeds.split(",")
                                            for arm in args.arms.split(",")]
    unknown = [arm for arm, _ in runs if arm != "base" and arm not in ARMS]
    if unknown:
        raise SystemExit(f"unknown arm(s) {unknown}; choose from {', '.join(ARMS)}")
    return runs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--seeds", default="21,22,23")
    parser.add_argument("--train", type=int, default=None, help="pool size (default 1600; 64 with --smoke)")
    parser.add_argument("--test", type=int, default=None, help="test set size (default 1000; 16 with --smoke)")
    parser.add_argument("--base", action="store_true", help="also score the untrained model")
    parser.add_argument("--runs", default="", help="explicit runs, e.g. base,random:21,full:22 (overrides arms x "
                                                   "seeds)")
    parser.add_argument("--deadline", type=float, default=math.inf, help="Unix seconds: start no run that would "
                                                                         "end past it")
    parser.add_argument("--summarize", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="tiny random model on the CPU, a small pool")
    args = parser.parse_args()
    out = Path(args.out)
    if args.summarize:
        summarize(out)
        return
    runs = run_list(args)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    n_train, n_test = args.train or (64 if args.smoke else 1600), args.test or (16 if args.smoke else 1000)
    if args.smoke:
        from engine.models.tiny import tiny_causal
        base, tokenizer = tiny_causal(str(device))
    else:
        from engine.models.smollm import load_smollm
        base, tokenizer = load_smollm(device, dtype=torch.float32)
    dataset = maths_split(n_train, n_test)
    write_atomic(out / "results" / "setup.json", {"environment": header(device), "train": len(dataset.train),
                                                 "test": len(dataset.heldout), "changes_from_paper": CHANGES})
    last_seconds = 0.0
    for arm, seed in runs:
        if time.time() + 0.8 * last_seconds > args.deadline:  # later runs share the GPUs with fewer others
            print(f"skipped {arm} seed {seed}: the last run took {last_seconds:.0f} s and the deadline is "
                  f"{args.deadline - time.time():.0f} s away", flush=True)
            continue
        began = time.perf_counter()
        if arm == "base":
            write_atomic(out / "results" / "base.json",
                         {"arm": "base", **evaluate_batched(base, tokenizer, list(dataset.heldout))[0]})
            print(f"base: scored in {time.perf_counter() - began:.0f} s", flush=True)
            continue
        row = run_arm(arm, seed, base, tokenizer, dataset, out)
        last_seconds = time.perf_counter() - began
        print(f"{arm} seed {seed}: accuracy {row['accuracy']:.3f}, loss {row['loss']:.3f}, kept length "
              f"{row['kept_mean_length']:.1f} of {row['candidate_mean_length']:.1f}, {row['train_seconds']:.0f} s "
              f"training, {last_seconds:.0f} s in all", flush=True)


def _mean_sd(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "sd": statistics.stdev(values) if len(values) > 1 else math.nan,
            "n": len(values)}


def summarize(out: Path) -> dict:
    rows = [json.loads(p.read_text()) for p in sorted((out / "results").glob("*-s*.json"))]
    if not rows:
        raise SystemExit(f"no finished runs under {out / 'results'}; nothing to summarize")
    by_arm: dict[str, list[dict]] = {}
    for row in rows:
        by_arm.setdefault(row["arm"], []).append(row)
    summary: dict = {"arms": {}, "paired_vs_random": {}}
    for arm, group in by_arm.items():
        summary["arms"][arm] = {key: _mean_sd([r[key] for r in group]) for key in
                                ("accuracy", "loss", "kept_mean_length", "candidate_mean_length")}
        modules = sorted({m for r in group for m in r["kept_module_mix"]})
        summary["arms"][arm]["kept_module_mix"] = {m: statistics.fmean(r["kept_module_mix"].get(m, 0.0)
                                                                       for r in group) for m in modules}
    random_by_seed = {r["seed"]: r for r in by_arm.get("random", [])}
    for arm, group in by_arm.items():
        pairs = [(r, random_by_seed[r["seed"]]) for r in group if arm != "random" and r["seed"] in random_by_seed]
        if pairs:
            summary["paired_vs_random"][arm] = {key: _mean_sd([a[key] - b[key] for a, b in pairs])
                                                for key in ("accuracy", "loss")}
    base = out / "results" / "base.json"
    if base.exists():
        summary["base"] = json.loads(base.read_text())
    write_json(out / "summary.json", summary)
    for arm, s in summary["arms"].items():
        print(f"{arm:14s} accuracy {s['accuracy']['mean']:.3f} +- {s['accuracy']['sd']:.3f}  loss "
              f"{s['loss']['mean']:.3f} +- {s['loss']['sd']:.3f}  kept length {s['kept_mean_length']['mean']:.1f} "
              f"of {s['candidate_mean_length']['mean']:.1f}  (n = {s['accuracy']['n']})")
    return summary


if __name__ == "__main__":
    main()
