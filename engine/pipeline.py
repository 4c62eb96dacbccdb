"""From a prompt string and knob values to an answer and a trace: what the CLI, the app and the benchmarks call."""
from __future__ import annotations

import math
import numbers
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch

from engine.decoding import (CREDIT_PRESETS, DEFAULT_CREDIT_PRESET, DecodeResult, ModelFn, Observer, Rule, Trace,
                             generate)
from engine.decoding.cache import CacheConfig
from engine.decoding.registry import make_rule, rule_entry
from engine.decoding.trace import rate
from engine.models.base import LoadedModel
from engine.models.cuda_graph import fast_model_fn
from engine.models.kv_forward import CachedForward, check_cache
from engine.models.llama_native import native_model


# What any caller (the app's page, its API, the CLI) may ask for; one request is bounded by these.
MAX_PROMPT_CHARS = 2000  # longer prompts are refused before tokenising
MAX_GEN_LENGTH = 1024  # answer tokens
MAX_BLOCK_LENGTH = 64  # block size
MAX_SEED = 2**63 - 1  # torch.Generator takes a 64-bit seed
KNOB_RANGES: dict[str, tuple[float, float]] = {  # name -> [low, high] of the real-valued knobs
    "threshold": (0.0, 1.0), "alpha": (0.0, 5.0), "beta": (0.0, 1.0), "gamma": (0.0, 1.0), "temperature": (0.0, 100.0)}


@dataclass(frozen=True)
class DecodeRequest:
    prompt: str  # the user's text (1..MAX_PROMPT_CHARS characters); the chat template is applied by the model adapter
    rule: str = "credit"  # a rule id or label from the registry (engine/decoding/registry.py); stored as the id
    gen_length: int = 64  # answer length in tokens (a multiple of block_length), 1..MAX_GEN_LENGTH
    block_length: int = 32  # semi-autoregressive block size, 1..MAX_BLOCK_LENGTH
    steps: int | None = None  # fixed-steps rules only; None = gen_length (one token per step)
    threshold: float = 0.9  # tau, threshold and credit rules, in (0, 1]
    preset: str | None = DEFAULT_CREDIT_PRESET  # a preset of the rule (credit: paper, dinfer, parameter_free), or
    #                                             "custom" / None to use the knobs below; ignored by rules without
    alpha: float = CREDIT_PRESETS[DEFAULT_CREDIT_PRESET]["alpha"]  # credit fusion strength (custom preset), [0, 5]
    beta: float = CREDIT_PRESETS[DEFAULT_CREDIT_PRESET]["beta"]  # credit decay (custom preset), [0, 1]
    gamma: float = CREDIT_PRESETS[DEFAULT_CREDIT_PRESET]["gamma"]  # credit boost exponent (custom preset), [0, 1]
    temperature: float = 0.0  # Gumbel noise of the fixed-steps rule; 0 = greedy; [0, 100]
    seed: int = 0  # seeds the Gumbel noise; the same request gives the same trace; 0..MAX_SEED
    top_k: int = 5  # top-k kept per step and position in the trace, 1..20
    cache: str = "none"  # key/value cache mode (engine/decoding/cache.py): none, prefix or dual
    refresh: int | None = None  # cache refresh period in steps inside a block; None = each block's first step only

    def __post_init__(self) -> None:
        """Every knob checked (finite, in range, integral where it must be) with a message naming the value and the
        range; whole-valued floats (64.0, as JSON clients send) are stored as ints."""
        _check_prompt(self.prompt)
        if not isinstance(self.rule, str):
            raise ValueError(f"rule={self.rule!r:.60} must be a rule id or label")
        if self.preset is not None and not isinstance(self.preset, str):
            raise ValueError(f"preset={self.preset!r:.60} must be a preset name, 'custom' or None")
        self._set("rule", rule_entry(self.rule).id)  # labels are accepted, ids are kept
        self._set("gen_length", _integer("gen_length", self.gen_length, 1, MAX_GEN_LENGTH))
        self._set("block_length", _integer("block_length", self.block_length, 1, MAX_BLOCK_LENGTH))
        if self.gen_length % self.block_length:
            raise ValueError(f"gen_length={self.gen_length} must be a multiple of block_length={self.block_length}")
        if self.steps is not None:
            self._set("steps", _integer("steps", self.steps, 1, self.gen_length))
        for name, (low, high) in KNOB_RANGES.items():
            self._set(name, _real(name, getattr(self, name), low, high, low_open=name == "threshold"))
        self._set("seed", _integer("seed", self.seed, 0, MAX_SEED))
        self._set("top_k", _integer("top_k", self.top_k, 1, 20))
        self.make_rule()  # raises ValueError naming any knob the rule refuses
        self.cache_config()  # and the cache mode / refresh (engine/decoding/cache.py)

    def _set(self, name: str, value: object) -> None:
        object.__setattr__(self, name, value)  # frozen: normalising in __post_init__ is the one write

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


