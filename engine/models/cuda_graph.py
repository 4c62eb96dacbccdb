"""A faster model callable for one decode: fixed batch rows, only the block's logits, optionally a CUDA graph.

A decode calls the model on ids of one shape (B, P + G) for every step, so the whole forward can be captured once
as a CUDA graph and replayed: on a GPU a small model's eager forward is bound by kernel launches, not arithmetic.
`StaticForward` keeps the engine's contract (`ids (B, L) -> logits (B, L, V)` float32) and adds `block_logits`,
which the decoding loop uses when present: the LM head then runs on the current block's rows only (transformers'
`logits_to_keep` with an index tensor), which matters for a 126k vocabulary. On the CPU, or without a GraphCache,
the same forward runs eagerly; the tokens a decode produces are the same either way (tests/test_fast_forward.py).

Left-padded batches: `key_mask` (B, P) marks the real prompt tokens. Attention then gets a 4D boolean mask
(B, 1, L, L) built once here, because transformers' own 2D-mask path inspects the mask on the host
(`padding_mask.all()`), which a CUDA graph cannot capture; positions restart at 0 on each row's first real token.
"""
from __future__ import annotations

import functools
import threading
from typing import Callable

import torch

from engine.models.base import LoadedModel
from engine.models.native import NativeLM

WARMUP_CALLS = 3  # eager calls on a side stream before capture (cuBLAS handles, autotuning, lazy inits)


class GraphCache:
    """CUDA graphs of one model's forward, one per input shape, shared by many decodes (and one memory pool).

    A graph reads its inputs from static buffers and writes its output (the logits; `forward` may return another
    tensor, e.g. hidden states, or None when it only writes state such as a key/value store) to a static buffer;
    `run` copies the call's inputs in, replays, and returns a copy of the output. Prompts left-padded to a few bucket
    lengths therefore reuse a handful of graphs across a whole benchmark. A forward that also reads Python values
    (a block-causal cached forward's bounds, baked into the kernels it captures) passes them as `static`: they are
    part of the graph's key.
    """

    def __init__(self, model: torch.nn.Module, compile_model: bool = False,
                 forward: Callable[..., torch.Tensor] | None = None) -> None:
        # torch.compile (inductor) fuses the norms, rotary and SiLU elementwise kernels; the graph removes launches.
        # A native model compiles its blocks in place (NativeLM.compile_layers), which serves its cached forwards too.
        self.compiled = compile_model
        self.model = compile_for_graphs(model) if compile_model else model
        self.forward = eager_logits if forward is None else forward  # (model, **inputs) -> one output tensor
        self.pool = torch.cuda.graph_pool_handle()
        self.graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, dict, torch.Tensor]] = {}
        self._lock = threading.Lock()  # static buffers are shared: one replay at a time (the app decodes in threads)

    @property
    def captures(self) -> int:
        return len(self.graphs)

    def has(self, inputs: dict[str, torch.Tensor | None], static: tuple = ()) -> bool:
        """Whether a graph for these inputs' shapes is captured already (`run` would replay, not capture)."""
        return self.key(inputs, static) in self.graphs

    @staticmethod
    def key(inputs: dict[str, torch.Tensor | None], static: tuple = ()) -> tuple:
        """A graph's key: every input's name and shape (None for an absent one), and the `static` values."""
        return tuple((name, None if t is None else tuple(t.shape)) for name, t in sorted(inputs.items())), static

    def run(self, inputs: dict[str, torch.Tensor | None], static: tuple = ()) -> torch.Tensor | None:
        key = self.key(inputs, static)
        with self._lock:
            if key not in self.graphs:
                self.graphs[key] = self._capture(inputs)
            graph, buffers, out = self.graphs[key]
            for name, tensor in inputs.items():
                if tensor is not None:
                    buffers[name].copy_(tensor)
            graph.replay()
            return None if out is None else out.clone()  # the next replay overwrites `out`; callers own the copy

    def _capture(self, inputs: dict[str, torch.Tensor | None]):
        static = {name: None if t is None else t.clone() for name, t in inputs.items()}
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(WARMUP_CALLS):
                self.forward(self.model, **static)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            out = self.forward(self.model, **static)
        return graph, static, out


def compile_for_graphs(model: torch.nn.Module) -> torch.nn.Module:
    """The model to capture with compile: a native model with its blocks compiled in place, else torch.compile's
    wrapper of the whole model (its forward only)."""
    if isinstance(model, NativeLM):
        model.compile_layers()
        return model
    return torch.compile(model)


