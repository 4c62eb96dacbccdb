"""Torch thread counts, chosen on purpose once at start-up (the app calls `configure_threads` in app.py).

Torch's default uses every core for each op. In a web app on a small CPU Space (2 cores) the decode's intra-op
threads then fight the server's own threads (the queue, streaming frames, drawing views): issue 16 measured a gen-32
fixed-steps decode at 12-19 s through the live endpoint and 17 s everywhere with one thread. The app runs one model
job at a time (engine.jobs), so it leaves one core to the server: intra-op threads = usable cores - 1 (at least 1)
and one inter-op thread. lab/benchmarks/threads.py measures the effect.

Change it with the environment variable DLLM_TORCH_THREADS (an integer >= 1), or OMP_NUM_THREADS, which torch reads
itself and which this leaves alone when set.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Mapping

import torch

ENV = "DLLM_TORCH_THREADS"
LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class ThreadSettings:
    intra_op: int  # torch.get_num_threads() after configuring
    inter_op: int  # torch.get_num_interop_threads() after configuring
    source: str  # where intra_op came from: DLLM_TORCH_THREADS, OMP_NUM_THREADS or "usable cores - 1"


def usable_cores() -> int:
    """Cores this process may run on (a container's CPU set, not the host's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def chosen_threads(environ: Mapping[str, str] = os.environ) -> tuple[int | None, str]:
    """(intra-op threads to set, where the number comes from); None leaves torch's own choice (OMP_NUM_THREADS)."""
    if ENV in environ:
        value = environ[ENV].strip()
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"{ENV}={environ[ENV]!r} must be an integer >= 1 (torch intra-op threads)")
        return int(value), ENV
    if "OMP_NUM_THREADS" in environ:
        return None, "OMP_NUM_THREADS"
    return max(1, usable_cores() - 1), "usable cores - 1"


def configure_threads(environ: Mapping[str, str] = os.environ) -> ThreadSettings:
    """Set torch's intra-op threads (see the module docstring) and one inter-op thread; call once at start-up."""
    threads, source = chosen_threads(environ)
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # inter-op work already ran in this process: its pool is fixed now
        LOG.info("torch inter-op threads already started; left at %d", torch.get_num_interop_threads())
    settings = ThreadSettings(torch.get_num_threads(), torch.get_num_interop_threads(), source)
    LOG.info("torch threads: %s", settings)
    return settings
