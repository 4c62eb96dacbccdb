"""A selection run as the Selection Lab and `python -m engine select` start it, through UDSTrainer.

A trainable copy of the model (LoRA adapters drawn from a seeded generator, or all weights), the pool tokenised as
Trainer items, TrainingArguments from the configs, UDSTrainer with the run-log and control callbacks, then the
held-out evaluation on the main process. The caller's model and torch's global RNG state are left as they were (the
Trainer base class seeds the global RNG as any Trainer run does; the run forks it).
"""
from __future__ import annotations

import copy
import dataclasses
import math
import os
import tempfile
from dataclasses import asdict, dataclass
from typing import Any, Callable

import torch

from engine.uds.batching import as_item, encode
from engine.uds.callbacks import ControlCallback, Progress, RunLogCallback
from engine.uds.config import SelectionConfig, TrainConfig, check_together
from engine.uds.data import Dataset
from engine.uds.evaluate import evaluate
from engine.uds.runlog import RunLog, SampleRecord
from engine.uds.runlog_io import save_runlog

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def prepare_trainable(base: torch.nn.Module, train: TrainConfig) -> torch.nn.Module:
    """A copy of `base` ready to train (the caller's model is never modified): LoRA adapters or all weights."""
    model = copy.deepcopy(base)
    if not train.lora:
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=train.lora_r, lora_alpha=train.lora_alpha, lora_dropout=0.0, bias="none",
                        target_modules=list(LORA_TARGETS), task_type="CAUSAL_LM")
    model = get_peft_model(model, config)
    generator = torch.Generator().manual_seed(train.seed)
    with torch.no_grad():
        for name, module in sorted(model.named_modules(), key=lambda pair: pair[0]):
            for a in getattr(module, "lora_A", {}).values():
                init = torch.empty(a.weight.shape)  # drawn on the CPU, so a seed gives the same adapter anywhere
                if train.lora_init == "gaussian":
                    init.normal_(0.0, 1.0 / train.lora_r, generator=generator)
                else:
                    torch.nn.init.kaiming_uniform_(init, a=math.sqrt(5), generator=generator)
                a.weight.copy_(init)
    return model


def training_arguments(selection: SelectionConfig, train: TrainConfig, device: torch.device, n_items: int,
                       output_dir: str | None = None) -> Any:
    """transformers.TrainingArguments of the run: B candidates per process and micro-batch, the protocol's schedule;
    warm-up steps = max(1, int(optimizer steps x ratio)) when the ratio is > 0, as the released script counts them."""
    from transformers import TrainingArguments

    args = TrainingArguments(
        output_dir=output_dir or os.path.join(tempfile.gettempdir(), "uds-trainer"), report_to="none",
        save_strategy="no", logging_strategy="no", disable_tqdm=True, use_cpu=device.type == "cpu",
        per_device_train_batch_size=selection.batch * train.groups,
        gradient_accumulation_steps=train.grad_accumulation, max_steps=train.steps if train.steps else -1,
        num_train_epochs=train.epochs, learning_rate=train.lr, weight_decay=train.weight_decay,
        max_grad_norm=train.grad_clip, lr_scheduler_type=train.schedule, optim="adamw_torch", seed=train.seed,
        remove_unused_columns=False, dataloader_drop_last=True, ddp_find_unused_parameters=False,
        **_candidate_order(train.candidate_order))
    if train.warmup_ratio > 0:
        per_epoch = n_items // (selection.batch * train.groups * args.world_size) // train.grad_accumulation
        total = train.steps if train.steps else per_epoch * train.epochs
        args = dataclasses.replace(args, warmup_steps=max(1, int(total * train.warmup_ratio)))
    return args


@dataclass(frozen=True)
class TrainedRun:
    log: RunLog  # the run log (saved to `out` as it grew)
    model: torch.nn.Module  # the trained copy (adapters attached)
    cancelled: bool  # stopped by `should_stop`
    main_process: bool  # this process writes the log and evaluates
    steps_done: int  # optimizer steps taken
    steps_total: int  # optimizer steps planned


