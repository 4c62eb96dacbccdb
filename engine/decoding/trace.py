"""The decoding trace: data with a versioned schema, recorded by an observer of the loop.

Shapes: S = forward passes, B = batch rows, Lb = block_length, k = top_k, G = gen_length, P = prompt length.
Memory grows with S x B x Lb x k, never with the vocabulary.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np

from engine.decoding.contracts import DecodeResult, DecodeStart, StepEvent
from engine.decoding.registry import describe, rule_entry

SCHEMA_VERSION = 3  # 2: meta "rule" + "capabilities" (from the rule registry) replace 1's "strategy";
#                    3: meta "cache" (mode, refresh) and the per-step "step_recomputed" flags
SCHEMA_NAME = "dllm-decoding-trace"

# name -> (dtype, dims). Dims name the axes so a loaded file can be checked for consistent sizes.
ARRAYS: dict[str, tuple[str, tuple[str, ...]]] = {
    "prompt_ids": ("int64", ("B", "P")),
    "tokens": ("int64", ("B", "G")),
    "commit_step": ("int64", ("B", "G")),  # forward pass that committed the position; -1 = EOS fill after stop
    "stable_step": ("int64", ("B", "G")),  # first step from which raw top-1 == final token until commit; -1 never
    "step_block": ("int64", ("S",)),
    "step_in_block": ("int64", ("S",)),
    "step_seconds": ("float64", ("S",)),
    "step_recomputed": ("bool", ("S",)),  # the step's forward recomputed every position's keys (no cache or refresh)
    "step_active": ("bool", ("S", "B")),
    "masked_before": ("bool", ("S", "B", "Lb")),
    "committed": ("bool", ("S", "B", "Lb")),
    "raw_top1_id": ("int64", ("S", "B", "Lb")),
    "raw_top1_prob": ("float32", ("S", "B", "Lb")),
    "fused_top1_id": ("int64", ("S", "B", "Lb")),
    "fused_top1_prob": ("float32", ("S", "B", "Lb")),
    "credit_top1": ("float32", ("S", "B", "Lb")),
    "entropy": ("float32", ("S", "B", "Lb")),
    "topk_ids": ("int64", ("S", "B", "Lb", "k")),
    "topk_probs": ("float32", ("S", "B", "Lb", "k")),
}
META_KEYS = ("rule", "capabilities", "params", "gen_length", "block_length", "mask_id", "eos_id", "shift", "seed",
             "top_k", "nfe", "seconds", "cache")


class TraceFormatError(ValueError):
    """A trace file that is not ours, is corrupt, or fails the schema; the message says why."""


@dataclass
class Trace:
    meta: dict  # rule, capabilities, params, lengths, ids, seed, nfe, seconds, cache; plus model / prompt when known
    arrays: dict[str, np.ndarray]  # see ARRAYS
    token_text: dict[int, str] = field(default_factory=dict)  # id -> display string for every id in the arrays
    version: int = SCHEMA_VERSION

    @property
    def commit_step(self) -> np.ndarray:
        """(B, G) int64: the forward pass that committed each position; -1 = filled by early stop."""
        return self.arrays["commit_step"]

    @property
    def n_steps(self) -> int:
        return int(self.arrays["step_block"].shape[0])

    def ids_in_use(self) -> np.ndarray:
        """Every token id a view may need to print."""
        parts = [self.arrays[name].ravel() for name in ("tokens", "raw_top1_id", "fused_top1_id", "topk_ids")]
        return np.unique(np.concatenate(parts))

    def to_dict(self) -> dict:
        return {"schema": SCHEMA_NAME, "version": self.version, "meta": copy.deepcopy(self.meta),
                "token_text": {str(k): v for k, v in self.token_text.items()},
                "arrays": {name: {"dtype": ARRAYS[name][0], "shape": list(a.shape), "data": a.ravel().tolist()}
                           for name, a in self.arrays.items()}}

    @classmethod
    def from_dict(cls, obj: object) -> "Trace":
        if not isinstance(obj, dict) or obj.get("schema") != SCHEMA_NAME:
            raise TraceFormatError(f"not a decoding trace: the file has no \"schema\": \"{SCHEMA_NAME}\" field")
        if type(obj.get("version")) is not int or not 1 <= obj["version"] <= SCHEMA_VERSION:
            raise TraceFormatError(f"trace schema version {obj.get('version')!r} is not supported; this app reads "
                                   f"versions 1 to {SCHEMA_VERSION}")
        meta, raw_arrays, text = obj.get("meta"), obj.get("arrays"), obj.get("token_text", {})
        if not isinstance(meta, dict) or not isinstance(raw_arrays, dict) or not isinstance(text, dict):
            raise TraceFormatError("trace fields \"meta\", \"arrays\" and \"token_text\" must be JSON objects")
        if obj["version"] == 1:
            meta = _upgrade_v1(meta)
        if obj["version"] < 3:
            meta, raw_arrays = _upgrade_v2(meta, raw_arrays)
        missing = [k for k in META_KEYS if k not in meta]
        if missing:
            raise TraceFormatError(f"trace meta lacks {', '.join(missing)}")
        _check_meta_types(meta)
        arrays = {name: _array_from_json(name, raw_arrays.get(name)) for name in ARRAYS}
        try:
            token_text = {int(k): str(v) for k, v in text.items()}
        except ValueError as err:
            raise TraceFormatError(f"token_text keys must be integer ids ({err})") from None
        trace = cls(meta=meta, arrays=arrays, token_text=token_text)
        trace.validate()
        return trace

    def validate(self) -> None:
        """Check that all axes agree and indices are in range; raise TraceFormatError naming the problem."""
        sizes: dict[str, int] = {}
        for name, (_, dims) in ARRAYS.items():
            array = self.arrays[name]
            if array.ndim != len(dims):
                raise TraceFormatError(f"array {name} has {array.ndim} axes; expected {len(dims)} {dims}")
            for dim, size in zip(dims, array.shape):
                if sizes.setdefault(dim, size) != size:
                    raise TraceFormatError(f"array {name} has {dim}={size}, other arrays have {dim}={sizes[dim]}")
        if sizes["G"] != self.meta["gen_length"] or sizes["Lb"] != self.meta["block_length"]:
            raise TraceFormatError("array sizes disagree with meta gen_length / block_length")
        if sizes["S"] != self.meta["nfe"]:
            raise TraceFormatError(f"trace has {sizes['S']} steps but meta nfe={self.meta['nfe']}")
        commit = self.arrays["commit_step"]
        if commit.size and (commit.min() < -1 or commit.max() >= max(sizes["S"], 1)):
            raise TraceFormatError("commit_step holds a step outside the recorded steps")
        blocks = self.arrays["step_block"]
        if blocks.size and (blocks.min() < 0 or blocks.max() >= sizes["G"] // sizes["Lb"]):
            raise TraceFormatError("step_block holds a block index outside the answer")


def _check_meta_types(meta: dict) -> None:
    ints = ("gen_length", "block_length", "nfe", "seed", "top_k", "mask_id")
    bad = [k for k in ints if not isinstance(meta[k], int) or isinstance(meta[k], bool) or meta[k] < 0]
    bad += [] if isinstance(meta["rule"], str) else ["rule"]
    bad += [] if isinstance(meta["capabilities"], list) else ["capabilities"]
    bad += [] if isinstance(meta["params"], dict) else ["params"]
    bad += [] if isinstance(meta["seconds"], (int, float)) and not isinstance(meta["seconds"], bool) else ["seconds"]
    bad += [] if meta["eos_id"] is None or type(meta["eos_id"]) is int else ["eos_id"]
    cache = meta["cache"]
    bad += [] if isinstance(cache, dict) and set(cache) == {"mode", "refresh"} else ["cache"]
    if bad:
        raise TraceFormatError(f"trace meta has values of the wrong type: {', '.join(bad)}")
    if meta["block_length"] == 0:
        raise TraceFormatError("trace meta block_length is 0")


def _upgrade_v1(meta: dict) -> dict:
    """Version 1 named the rule "strategy" and recorded no capabilities; both come from the registry now."""
    if not isinstance(meta.get("strategy"), str):
        raise TraceFormatError("trace meta lacks strategy (a version-1 trace names its rule there)")
    try:
        entry = rule_entry(meta["strategy"])
    except ValueError as err:
        raise TraceFormatError(str(err)) from None
    upgraded = {k: v for k, v in meta.items() if k != "strategy"}
    return {**upgraded, "rule": entry.id, "capabilities": sorted(entry.capabilities)}


def _upgrade_v2(meta: dict, raw_arrays: dict) -> tuple[dict, dict]:
    """Versions 1 and 2 predate the caches: every step ran the whole canvas."""
    steps = raw_arrays.get("step_block")
    shape = steps.get("shape") if isinstance(steps, dict) else None
    if not (isinstance(shape, list) and len(shape) == 1 and type(shape[0]) is int and shape[0] >= 0):
        raise TraceFormatError("array step_block is missing or is not one axis of steps")
    flags = {"dtype": "bool", "shape": shape, "data": [True] * shape[0]}
    return {**meta, "cache": {"mode": "none", "refresh": None}}, {**raw_arrays, "step_recomputed": flags}


def _array_from_json(name: str, raw: object) -> np.ndarray:
    dtype = ARRAYS[name][0]
    if not isinstance(raw, dict) or not {"dtype", "shape", "data"} <= raw.keys():
        raise TraceFormatError(f"array {name} is missing or lacks dtype / shape / data")
    if raw["dtype"] != dtype:
        raise TraceFormatError(f"array {name} has dtype {raw['dtype']!r}; expected {dtype}")
    shape = raw["shape"]
    if not isinstance(shape, list) or not all(type(n) is int and n >= 0 for n in shape):
        raise TraceFormatError(f"array {name} shape must be a list of non-negative integers, got {shape!r:.80}")
    try:
        array = np.asarray(raw["data"], dtype=dtype)
        return array.reshape(tuple(shape))
    except (TypeError, ValueError, OverflowError) as err:
        raise TraceFormatError(f"array {name} cannot be read: {err}") from None


def rate(answer_tokens: int, seconds: float) -> float:
    """Tokens per second, counted one way everywhere: answer tokens up to and including EOS (never the EOS padding
    after it) over the decode's wall time."""
    return float(answer_tokens) / max(float(seconds), 1e-9)


