"""The whole recipe in one call: data -> teacher answers -> masked-diffusion SFT -> weights file -> eval table.

    python -m lab.bundled train --out runs/bundled            # GPU, ~12 minutes (H200)
    python -m lab.bundled train --out /tmp/smoke --smoke      # CPU, seconds (tiny random model)

`method` picks what ships: "lora" (adapters trained directly) or "full" (every projection fine-tuned, each change
compressed to the same rank, so both files have the same size). A pool cache lets two methods train on exactly
the same examples without generating the teacher answers twice.
"""
from __future__ import annotations

import copy
import json
import os
import time
from dataclasses import asdict
from pathlib import Path

import torch

from engine.bench.metrics import is_degenerate
from engine.models.adapter import merge_adapter
from engine.models.bidirectional import make_bidirectional
from engine.models.bundled import EOS_TOKEN, MASK_TOKEN, special_id, weights_metadata
from lab.bundled import data
from lab.bundled.config import RecipeConfig
from lab.bundled.evaluate import evaluate, table_markdown
from lab.bundled.full import compress_full, prepare_full
from lab.bundled.lora import adapter_state, add_lora
from lab.bundled.teacher import teacher_answers
from lab.bundled.train import tokenise, train

WEIGHTS_NAME = "smollm2-dllm.safetensors"
# Config fields that decide the training examples: a pool cache is reused only when all of them match.
DATA_FIELDS = ("base", "seed", "math_mix", "addition_copies", "small_ops_copies", "chat_heldout",
               "teacher_prompt_cap", "teacher_max_new_tokens", "teacher_passes", "teacher_batch",
               "teacher_repetition_penalty", "keep_unfinished_teacher")


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


def _data_key(config: RecipeConfig) -> dict:
    return json.loads(json.dumps({name: getattr(config, name) for name in DATA_FIELDS}))


def read_pool(path: Path, config: RecipeConfig) -> dict:
    """A pool cache written by an earlier run of the same data config; a ValueError says which fields differ."""
    cached = json.loads(path.read_text())
    differ = sorted(k for k, v in _data_key(config).items() if cached.get("data_key", {}).get(k) != v)
    if differ:
        raise ValueError(f"pool cache {path} was built with other data settings ({', '.join(differ)}); "
                         "delete it or pass another --pool-cache path")
    as_examples = lambda rows: [data.Example(*row) for row in rows]  # noqa: E731
    return {"ground": as_examples(cached["ground"]), "taught": as_examples(cached["taught"]),
            "teacher_counts": cached["teacher_counts"]}


def write_pool(path: Path, config: RecipeConfig, ground: list, taught: list, counts: dict) -> None:
    rows = lambda examples: [[e.prompt, e.answer, e.source] for e in examples]  # noqa: E731
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"data_key": _data_key(config), "ground": rows(ground), "taught": rows(taught),
                                "teacher_counts": counts}))


def shipped_state(config: RecipeConfig, student, teacher, mask_id: int, log) -> tuple[dict, float, dict]:
    """(the tensors that ship, their merge alpha, notes): the adapters as trained, or the compressed changes."""
    if config.method == "lora":
        return adapter_state(student, mask_id), config.lora_alpha, {}
    state, kept = compress_full(student, teacher, config.lora_rank, mask_id)
    shares = sorted(kept.values())
    log(f"rank-{config.lora_rank} compression keeps {shares[0]:.1%} to {shares[-1]:.1%} of each change's energy")
    return state, float(config.lora_rank), {"kept_energy": kept}


