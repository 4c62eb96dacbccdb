"""Run the grid: for each task set, rule, gen_length and block_length, decode every task and score it.

Prompts are decoded `batch` at a time, left-padded (and, with `bucket`, padded to a multiple of `bucket` tokens so
CUDA graphs are reused). A row's forward passes are counted from its commit steps: every step in which the row
still had masked positions commits at least one of them, so the distinct commit steps of a row are exactly the
forward passes it needed, the same number it needs decoded alone.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch

from engine.bench.config import BenchConfig, make_rule
from engine.bench.humaneval_check import check_completions
from engine.bench.metrics import answer_correct, is_degenerate, repeated_ngram_ratio
from engine.bench.tasks import Task, load_tasks
from engine.decoding import generate
from engine.decoding.trace import rate
from engine.models.base import LoadedModel
from engine.models.cuda_graph import GraphCache, StaticForward

Progress = Callable[[str], None]


@dataclass(frozen=True)
class SampleResult:
    task_set: str
    task_id: str
    rule: str
    gen_length: int
    block_length: int
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


def decode_tasks(model: LoadedModel, tasks: list[Task], rule: str, gen_length: int, block_length: int,
                 config: BenchConfig, graphs: GraphCache | None) -> list[SampleResult]:
    """Decode one batch of tasks with one rule; scores all but HumanEval (checked per cell, in a subprocess)."""
    ids, key_mask = _padded_prompts(model, tasks, config.bucket)
    if ids.shape[1] + gen_length > model.spec.max_length:
        raise ValueError(f"prompts of {ids.shape[1]} tokens + gen_length={gen_length} exceed the model's context "
                         f"of {model.spec.max_length}; lower gen_length or n")
    forward = StaticForward(model, key_mask=key_mask, graphs=graphs)
    result = generate(forward, ids, make_rule(rule, gen_length, config.threshold), gen_length=gen_length,
                      block_length=block_length, mask_id=model.spec.mask_id, eos_id=model.spec.eos_id,
                      shift=model.spec.shift, record_trace=False)
    nfe = row_nfe(result.commit_step)
    out = []
    for i, task in enumerate(tasks):
        tokens = result.tokens[i].tolist()
        answer_ids = model.answer_ids(tokens)
        ended = len(answer_ids) < gen_length
        answer = model.decode_answer(tokens)
        degenerate = is_degenerate(answer)
        correct = (answer_correct(answer, task.target) if task.target else
                   (ended and not degenerate) if task.task_set == "chat" else False)
        out.append(SampleResult(task.task_set, task.task_id, rule, gen_length, block_length, answer, correct,
                                int(nfe[i]), min(len(answer_ids) + 1, gen_length), ended, degenerate,
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


def run_grid(model: LoadedModel, config: BenchConfig, progress: Progress | None = None
             ) -> tuple[list[dict], list[SampleResult]]:
    """(cells, samples) for the whole grid; cells carry their settings and the summary numbers."""
    graphs = GraphCache(model.model) if config.cuda_graph else None
    cells, all_samples = [], []
    for task_set in config.task_sets:
        tasks = load_tasks(task_set, config.n, config.seed)
        for gen_length in config.gen_lengths:
            for block_length in config.block_lengths:
                for rule in config.rules:
                    chunks = [tasks[i:i + config.batch] for i in range(0, len(tasks), config.batch)]
                    if model.device.type == "cuda":  # untimed: first-use costs (graph capture, autotuning)
                        decode_tasks(model, chunks[0], rule, gen_length, block_length, config, graphs)
                    started = time.perf_counter()
                    samples = [s for chunk in chunks
                               for s in decode_tasks(model, chunk, rule, gen_length, block_length, config, graphs)]
                    if task_set == "humaneval":
                        samples = _score_humaneval(samples, config.humaneval_timeout)
                    cell = {"task_set": task_set, "rule": rule, "gen_length": gen_length,
                            "block_length": block_length, **summarise(samples)}
                    cells.append(cell)
                    all_samples.extend(samples)
                    if progress is not None:
                        progress(f"{task_set} {rule} gen {gen_length} block {block_length}: "
                                 f"acc {cell['accuracy']:.1f}% nfe {cell['mean_nfe']:.1f} "
                                 f"{cell['tokens_per_s']:.1f} tok/s ({time.perf_counter() - started:.1f} s)")
    return cells, all_samples