def stable_steps(arrays: dict[str, np.ndarray], block_length: int) -> np.ndarray:
    """Per position, the first step from which the raw top-1 equals the final token and stays so until commit."""
    tokens, commit = arrays["tokens"], arrays["commit_step"]  # (B, G) each
    stable = np.full(tokens.shape, -1, dtype=np.int64)
    for block in np.unique(arrays["step_block"]):
        cols = slice(block * block_length, (block + 1) * block_length)
        final, committed_at = tokens[:, cols], commit[:, cols]  # (B, Lb)
        streak = committed_at >= 0  # (B, Lb): still matching from this step up to commit
        for step in np.flatnonzero(arrays["step_block"] == block)[::-1]:
            relevant = step <= committed_at  # steps after the commit do not count
            streak &= ~relevant | (arrays["raw_top1_id"][step] == final)
            stable[:, cols] = np.where(relevant & streak, step, stable[:, cols])
    return stable


class TraceRecorder:
    """Observer that keeps per-step copies and assembles a Trace when the decode ends (`trace`)."""

    def __init__(self) -> None:
        self._events: list[StepEvent] = []
        self._begin: DecodeStart | None = None
        self.trace: Trace | None = None

    def start(self, begin: DecodeStart) -> None:
        self._begin, self._events, self.trace = begin, [], None

    def step(self, event: StepEvent) -> None:
        self._events.append(event)

    def end(self, result: DecodeResult) -> None:
        begin = self._begin
        batch, block_length = int(begin.prompt_ids.shape[0]), begin.block_length
        per_step = {name: np.stack([getattr(e, name) for e in self._events]) if self._events
                    else np.zeros((0, batch, block_length, begin.top_k)[:len(ARRAYS[name][1])],
                                  dtype=ARRAYS[name][0])
                    for name in ("masked_before", "committed", "raw_top1_id", "raw_top1_prob", "fused_top1_id",
                                 "fused_top1_prob", "credit_top1", "entropy", "topk_ids", "topk_probs")}
        arrays = {
            "prompt_ids": begin.prompt_ids.cpu().numpy().astype(np.int64),
            "tokens": result.tokens.cpu().numpy().astype(np.int64),
            "commit_step": result.commit_step.astype(np.int64),
            "step_block": np.array([e.block for e in self._events], dtype=np.int64),
            "step_in_block": np.array([e.step_in_block for e in self._events], dtype=np.int64),
            "step_seconds": np.array([e.seconds for e in self._events], dtype=np.float64),
            "step_recomputed": np.array([e.recomputed for e in self._events], dtype=bool),
            "step_active": np.array([e.active for e in self._events], dtype=bool).reshape(-1, batch),
            **per_step,
        }
        arrays = {name: arrays[name].astype(ARRAYS[name][0]) for name in ARRAYS if name != "stable_step"}
        arrays["stable_step"] = stable_steps(arrays, block_length)
        arrays = {name: arrays[name] for name in ARRAYS}
        described = describe(begin.rule)
        meta = {"rule": described["rule"], "capabilities": described["capabilities"], "params": begin.rule.params(),
                "gen_length": begin.gen_length, "block_length": block_length, "mask_id": begin.mask_id,
                "eos_id": begin.eos_id, "shift": begin.shift, "seed": begin.seed, "top_k": begin.top_k,
                "nfe": result.nfe, "seconds": result.seconds, "cache": begin.cache.meta()}
        self.trace = Trace(meta=meta, arrays=arrays)