def _check_prompt(prompt: object) -> None:
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("the prompt is empty: type a question or pick an example")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise ValueError(f"the prompt has {len(prompt)} characters; shorten it to at most {MAX_PROMPT_CHARS}")
    try:
        prompt.encode("utf-8")
    except UnicodeEncodeError as err:
        raise ValueError(f"the prompt holds a lone surrogate {ascii(prompt[err.start])} at character {err.start}, "
                         "which is not text; send whole characters (an emoji is two surrogates together)") from None


def _integer(name: str, value: object, low: int, high: int) -> int:
    """value as an int in [low, high]; whole-valued floats are accepted, 1.5 / NaN / True / "3" are not."""
    whole = (isinstance(value, numbers.Integral) or (isinstance(value, float) and value.is_integer())) \
        and not isinstance(value, bool)
    if not whole or not low <= value <= high:
        raise ValueError(f"{name}={value!r:.40} must be an integer in [{low}, {high}]")
    return int(value)


def _real(name: str, value: object, low: float, high: float, low_open: bool = False) -> float:
    """value as a finite float in [low, high] (or (low, high])."""
    number = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if not number or value > high or value < low or (low_open and value == low):
        raise ValueError(f"{name}={value!r:.40} must be a finite number in {'(' if low_open else '['}{low:g}, "
                         f"{high:g}]")
    return float(value)


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


def checked_cache(model: LoadedModel, request: DecodeRequest) -> CacheConfig:
    """The request's cache config; a ValueError when the model cannot use it."""
    cache = request.cache_config()
    if cache.mode != "none":
        check_cache(native_model(model), cache, request.block_length)
    return cache


@contextmanager
def model_fn_for(model: LoadedModel, cache: CacheConfig, canvas: tuple[int, int]) -> Iterator[ModelFn]:
    """The callable one decode with `cache` (from checked_cache) on a canvas of shape `canvas` (B, prompt +
    gen_length) uses, for the `with` block."""
    # On CUDA our own and the native models replay CUDA graphs (docs/GPU_NOTES.md: 26.7 -> 5.3 ms a step for the
    # bundled model; a dual-cache step of the 8B shape 28.9 -> 9.2 ms). A cached decode's graphs hold its forward's
    # store, so the model keeps its last CachedForwards (engine/models/forward_pool.py) and a decode of the same cache
    # and canvas shape replays their graphs instead of capturing its own. Compiling as well would save more but costs
    # seconds to minutes on first use. Remote-code Hub models keep their own forward. On the CPU the model is used as
    # it is.
    if cache.mode == "none":
        yield fast_model_fn(model, compile_model=False) if model.graph_safe else model
        return
    graphs = model.device.type == "cuda" and model.graph_safe
    with model.cached_forwards.take((cache, canvas), lambda: CachedForward(model, cache, graphs=graphs)) as forward:
        forward.reset()  # a kept forward forgets the decode before (a new one has nothing to forget)
        yield forward


def decode(model: LoadedModel, request: DecodeRequest, observers: Sequence[Observer] = ()) -> DecodeOutcome:
    """Decode one prompt and return the answer with a self-contained trace (token strings included)."""
    cache = checked_cache(model, request)  # before tokenising: a cache the model cannot use is the first error
    ids = prompt_ids(model, request)  # (1, P)
    with model_fn_for(model, cache, (ids.shape[0], ids.shape[1] + request.gen_length)) as model_fn:
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
