"""Key/value cache modes of a decode (Fast-dLLM, arXiv 2505.22618): what a cached forward may reuse, and when it
recomputes everything. The loop records the mode and each step's refresh flag; the model adapter does the work
(engine/models/kv_forward.py).

- `none`: every step runs the whole canvas (prompt + answer).
- `prefix`: a refresh step runs the whole canvas and keeps every position's keys and values; the other steps run
  the current block and everything to its right (the still-masked suffix) against the kept keys of the prompt and the
  finished blocks. On a block-causal model (LLaDA2) the prefix cache is exact: a block never sees later blocks, so
  earlier blocks' keys are final once they are finished; there a step runs the block alone.
- `dual`: as `prefix`, but the suffix's keys and values are kept too: a step runs the block's rows only.

A refresh happens on every block's first step (the finished block's tokens are final then), and with `refresh=N`
also on every N-th step inside a block (steps 0, N, 2N, ...): refresh=1 recomputes every step, which decodes exactly
as `none` does.
"""
from __future__ import annotations

from dataclasses import dataclass

CACHE_MODES = ("none", "prefix", "dual")


@dataclass(frozen=True)
class CacheConfig:
    mode: str = "none"  # one of CACHE_MODES
    refresh: int | None = None  # None: refresh on each block's first step only; N >= 1: also every N steps in a block

    def __post_init__(self) -> None:
        if self.mode not in CACHE_MODES:
            raise ValueError(f"cache={self.mode!r} is unknown; allowed: {', '.join(CACHE_MODES)}")
        if self.refresh is not None and (isinstance(self.refresh, bool) or not isinstance(self.refresh, int)
                                         or self.refresh < 1):
            raise ValueError(f"cache refresh={self.refresh!r} must be an integer >= 1 (steps between refreshes "
                             "inside a block) or None (refresh on each block's first step only)")
        if self.mode == "none" and self.refresh is not None:
            raise ValueError(f"cache refresh={self.refresh} needs a cache: pick cache 'prefix' or 'dual', or leave "
                             "refresh unset")

    def refreshes(self, step_in_block: int) -> bool:
        """Whether the forward of this step (0-based inside its block) recomputes every position's keys."""
        if self.mode == "none" or step_in_block == 0:
            return True
        return self.refresh is not None and step_in_block % self.refresh == 0

    def meta(self) -> dict:
        """What a trace records (meta["cache"])."""
        return {"mode": self.mode, "refresh": self.refresh}