def train_selection(base_model: torch.nn.Module, tokenizer: Any, dataset: Dataset, selection: SelectionConfig,
                    train: TrainConfig, model_name: str = "model", progress: Progress | None = None,
                    should_stop: Callable[[], bool] | None = None, out: str | None = None,
                    preset: str | None = None) -> TrainedRun:
    """Train a copy of `base_model` with online selection through UDSTrainer; no evaluation."""
    check_together(selection, train)
    encoded = [encode(tokenizer, s, train.cutoff) for s in dataset.train]
    # A sample teaches nothing when no token after the first is trained (its prompt fills the cut-off).
    trainable = [e for e in encoded if len(e.ids) > (1 if train.loss_on_prompt else e.prompt_len)]
    if len(trainable) < selection.batch * train.groups:
        raise ValueError(f"only {len(trainable)} of {len(encoded)} samples keep trained tokens within "
                         f"cutoff={train.cutoff}, fewer than batch={selection.batch} x groups={train.groups}; raise "
                         f"the cut-off")
    device = next(base_model.parameters()).device
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        from transformers import PrinterCallback

        from engine.uds.trainer import UDSTrainer

        model = prepare_trainable(base_model, train)
        args = training_arguments(selection, train, device, len(trainable), out)
        log = RunLog(config=_run_config(selection, train, dataset, model_name, encoded, trainable, preset,
                                        args.world_size))
        samples = {s.sample_id: SampleRecord(s.sample_id, s.source, s.category, s.prompt, s.response, "train")
                   for s in dataset.train}
        control = ControlCallback(progress if args.process_index == 0 else None, should_stop)
        trainer = UDSTrainer(model, args, [as_item(e, train.loss_on_prompt) for e in trainable], selection,
                             train.loss_reduction, processing_class=tokenizer,
                             callbacks=[RunLogCallback(log, samples, out), control], strip_every=train.strip_every,
                             strip_max_steps=train.strip_max_steps, cuda_graphs=train.cuda_graphs)
        trainer.remove_callback(PrinterCallback)  # the run log and `progress` report; no printed metric dicts
        chosen = trainer.online_selection
        log.config.update(scoring_route_used="factored" if chosen.factored is not None else "logits",
                          scoring_forward="cuda graphs" if chosen.static is not None else "eager")
        trainer.train()
    return TrainedRun(log=log, model=model, cancelled=control.cancelled, main_process=args.process_index == 0,
                      steps_done=trainer.state.global_step, steps_total=trainer.state.max_steps)


def _candidate_order(order: str) -> dict[str, Any]:
    """The Trainer's sampler option: `train_sampling_strategy` since transformers 5.2x, `group_by_length` before."""
    from transformers import TrainingArguments

    if "train_sampling_strategy" in TrainingArguments.__dataclass_fields__:
        return {"train_sampling_strategy": "group_by_length" if order == "length_grouped" else "random"}
    return {"group_by_length": order == "length_grouped"}


def run_selection(base_model: torch.nn.Module, tokenizer: Any, dataset: Dataset, selection: SelectionConfig,
                  train: TrainConfig, model_name: str = "model", progress: Progress | None = None,
                  should_stop: Callable[[], bool] | None = None, out: str | None = None,
                  preset: str | None = None) -> RunLog:
    """Train a copy of `base_model` with online selection, then evaluate it on the held-out items; the run log.

    `should_stop` is checked after every optimizer step: when it returns True the run ends there, the log says status
    "cancelled" and no eval runs. `progress` is called after every optimizer step and before the eval. With `out`
    the log is saved there after every optimizer step and at the end (main process only).
    """
    run = train_selection(base_model, tokenizer, dataset, selection, train, model_name, progress, should_stop, out,
                          preset)
    log = run.log
    if run.cancelled or train.eval_items == 0 or not dataset.heldout or not run.main_process:
        return log
    if progress is not None:
        progress(run.steps_done, run.steps_total, "held-out evaluation")
    items = list(dataset.heldout[: train.eval_items])
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    eos_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else pad_id
    log.eval_items, log.eval_summary = evaluate(run.model, tokenizer, items, train.cutoff, train.eval_max_new_tokens,
                                                pad_id, eos_id)
    log.samples += [SampleRecord(s.sample_id, s.source, s.category, s.prompt, s.response, "heldout") for s in items]
    if out:
        save_runlog(log, out)
    return log


def _run_config(selection: SelectionConfig, train: TrainConfig, dataset: Dataset, model_name: str, encoded: list,
                trainable: list, preset: str | None, processes: int) -> dict[str, Any]:
    label = ("default: padding rows masked" if selection.mode == "default"
             else "as released: all rows incl. padding, left-padded")
    return {"selector": selection.selector, "mode": selection.mode, "mode_label": label, "alpha": selection.alpha,
            "batch": selection.batch, "keep": selection.batch if selection.selector == "full" else selection.keep,
            "snapshot_every": train.snapshot_every, "dataset": dataset.name, "model": model_name,
            "train_samples": len(dataset.train), "heldout_samples": len(dataset.heldout),
            "truncated": sum(e.truncated for e in encoded), "dropped_prompt_too_long": len(encoded) - len(trainable),
            "preset": preset, "processes": processes, "status": "running", "selection": asdict(selection),
            "train": asdict(train)}
