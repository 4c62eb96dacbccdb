"""The recipe's one config: data sizes, LoRA shape, training and evaluation settings, and the smoke preset."""
from __future__ import annotations

from dataclasses import dataclass, replace

from engine.data.heldout import CHAT_HELDOUT, SPLIT_SEED

# mathematics-dataset train modules (easy third) and how many question/answer pairs each contributes.
DEFAULT_MATH_MIX = (("arithmetic__add_or_sub", 72000), ("arithmetic__add_sub_multiple", 3000),
                    ("arithmetic__mul", 3000), ("arithmetic__div", 3000), ("arithmetic__mixed", 1500),
                    ("comparison__pair", 2000), ("comparison__sort", 1500), ("comparison__kth_biggest", 1500),
                    ("comparison__closest", 1500), ("numbers__gcd", 1500), ("numbers__lcm", 1500),
                    ("numbers__div_remainder", 1500), ("numbers__is_prime", 1000), ("numbers__is_factor", 1000),
                    ("numbers__round_number", 1500), ("numbers__place_value", 1500))


@dataclass(frozen=True)
class RecipeConfig:
    base: str = "smollm2"  # "smollm2" (the GGUF) or "tiny-random" (the smoke test's toy model)
    seed: int = SPLIT_SEED  # seeds data building, masking and initialisation (and the held-out splits)
    # -- data
    math_mix: tuple[tuple[str, int], ...] = DEFAULT_MATH_MIX  # (module, train pairs) from the easy train split
    addition_copies: int = 40  # each of the 100 single-digit sums appears this many times, in varied phrasings
    small_ops_copies: int = 4  # copies of each 0-12 x 0-12 subtraction / product / sum question
    chat_heldout: int = CHAT_HELDOUT  # chatterbot questions kept out of training for the chat eval
    teacher_prompt_cap: int = 0  # use at most this many teacher prompts (0 = all); the smoke test keeps a few
    teacher_max_new_tokens: int = 127  # teacher answers longer than this (without EOS) are dropped
    teacher_passes: int = 3  # answers per teacher prompt: one greedy, the rest sampled (temperature 0.7)
    teacher_copies: int = 6  # each kept teacher answer appears this many times in the training pool
    teacher_batch: int = 256  # prompts per batched teacher generate call
    teacher_repetition_penalty: float = 1.15  # keeps the teacher's own loops out of the training answers
    keep_unfinished_teacher: bool = False  # smoke only: a random teacher never says EOS, keep its answers anyway
    max_prompt_tokens: int = 320  # longer prompts (a few HumanEval ones) are dropped
    slot_lengths: tuple[int, ...] = (64, 128)  # answers are EOS-padded to the shortest slot that fits
    long_slot_share: float = 0.2  # share of short answers padded to the longest slot, so long canvases stop too
    # -- model
    method: str = "lora"  # "lora": adapters trained directly; "full": full fine-tune, changes compressed to lora_rank
    lora_rank: int = 64  # rank of every adapter (all 7 projections of every layer), or of the compressed changes
    lora_alpha: float = 128.0  # adapter scale alpha / rank
    # -- training
    max_steps: int = 1828  # the shipped weights' schedule (fitted to 780 s beside a second run on an H200)
    train_seconds: float = 1200.0  # wall-clock cap for the optimisation loop; the schedule is refitted if it binds
    batch_size: int = 128  # sequences per step
    lr: float = 5e-4  # peak AdamW learning rate of adapters, norms and the mask embedding (method "lora")
    full_lr: float = 1e-4  # the same for method "full" (every projection moves, so a smaller step)
    warmup_steps: int = 60  # linear warm-up, then cosine decay to lr / 10
    min_mask_ratio: float = 0.02  # t ~ U(min_mask_ratio, 1): bounds the 1/t weight at 50
    grad_clip: float = 1.0  # global gradient-norm clip
    log_every: int = 50  # steps between log lines
    # -- evaluation
    eval_per_set: int = 100  # questions per held-out set
    eval_gen_lengths: tuple[int, ...] = (64, 128)  # canvases evaluated
    eval_block_length: int = 32  # semi-autoregressive block size used in evaluation (the CLI default)
    eval_batch: int = 100  # questions decoded together (left-padded, key-masked)

    @property
    def peak_lr(self) -> float:
        return self.lr if self.method == "lora" else self.full_lr

    def __post_init__(self) -> None:
        if self.method not in ("lora", "full"):
            raise ValueError(f"method={self.method!r} must be 'lora' or 'full'")
        if self.base not in ("smollm2", "tiny-random"):
            raise ValueError(f"base={self.base!r} must be 'smollm2' or 'tiny-random'")
        if not 0.0 < self.min_mask_ratio < 1.0:
            raise ValueError(f"min_mask_ratio={self.min_mask_ratio} must lie in (0, 1)")
        if not 0.0 <= self.long_slot_share <= 1.0:
            raise ValueError(f"long_slot_share={self.long_slot_share} must lie in [0, 1]")
        if not self.slot_lengths or sorted(self.slot_lengths) != list(self.slot_lengths):
            raise ValueError(f"slot_lengths={self.slot_lengths} must be non-empty and ascending")
        for gen_length in self.eval_gen_lengths:
            if gen_length % self.eval_block_length:
                raise ValueError(f"eval gen_length {gen_length} is not a multiple of "
                                 f"eval_block_length={self.eval_block_length}")
        if self.teacher_prompt_cap < 0:
            raise ValueError(f"teacher_prompt_cap={self.teacher_prompt_cap} must be >= 0 (0 = all)")
        for name in ("batch_size", "lora_rank", "teacher_passes", "teacher_copies", "max_steps", "eval_per_set",
                     "teacher_batch", "eval_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        if self.train_seconds <= 0 or self.lr <= 0 or self.full_lr <= 0:
            raise ValueError(f"train_seconds={self.train_seconds}, lr={self.lr} and full_lr={self.full_lr} "
                             "must be > 0")


def smoke_config() -> RecipeConfig:
    """The whole recipe in seconds on a CPU: tiny random model, a handful of examples, a few steps."""
    return replace(RecipeConfig(), base="tiny-random", math_mix=(("arithmetic__add_or_sub", 8), ("numbers__gcd", 4)),
                   addition_copies=1, small_ops_copies=0, chat_heldout=4, teacher_prompt_cap=6,
                   teacher_max_new_tokens=8,
                   teacher_passes=2, teacher_copies=1, teacher_batch=16,
                   keep_unfinished_teacher=True, slot_lengths=(16, 32), lora_rank=4,
                   lora_alpha=8.0, max_steps=3, train_seconds=60.0, batch_size=4, warmup_steps=1, log_every=1,
                   eval_per_set=2, eval_gen_lengths=(16,), eval_block_length=8, eval_batch=2)
