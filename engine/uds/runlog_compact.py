"""A compact run log: what the Selection Lab's tables and run-comparison views read, small enough to ship.

A full run log of the fair test (docs/UDS_RESULTS.md, 3,000 candidates) weighs about 13 MB, 95% of it the sketches
z (1,024 float32 per candidate). The compact form keeps every per-step record, every candidate's scores and pick,
the evictions, the samples' text and the held-out evaluation, and drops the sketches and the per-token strips; its
candidate scores are rounded to float32 (stored in the same float64 columns, so the zip format and its reader are
unchanged, and the zeroed low bytes compress away). Embeddings become (B, 0) arrays.

What a compact log cannot show: the buffer map and the nearest buffer entries (both read the sketches) and the
per-token strip. `is_compact(log)` tells the views, which say so instead of drawing.
"""
from __future__ import annotations

from dataclasses import fields, replace

import numpy as np

from engine.uds.runlog import CandidateRecord, RunLog

COMPACT_KEY = "compact"  # config entry: what was dropped, so a loaded log says why a view is missing
DROPPED = ("embeddings", "strips")
ROUNDED = tuple(f.name for f in fields(CandidateRecord) if f.type == "float")


def compact_runlog(log: RunLog) -> RunLog:
    """A copy of `log` without sketches and strips, candidate scores rounded to float32; `log` is not changed."""
    candidates = [replace(c, **{name: float(np.float32(getattr(c, name))) for name in ROUNDED})
                  for c in log.candidates]
    compact = RunLog(config={**log.config, COMPACT_KEY: {"dropped": list(DROPPED), "scores": "float32"}},
                     evictions=list(log.evictions), samples=list(log.samples), eval_items=list(log.eval_items),
                     eval_summary=log.eval_summary)
    start = 0
    for step, emb in zip(log.steps, log.embeddings):
        count = emb.shape[0]
        compact.add_step(step, candidates[start:start + count], np.zeros((count, 0), dtype=np.float32))
        start += count
    return compact


def is_compact(log: RunLog) -> bool:
    """True when the log has no sketches to draw (a compact log, or one whose embeddings are empty)."""
    return COMPACT_KEY in log.config or (bool(log.embeddings) and log.embeddings[0].shape[1] == 0)
