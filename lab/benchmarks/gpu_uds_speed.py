"""The paper's speed claim, through the Trainer: candidates per second of UDS (B = 8, K = 1) against full-data SFT on
a model whose step is FLOP-bound (docs/UDS_SPEED.md, section "Through the Trainer").

Model: a randomly initialised Llama of TinyLlama-1.1B's shape (22 layers, d 2048, 32 heads / 4 KV heads, FFN 5632,
vocabulary 32,000), bfloat16, LoRA r 8 / alpha 16 on all 7 projections as the released script; speed does not
depend on what the weights know. Data: synthetic token sequences of 256-512 tokens (uniform), loss on the last two
thirds. Arms, each `--steps` optimizer steps of one micro-batch of 8 after `--warmup` steps, timed between
synchronised optimizer-step ends:
* full_sft            - plain transformers.Trainer, all 8 candidates trained (the paper's "Regular");
* uds_default_graphs  - UDSTrainer, UDS default mode, scoring forward replayed from CUDA graphs, K = 1 trained;
* uds_default_eager   - the same with the eager scoring forward;
* uds_as_released     - UDS as released (left padding, every row scored; eager forward).
samples/s counts the candidates a step consumes (8), as the paper's throughput does. The paper: 3.41 vs 2.27
samples/s (1.5x) for Qwen-2.5-7B on MMLU.

Run: python lab/benchmarks/gpu_uds_speed.py --out OUT.json [--steps S] [--warmup W] [--smoke]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from gpu_common import header, sync, write_json
from transformers import (LlamaConfig, LlamaForCausalLM, PrinterCallback, Trainer, TrainerCallback,
                          TrainingArguments)

from engine.models.tiny import byte_tokenizer
from engine.uds.batching import pad_items
from engine.uds.callbacks import RunLogCallback
from engine.uds.config import SelectionConfig, TrainConfig
from engine.uds.run import prepare_trainable
from engine.uds.runlog import RunLog
from engine.uds.trainer import UDSTrainer

LLAMA_1B = dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
                num_key_value_heads=4, vocab_size=32000, max_position_embeddings=2048)
LLAMA_TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, vocab_size=512, max_position_embeddings=512)
ARMS = {"full_sft": None, "uds_default_graphs": ("default", True), "uds_default_eager": ("default", False),
        "uds_as_released": ("as_released", False)}


def random_llama(shape: dict, device: torch.device, seed: int = 0) -> torch.nn.Module:
    """A Llama of `shape` with seeded random weights: bfloat16 on a GPU, float32 on a CPU."""
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(LlamaConfig(**shape, tie_word_embeddings=False))
    return model.to(device, torch.bfloat16 if device.type == "cuda" else torch.float32)


def synthetic_items(n: int, vocab: int, lengths: tuple[int, int], seed: int = 0) -> list[dict]:
    """Token sequences of uniform length in `lengths`, loss on the last two thirds (the 'response')."""
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        length = int(rng.integers(lengths[0], lengths[1] + 1))
        ids = rng.integers(3, vocab, length).tolist()
        prompt = length // 3
        items.append({"input_ids": ids, "labels": [-100] * prompt + ids[prompt:], "sample_id": f"s{i}",
                      "category": f"len{length // 64 * 64}", "prompt_len": prompt})
    return items


class StepClock(TrainerCallback):
    """Wall time at every optimizer step's end, after a device sync."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.times = device, []

    def on_step_end(self, args, state, control, **kwargs) -> None:
        sync(self.device)
        self.times.append(time.perf_counter())


def training_args(out: Path, batch: int, steps: int, device: torch.device, seed: int = 21) -> TrainingArguments:
    return TrainingArguments(output_dir=str(out), per_device_train_batch_size=batch, max_steps=steps,
                             learning_rate=1e-4, use_cpu=device.type == "cpu", report_to="none", save_strategy="no",
                             logging_strategy="no", disable_tqdm=True, dataloader_drop_last=True, seed=seed,
                             remove_unused_columns=False, ddp_find_unused_parameters=False)


def run_arm(arm: str, base: torch.nn.Module, items: list[dict], batch: int, steps: int, warmup: int,
            device: torch.device, out: Path) -> dict:
    """One arm: `warmup + steps` optimizer steps; samples/s over the last `steps` (all processes together)."""
    model = prepare_trainable(base, TrainConfig(seed=21))
    clock = StepClock(device)
    args = training_args(out / arm, batch, warmup + steps, device)
    log = RunLog(config={"batch": batch})
    if ARMS[arm] is None:
        plain = [{"input_ids": it["input_ids"], "labels": it["labels"]} for it in items]
        trainer = Trainer(model=model, args=args, train_dataset=plain, callbacks=[clock],
                          data_collator=lambda features: pad_items(features, 0))
    else:
        mode, graphs = ARMS[arm]
        trainer = UDSTrainer(model, args, items, SelectionConfig(batch=batch, keep=1, mode=mode, alpha=1.5e-3),
                             processing_class=byte_tokenizer(), callbacks=[clock, RunLogCallback(log)],
                             strip_max_steps=0, cuda_graphs=graphs)
    trainer.remove_callback(PrinterCallback)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    trainer.train()
    seconds = clock.times[-1] - clock.times[warmup - 1]
    world = args.world_size
    out_row = {"steps": steps, "seconds": seconds, "samples_per_s": world * batch * steps / seconds,
               "trained_per_step": world * (batch if ARMS[arm] is None else 1), "processes": world}
    if ARMS[arm] is not None:
        frame = log.steps_frame().iloc[warmup:]
        out_row.update(scoring_share=float(frame["scoring_seconds"].sum() / frame["seconds"].sum()),
                       scoring_forward="cuda graphs" if trainer.online_selection.static is not None else "eager")
    if device.type == "cuda":
        out_row["peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    del trainer, model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return out_row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--smoke", action="store_true", help="tiny Llama on the CPU, 3 steps")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    shape, lengths = (LLAMA_TINY, (24, 48)) if args.smoke else (LLAMA_1B, (256, 512))
    steps, warmup = (3, 1) if args.smoke else (args.steps, args.warmup)
    batch = 8
    base = random_llama(shape, device)
    items = synthetic_items(batch * (steps + warmup) + batch, shape["vocab_size"], lengths)
    result = {"environment": header(device), "model": "tiny llama" if args.smoke else "llama-1.1b shape, random",
              "parameters": sum(p.numel() for p in base.parameters()), "batch": batch, "keep": 1,
              "lengths": lengths, "arms": {}}
    for arm in args.arms.split(","):
        result["arms"][arm] = run_arm(arm, base, items, batch, steps, warmup, device,
                                      Path(args.out).parent / "trainer")
        write_json(Path(args.out), result)
        print(arm, {k: round(v, 3) if isinstance(v, float) else v for k, v in result["arms"][arm].items()}, flush=True)
    arms = result["arms"]
    if "full_sft" in arms:
        result["speedup_over_full_sft"] = {arm: row["samples_per_s"] / arms["full_sft"]["samples_per_s"]
                                           for arm, row in arms.items() if arm != "full_sft"}
        print("samples/s over full-data SFT:", {k: round(v, 2) for k, v in result["speedup_over_full_sft"].items()})
    write_json(Path(args.out), result)


if __name__ == "__main__":
    main()
