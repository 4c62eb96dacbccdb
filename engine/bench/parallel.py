"""Data-parallel benchmark runs: each process decodes a deterministic shard of the questions, rank 0 merges.

Launched by `accelerate launch -m engine bench ...` (or `torchrun`, which accelerate's multi-GPU launcher runs), every
process reads its place from the launcher's variables (RANK, WORLD_SIZE, LOCAL_RANK); a plain `python -m engine
bench` is rank 0 of 1 and needs no process group. Process i takes questions i, i + W, i + 2W, ... of every task set
(the same split on every run), decodes them on its own device (cuda:LOCAL_RANK on a GPU host) and sends its
per-question results to rank 0 over a gloo process group: only Python objects travel, never tensors, so the same
code serves GPUs and CPUs and needs no NCCL. Rank 0 puts them back in the one-process order, so the merged report
equals a one-process run's in everything but timings.

A process that fails says so with its rank ("rank 1 of 2: ...") and exits; the launcher then stops the others and
names the failed rank in its summary.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Sequence, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")
GATHER_TIMEOUT = datetime.timedelta(hours=12)  # rank 0 waits this long for the slowest shard (long grids are hours)


@dataclass(frozen=True)
class Shard:
    rank: int = 0  # this process's index in the run, 0 .. world - 1
    world: int = 1  # processes in the run
    local_rank: int = 0  # this process's index on its host (picks its GPU)

    def __post_init__(self) -> None:
        if self.world < 1 or not 0 <= self.rank < self.world or self.local_rank < 0:
            raise ValueError(f"rank={self.rank}, world={self.world}, local_rank={self.local_rank}: need world >= 1, "
                             "0 <= rank < world and local_rank >= 0; launch with `accelerate launch` or `torchrun`")

    def take(self, items: Sequence[T]) -> list[T]:
        """This process's share: items rank, rank + world, rank + 2 world, ..."""
        return list(items[self.rank::self.world])

    def device(self, device: str | None) -> str | None:
        """The device this process decodes on: its own GPU (cuda:LOCAL_RANK) when the run's device is CUDA."""
        wants_cuda = device is None and torch.cuda.is_available() or device is not None and device.startswith("cuda")
        if self.world == 1 or not wants_cuda:
            return device
        if self.local_rank >= torch.cuda.device_count():
            raise ValueError(f"local rank {self.local_rank} has no GPU: this host has {torch.cuda.device_count()}; "
                             "launch at most that many processes per host")
        torch.cuda.set_device(self.local_rank)  # CUDA graphs and the allocator of this process use its GPU
        return f"cuda:{self.local_rank}"

    @property
    def label(self) -> str:
        return f"rank {self.rank} of {self.world}"


def _launcher_int(name: str, default: int) -> int:
    text = os.environ.get(name, str(default))
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{name}={text!r} must be an integer (accelerate launch and torchrun set it)") from None


def launched_shard() -> Shard:
    """This process's shard from the launcher's variables; rank 0 of 1 when no launcher set them."""
    return Shard(_launcher_int("RANK", 0), _launcher_int("WORLD_SIZE", 1), _launcher_int("LOCAL_RANK", 0))


def start(shard: Shard) -> None:
    """Join the run's process group (gloo; the launcher's MASTER_ADDR / MASTER_PORT); nothing for one process."""
    if shard.world > 1 and not dist.is_initialized():
        dist.init_process_group("gloo", rank=shard.rank, world_size=shard.world, timeout=GATHER_TIMEOUT)


def stop(shard: Shard) -> None:
    if shard.world > 1 and dist.is_initialized():
        dist.destroy_process_group()


def gather(shard: Shard, payload: T) -> list[T] | None:
    """Every process's payload, in rank order, on rank 0; None on the others."""
    if shard.world == 1:
        return [payload]
    received: list = [None] * shard.world if shard.rank == 0 else None
    dist.gather_object(payload, received, dst=0)
    return received


def throughput(per_process: list[dict]) -> dict:
    """The run's questions per second from each process's {"rank", "device", "questions", "seconds"}: the run's
    rate counts every question over the slowest process's decode time (the run waits for it), so an uneven split
    shows as a lower rate."""
    questions = sum(p["questions"] for p in per_process)
    slowest = max(p["seconds"] for p in per_process)
    rows = [{**p, "questions_per_s": p["questions"] / p["seconds"] if p["seconds"] > 0 else 0.0}
            for p in per_process]
    return {"processes": len(per_process), "questions": questions, "seconds": slowest,
            "questions_per_s": questions / slowest if slowest > 0 else 0.0, "per_process": rows}
