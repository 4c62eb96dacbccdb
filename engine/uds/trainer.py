"""UDSTrainer: `transformers.Trainer` with online batch selection by UDS or any selector of engine/uds/selectors.py.

The Trainer's loop is kept whole (data loading and length grouping, accumulation, clipping, AdamW, schedule, DDP under
accelerate / torchrun, callbacks); two of its extension points change:
* `get_batch_samples` receives the candidate micro-batches of one optimizer step; each is scored (no-grad forward,
  nuclear norm, sketch, buffer distance) and cut to its kept rows, the picks of every process are gathered and pushed
  into the buffer, and the step's trained items are counted over all micro-batches and processes;
* `compute_loss` computes the kept samples' loss (token mean or per-sample mean) divided by that count, so the summed
  gradient is the mean over everything the step kept, on every process count.
After each micro-batch's backward, callbacks with an `on_selection(args, state, control, step)` method receive a
`SelectionStep` (engine/uds/callbacks.py writes the run log from it). docs/UDS_TRAINER.md shows a user's script.
"""
from __future__ import annotations

import collections
import dataclasses
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from transformers import Trainer

from engine.uds.batching import Batch, pad_items, response_loss
from engine.uds.config import LOSS_REDUCTIONS, SelectionConfig
from engine.uds.runlog import EvictionRecord
from engine.uds.selection import OnlineSelection, ProcessPick

META_KEYS = ("uds_index", "sample_id", "category", "source", "prompt_len")


@dataclass(frozen=True)
class SelectionStep:
    step: int  # 0-based selection step (one micro-batch per process)
    optimizer_step: int  # the optimizer step its gradient belongs to
    learning_rate: float  # that optimizer step's learning rate
    picks: list[ProcessPick]  # every process's candidates and picks, in process order
    evictions: list[EvictionRecord]  # buffer entries this step's pushes evicted
    buffer_size: int  # filled buffer slots after the pushes
    train_loss: float  # the kept samples' loss before the update, all processes (the run's reduction)
    seconds: float  # slowest process's scoring plus this process's forward / backward


class IndexedDataset(torch.utils.data.Dataset):
    """The user's dataset with each item's index added: the run log's sample id where an item has none."""

    def __init__(self, data: Any) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {**self.data[index], "uds_index": index}


class CandidateCollator:
    """Pads candidates (right by default, left as released) and carries each one's metadata as `uds_meta`.

    With `inner` (a user's collator) the padding is the user's; it must return input_ids, attention_mask and labels.
    """

    def __init__(self, pad_id: int, padding_side: str = "right", multiple: int = 1,
                 inner: Callable[[list[dict[str, Any]]], dict[str, Any]] | None = None) -> None:
        self.pad_id, self.padding_side, self.multiple, self.inner = pad_id, padding_side, multiple, inner

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        plain = [{k: v for k, v in f.items() if k not in META_KEYS} for f in features]
        batch = dict(self.inner(plain)) if self.inner else pad_items(plain, self.pad_id, self.padding_side,
                                                                     self.multiple)
        missing = [k for k in ("input_ids", "attention_mask", "labels") if k not in batch]
        if missing:
            raise ValueError(f"the data collator returned no {missing}; UDS scores and trains from input_ids, "
                             f"attention_mask and labels (-100 where no loss)")
        batch["uds_meta"] = [_meta(f) for f in features]
        return batch


def _meta(item: dict[str, Any]) -> dict[str, Any]:
    return {"sample_id": str(item.get("sample_id", item.get("uds_index", ""))),  # no index outside the train set
            "category": str(item.get("category", "all")),
            "source": str(item.get("source", "dataset")), "prompt_len": int(item.get("prompt_len", 0)),
            "length": len(item["input_ids"])}


