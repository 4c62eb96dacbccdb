"""The whole recipe in one call: data -> teacher answers -> masked-diffusion SFT -> weights file -> eval table.

    python -m engine train-bundled --out runs/bundled            # GPU, ~10 minutes
    python -m engine train-bundled --out /tmp/smoke --smoke      # CPU, seconds (tiny random model)
"""
from __future__ import annotations

import copy
import json
import os
import time
from dataclasses import asdict
from pathlib import Path

import torch

from engine.bundled import data
from engine.bundled.config import RecipeConfig
from engine.bundled.evaluate import evaluate, table_markdown
from engine.bundled.lora import add_lora, adapter_state, unwrap_lora
from engine.bundled.metrics import is_degenerate
from engine.bundled.teacher import teacher_answers
from engine.bundled.train import tokenise, train
from engine.models.bidirectional import make_bidirectional
from engine.models.bundled import EOS_TOKEN, MASK_TOKEN, special_id, weights_metadata

WEIGHTS_NAME = "smollm2-dllm.safetensors"


def load_base(config: RecipeConfig, device: torch.device):
    """(causal teacher in float32, tokenizer, mask token, EOS token, base hash) for the configured base."""
    if config.base == "tiny-random":
        from engine.models.tiny import load_tiny

        tiny = load_tiny("cpu", seed=config.seed)
        teacher = tiny.model.float()
        teacher.config.is_causal = True  # the tiny model comes bidirectional; the teacher is causal
        for module in teacher.modules():
            if hasattr(module, "is_causal"):
                module.is_causal = True
        return teacher.to(device), tiny.tokenizer, tiny.tokenizer.mask_token, tiny.tokenizer.eos_token, "tiny-random"
    from engine.models.smollm import gguf_sha256, load_smollm

    teacher, tokenizer = load_smollm(device, torch.float32, private=True)
    return teacher, tokenizer, MASK_TOKEN, EOS_TOKEN, gguf_sha256()


def teacher_examples(teacher, tokenizer, config: RecipeConfig, log) -> tuple[list[data.Example], dict]:
    """Teacher answers to the teacher prompts: one greedy pass, then sampled ones; unfinished, empty, degenerate
    and duplicate answers are dropped."""
    prompts = data.teacher_prompts(config)
    kept, seen, counts = [], set(), {"prompts": len(prompts), "unfinished": 0, "degenerate": 0, "duplicate": 0}
    for teacher_pass in range(config.teacher_passes):
        answers = teacher_answers(teacher, tokenizer, [e.prompt for e in prompts], config.teacher_max_new_tokens,
                                  config.teacher_batch, sample=teacher_pass > 0, seed=config.seed + teacher_pass,
                                  repetition_penalty=config.teacher_repetition_penalty)
        for example, (text, finished) in zip(prompts, answers):
            if not finished and not config.keep_unfinished_teacher:
                counts["unfinished"] += 1
            elif not text or is_degenerate(text):
                counts["degenerate"] += 1
            elif (example.prompt, text) in seen:
                counts["duplicate"] += 1
            else:
                seen.add((example.prompt, text))
                kept.append(data.Example(example.prompt, text, example.source))
        log(f"teacher pass {teacher_pass}: {len(kept)} answers kept so far")
    counts["kept"] = len(kept)
    return kept, counts


def run_recipe(config: RecipeConfig, out_dir: Path, device: str | None = None, workers: int | None = None,
               log=print) -> dict:
    """Run every stage, write the weights, the table and a JSON log into `out_dir`; return the log."""
    out_dir.mkdir(parents=True, exist_ok=True)
    started, timings = time.perf_counter(), {}
    lap = lambda name: timings.__setitem__(name, round(time.perf_counter() - started, 1))  # noqa: E731
    workers = workers if workers is not None else min(8, os.cpu_count() or 1)
    ground = data.ground_truth_examples(config, workers)  # worker processes fork before CUDA starts
    lap("ground_truth")
    device_ = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.manual_seed(config.seed)
    teacher, tokenizer, mask_token, eos_token, base_hash = load_base(config, device_)
    mask_id, eos_id = special_id(tokenizer, mask_token), special_id(tokenizer, eos_token)
    lap("base_loaded")
    taught, teacher_counts = teacher_examples(teacher, tokenizer, config, log)
    lap("teacher")
    train_examples = ground + taught * config.teacher_copies
    sets = data.heldout_sets(config, {e.prompt for e in train_examples})
    tokenised, dropped = tokenise(train_examples, tokenizer, config, eos_id)
    sources: dict[str, int] = {}
    for item in tokenised:
        key = item.source.split(":")[0]
        sources[key] = sources.get(key, 0) + 1
    log(f"training pool {len(tokenised)} sequences {sources}; dropped {dropped}")

    student = make_bidirectional(copy.deepcopy(teacher))
    trainable = add_lora(student, config.lora_rank, config.lora_alpha, mask_id, config.seed)
    records = train(student, trainable, tokenised, config, mask_id, True, device_, log)
    lap("train")
    weights = out_dir / WEIGHTS_NAME
    from safetensors.torch import save_file

    recipe_info = {"steps": records[-1]["step"] if records else 0, "final_loss": records[-1]["loss"] if records
                   else None, "seed": config.seed}
    save_file(adapter_state(student, mask_id), str(weights),
              metadata=weights_metadata(base_hash, mask_token, eos_token, config.lora_rank, config.lora_alpha,
                                        recipe_info))
    result = {"config": asdict(config), "base_sha256": base_hash, "mask_token": mask_token, "mask_id": mask_id,
              "eos_token": eos_token, "eos_id": eos_id, "device": str(device_),
              "gpu": torch.cuda.get_device_name(0) if device_.type == "cuda" else None, "teacher": teacher_counts,
              "pool": sources, "dropped": dropped, "train_log": records, "weights_bytes": weights.stat().st_size,
              "timings": timings}
    (out_dir / "recipe_log.json").write_text(json.dumps(result, indent=1))  # kept should the eval fail
    unwrap_lora(student)
    rows, samples = evaluate(student, teacher, tokenizer, sets, mask_id, eos_id, True, config.eval_gen_lengths,
                             config.eval_block_length, config.eval_batch, log)
    lap("eval")
    (out_dir / "eval_table.md").write_text(table_markdown(rows) + "\n")
    result.update(eval=rows, samples=samples)
    (out_dir / "recipe_log.json").write_text(json.dumps(result, indent=1))
    log(f"done in {timings}")
    return result
