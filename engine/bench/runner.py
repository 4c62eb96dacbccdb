"""Run the grid: for each task set, gen_length, block_length, cache mode and rule, decode every task and score it.

Prompts are decoded `batch` at a time, left-padded (and, with `bucket`, padded to a multiple of `bucket` tokens so
CUDA graphs are reused). A row's forward passes are counted from its commit steps: every step in which the row
still had masked positions commits at least one of them, so the distinct commit steps of a row are exactly the
forward passes it needed, the same number it needs decoded alone.

With a Shard (engine/bench/parallel.py) a process decodes only its share of each task set's questions; cells are
computed from samples (`grid_cells`), so a merged data-parallel run gives the one-process cells.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch

from engine.bench import parallel
from engine.bench.config import BenchConfig, make_rule
from engine.bench.decode import Forwards, decode_batch
from engine.bench.humaneval_check import check_completions
from engine.bench.metrics import answer_correct, is_degenerate, repeated_ngram_ratio
from engine.bench.parallel import Shard
from engine.bench.tasks import Task, load_tasks
from engine.decoding.trace import rate
from engine.models.base import LoadedModel

Progress = Callable[[str], None]


@dataclass(frozen=True)
class SampleResult:
    task_set: str
    task_id: str
    question: int  # the question's index in its task set (the one-process order)
    rule: str
    gen_length: int
    block_length: int
    cache: str  # key/value cache mode (engine/bench/decode.py)
    answer: str  # decoded text up to the first EOS
    correct: bool  # exact answer (math, addition), pass@1 (humaneval), EOS and not degenerate (chat)
    nfe: int  # forward passes this question needed
    answer_tokens: int  # answer tokens up to and including EOS
    ended_eos: bool  # the answer holds an EOS within gen_length
    degenerate: bool  # degenerate repetition (engine.bench.metrics.is_degenerate)
    repeat_ratio: float  # share of repeated word 3-grams
    seconds: float  # this question's share of its batch's decode wall time
    check: str = ""  # HumanEval checker verdict ("passed", "failed: ...", "timed out")


def row_nfe(commit_step: np.ndarray) -> np.ndarray:
    """(B, G) commit steps -> (B,) forward passes per row: its distinct non-negative commit steps."""
    return np.array([len(np.unique(row[row >= 0])) for row in commit_step], dtype=np.int64)


def _padded_prompts(model: LoadedModel, tasks: list[Task], bucket: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    rows = [model.encode_prompt(task.prompt)[0].tolist() for task in tasks]
    width = max(len(row) for row in rows)
    if bucket:
        width = -(-width // bucket) * bucket
    if len(rows) == 1 and width == len(rows[0]):
        return torch.tensor(rows, dtype=torch.long, device=model.device), None
    pad = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else model.spec.eos_id
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    key_mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, row in enumerate(rows):
        ids[i, width - len(row):] = torch.tensor(row, dtype=torch.long)
        key_mask[i, width - len(row):] = True
    return ids.to(model.device), key_mask.to(model.device)


Cell = tuple[str, int, int, str, str]  # (task_set, gen_length, block_length, cache, rule), in grid order


def grid_order(config: BenchConfig) -> list[Cell]:
    return [(task_set, gen, block, cache, rule) for task_set in config.task_sets for gen in config.gen_lengths
            for block in config.block_lengths for cache in config.caches for rule in config.rules]


def cell_of(sample: SampleResult) -> Cell:
    return sample.task_set, sample.gen_length, sample.block_length, sample.cache, sample.rule


def decode_tasks(model: LoadedModel, tasks: list[tuple[int, Task]], cell: Cell, config: BenchConfig,
                 forwards: Forwards) -> list[SampleResult]:
    """Decode one batch of (question index, task) with one cell's settings; scores all but HumanEval (checked per
    cell, in a subprocess)."""
    _, gen_length, block_length, cache, rule = cell
    ids, key_mask = _padded_prompts(model, [task for _, task in tasks], config.bucket)
    if ids.shape[1] + gen_length > model.spec.max_length:
        raise ValueError(f"prompts of {ids.shape[1]} tokens + gen_length={gen_length} exceed the model's context "
                         f"of {model.spec.max_length}; lower gen_length or n")
    result = decode_batch(model, ids, key_mask, make_rule(rule, gen_length, config.threshold), gen_length,
                          block_length, cache, forwards)
    nfe = row_nfe(result.commit_step)
    out = []
    for i, (question, task) in enumerate(tasks):
        tokens = result.tokens[i].tolist()
        answer_ids = model.answer_ids(tokens)
        ended = len(answer_ids) < gen_length
        answer = model.decode_answer(tokens)
        degenerate = is_degenerate(answer)
        correct = (answer_correct(answer, task.target) if task.target else
                   (ended and not degenerate) if task.task_set == "chat" else False)
        out.append(SampleResult(task.task_set, task.task_id, question, rule, gen_length, block_length, cache, answer,
                                correct, int(nfe[i]), min(len(answer_ids) + 1, gen_length), ended, degenerate,
                                repeated_ngram_ratio(answer), result.seconds / len(tasks)))
    return out


def _score_humaneval(samples: list[SampleResult], timeout: float) -> list[SampleResult]:
    verdicts = check_completions({s.task_id: s.answer for s in samples}, timeout)
    return [SampleResult(**{**asdict(s), "correct": verdicts[s.task_id]["passed"],
                            "check": verdicts[s.task_id]["result"]}) for s in samples]


def summarise(samples: list[SampleResult]) -> dict:
    """One grid cell's numbers: accuracy (%), mean NFE, tokens/s over the cell's wall time, rates."""
    seconds = sum(s.seconds for s in samples)
    return {"n": len(samples), "accuracy": 100.0 * float(np.mean([s.correct for s in samples])),
            "mean_nfe": float(np.mean([s.nfe for s in samples])),
            "tokens_per_s": rate(sum(s.answer_tokens for s in samples), seconds),
            "wall_s": seconds, "eos_rate": 100.0 * float(np.mean([s.ended_eos for s in samples])),
            "degenerate_rate": 100.0 * float(np.mean([s.degenerate for s in samples])),
            "mean_answer_tokens": float(np.mean([s.answer_tokens for s in samples]))}


def grid_cells(config: BenchConfig, samples: list[SampleResult]) -> list[dict]:
    """One summary per grid cell that has samples, in grid order; cells carry their settings."""
    by_cell: dict[Cell, list[SampleResult]] = {}
    for sample in samples:
        by_cell.setdefault(cell_of(sample), []).append(sample)
    cells = []
    for cell in grid_order(config):
        if cell in by_cell:
            task_set, gen, block, cache, rule = cell
            cells.append({"task_set": task_set, "rule": rule, "gen_length": gen, "block_length": block,
                          "cache": cache, **summarise(by_cell[cell])})
    return cells


def in_grid_order(config: BenchConfig, samples: list[SampleResult]) -> list[SampleResult]:
    """Samples from any number of shards, in the order one process produces them (cell, then question)."""
    rank = {cell: i for i, cell in enumerate(grid_order(config))}
    return sorted(samples, key=lambda s: (rank[cell_of(s)], s.question))


def run_grid(model: LoadedModel, config: BenchConfig, progress: Progress | None = None, shard: Shard = Shard()
             ) -> tuple[list[dict], list[SampleResult]]:
    """(cells, samples) of this process's shard of the grid (all of it for one process)."""
    forwards = Forwards(model, config.cuda_graph)
    all_samples = []
    for task_set in config.task_sets:
        tasks = shard.take(list(enumerate(load_tasks(task_set, config.n, config.seed))))
        chunks = [tasks[i:i + config.batch] for i in range(0, len(tasks), config.batch)]
        cells = [cell for cell in grid_order(config) if cell[0] == task_set] if chunks else []
        for cell in cells:
            forwards.new_cell()
            if model.device.type == "cuda":  # untimed: first-use costs (graph capture, autotuning)
                decode_tasks(model, chunks[0], cell, config, forwards)
            started = time.perf_counter()
            samples = [s for chunk in chunks for s in decode_tasks(model, chunk, cell, config, forwards)]
            if task_set == "humaneval":
                samples = _score_humaneval(samples, config.humaneval_timeout)
            all_samples.extend(samples)
            if progress is not None:
                summary = summarise(samples)
                progress(f"{' '.join(map(str, cell))}: acc {summary['accuracy']:.1f}% nfe {summary['mean_nfe']:.1f} "
                         f"{summary['tokens_per_s']:.1f} tok/s ({time.perf_counter() - started:.1f} s)")
    return grid_cells(config, all_samples), all_samples


def run_sharded(load: Callable[[str | None], LoadedModel], config: BenchConfig, progress: Progress | None = None,
                shard: Shard = Shard()) -> tuple[LoadedModel, list[dict], list[SampleResult], dict | None]:
    """This process's shard of the grid, merged on rank 0: (model, cells, samples, data-parallel throughput or None
    for one process); ranks > 0 get empty cells and samples. `load(device)` builds the model on this process's
    device. A ValueError in one of several processes names its rank."""
    parallel.start(shard)
    try:
        model = load(shard.device(config.device))
        _, samples = run_grid(model, config, progress, shard)
    except ValueError as err:
        raise ValueError(f"{shard.label}: {err}" if shard.world > 1 else str(err)) from None
    mine = {"rank": shard.rank, "device": str(model.device), "questions": len(samples),
            "seconds": sum(s.seconds for s in samples)}
    shards = parallel.gather(shard, (samples, mine))
    parallel.stop(shard)
    if shards is None:
        return model, [], [], None
    samples = in_grid_order(config, [s for part, _ in shards for s in part])
    speed = parallel.throughput([timing for _, timing in shards]) if shard.world > 1 else None
    return model, grid_cells(config, samples), samples, speed