class UDSTrainer(Trainer):
    """A Trainer that trains, per micro-batch of B candidates per group, only the K its selector keeps.

    `args.per_device_train_batch_size` is the candidates one process scores per micro-batch: a multiple of
    `selection.batch` (each group of B keeps K). Dataset items are dicts with `input_ids`, optional `labels` (-100
    where no loss; every token otherwise) and optional `sample_id`, `category`, `source`, `prompt_len` for the log.
    """

    loss_is_scaled_for_ga = True  # compute_loss divides by the whole step's kept items itself

    def __init__(self, model: torch.nn.Module, args: Any, train_dataset: Any,
                 selection: SelectionConfig = SelectionConfig(), loss_reduction: str = "token_mean",
                 processing_class: Any = None, data_collator: Any = None, callbacks: Sequence[Any] | None = None,
                 strip_every: int = 1, strip_max_steps: int = 64, cuda_graphs: bool = True, **kwargs: Any) -> None:
        _check(args, selection, loss_reduction, train_dataset)
        if args.remove_unused_columns:  # the metadata columns must reach the collator
            args = dataclasses.replace(args, remove_unused_columns=False)
        if data_collator is None and processing_class is None:
            raise ValueError("UDSTrainer needs a tokenizer (processing_class) for the pad id, or a data_collator")
        pad_id = _pad_id(processing_class) if processing_class is not None else 0
        collator = CandidateCollator(pad_id, selection.padding_side, selection.pad_to_multiple_of, data_collator)
        super().__init__(model=model, args=args, train_dataset=IndexedDataset(train_dataset), data_collator=collator,
                         processing_class=processing_class, callbacks=list(callbacks or []), **kwargs)
        self.loss_reduction = loss_reduction
        self.model_accepts_loss_kwargs = True  # Trainers before `loss_is_scaled_for_ga` decide the GA scaling by this
        vocab = self.model.get_output_embeddings().weight.shape[0]
        self.online_selection = OnlineSelection(selection, vocab, strip_every, strip_max_steps)
        self.online_selection.attach(self.model, cuda_graphs)
        self._pending: collections.deque = collections.deque()
        self._selection_step = 0

    def get_batch_samples(self, epoch_iterator: Any, num_batches: int, device: torch.device) -> tuple[list, Any]:
        """The kept rows of the next `num_batches` candidate micro-batches, and what the step's loss divides by."""
        kept_batches, items = [], 0
        for _ in range(num_batches):
            try:
                inputs = next(epoch_iterator)
            except StopIteration:
                break
            started = time.perf_counter()
            meta = inputs.pop("uds_meta")
            batch = Batch.from_inputs(inputs, [m["prompt_len"] for m in meta])
            pick = self.online_selection.score(batch, meta, self._selection_step, self.args.process_index,
                                               self.loss_reduction == "per_sample")
            picks = _gather(pick) if self.args.world_size > 1 else [pick]
            evictions = self.online_selection.push(picks, self._selection_step)
            kept_batches.append(_rows(inputs, pick.kept))
            self._pending.append((self._selection_step, picks, evictions, len(self.online_selection.buffer),
                                  time.perf_counter() - started))
            items += sum(p.trained_items for p in picks)
            self._selection_step += 1
        return kept_batches, (torch.tensor(max(items, 1), device=device) if kept_batches else None)

    def compute_loss(self, model: torch.nn.Module, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        loss_sum, count = response_loss(outputs.logits, inputs["labels"])  # (K,) each
        per_sample = self.loss_reduction == "per_sample"
        contribution = (loss_sum / count.clamp_min(1)).sum() if per_sample else loss_sum.sum()
        if num_items_in_batch is None:  # outside the training loop: this batch's own mean
            loss = contribution / ((count > 0).sum() if per_sample else count.sum()).clamp_min(1)
        else:  # DDP averages gradients over processes; the count is the step's total over all of them
            loss = contribution / num_items_in_batch * self.accelerator.num_processes
        return (loss, outputs) if return_outputs else loss

    def training_step(self, model: torch.nn.Module, inputs: dict[str, Any], num_items_in_batch: Any = None):
        started = time.perf_counter()
        loss = super().training_step(model, inputs, num_items_in_batch)
        step, picks, evictions, buffer_size, scoring = self._pending.popleft()
        items = sum(p.trained_items for p in picks)
        event = SelectionStep(
            step=step, optimizer_step=self.state.global_step, learning_rate=float(self._get_learning_rate()),
            picks=picks, evictions=evictions, buffer_size=buffer_size,
            train_loss=sum(p.loss_sum for p in picks) / items if items else float("nan"),
            seconds=max(max(p.scoring_seconds for p in picks), scoring) + time.perf_counter() - started)
        for callback in self.callback_handler.callbacks:
            if hasattr(callback, "on_selection"):
                callback.on_selection(self.args, self.state, self.control, event)
        return loss


def _check(args: Any, selection: SelectionConfig, loss_reduction: str, train_dataset: Any) -> None:
    """Settings that cannot work together: one message each, before anything is built."""
    if loss_reduction not in LOSS_REDUCTIONS:
        raise ValueError(f"loss_reduction={loss_reduction!r} is unknown; allowed: {LOSS_REDUCTIONS}")
    if args.gradient_accumulation_steps < 1:
        raise ValueError(f"gradient_accumulation_steps={args.gradient_accumulation_steps} must be >= 1")
    per_device = args.per_device_train_batch_size
    if per_device % selection.batch:
        raise ValueError(f"per_device_train_batch_size={per_device} is not a multiple of the selection batch "
                         f"B={selection.batch}; each process scores whole groups of B candidates")
    if args.n_gpu > 1:
        raise ValueError(f"{args.n_gpu} GPUs in one process (DataParallel) are not supported; launch one process per "
                         f"GPU with `accelerate launch` or `torchrun`")
    if len(train_dataset) < args.world_size * per_device:
        processes = f"{args.world_size} process" + ("es" if args.world_size > 1 else "")
        raise ValueError(f"{processes} x {per_device} candidates need {args.world_size * per_device} samples, but the "
                         f"dataset has {len(train_dataset)}; use fewer processes or a smaller B")


def _pad_id(tokenizer: Any) -> int:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is None:
        raise ValueError("the tokenizer has neither a pad nor an eos token; set tokenizer.pad_token_id")
    return int(pad)


def _gather(pick: ProcessPick) -> list[ProcessPick]:
    from accelerate.utils import gather_object

    return sorted(gather_object([pick]), key=lambda p: p.process)


def _rows(inputs: dict[str, Any], kept: list[int]) -> dict[str, Any]:
    """The kept rows of a collated batch, without the columns that are padding in all of them."""
    index = torch.tensor(kept, device=inputs["input_ids"].device)
    columns = inputs["attention_mask"].index_select(0, index).bool().any(0)  # (N,)
    return {k: v.index_select(0, index)[:, columns] if torch.is_tensor(v) and v.dim() == 2 else v
            for k, v in inputs.items()}
