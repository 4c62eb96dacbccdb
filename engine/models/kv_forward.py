"""A model callable with a key/value cache for one decode: the `prefix` and `dual` modes of engine/decoding/cache.py.

The decoding loop keeps owning tokens and NFE; it tells this callable where each block starts (`start_block(start,
stop)`, before the block's first `block_logits`) and then asks for the block's logit rows once per step. This object
counts the steps of the block and asks the CacheConfig whether a step refreshes, so the loop and the adapter read one
policy (the loop records `cache.refreshes(step_in_block)` in the trace):

- refresh (full attention): the whole canvas runs and every position's keys and values are kept (KeyValueStore);
- `prefix`: positions from the block's start to the canvas end run against the kept keys of the positions before;
- `dual`: the block's positions run against the kept keys of everything else;
- block-causal models (LLaDA2), `prefix` only: exact. On a block's first step the positions between the cache's end
  and the block (the prompt, then each finished block, with its final tokens) run once and are kept; every step then
  runs the block's positions against them, never the canvas to the right (which the block cannot see).
With Dream-style shift the row before the block predicts its first position, so that row runs with the block.

Fast-dLLM's caches (NVlabs/Fast-dLLM, llada/generate.py) do the same; their steps between refreshes are an
approximation (the kept keys of changed positions are stale until the next refresh), this project's are too, while
a refresh step equals a full forward. `computed_rows` records how many positions each forward ran.

CUDA graphs (`graphs=True`, on a GPU): the store is allocated once and written in place at device index tensors,
so a full-attention forward's graph depends only on its shapes: one for the refresh, one for every dual step of the
decode, one per block for prefix steps (the suffix shrinks). A block-causal forward also bakes its bounds into the
kernels it captures (its attention mask, the keys it reads), so its graphs are keyed by them too: one per block for
the steps and one per finished block's prefill. The graphs belong to this object (they hold its store's
addresses): reuse one CachedForward for decodes of one canvas length to replay them.
"""
from __future__ import annotations

import torch

from engine.decoding.cache import CACHE_MODES, CacheConfig
from engine.models.base import LoadedModel
from engine.models.cuda_graph import GraphCache, StaticForward
from engine.models.llama_native import native_model
from engine.models.native import KeyValueStore, KVWindow


def block_size(model: torch.nn.Module) -> int | None:
    """The attention block of a block-causal model (LLaDA2), or None for full attention."""
    return getattr(getattr(model, "config", None), "block_size", None)


def check_cache(model: torch.nn.Module, cache: CacheConfig, block_length: int) -> None:
    """One ValueError naming the problem when `model` cannot decode with `cache` at `block_length`."""
    size = block_size(model)
    if size is None or cache.mode == "none":
        return
    if cache.mode == "dual":
        raise ValueError("cache='dual' needs a full-attention model; this one is block-causal (LLaDA2) and has its own "
                         "exact cache: use cache='prefix'")
    if cache.refresh is not None:
        raise ValueError(f"cache refresh={cache.refresh}: a block-causal model's prefix cache is exact and never "
                         "refreshes; leave refresh unset")
    if block_length % size:
        raise ValueError(f"block_length={block_length}: this block-causal model attends in {size}-token blocks, so "
                         f"its cache needs block_length a multiple of {size}")


def decode_forward(loaded: LoadedModel, cache: CacheConfig, key_mask: torch.Tensor | None = None,
                   graphs: GraphCache | None = None) -> StaticForward | CachedForward:
    """The callable one decode of a (left-padded) batch uses: StaticForward for cache none (replaying the shared
    `graphs` when given), else a CachedForward (with CUDA graphs of its own when `graphs` is given)."""
    if cache.mode == "none":
        return StaticForward(loaded, key_mask=key_mask, graphs=graphs)
    return CachedForward(loaded, cache, key_mask=key_mask, graphs=graphs is not None,
                         compile_model=graphs is not None and graphs.compiled)


def cache_modes(loaded: LoadedModel, block_length: int) -> list[str]:
    """The cache modes `loaded` can decode with at `block_length`, "none" first."""
    try:
        model = native_model(loaded)
    except ValueError:
        return ["none"]
    modes = []
    for mode in CACHE_MODES:
        try:
            check_cache(model, CacheConfig(mode), block_length)
        except ValueError:
            continue
        modes.append(mode)
    return modes


