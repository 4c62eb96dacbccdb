"""Trace -> plain arrays the decoding views share: step x position grids, pages, the sequence at a step, credit-forced
commits, token display strings. Pure numpy on a recorded trace (engine/decoding/trace.py); never runs a model.

Shapes: S = steps (forward passes), G = gen_length, Lb = block_length, k = top_k. Views show batch row 0.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.decoding.trace import Trace, rate, significant

# Heatmap metric -> (trace array, the array whose id is the cell's top-1 token)
METRIC_ARRAYS = {
    "raw": ("raw_top1_prob", "raw_top1_id"),
    "fused": ("fused_top1_prob", "fused_top1_id"),
    "credit": ("credit_top1", "fused_top1_id"),
    "entropy": ("entropy", "raw_top1_id"),
}
VISIBLE_CHARS = {" ": "␣", "\n": "↵", "\t": "⇥", "\r": "␍"}  # whitespace tokens must stay visible in a cell
PAGE_POSITIONS = 32  # a heatmap page: whole blocks up to this many positions (one block at the default length 32)
# What one view draws at once (an imported trace may be far longer than the app's own): the rest is paged.
MAX_PAGE_WIDTH = 128  # a block longer than this (only in imported traces) is paged in slices of this many positions
MAX_PAGE_STEPS = 128  # heatmap rows per page; further steps of the same positions are on the next page
MAX_VIEW_POSITIONS = 1024  # positions the token views and the stability figure draw at once
MAX_VIEW_STEPS = 512  # steps the timeline and the token inspector draw at once


def token_label(trace: Trace, token_id: int, max_chars: int = 12) -> str:
    """A short, visible display string for an id (whitespace made visible; unknown ids as #id)."""
    if int(token_id) == trace.meta["mask_id"]:
        return "[MASK]"
    if trace.meta.get("eos_id") is not None and int(token_id) == trace.meta["eos_id"]:
        return "[EOS]"
    text = trace.token_text.get(int(token_id))
    return f"#{int(token_id)}" if text is None else display_text(text, max_chars)


def display_text(text: str, max_chars: int = 12) -> str:
    """A token string made visible in a cell: whitespace as symbols, empty as ∅, long ones cut with an ellipsis."""
    shown = "".join(VISIBLE_CHARS.get(ch, ch) for ch in text) or "∅"
    return shown if len(shown) <= max_chars else shown[:max_chars - 1] + "…"


def step_columns(trace: Trace) -> np.ndarray:
    """(S, Lb) int: the answer position of each block slot at each step."""
    block_length = trace.meta["block_length"]
    return trace.arrays["step_block"][:, None] * block_length + np.arange(block_length)[None, :]


def threshold(trace: Trace) -> float | None:
    """tau of the rules that commit by a threshold (capability "threshold"); None for the others."""
    if "threshold" in trace.meta["capabilities"]:
        return float(trace.meta["params"]["threshold"])
    return None


def credit_forced(trace: Trace) -> np.ndarray:
    """(G,) bool: positions committed because of credit, i.e. raw p < tau <= fused p at their commit step."""
    tau = threshold(trace)
    commit = trace.arrays["commit_step"][0]  # (G,)
    forced = np.zeros(commit.shape, dtype=bool)
    if tau is None or "credit" not in trace.meta["capabilities"]:
        return forced
    committed = commit >= 0
    positions = np.flatnonzero(committed)
    steps = commit[committed]
    slots = positions % trace.meta["block_length"]
    raw = trace.arrays["raw_top1_prob"][steps, 0, slots]
    fused = trace.arrays["fused_top1_prob"][steps, 0, slots]
    forced[positions] = (raw < tau) & (fused >= tau)
    return forced


def commit_confidence(trace: Trace) -> np.ndarray:
    """(G,) float: the confidence the rule used when it committed each position (fused for credit rules); NaN for
    positions filled by early stop."""
    commit = trace.arrays["commit_step"][0]
    conf = np.full(commit.shape, np.nan, dtype=np.float64)
    positions = np.flatnonzero(commit >= 0)
    slots = positions % trace.meta["block_length"]
    conf[positions] = trace.arrays["fused_top1_prob"][commit[positions], 0, slots]
    return conf


@dataclass(frozen=True)
class Page:
    """A window of the heatmap: whole decoded blocks of positions (a slice of MAX_PAGE_WIDTH of a longer block) and
    at most MAX_PAGE_STEPS of the steps that decoded them; the rest of those steps are on the next page."""

    index: int  # 0-based page number
    count: int  # number of pages
    positions: tuple[int, int]  # [lo, hi) answer positions
    steps: tuple[int, int]  # [lo, hi) steps drawn
    window_steps: tuple[int, int]  # [lo, hi) every step whose block lies in the positions


def blocks_per_page(trace: Trace, max_positions: int) -> int:
    return max(1, max_positions // trace.meta["block_length"])


def decoded_blocks(trace: Trace) -> int:
    """Blocks that had at least one step (after an early stop at EOS the rest were filled, never decoded)."""
    return int(trace.arrays["step_block"].max()) + 1 if trace.n_steps else 1


def _windows(trace: Trace, max_positions: int) -> list[tuple[int, int]]:
    """[lo, hi) position windows over the decoded blocks: whole blocks up to max_positions, one block when it is
    longer, slices of MAX_PAGE_WIDTH of a block longer than that."""
    block_length, blocks = trace.meta["block_length"], decoded_blocks(trace)
    if block_length <= MAX_PAGE_WIDTH:
        width = blocks_per_page(trace, max_positions) * block_length
        return [(lo, min(lo + width, blocks * block_length)) for lo in range(0, blocks * block_length, width)]
    return [(block * block_length + lo, min(block * block_length + lo + MAX_PAGE_WIDTH, (block + 1) * block_length))
            for block in range(blocks) for lo in range(0, block_length, MAX_PAGE_WIDTH)]


def _pages(trace: Trace, max_positions: int, max_steps: int) -> list[tuple[tuple[int, int], tuple[int, int],
                                                                          tuple[int, int]]]:
    """(positions, steps drawn, all steps of the positions) for every page, in order."""
    block_length, step_block = trace.meta["block_length"], trace.arrays["step_block"]
    pages = []
    for lo, hi in _windows(trace, max_positions):
        in_window = np.flatnonzero((step_block >= lo // block_length) & (step_block <= (hi - 1) // block_length))
        first, last = (int(in_window[0]), int(in_window[-1]) + 1) if in_window.size else (0, 0)
        starts = range(first, last, max_steps) if last > first else [first]
        pages += [((lo, hi), (start, min(start + max_steps, last)), (first, last)) for start in starts]
    return pages


def page_count(trace: Trace, max_positions: int = PAGE_POSITIONS, max_steps: int = MAX_PAGE_STEPS) -> int:
    return len(_pages(trace, max_positions, max_steps))


def page(trace: Trace, index: int, max_positions: int = PAGE_POSITIONS, max_steps: int = MAX_PAGE_STEPS) -> Page:
    """Page `index` (clipped to the valid range): at most max_positions positions (whole blocks) and max_steps
    steps."""
    pages = _pages(trace, max_positions, max_steps)
    index = int(min(max(index, 0), len(pages) - 1))
    positions, steps, window_steps = pages[index]
    return Page(index=index, count=len(pages), positions=positions, steps=steps, window_steps=window_steps)


def view_window(length: int, around: int = 0, max_positions: int = MAX_VIEW_POSITIONS) -> tuple[int, int]:
    """[lo, hi): the aligned chunk of at most max_positions positions that holds `around`."""
    lo = min(max(int(around), 0), max(length - 1, 0)) // max_positions * max_positions
    return lo, min(lo + max_positions, length)


def window_note(window: tuple[int, int], length: int, where: str) -> str:
    """The sentence a capped view shows: which positions it draws and where the others are; empty when it draws
    all of them."""
    if window == (0, length):
        return ""
    return (f"positions {window[0]}-{window[1] - 1} of {length} shown (a view draws at most {MAX_VIEW_POSITIONS} at "
            f"once); {where}")


def grid(trace: Trace, metric: str, window: Page) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Step x position grids of one page: values (NaN where the position was not masked at that step: a future
    block, or already committed), top-1 ids (-1 where NaN) and committed-at-this-step flags."""
    if metric not in METRIC_ARRAYS:
        raise ValueError(f"metric={metric!r} is unknown; allowed: {', '.join(METRIC_ARRAYS)}")
    value_name, id_name = METRIC_ARRAYS[metric]
    (p_lo, p_hi), (s_lo, s_hi) = window.positions, window.steps
    shape = (s_hi - s_lo, p_hi - p_lo)
    values = np.full(shape, np.nan, dtype=np.float64)
    ids = np.full(shape, -1, dtype=np.int64)
    committed = np.zeros(shape, dtype=bool)
    cols = step_columns(trace)[s_lo:s_hi] - p_lo  # (s, Lb)
    rows = np.broadcast_to(np.arange(shape[0])[:, None], cols.shape)
    masked = trace.arrays["masked_before"][s_lo:s_hi, 0]  # (s, Lb)
    inside = masked & (cols >= 0) & (cols < shape[1])
    values[rows[inside], cols[inside]] = trace.arrays[value_name][s_lo:s_hi, 0][inside]
    ids[rows[inside], cols[inside]] = trace.arrays[id_name][s_lo:s_hi, 0][inside]
    committed[rows[inside], cols[inside]] = trace.arrays["committed"][s_lo:s_hi, 0][inside]
    return values, ids, committed


def masked_mean(trace: Trace, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Per answer position, the metric averaged over the steps it was still masked, and how many steps that was:
    (G,) float (NaN where no step saw it masked: early-stop fills) and (G,) int. The overview of a long trace."""
    if metric not in METRIC_ARRAYS:
        raise ValueError(f"metric={metric!r} is unknown; allowed: {', '.join(METRIC_ARRAYS)}")
    gen_length = trace.meta["gen_length"]
    cols = step_columns(trace)  # (S, Lb)
    masked = trace.arrays["masked_before"][:, 0]  # (S, Lb)
    values = trace.arrays[METRIC_ARRAYS[metric][0]][:, 0].astype(np.float64)  # (S, Lb)
    inside = masked & (cols < gen_length)
    total = np.bincount(cols[inside], weights=values[inside], minlength=gen_length)[:gen_length]  # (G,)
    count = np.bincount(cols[inside], minlength=gen_length)[:gen_length]  # (G,)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan), count


@dataclass(frozen=True)
class SequenceState:
    """The answer as it was right after one step."""

    ids: np.ndarray  # (G,) int: final token where committed by then, else the mask id
    committed: np.ndarray  # (G,) bool: committed at or before the step
    just_committed: np.ndarray  # (G,) bool: committed by this very step
    guess: np.ndarray  # (G,) int: the step's top-1 proposal at still-masked positions of its block, else -1


def sequence_at(trace: Trace, step: int) -> SequenceState:
    """What the answer looked like after `step` (clipped to the recorded steps)."""
    commit = trace.arrays["commit_step"][0]  # (G,)
    last = trace.n_steps - 1
    step = int(min(max(step, 0), max(last, 0)))
    committed = (commit >= 0) & (commit <= step)
    if step == last:
        committed |= commit < 0  # early-stop EOS fill happens after the last step
    ids = np.where(committed, trace.arrays["tokens"][0], trace.meta["mask_id"])
    guess = np.full(commit.shape, -1, dtype=np.int64)
    if trace.n_steps:
        cols = step_columns(trace)[step]  # (Lb,)
        proposal = trace.arrays["fused_top1_id"][step, 0]
        guess[cols] = np.where(committed[cols], -1, proposal)
    return SequenceState(ids=ids, committed=committed, just_committed=commit == step, guess=guess)


def tokens_per_second(trace: Trace) -> float:
    """Answer tokens (up to and including EOS, as the pipeline counts them) per second of decoding."""
    return rate(trace.meta.get("answer_tokens", trace.meta["gen_length"]), float(trace.meta["seconds"]))


def rate_text(tokens_per_second: float) -> str:
    """A rate as every view prints it: three significant digits, never a positive rate shown as 0."""
    return f"{significant(tokens_per_second):g} tokens/s"


def recorded_on(trace: Trace) -> str:
    """Where a trace was decoded: the machine the example script names, else the model's device."""
    return str(trace.meta.get("machine") or trace.meta.get("device") or "an unknown device")