def eager_logits(model: torch.nn.Module, ids: torch.Tensor, rows: torch.Tensor | None,
                 attention_mask: torch.Tensor | None, position_ids: torch.Tensor | None) -> torch.Tensor:
    """One forward: float32 logits of all rows (B, L, V), or of `rows` only (B, n_rows, V)."""
    out = model(input_ids=ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False,
                logits_to_keep=0 if rows is None else rows)
    return out.logits.float()


class StaticForward:
    """ids -> logits for one decode's batch; `block_logits(ids, start, stop)` computes rows start..stop-1 only.

    key_mask (B, P): real prompt tokens of a left-padded batch (None = no padding). graphs: a shared GraphCache to
    replay CUDA graphs from (None = eager, the only choice on a CPU).
    """

    def __init__(self, loaded: LoadedModel, key_mask: torch.Tensor | None = None,
                 graphs: GraphCache | None = None) -> None:
        if graphs is not None and loaded.device.type != "cuda":
            raise ValueError(f"CUDA graphs need a CUDA model; this one is on {loaded.device}; use graphs=None "
                             "on the CPU")
        self.loaded, self.model, self.device, self.spec = loaded, loaded.model, loaded.device, loaded.spec
        self.graphs = graphs
        self._key_mask = key_mask
        self._extra: dict[tuple, dict] = {}  # per ids shape: attention mask and position ids
        self._rows: dict[tuple[int, int], torch.Tensor] = {}  # (start, stop) -> device arange, built once

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        return self._run(ids, None)  # (B, L, V)

    def block_logits(self, ids: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """Logits of rows start..stop-1 only: (B, stop - start, V), equal to self(ids)[:, start:stop]."""
        if not 0 <= start < stop <= ids.shape[1]:
            raise ValueError(f"block rows [{start}, {stop}) are outside the sequence of length {ids.shape[1]}")
        if (start, stop) not in self._rows:  # each tensor built per step is host time the GPU waits through
            self._rows[start, stop] = torch.arange(start, stop, device=self.device)
        return self._run(ids, self._rows[start, stop])

    def _extras(self, ids: torch.Tensor) -> dict:
        """attention_mask (4D bool or None) and position_ids for this ids shape, built once per decode."""
        key = tuple(ids.shape)
        if key not in self._extra:
            if self._key_mask is None:
                self._extra[key] = {"attention_mask": None, "position_ids": None}
            else:
                batch, length = ids.shape
                prompt_mask = self._key_mask.to(self.device).bool()  # (B, P)
                if prompt_mask.shape[0] != batch or prompt_mask.shape[1] > length:
                    raise ValueError(f"key_mask has shape {tuple(prompt_mask.shape)}; ids have shape {key}")
                tail = torch.ones(batch, length - prompt_mask.shape[1], dtype=torch.bool, device=self.device)
                keys = torch.cat([prompt_mask, tail], dim=1)  # (B, L)
                positions = (keys.long().cumsum(dim=1) - 1).clamp(min=0)  # (B, L)
                mask = keys[:, None, None, :].expand(batch, 1, length, length).contiguous()  # (B, 1, L, L)
                self._extra[key] = {"attention_mask": mask, "position_ids": positions}
        return self._extra[key]

    @torch.no_grad()
    def _run(self, ids: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
        inputs = {"ids": ids.to(self.device), "rows": rows, **self._extras(ids)}
        if self.graphs is None:
            return eager_logits(self.model, **inputs)
        return self.graphs.run(inputs)


@functools.lru_cache(maxsize=4)
def shared_graphs(loaded: LoadedModel, compile_model: bool = True) -> GraphCache:
    """One GraphCache per loaded model, built on first use (compiling takes ~40 s for the bundled model on a GPU)."""
    return GraphCache(loaded.model, compile_model=compile_model)


def fast_model_fn(loaded: LoadedModel, compile_model: bool = True) -> StaticForward | LoadedModel:
    """The callable a decode should use: on CUDA a StaticForward replaying (compiled) CUDA graphs shared by every
    decode of this model; on the CPU the model itself, unchanged."""
    if loaded.device.type != "cuda":
        return loaded
    return StaticForward(loaded, graphs=shared_graphs(loaded, compile_model))
