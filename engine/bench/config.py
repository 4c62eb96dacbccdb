"""What a benchmark run covers: task sets x rules (registry rule specs) x lengths x cache modes."""
from __future__ import annotations

from dataclasses import dataclass

from engine.bench.decode import check_cache
from engine.bench.tasks import TASK_SETS
from engine.decoding import Rule, parse_rule_spec

# Rule specs of the registry (engine/decoding/registry.py): an id or label, then a preset or knobs after a colon,
# e.g. "credit:alpha=0.5,beta=0.9" for sensitivity sweeps. Fixed steps run steps = gen_length (one token per step).
DEFAULT_RULES = ("low_confidence", "threshold", "credit:paper", "credit:dinfer", "credit:parameter_free")


def make_rule(spec: str, gen_length: int, threshold: float = 0.9) -> Rule:
    """A rule for one benchmark cell; ValueError naming the spec when it is not a registry rule spec."""
    return parse_rule_spec(spec, steps=gen_length, threshold=threshold)


@dataclass(frozen=True)
class BenchConfig:
    model: str = "bundled"  # a name load_model knows
    task_sets: tuple[str, ...] = ("math", "humaneval", "chat")  # from TASK_SETS
    n: int = 20  # questions per task set (the same questions for every rule and length)
    rules: tuple[str, ...] = DEFAULT_RULES  # registry rule specs (see DEFAULT_RULES)
    gen_lengths: tuple[int, ...] = (64,)  # answer canvases
    block_lengths: tuple[int, ...] = (32,)  # semi-autoregressive block sizes (each must divide every gen_length)
    caches: tuple[str, ...] = ("none",)  # key/value cache modes (engine/bench/decode.py BENCH_CACHES)
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
        if not self.task_sets or not self.rules or not self.gen_lengths or not self.block_lengths or not self.caches:
            raise ValueError("task_sets, rules, gen_lengths, block_lengths and caches must each name at least one "
                             "value")
        for cache in self.caches:
            check_cache(cache)
        for rule in self.rules:
            make_rule(rule, min(self.gen_lengths))  # raises on an unknown rule or an out-of-range knob
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