def run_recipe(config: RecipeConfig, out_dir: Path, device: str | None = None, workers: int | None = None,
               log=print, pool_cache: Path | None = None, data_only: bool = False,
               teacher_eval: bool = True) -> dict:
    """Run every stage, write the weights, the table and a JSON log into `out_dir`; return the log.
    `data_only` stops after the training examples (to fill `pool_cache`); `teacher_eval=False` skips the AR rows."""
    out_dir.mkdir(parents=True, exist_ok=True)
    started, timings = time.perf_counter(), {}
    lap = lambda name: timings.__setitem__(name, round(time.perf_counter() - started, 1))  # noqa: E731
    workers = workers if workers is not None else min(8, os.cpu_count() or 1)
    cached = read_pool(pool_cache, config) if pool_cache is not None and pool_cache.is_file() else None
    # worker processes fork before CUDA starts
    ground = cached["ground"] if cached else data.ground_truth_examples(config, workers)
    lap("ground_truth")
    device_ = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.manual_seed(config.seed)
    teacher, tokenizer, mask_token, eos_token, base_hash = load_base(config, device_)
    mask_id, eos_id = special_id(tokenizer, mask_token), special_id(tokenizer, eos_token)
    lap("base_loaded")
    if cached:
        taught, teacher_counts = cached["taught"], cached["teacher_counts"]
    else:
        taught, teacher_counts = teacher_examples(teacher, tokenizer, config, log)
        if pool_cache is not None:
            write_pool(pool_cache, config, ground, taught, teacher_counts)
    lap("teacher")
    if data_only:
        return {"ground": len(ground), "taught": len(taught), "teacher": teacher_counts, "timings": timings}
    train_examples = ground + taught * config.teacher_copies
    sets = data.heldout_sets(config, {e.prompt for e in train_examples})
    tokenised, dropped = tokenise(train_examples, tokenizer, config, eos_id)
    sources: dict[str, int] = {}
    for item in tokenised:
        key = item.source.split(":")[0]
        sources[key] = sources.get(key, 0) + 1
    log(f"training pool {len(tokenised)} sequences {sources}; dropped {dropped}")

    student = make_bidirectional(copy.deepcopy(teacher))
    trainable = (add_lora(student, config.lora_rank, config.lora_alpha, mask_id, config.seed)
                 if config.method == "lora" else prepare_full(student, mask_id))
    records = train(student, trainable, tokenised, config, mask_id, True, device_, log)
    lap("train")
    state, alpha, notes = shipped_state(config, student, teacher, mask_id, log)
    weights = out_dir / WEIGHTS_NAME
    from safetensors.torch import save_file

    recipe_info = {"steps": records[-1]["step"] if records else 0, "final_loss": records[-1]["loss"] if records
                   else None, "seed": config.seed, "method": config.method}
    save_file(state, str(weights), metadata=weights_metadata(base_hash, mask_token, eos_token, config.lora_rank,
                                                             alpha, recipe_info))
    result = {"config": asdict(config), "base_sha256": base_hash, "mask_token": mask_token, "mask_id": mask_id,
              "eos_token": eos_token, "eos_id": eos_id, "device": str(device_),
              "gpu": torch.cuda.get_device_name(0) if device_.type == "cuda" else None, "teacher": teacher_counts,
              "pool": sources, "dropped": dropped, "train_log": records, "weights_bytes": weights.stat().st_size,
              "timings": timings, **notes}
    (out_dir / "recipe_log.json").write_text(json.dumps(result, indent=1))  # kept should the eval fail
    # Evaluate what ships: the saved bf16 tensors merged into a fresh copy of the base, as the loader does.
    shipped = merge_adapter(make_bidirectional(copy.deepcopy(teacher)), state, alpha / config.lora_rank, mask_id)
    eval_args = (tokenizer, sets, mask_id, eos_id, True, config.eval_gen_lengths, config.eval_block_length,
                 config.eval_batch, log)
    rows, samples = evaluate(shipped, teacher if teacher_eval else None, *eval_args)
    (out_dir / "eval_table.md").write_text(table_markdown(rows) + "\n")
    result.update(eval=rows, samples=samples)
    if config.method == "full":  # the uncompressed fine-tune: what the compression costs
        full_rows, _ = evaluate(student, None, *eval_args)
        (out_dir / "eval_table_uncompressed.md").write_text(table_markdown(full_rows) + "\n")
        result["eval_uncompressed"] = full_rows
    lap("eval")
    (out_dir / "recipe_log.json").write_text(json.dumps(result, indent=1))
    log(f"done in {timings}")
    return result
