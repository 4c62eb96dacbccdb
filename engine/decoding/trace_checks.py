"""Checks a trace read from a file must pass beyond its schema: caps on its size (checked on the declared shapes,
before any array is built) and what the views need to draw it (a batch row, a rule its params describe, finite
numbers). Every failure is a TraceFormatError whose message names the field, the value and what is allowed.

Shapes: S = steps, B = batch rows, Lb = block_length, k = top_k, G = gen_length, P = prompt length.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from engine.decoding.cache import CacheConfig
from engine.decoding.registry import rule_entry
from engine.decoding.trace import ARRAYS, Trace, TraceFormatError


@dataclass(frozen=True)
class TraceCaps:
    """The largest trace a file may hold. The app itself writes at most gen 1024, block 64, 1024 steps, top-5: 13 MB
    of JSON with 1.2 M values."""

    json_bytes: int = 48 * 2**20  # the JSON text after gunzip, read in a streaming way and cut at this size
    json_values: int = 4_000_000  # JSON values (counted as "," and ":" before parsing): bounds the parser's objects
    batch: int = 64  # B, batch rows
    prompt_tokens: int = 16_384  # P
    positions: int = 4096  # G, also the cap on S and Lb (a step commits at least one position)
    top_k: int = 64  # k, top-k entries per step and position

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if type(value) is not int or value < 1:
                raise ValueError(f"TraceCaps.{item.name}={value!r} must be an integer >= 1")

    def dim(self, name: str) -> int:
        """The cap on one named axis of ARRAYS."""
        return {"B": self.batch, "P": self.prompt_tokens, "G": self.positions, "S": self.positions,
                "Lb": self.positions, "k": self.top_k}[name]


DIM_NAMES = {"B": "batch rows", "P": "prompt tokens", "G": "answer positions", "S": "steps", "Lb": "block length",
             "k": "top-k"}
OPTIONAL_TEXT = ("model", "prompt", "answer", "device")  # meta keys the views print when present


def check_json_size(text: bytes, caps: TraceCaps) -> None:
    """Refuse JSON with more values than caps.json_values, before the parser builds one object per value."""
    values = text.count(b",") + text.count(b":")
    if values > caps.json_values:
        raise TraceFormatError(f"the trace holds about {values:,} JSON values; the limit is {caps.json_values:,} "
                               f"(about gen_length {caps.positions} with top-k 20)")


def check_declared_shapes(obj: object, caps: TraceCaps) -> None:
    """Each array's declared shape within the caps and agreeing with its number of values, before numpy sees it.
    Malformed fields are left to Trace.from_dict, which names them."""
    arrays = obj.get("arrays") if isinstance(obj, dict) else None
    if not isinstance(arrays, dict):
        return
    for name, (_, dims) in ARRAYS.items():
        raw = arrays.get(name)
        shape = raw.get("shape") if isinstance(raw, dict) else None
        if not isinstance(shape, list) or len(shape) != len(dims) or not all(type(n) is int for n in shape):
            continue
        for dim, size in zip(dims, shape):
            if size > caps.dim(dim):
                raise TraceFormatError(f"array {name} declares {DIM_NAMES[dim]} {dim}={size:,}; traces are read up "
                                       f"to {dim}={caps.dim(dim):,}")
        data = raw.get("data")
        if isinstance(data, list) and len(data) != math.prod(shape):
            raise TraceFormatError(f"array {name} declares shape {shape} ({math.prod(shape):,} values) but holds "
                                   f"{len(data):,} values")


def check_drawable(trace: Trace) -> None:
    """What every view relies on: a batch row to draw, whole blocks decoded in order, no block with more steps than
    positions, a rule its params describe, finite numbers, text where text is printed."""
    meta, arrays = trace.meta, trace.arrays
    batch, gen, block = arrays["tokens"].shape[0], meta["gen_length"], meta["block_length"]
    if batch == 0:
        raise TraceFormatError("trace has batch size 0: there is no answer row to draw")
    if gen == 0 or gen % block:
        raise TraceFormatError(f"gen_length={gen} must be a positive multiple of block_length={block}")
    if (np.diff(arrays["step_block"]) < 0).any():
        raise TraceFormatError("step_block goes back to an earlier block; blocks are decoded in order")
    steps_per_block = np.bincount(arrays["step_block"], minlength=1)
    if steps_per_block.max() > block:
        raise TraceFormatError(f"block {int(steps_per_block.argmax())} has {int(steps_per_block.max())} steps, more "
                               f"than its {block} positions (every step commits at least one)")
    _check_rule(meta)
    try:
        CacheConfig(meta["cache"]["mode"], meta["cache"]["refresh"])
    except ValueError as err:
        raise TraceFormatError(f"trace meta cache: {err}") from None
    if not math.isfinite(meta["seconds"]) or meta["seconds"] < 0:
        raise TraceFormatError(f"trace meta seconds={meta['seconds']!r} must be a finite number >= 0")
    for name, array in arrays.items():
        if array.dtype.kind == "f" and np.isinf(array).any():
            raise TraceFormatError(f"array {name} holds an infinite value")
    bad = [key for key in OPTIONAL_TEXT if key in meta and not isinstance(meta[key], str)]
    if bad:
        raise TraceFormatError(f"trace meta {', '.join(bad)} must be text")
    answer_tokens = meta.get("answer_tokens", gen)
    if type(answer_tokens) is not int or not 0 <= answer_tokens <= gen:
        raise TraceFormatError(f"trace meta answer_tokens={answer_tokens!r} must be an integer in [0, {gen}]")


def rule_error(meta: dict) -> str | None:
    """Why meta's rule, capabilities and params do not describe a registered rule (unknown rule, capabilities other
    than the registry's, unknown or out-of-range parameter, or one the rule records missing), or None."""
    try:
        entry = rule_entry(meta["rule"])
        rule = entry.cls(**meta["params"])
    except (TypeError, ValueError) as err:
        return str(err)
    capabilities = meta["capabilities"]
    if not all(isinstance(c, str) for c in capabilities) or sorted(capabilities) != sorted(entry.capabilities):
        return f"capabilities {meta['capabilities']!r:.80} are not the rule's {sorted(entry.capabilities)}"
    missing = [name for name in rule.params() if name not in meta["params"]]
    return f"params lack {', '.join(missing)}" if missing else None


def _check_rule(meta: dict) -> None:
    params = meta["params"]
    bad = [k for k, v in params.items() if isinstance(v, float) and not math.isfinite(v)]
    if bad:
        raise TraceFormatError(f"trace meta params {', '.join(bad)} must be finite numbers")
    reason = rule_error(meta)
    if reason:
        raise TraceFormatError(f"trace meta does not describe a usable {meta['rule']!r:.40} rule: {reason}")
