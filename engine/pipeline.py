"""From a prompt string and knob values to an answer and a trace: what the CLI, the app and the benchmarks call."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from engine.decoding import CREDIT_PRESETS, DEFAULT_CREDIT_PRESET, DecodeResult, Observer, Rule, Trace, generate
from engine.decoding.cache import CacheConfig
from engine.decoding.registry import make_rule, rule_entry
from engine.decoding.trace import rate
from engine.models.base import LoadedModel
from engine.models.cuda_graph import fast_model_fn
from engine.models.kv_forward import CachedForward, check_cache
from engine.models.llama_native import native_model


@dataclass(frozen=True)
class DecodeRequest:
    prompt: str  # the user's text; the chat template is applied by the model adapter
    rule: str = "credit"  # a rule id or label from the registry (engine/decoding/registry.py); stored as the id
    gen_length: int = 64  # answer length in tokens (a multiple of block_length)
    block_length: int = 32  # semi-autoregressive block size
    steps: int | None = None  # fixed-steps rules only; None = gen_length (one token per step)
    threshold: float = 0.9  # tau, threshold and credit rules
    preset: str | None = DEFAULT_CREDIT_PRESET  # a preset of the rule (credit: paper, dinfer, parameter_free), or
    #                                             "custom" / None to use the knobs below; ignored by rules without
    alpha: float = CREDIT_PRESETS[DEFAULT_CREDIT_PRESET]["alpha"]  # credit fusion strength (custom preset)
    beta: float = CREDIT_PRESETS[DEFAULT_CREDIT_PRESET]["beta"]  # credit decay (custom preset)
    gamma: float = CREDIT_PRESETS[DEFAULT_CREDIT_PRESET]["gamma"]  # credit boost exponent (custom preset)
    temperature: float = 0.0  # Gumbel noise of the fixed-steps rule; 0 = greedy
    seed: int = 0  # seeds the Gumbel noise; the same request gives the same trace
    top_k: int = 5  # top-k kept per step and position in the trace
    cache: str = "none"  # key/value cache mode (engine/decoding/cache.py): none, prefix or dual
    refresh: int | None = None  # cache refresh period in steps inside a block; None = each block's first step only

    def __post_init__(self) -> None:
        object.__setattr__(self, "rule", rule_entry(self.rule).id)  # labels are accepted, ids are kept
        if self.gen_length < 1 or self.block_length < 1 or self.gen_length % self.block_length:
            raise ValueError(f"gen_length={self.gen_length} must be a positive multiple of "
                             f"block_length={self.block_length}")
        if not 1 <= self.top_k <= 20:
            raise ValueError(f"top_k={self.top_k} must be in [1, 20]")
        self.make_rule()  # raises ValueError naming any bad knob
        self.cache_config()

    def cache_config(self) -> CacheConfig:
        return CacheConfig(self.cache, self.refresh)

    def make_rule(self) -> Rule:
        entry = rule_entry(self.rule)
        steps = self.steps if self.steps is not None else self.gen_length
        if entry.has("step_budget"):
            n_blocks = self.gen_length // self.block_length
            if steps % n_blocks or not n_blocks <= steps <= self.gen_length:
                raise ValueError(f"steps={steps} must be a multiple of the number of blocks ({n_blocks}) between "
                                 f"{n_blocks} and gen_length={self.gen_length}")
        preset = self.preset if entry.presets else None
        return make_rule(entry.id, preset, steps=steps, threshold=self.threshold, alpha=self.alpha, beta=self.beta,
                         gamma=self.gamma, temperature=self.temperature)


@dataclass
class DecodeOutcome:
    answer: str  # decoded text up to the first EOS
    result: DecodeResult
    trace: Trace

    @property
    def tokens_per_second(self) -> float:
        """Answer tokens (up to and including EOS) per second of wall time; EOS padding after it not counted."""
        return rate(self.trace.meta["answer_tokens"], self.result.seconds)


def prompt_ids(model: LoadedModel, request: DecodeRequest) -> torch.Tensor:
    ids = model.encode_prompt(request.prompt)  # (1, P)
    if ids.shape[1] + request.gen_length > model.spec.max_length:
        raise ValueError(f"prompt is {ids.shape[1]} tokens; with gen_length={request.gen_length} that exceeds the "
                         f"model's context of {model.spec.max_length}; shorten the prompt or lower gen_length")
    return ids


def model_fn_for(model: LoadedModel, request: DecodeRequest):
    """The callable a decode of `request` uses; a ValueError when the model cannot use the request's cache."""
    cache = request.cache_config()
    if cache.mode != "none":
        check_cache(native_model(model), cache, request.block_length)
        return CachedForward(model, cache)
    # On CUDA our own Llama-architecture models replay CUDA graphs of block-only forwards (docs/GPU_NOTES.md: 26.7 ->
    # 5.3 ms a step for the bundled model); compiling as well would save 3 ms more but costs ~40 s on first use.
    # Remote-code Hub models keep their own forward. On the CPU the model is used as it is.
    return fast_model_fn(model, compile_model=False) if model.graph_safe else model


def decode(model: LoadedModel, request: DecodeRequest, observers: Sequence[Observer] = ()) -> DecodeOutcome:
    """Decode one prompt and return the answer with a self-contained trace (token strings included)."""
    model_fn = model_fn_for(model, request)
    ids = prompt_ids(model, request)
    result = generate(model_fn, ids, request.make_rule(), gen_length=request.gen_length,
                      block_length=request.block_length, mask_id=model.spec.mask_id, eos_id=model.spec.eos_id,
                      shift=model.spec.shift, observers=observers, top_k=request.top_k, seed=request.seed)
    trace = result.trace
    answer_ids = model.answer_ids(result.tokens[0])
    trace.meta.update(model=model.spec.name, prompt=request.prompt,
                      answer_tokens=min(len(answer_ids) + 1, request.gen_length), device=str(model.device))
    trace.token_text = model.token_text(trace.ids_in_use())
    answer = model.decode_answer(result.tokens[0])
    trace.meta["answer"] = answer
    return DecodeOutcome(answer=answer, result=result, trace=trace)
