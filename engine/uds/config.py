"""Configuration of a selection run: what is scored and kept (SelectionConfig) and how the model trains (TrainConfig).

Two scoring modes, labelled everywhere they show:
* "default": padding rows are masked out of the nuclear norm and the sketch, so a sample's score does not depend on
  how long its batch-mates are (the better choice);
* "as_released": every logit row of the padded batch enters, as in the released UDSamplingTrainer, with the
  released collator's padding (left, to a multiple of 8).
`SelectionConfig.as_released()` also restores the released trainer's defaults (K = 4, alpha = 2.5e-3, seed 21).
TrainConfig holds the training protocol around the selection (accumulation, loss reduction, schedule, padding,
candidate order); engine/uds/presets.py names the released script's and the paper's settings.
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
    mode: str = "default"  # "default" (right padding, padding rows masked) or "as_released" (left padding to a
    # multiple of 8, every row scored, as the released trainer and collator)
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

    @property
    def padding_side(self) -> str:
        """Where candidates are padded: "left" as the released collator (finetune.py sets the tokenizer's padding
        side to left), "right" by default (each sample's rows start at time 0, which the default mode's scores need)."""
        return "left" if self.mode == "as_released" else "right"

    @property
    def pad_to_multiple_of(self) -> int:
        """Candidate batches are padded to a multiple of this length: 8 as the released collator, else 1."""
        return 8 if self.mode == "as_released" else 1

    @classmethod
    def as_released(cls, **overrides: object) -> "SelectionConfig":
        """The released trainer's defaults: all rows scored, K = 4, alpha 2.5e-3, M 1024, d1 128, d2 8, T 512."""
        values: dict[str, object] = {"mode": "as_released", "batch": 8, "keep": 4, "alpha": 2.5e-3, "seed": 21}
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]


LOSS_REDUCTIONS = ("token_mean", "per_sample")
SCHEDULES = ("constant", "linear")
CANDIDATE_ORDERS = ("random", "length_grouped")
LORA_INITS = ("kaiming", "gaussian")


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 20  # optimizer steps (each accumulates `grad_accumulation` micro-batches); 0 = `epochs` full passes
    epochs: int = 1  # full passes over the pool when steps is 0
    grad_accumulation: int = 1  # micro-batches per optimizer step
    groups: int = 1  # groups of B candidates (K kept of each) one process scores per micro-batch, in one forward; one
    # process with G groups selects exactly what G processes of one group each select
    loss_reduction: str = "token_mean"  # "token_mean" over every kept token of the step, or "per_sample": mean of
    # each kept sample's token mean (the released script's, whose K = 1 micro-batches are averaged over accumulation)
    schedule: str = "constant"  # learning rate after warm-up: "constant" or "linear" decay to 0 at the last step
    warmup_ratio: float = 0.0  # warm-up steps = max(1, int(total steps x ratio)) when > 0, as the released script
    loss_on_prompt: bool = False  # train on the prompt tokens too (the released script's train_on_inputs)
    candidate_order: str = "random"  # "random" or "length_grouped" (the Trainer's LengthGroupedSampler)
    cutoff: int = 192  # max tokens per sample (prompt + response); longer ones are truncated and counted
    lr: float = 3e-4  # AdamW learning rate (released scripts: 1.5e-4 to 3e-4)
    weight_decay: float = 0.0  # AdamW weight decay
    grad_clip: float = 1.0  # max global grad norm; 0 turns clipping off
    lora: bool = True  # LoRA adapters (peft) on all 7 projections; False = full fine-tuning
    lora_r: int = 8  # LoRA rank
    lora_alpha: int = 16  # LoRA scaling numerator
    lora_init: str = "kaiming"  # LoRA A init: "kaiming" (peft's default) or "gaussian" (std 1 / r, the released
    # script's A_type); B starts at zero either way; drawn from a generator seeded with `seed`
    eval_items: int = 24  # held-out items evaluated at the end (0 = no eval)
    eval_max_new_tokens: int = 16  # greedy tokens generated per maths answer
    snapshot_every: int = 5  # buffer snapshot interval in selection steps (RunLog.snapshot_steps)
    strip_every: int = 1  # store per-token strips every this many selection steps ...
    strip_max_steps: int = 64  # ... for at most this many steps (bounds the log size)
    seed: int = 21  # adapter init, candidate order (the Trainer's seed)
    cuda_graphs: bool = True  # on CUDA, replay the scoring forward from CUDA graphs (engine/uds/static_forward.py)

    def __post_init__(self) -> None:
        _check_range("steps", self.steps, 0)
        _check_range("epochs", self.epochs, 1)
        _check_range("grad_accumulation", self.grad_accumulation, 1)
        _check_range("groups", self.groups, 1)
        for name, value, allowed in (("loss_reduction", self.loss_reduction, LOSS_REDUCTIONS),
                                     ("schedule", self.schedule, SCHEDULES),
                                     ("candidate_order", self.candidate_order, CANDIDATE_ORDERS),
                                     ("lora_init", self.lora_init, LORA_INITS)):
            if value not in allowed:
                raise ValueError(f"{name}={value!r} is unknown; allowed: {allowed}")
        _check_range("warmup_ratio", self.warmup_ratio, 0.0, 1.0)
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


def check_together(selection: SelectionConfig, train: TrainConfig) -> None:
    """Settings that are valid alone but not together: a ValueError naming both and the fix."""
    multiple = selection.pad_to_multiple_of
    padded = -(-train.cutoff // multiple) * multiple  # the longest padded candidate
    if padded > selection.time_length:
        raise ValueError(f"cutoff={train.cutoff} exceeds the sketch time_length={selection.time_length}"
                         + (f" once padded to a multiple of {multiple} ({padded})" if padded != train.cutoff else "")
                         + "; lower the cut-off or raise time_length")
