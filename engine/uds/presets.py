"""Named protocols: the released script's settings and the paper's, each value traced to its source.

A preset fixes the protocol (B, K, alpha, sketch, accumulation, loss, schedule, cut-off, LoRA, ...), never the
selector, the scoring mode or the seed: those are what one compares (or repeats) under a protocol. Sources, with the
exact lines in docs/UDS_TRAINER.md: `run_mmlu.sh` and `finetune.py` of github.com/gfyddha/UDS at commit 6cd1634, the
transformers 4.44.0 defaults its requirements.txt pins, and the paper (arXiv 2510.16882) for B = 8 at a 12.5% budget.
"""
from __future__ import annotations

from dataclasses import fields
from typing import Any, Mapping

from engine.uds.config import SelectionConfig, TrainConfig

RELEASED_SCRIPT: dict[str, Any] = {
    # selection
    "batch": 4,  # run_mmlu.sh: --micro_batch_size 4 (per-device batch, the candidates of one scoring pass)
    "keep": 1,  # run_mmlu.sh: --k_base 1
    "alpha": 1.5e-3,  # run_mmlu.sh: --alpha 1.5e-3
    "buffer_size": 1024,  # run_mmlu.sh: --queue_size 1024
    "d1": 128,  # run_mmlu.sh: --projection_dim1 128 (the vocabulary-side draws of FastJLProjector)
    "d2": 8,  # run_mmlu.sh: --projection_dim2 8 (the time-side draws)
    "time_length": 512,  # UDSamplingTrainer.py: max_seq_len is 512 when args has no max_seq_length
    # training
    "steps": 0,  # run_mmlu.sh: --num_epochs 1 (a full pass, no step limit) ...
    "epochs": 1,  # ... one epoch
    "grad_accumulation": 32,  # finetune.py: batch_size // micro_batch_size = 128 // 4
    "loss_reduction": "per_sample",  # K = 1 per micro-batch, micro-batch losses averaged over the accumulation
    "schedule": "linear",  # TrainingArguments' default lr_scheduler_type; finetune.py sets none
    "warmup_ratio": 0.01,  # run_mmlu.sh: --warmup_rates 0.01 (finetune.py: max(1, int(total x rate)) steps)
    "loss_on_prompt": True,  # run_mmlu.sh: --train_on_inputs
    "candidate_order": "length_grouped",  # run_mmlu.sh: --group_by_length
    "cutoff": 512,  # run_mmlu.sh: --cutoff_len 512
    "lr": 1.5e-4,  # run_mmlu.sh: --learning_rate 1.5e-4
    "weight_decay": 0.0,  # TrainingArguments' default; finetune.py sets none
    "grad_clip": 1.0,  # TrainingArguments' default max_grad_norm; finetune.py sets none
    "lora": True,  # finetune.py: get_peft_model
    "lora_r": 8,  # run_mmlu.sh: --lora_r 8
    "lora_alpha": 16,  # run_mmlu.sh: --lora_alpha 16
    "lora_init": "gaussian",  # run_mmlu.sh: --A_type "gaussian" (finetune.py: init_lora_weights=A_type)
}

PAPER: dict[str, Any] = {
    **RELEASED_SCRIPT,
    "batch": 8,  # the paper's B = 8 (docs/UDS.md) ...
    "keep": 1,  # ... and its 12.5% budget (readme: "using only 12.5% of the training data"): K = 1 of 8
    "grad_accumulation": 16,  # 128 candidates per optimizer step, as the script's batch_size 128
}

PRESETS: dict[str, Mapping[str, Any]] = {"released-script": RELEASED_SCRIPT, "paper": PAPER}
_SELECTION = {f.name for f in fields(SelectionConfig)}
_TRAIN = {f.name for f in fields(TrainConfig)}


def resolve(preset: str | None, explicit: Mapping[str, Any]) -> tuple[SelectionConfig, TrainConfig]:
    """The run's configs: the dataclass defaults, then the preset, then the values the user set explicitly.

    An explicit value that differs from the preset's is refused (a ValueError naming both), so a run never silently
    mixes a preset with a contradicting setting; an equal one is fine.
    """
    if preset is not None and preset not in PRESETS:
        raise ValueError(f"preset={preset!r} is unknown; allowed: {sorted(PRESETS)}")
    unknown = sorted(set(explicit) - _SELECTION - _TRAIN)
    if unknown:
        raise ValueError(f"unknown setting(s) {unknown}; allowed: {sorted(_SELECTION | _TRAIN)}")
    values = dict(PRESETS[preset]) if preset else {}
    for name, value in explicit.items():
        if name in values and values[name] != value:
            raise ValueError(f"{name}={value!r} contradicts preset {preset!r}, which sets {name}={values[name]!r} "
                             f"(docs/UDS_TRAINER.md gives its source); drop the preset or that setting")
        values[name] = value
    selection = SelectionConfig(**{k: v for k, v in values.items() if k in _SELECTION})
    train = TrainConfig(**{k: v for k, v in values.items() if k in _TRAIN})
    return selection, train