class CachedForward:
    """ids -> logits for one decode with a key/value cache; `start_block` and `block_logits` are what the loop calls.

    key_mask (B, P): real prompt tokens of a left-padded batch (None = no padding). graphs: replay CUDA graphs (on a
    GPU). compile_model: capture the model with its blocks compiled (NativeLM.compile_layers, in place; needs
    graphs)."""

    def __init__(self, loaded: LoadedModel, cache: CacheConfig, key_mask: torch.Tensor | None = None,
                 graphs: bool = False, compile_model: bool = False) -> None:
        if cache.mode == "none":
            raise ValueError("CachedForward needs cache 'prefix' or 'dual'; cache 'none' is the plain forward")
        if graphs and loaded.device.type != "cuda":
            raise ValueError(f"CUDA graphs need a CUDA model; this one is on {loaded.device}; use graphs=False")
        if compile_model and not graphs:
            raise ValueError("compile_model=True compiles the forward that CUDA graphs capture; pass graphs=True too")
        self.loaded, self.spec, self.device, self.cache = loaded, loaded.spec, loaded.device, cache
        self.model = native_model(loaded)
        self.block_causal = block_size(self.model)
        check_cache(self.model, cache, self.block_causal or 1)
        self._compile = compile_model
        self._graphs = self._new_graphs() if graphs else None
        self._bounds = (0, 0, 0)  # (start, stop, keys_stop) of the forward being run (block-causal masks read it)
        self._key_mask = None if key_mask is None else key_mask.to(self.device).bool()  # (B, P)
        self._store: KeyValueStore | None = None
        self._cached_end = 0  # block-causal: positions [0, _cached_end) hold final keys
        self._block: tuple[int, int] | None = None  # canvas positions of the loop's current block
        self._step = 0  # steps of the current block so far
        self.computed_rows: list[int] = []  # positions each forward ran (a block-causal prefill is a forward too)
        self._canvases: dict[tuple[int, int], tuple[torch.Tensor | None, torch.Tensor]] = {}  # shape -> keys, positions
        self._aranges: dict[tuple[int, int], torch.Tensor] = {}  # (start, stop) -> device arange

    def reset(self, key_mask: torch.Tensor | None = None) -> None:
        """Decode other prompts next (key_mask as in the constructor), keeping the store and the graphs: a canvas of
        the same shape then replays the graphs captured before (a benchmark's batches and the pipeline's decodes,
        engine/models/forward_pool.py, capture once per shape). `computed_rows` starts again: a kept forward would
        otherwise grow it for as long as the app runs."""
        self._key_mask = None if key_mask is None else key_mask.to(self.device).bool()
        self._canvases.clear()
        self.computed_rows.clear()
        self._block, self._cached_end, self._step = None, 0, 0

    def _new_graphs(self) -> GraphCache:
        return GraphCache(self.model, compile_model=self._compile, forward=self._forward)

    def _keys(self, ids: torch.Tensor) -> torch.Tensor | None:
        """(B, L) real-key mask of the whole canvas, or None without padding."""
        if self._key_mask is None:
            return None
        tail = torch.ones(ids.shape[0], ids.shape[1] - self._key_mask.shape[1], dtype=torch.bool, device=self.device)
        return torch.cat([self._key_mask, tail], dim=1)

    def _canvas(self, ids: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """The real-key mask (B, L) or None and the positions (B, L) of a canvas of this shape, built once: every step
        of a decode has the same, and each tensor built is host time during which the GPU waits for the next
        forward."""
        shape = tuple(ids.shape)
        if shape not in self._canvases:
            keys = self._keys(ids)
            positions = (torch.arange(shape[1], device=self.device).expand(*shape) if keys is None
                         else (keys.long().cumsum(dim=1) - 1).clamp(min=0))  # (B, L)
            self._canvases[shape] = keys, positions
        return self._canvases[shape]

    def _arange(self, start: int, stop: int) -> torch.Tensor:
        """torch.arange(start, stop) on the device, built once per range (as `_canvas`)."""
        if (start, stop) not in self._aranges:
            self._aranges[start, stop] = torch.arange(start, stop, device=self.device)
        return self._aranges[start, stop]

    @torch.no_grad()
    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        """A full forward (B, L, V), no cache involved."""
        return self.model(input_ids=ids.to(self.device), attention_mask=self._keys(ids)).logits.float()

    def start_block(self, start: int, stop: int) -> None:
        """The loop's next steps decode canvas positions [start, stop); a block not after the last one starts a new
        decode (whose prompt may differ: nothing kept is reused)."""
        if self._block is not None and start <= self._block[0]:
            self._cached_end = 0
        self._block, self._step = (start, stop), 0

    @torch.no_grad()
    def block_logits(self, ids: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """Logits of rows start..stop-1 (B, stop - start, V) for the current step of the current block."""
        if self._block is None or not (self._block[0] - 1 <= start < stop <= self._block[1]):
            raise ValueError(f"rows [{start}, {stop}) are not the current block's {self._block}: call "
                             "start_block(start, stop) when a block begins (the decoding loop does)")
        ids = ids.to(self.device)
        length = ids.shape[1]
        keys, positions = self._canvas(ids)
        refresh = self.cache.refreshes(self._step) or self._store is None or self._store.length != length
        self._step += 1
        lo, hi = min(start, self._block[0]), max(stop, self._block[1])  # the block plus a shifted row
        if self._store is None or self._store.length != length:
            self._store, self._cached_end = KeyValueStore(length), 0
            if self._graphs is not None:  # graphs hold the old store's addresses
                self._graphs = self._new_graphs()
        if self.block_causal:
            lo, hi = self._extend(ids, keys, positions, lo, hi, refresh)
            return self._run(ids, keys, positions, (lo, hi, hi), (start, stop))
        if refresh:
            lo, hi = 0, length
        elif self.cache.mode == "prefix":
            hi = length
        return self._run(ids, keys, positions, (lo, hi, length), (start, stop))

    def _extend(self, ids, keys, positions, lo: int, hi: int, refresh: bool) -> tuple[int, int]:
        """Block-causal: keep the keys of the positions between the cache's end and the block; the block's window."""
        length, size = ids.shape[1], self.block_causal
        if (length - lo) % size or (hi - lo) % size:
            raise ValueError(f"rows [{lo}, {hi}) of a {length}-token canvas are not whole {size}-token attention "
                             f"blocks; decode with block_length a multiple of {size}")
        if refresh and self._cached_end < lo:  # the prompt, then each block just finished, with its final tokens
            self._run(ids, keys, positions, (self._cached_end, lo, lo), None)
            self._cached_end = lo
        return lo, hi

    def _run(self, ids: torch.Tensor, keys: torch.Tensor | None, positions: torch.Tensor,
             bounds: tuple[int, int, int], rows: tuple[int, int] | None) -> torch.Tensor | None:
        """Run positions [start, stop) (bounds = start, stop, keys_stop) against the store; the logits of `rows`."""
        start, stop, keys_stop = bounds
        self.computed_rows.append(stop - start)
        self._bounds = bounds
        inputs = {"ids": ids[:, start:stop], "positions": positions[:, start:stop],
                  "index": self._arange(start, stop),
                  "rows": None if rows is None else self._arange(rows[0] - start, rows[1] - start),
                  "mask": None if keys is None else keys[:, None, None, :keys_stop]}  # (B, 1, 1, K): padded keys hidden
        if self._graphs is not None:  # a block-causal forward's bounds are baked into its capture
            return self._graphs.run(inputs, static=bounds if self.block_causal else ())
        return self._forward(self.model, **inputs)

    def _forward(self, model: torch.nn.Module, ids: torch.Tensor, positions: torch.Tensor, index: torch.Tensor,
                 rows: torch.Tensor | None, mask: torch.Tensor | None) -> torch.Tensor | None:
        """ids, positions (B, n) of the window's positions `index` (n,) -> float32 logits of window rows `rows`."""
        start, stop, keys_stop = self._bounds
        hidden = model.hidden_states(ids, mask, positions, kv=KVWindow(self._store, index, start, stop, keys_stop))
        return None if rows is None else model.head(hidden[:, rows]).float()  # (B, rows, V)
