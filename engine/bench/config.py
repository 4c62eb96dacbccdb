"""What a benchmark run covers (task sets x rules x lengths) and the rule names it understands."""
from __future__ import annotations

from dataclasses import dataclass

from engine.bench.tasks import TASK_SETS
from engine.decoding import CREDIT_PRESETS, Credit, LowConfidence, Threshold

# Rule name -> what it is. "fixed" commits one token per step (steps = gen_length), as LLaDA's baseline.
RULES = {
    "fixed": "LLaDA fixed steps, steps = gen_length (one token per step)",
    "threshold": "Fast-dLLM confidence threshold tau",
    "credit_paper": "CreditDecoding, paper preset (alpha 0.65, beta 0.7, gamma 0.2)",
    "credit_dinfer": "CreditDecoding, dInfer preset (alpha 0.7, beta 0.8, gamma 0.2)",
    "credit_pf": "CreditDecoding, parameter-free (gamma 1, alpha_k = beta_k = 1 - mask ratio)",
}
DEFAULT_RULES = tuple(RULES)
CUSTOM_CREDIT = "credit:"  # "credit:alpha=0.5,beta=0.9" (gamma defaults to the paper's) for sensitivity sweeps


def parse_custom_credit(name: str) -> dict[str, float]:
    """'credit:alpha=0.5,beta=0.9' -> {'alpha': 0.5, 'beta': 0.9, 'gamma': 0.2}; ValueError naming the bad part."""
    knobs = dict(CREDIT_PRESETS["paper"])
    for part in filter(None, name[len(CUSTOM_CREDIT):].split(",")):
        key, _, value = part.partition("=")
        if key not in knobs:
            raise ValueError(f"rule {name!r}: knob {key!r} is unknown; allowed: alpha, beta, gamma")
        try:
            knobs[key] = float(value)
        except ValueError:
            raise ValueError(f"rule {name!r}: {key}={value!r} is not a number") from None
    return knobs


def check_rule(name: str) -> str:
    if name in RULES:
        return name
    if name.startswith(CUSTOM_CREDIT):
        Credit(**parse_custom_credit(name))  # raises on an out-of-range knob
        return name
    raise ValueError(f"rule {name!r} is unknown; allowed: {', '.join(RULES)}, or credit:alpha=A,beta=B[,gamma=G]")


def make_rule(name: str, gen_length: int, threshold: float = 0.9) -> LowConfidence | Threshold | Credit:
    """A fresh rule object (rules hold per-decode state) for one decode."""
    if name == "fixed":
        return LowConfidence(steps=gen_length)
    if name == "threshold":
        return Threshold(threshold=threshold)
    if name == "credit_pf":
        return Credit.preset("parameter_free", threshold=threshold)
    if name.startswith("credit_"):
        return Credit.preset(name[len("credit_"):], threshold=threshold)
    return Credit(threshold=threshold, **parse_custom_credit(check_rule(name)))


@dataclass(frozen=True)
class BenchConfig:
    model: str = "bundled"  # a name load_model knows
    task_sets: tuple[str, ...] = ("math", "humaneval", "chat")  # from TASK_SETS
    n: int = 20  # questions per task set (the same questions for every rule and length)
    rules: tuple[str, ...] = DEFAULT_RULES  # rule names (RULES or credit:alpha=..,beta=..)
    gen_lengths: tuple[int, ...] = (64,)  # answer canvases
    block_lengths: tuple[int, ...] = (32,)  # semi-autoregressive block sizes (each must divide every gen_length)
    threshold: float = 0.9  # tau of the threshold and credit rules
    batch: int = 1  # prompts decoded together (left-padded, key-masked); 1 = as the app decodes
    bucket: int = 0  # left-pad prompts to a multiple of this many tokens (0 = off); lets CUDA graphs be reused
    cuda_graph: bool = False  # replay the forward from CUDA graphs (GPU only)
    device: str | None = None  # cpu or cuda; None = cuda when present
    seed: int = 0  # seeds the task sample
    humaneval_timeout: float = 5.0  # seconds per HumanEval program in the checker

    def __post_init__(self) -> None:
        for task_set in self.task_sets:
            if task_set not in TASK_SETS:
                raise ValueError(f"task set {task_set!r} is unknown; allowed: {', '.join(TASK_SETS)}")
        if not self.task_sets or not self.rules or not self.gen_lengths or not self.block_lengths:
            raise ValueError("task_sets, rules, gen_lengths and block_lengths must each name at least one value")
        for rule in self.rules:
            check_rule(rule)
        for gen_length in self.gen_lengths:
            for block_length in self.block_lengths:
                if gen_length < 1 or block_length < 1 or gen_length % block_length:
                    raise ValueError(f"gen_length={gen_length} must be a positive multiple of "
                                     f"block_length={block_length}")
        if self.n < 1 or self.batch < 1 or self.bucket < 0:
            raise ValueError(f"n={self.n} and batch={self.batch} must be >= 1, bucket={self.bucket} >= 0")
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"threshold={self.threshold} must lie in (0, 1]")
        if self.cuda_graph and self.device == "cpu":
            raise ValueError("cuda_graph needs a GPU; drop --cuda-graph or use --device cuda")
