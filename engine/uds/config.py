"""Configuration of a selection run: what is scored and kept (SelectionConfig) and how the model trains (TrainConfig).

Two scoring modes, labelled everywhere they show:
* "default": padding rows are masked out of the nuclear norm and the sketch, so a sample's score does not depend on
  how long its batch-mates are (the better choice);
* "as_released": every logit row of the padded batch enters, as in the released UDSamplingTrainer.
`SelectionConfig.as_released()` also restores the released defaults (K = 4, alpha = 2.5e-3, seed 21).
"""
from __future__ import annotations

from dataclasses import dataclass

from engine.uds.factored import SCORING_ROUTES
from engine.uds.selectors import SELECTORS

MODES = ("default", "as_released")


def _check_range(name: str, value: float, low: float, high: float | None = None) -> None:
    if value < low or (high is not None and value > high):
        allowed = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name}={value!r} is out of range; allowed: {allowed}")


@dataclass(frozen=True)
class SelectionConfig:
    selector: str = "uds"  # one of SELECTORS: uds, random, maxloss, utility, diversity, full
    mode: str = "default"  # "default" (padding rows masked) or "as_released" (all rows incl. padding)
    batch: int = 8  # B, candidates scored per micro-batch (paper: 8)
    keep: int = 2  # K, candidates trained on per micro-batch (ignored by "full", which keeps B)
    alpha: float = 2.5e-3  # weight of s_inter; tiny because sketch distances are ~sqrt(V*T)/2 x logit distances
    buffer_size: int = 1024  # M, FIFO capacity of selected embeddings
    d1: int = 128  # sketch columns sampled along the vocabulary
    d2: int = 8  # sketch rows sampled along time
    time_length: int = 512  # T, time axis zero-padded to this; must be >= the cut-off
    seed: int = 21  # seeds the sketch draws and the Random selector
    scoring_route: str = "auto"  # "auto" (factored where exact: engine/uds/factored.py), "factored" or "logits"

    def __post_init__(self) -> None:
        if self.scoring_route not in SCORING_ROUTES:
            raise ValueError(f"scoring_route={self.scoring_route!r} is unknown; allowed: {SCORING_ROUTES}")
        if self.selector not in SELECTORS:
            raise ValueError(f"selector={self.selector!r} is unknown; allowed: {sorted(SELECTORS)}")
        if self.mode not in MODES:
            raise ValueError(f"mode={self.mode!r} is unknown; allowed: {MODES}")
        _check_range("batch", self.batch, 1)
        _check_range("keep", self.keep, 1, self.batch)
        _check_range("alpha", self.alpha, 0.0)
        _check_range("buffer_size", self.buffer_size, 1)
        _check_range("d1", self.d1, 1)
        _check_range("d2", self.d2, 1)
        _check_range("time_length", self.time_length, 1)

    @classmethod
    def as_released(cls, **overrides: object) -> "SelectionConfig":
        """The released trainer's defaults: all rows scored, K = 4, alpha 2.5e-3, M 1024, d1 128, d2 8, T 512."""
        values: dict[str, object] = {"mode": "as_released", "batch": 8, "keep": 4, "alpha": 2.5e-3, "seed": 21}
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 20  # micro-batches (one optimizer step each); the demo default finishes in < 3 min on 2 CPU cores
    cutoff: int = 192  # max tokens per sample (prompt + response); longer ones are truncated and counted
    lr: float = 3e-4  # AdamW learning rate (released scripts: 1.5e-4 to 3e-4)
    weight_decay: float = 0.0  # AdamW weight decay
    grad_clip: float = 1.0  # max global grad norm; 0 turns clipping off
    lora: bool = True  # LoRA adapters (peft) on all 7 projections; False = full fine-tuning
    lora_r: int = 8  # LoRA rank
    lora_alpha: int = 16  # LoRA scaling numerator
    eval_items: int = 24  # held-out items evaluated at the end (0 = no eval)
    eval_max_new_tokens: int = 16  # greedy tokens generated per maths answer
    snapshot_every: int = 5  # buffer snapshot interval in steps (RunLog.snapshot_steps)
    strip_every: int = 1  # store per-token strips every this many steps ...
    strip_max_steps: int = 64  # ... for at most this many steps (bounds the log size)
    seed: int = 21  # model init of adapters, data order, torch RNG
    cuda_graphs: bool = True  # on CUDA, replay the scoring forward from CUDA graphs (engine/uds/static_forward.py)

    def __post_init__(self) -> None:
        _check_range("steps", self.steps, 1)
        _check_range("cutoff", self.cutoff, 8)
        _check_range("lr", self.lr, 0.0, 1.0)
        _check_range("weight_decay", self.weight_decay, 0.0)
        _check_range("grad_clip", self.grad_clip, 0.0)
        _check_range("lora_r", self.lora_r, 1)
        _check_range("lora_alpha", self.lora_alpha, 1)
        _check_range("eval_items", self.eval_items, 0)
        _check_range("eval_max_new_tokens", self.eval_max_new_tokens, 1)
        _check_range("snapshot_every", self.snapshot_every, 1)
        _check_range("strip_every", self.strip_every, 1)
        _check_range("strip_max_steps", self.strip_max_steps, 0)
