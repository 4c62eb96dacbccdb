"""The Selection Lab run log: what one SFT run with online batch selection did, step by step, as data.

Schema (version `SCHEMA_VERSION`); every view reads a `RunLog`, never the model.

* `CandidateRecord`: one per candidate per step (B rows per group; one group or more per process and step). The UDS
  quantities (`s_intra`, `s_inter`, `alpha_s_inter`, `total`) are computed for every selector, so runs with Random,
  MaxLoss or Full are comparable; `selector_score` is what the run's selector actually ranked by (UDS family:
  `total`; MaxLoss: `loss`; Random: a seeded uniform key; Full: `total`, everything kept). `rank` (0 = best) and
  `margin_to_kth` use `selector_score` within the candidate's group of B (positions g*B .. g*B + B - 1).
* `StepRecord`: one per selection step (micro-batch): its optimizer step and learning rate, the kept samples' loss,
  wall-clock seconds (total and scoring part).
* Embeddings: the sketch z (D = d1 * d2 = 1024 floats, float32, exact) of every candidate, one array (B, D) per step,
  row i belonging to the candidate with `position == i`. The buffer holds the z of *selected* candidates as computed
  at their insertion step (stale by design, as released).
* `EvictionRecord`: one per FIFO eviction. Together with `selected` this gives the exact buffer after any step
  (`RunLog.buffer_at(step)`); `RunLog.snapshot_steps()` lists the steps at the run's snapshot interval.
* `TokenStrip`: per-token arrays for the strip view (loss, logit row norm, entropy, pad / prompt flags; float32),
  stored for every candidate of the steps where `step % strip_every == 0`, at most `strip_max_steps` steps (both in
  the run config; defaults 1 and 64), so a log stays bounded at about B * N * 22 bytes per stored step. In the
  default mode padding rows are not forwarded (samples of similar length share a forward), so their logits are
  zeros: logit_norm 0, entropy log V; views grey them out via `is_pad` either way.
* `SampleRecord`: the text of every training / held-out sample the run saw, so views can show it.
* `EvalItem` / `EvalSummary`: held-out evaluation at the end (mean token loss; exact-answer accuracy on maths items).
* `config`: the run configuration as a JSON-able dict (selector, mode "default" or "as_released", alpha, B, K, ...).

Spectrum fields, from the singular values s_1 >= ... >= s_n of the scored logit rows L (n_rows x V):
`fro_norm` = ||L||_F = sqrt(sum s^2); `flatness` = ||L||_* / ||L||_F (1 for rank one, sqrt(n) for a flat spectrum);
`effective_rank` = exp(entropy of p), p = s / sum(s) (Roy and Vetterli, 2007); `sigma1_share` = s_1 / sum(s).
Save / load: `save_runlog(log, folder)` and `load_runlog(folder)` in engine/uds/runlog_io.py (Parquet + .npy + meta.json).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

SCHEMA_VERSION = 2
RUNLOG_KIND = "uds-runlog"


@dataclass(frozen=True)
class CandidateRecord:
    step: int  # 0-based selection step (one micro-batch of candidates on every process)
    position: int  # index of the candidate in the step, 0..P-1 over all processes; row of that step's embeddings
    process: int  # rank of the process that scored it (0 in a one-process run); groups of B never span processes
    sample_id: str  # stable id of the sample in its dataset (see SampleRecord)
    category: str  # e.g. chatterbot "ai", maths module "arithmetic__add_or_sub", "humaneval"
    source: str  # "chatterbot" | "mathematics" | "humaneval" | "upload" | "hub"
    length: int  # real tokens (prompt + response, no padding)
    n_rows: int  # logit rows that entered the score: padded length N as released, `length` in the default mode
    s_intra: float  # utility: nuclear norm ||L||_* of the scored rows
    s_inter: float  # diversity: mean L2 distance of z to the filled buffer slots (0 while the buffer is empty)
    alpha_s_inter: float  # alpha * s_inter, the diversity term as it enters the total
    total: float  # UDS score s_intra + alpha * s_inter
    selector_score: float  # what this run's selector ranked by (see module docstring)
    rank: int  # 0-based rank of selector_score within its group of B (0 = highest; ties broken by position)
    selected: bool  # kept for the gradient step (and pushed into the buffer)
    margin_to_kth: float  # selector_score minus the K-th highest of its group (>= 0 iff selected)
    flips_utility_only: bool  # this candidate's selected flag differs under utility only (alpha = 0, top-K)
    flips_diversity_only: bool  # ... differs under diversity only (top-K of s_inter; every flag False at an empty buffer)
    loss: float  # per-sample mean token cross-entropy on response tokens, from the scoring forward
    fro_norm: float  # ||L||_F of the scored rows
    flatness: float  # ||L||_* / ||L||_F
    effective_rank: float  # exp(entropy of the normalised singular values)
    sigma1_share: float  # sigma_1 / sum of singular values


@dataclass(frozen=True)
class StepRecord:
    step: int  # 0-based selection step (one micro-batch per process)
    optimizer_step: int  # 0-based optimizer step this micro-batch's gradient belongs to (steps / grad accumulation)
    learning_rate: float  # the learning rate of that optimizer step
    train_loss: float  # loss of the kept samples before the update (the run's reduction), from the scoring forward
    seconds: float  # wall-clock seconds of the whole micro-step (scoring + forward/backward), slowest process
    scoring_seconds: float  # of which: scoring forward + Gram + sketch + buffer distances, slowest process
    n_kept: int  # candidates trained on this step, all processes
    buffer_size: int  # filled buffer slots after this step's push


@dataclass(frozen=True)
class EvictionRecord:
    step: int  # step whose push evicted the entry
    sample_id: str  # the evicted sample
    insert_step: int  # step at which it entered the buffer
    position: int  # its position in the micro-batch of insert_step (locates its embedding)


@dataclass(frozen=True, eq=False)
class TokenStrip:
    step: int  # training step
    position: int  # candidate position in the micro-batch
    sample_id: str  # the candidate
    token_ids: np.ndarray  # int64 (N,) input ids incl. padding
    token_loss: np.ndarray  # float32 (N,) cross-entropy of predicting the token at i+1 from row i; NaN on the last row
    logit_norm: np.ndarray  # float32 (N,) L2 norm of logit row i
    entropy: np.ndarray  # float32 (N,) entropy (nats) of softmax of logit row i
    is_pad: np.ndarray  # bool (N,) padding row
    is_prompt: np.ndarray  # bool (N,) prompt row (no loss in SFT)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TokenStrip):
            return NotImplemented
        return (self.step, self.position, self.sample_id) == (other.step, other.position, other.sample_id) and all(
            np.array_equal(getattr(self, n), getattr(other, n), equal_nan=n in ("token_loss", "logit_norm", "entropy"))
            for n in STRIP_ARRAYS
        )


STRIP_ARRAYS = ("token_ids", "token_loss", "logit_norm", "entropy", "is_pad", "is_prompt")


@dataclass(frozen=True)
class SampleRecord:
    sample_id: str  # unique within the run
    source: str  # see CandidateRecord.source
    category: str  # see CandidateRecord.category
    prompt: str  # user turn (chat template applied at tokenisation)
    response: str  # assistant turn the loss is computed on
    split: str  # "train" or "heldout"


@dataclass(frozen=True)
class EvalItem:
    sample_id: str  # held-out sample
    source: str  # see CandidateRecord.source
    category: str  # see CandidateRecord.category
    loss: float  # mean token cross-entropy on the reference response
    is_maths: bool  # exact-answer item (mathematics-dataset)
    prediction: str  # greedy answer for maths items, "" otherwise
    correct: bool  # prediction equals the reference answer (stripped); False for non-maths items


@dataclass(frozen=True)
class EvalSummary:
    loss: float  # mean of EvalItem.loss over all held-out items
    maths_accuracy: float  # fraction of maths items answered exactly; NaN without maths items
    n_items: int  # held-out items evaluated
    n_maths: int  # of which maths items


@dataclass(frozen=True)
class BufferSnapshot:
    step: int  # buffer content after this step's push
    sample_ids: tuple[str, ...]  # oldest first
    insert_steps: tuple[int, ...]  # insertion step per slot
    positions: tuple[int, ...]  # micro-batch position at insertion per slot
    embeddings: np.ndarray  # float32 (n_slots, D), z as computed at insertion
    evicted_ids: tuple[str, ...]  # evicted since the previous snapshot step (or since the start)


@dataclass(eq=False)
class RunLog:
    """Everything one run recorded. The loop appends through `add_step`; views read the frames and accessors."""

    config: dict[str, Any]  # JSON-able run configuration (selector, mode, alpha, batch, keep, snapshot_every, ...)
    candidates: list[CandidateRecord] = field(default_factory=list)
    steps: list[StepRecord] = field(default_factory=list)
    embeddings: list[np.ndarray] = field(default_factory=list)  # per step: float32 (B, D)
    evictions: list[EvictionRecord] = field(default_factory=list)
    strips: list[TokenStrip] = field(default_factory=list)
    samples: list[SampleRecord] = field(default_factory=list)
    eval_items: list[EvalItem] = field(default_factory=list)
    eval_summary: EvalSummary | None = None

    def add_step(self, step: StepRecord, candidates: Sequence[CandidateRecord], embeddings: np.ndarray,
                 evictions: Sequence[EvictionRecord] = (), strips: Sequence[TokenStrip] = ()) -> None:
        if len(candidates) != embeddings.shape[0]:
            raise ValueError(f"step {step.step}: {len(candidates)} candidates but {embeddings.shape[0]} embeddings")
        self.steps.append(step)
        self.candidates.extend(candidates)
        self.embeddings.append(np.asarray(embeddings, dtype=np.float32))
        self.evictions.extend(evictions)
        self.strips.extend(strips)

    # ---- frames -------------------------------------------------------------------------------------------------
    def candidates_frame(self) -> pd.DataFrame:
        return _frame(self.candidates, CandidateRecord)

    def steps_frame(self) -> pd.DataFrame:
        return _frame(self.steps, StepRecord)

    def evictions_frame(self) -> pd.DataFrame:
        return _frame(self.evictions, EvictionRecord)

    def samples_frame(self) -> pd.DataFrame:
        return _frame(self.samples, SampleRecord)

    def eval_frame(self) -> pd.DataFrame:
        return _frame(self.eval_items, EvalItem)

    def to_frames(self) -> dict[str, pd.DataFrame]:
        return {"candidates": self.candidates_frame(), "steps": self.steps_frame(),
                "evictions": self.evictions_frame(), "samples": self.samples_frame(), "eval": self.eval_frame()}

    # ---- accessors ----------------------------------------------------------------------------------------------
    def embedding(self, step: int, position: int) -> np.ndarray:
        """z (D,) of the candidate at `position` in `step`."""
        return self.embeddings[self._step_index(step)][position]

    def all_embeddings(self) -> np.ndarray:
        """float32 (n_candidates, D), rows in the order of `candidates_frame()`."""
        if not self.embeddings:
            return np.zeros((0, 0), dtype=np.float32)
        return np.concatenate(self.embeddings, axis=0)

    def strip(self, step: int, position: int) -> TokenStrip | None:
        """The per-token strip of one candidate, or None when that step was not stored (see module docstring)."""
        return next((s for s in self.strips if s.step == step and s.position == position), None)

    def snapshot_steps(self) -> list[int]:
        every = int(self.config.get("snapshot_every", 1))
        done = [s.step for s in self.steps]
        return [s for s in done if s % every == 0 or s == done[-1]]

    def buffer_at(self, step: int) -> BufferSnapshot:
        """The exact FIFO buffer after `step`'s push, rebuilt from the selections and evictions."""
        evicted = {(e.insert_step, e.position): e.step for e in self.evictions}
        kept = [c for c in self.candidates if c.selected and c.step <= step
                and evicted.get((c.step, c.position), step + 1) > step]
        previous = max((s for s in self.snapshot_steps() if s < step), default=-1)
        dims = self.embeddings[0].shape[1] if self.embeddings else 0
        emb = np.stack([self.embedding(c.step, c.position) for c in kept]) if kept else np.zeros((0, dims), np.float32)
        return BufferSnapshot(step=step, sample_ids=tuple(c.sample_id for c in kept),
                              insert_steps=tuple(c.step for c in kept), positions=tuple(c.position for c in kept),
                              embeddings=emb,
                              evicted_ids=tuple(e.sample_id for e in self.evictions if previous < e.step <= step))

    def selected_ids(self) -> list[list[str]]:
        """Per step, the ids of the kept candidates in position order."""
        by_step: dict[int, list[str]] = {s.step: [] for s in self.steps}
        for c in self.candidates:
            if c.selected:
                by_step[c.step].append(c.sample_id)
        return [by_step[s.step] for s in self.steps]

    def sample(self, sample_id: str) -> SampleRecord | None:
        return next((s for s in self.samples if s.sample_id == sample_id), None)

    def _step_index(self, step: int) -> int:
        for i, s in enumerate(self.steps):
            if s.step == step:
                return i
        raise KeyError(f"step {step} is not in this run log (steps {self.steps[0].step}..{self.steps[-1].step})"
                       if self.steps else f"step {step}: the run log has no steps")

    def equals(self, other: "RunLog") -> bool:
        """Exact equality of every record and array (NaN equal to NaN)."""
        frames_a, frames_b = self.to_frames(), other.to_frames()
        return (self.config == other.config and _same_summary(self.eval_summary, other.eval_summary)
                and all(frames_a[k].equals(frames_b[k]) for k in frames_a)
                and len(self.embeddings) == len(other.embeddings)
                and all(np.array_equal(a, b) for a, b in zip(self.embeddings, other.embeddings))
                and self.strips == other.strips)

    def eval_summary_dict(self) -> dict[str, Any] | None:
        return None if self.eval_summary is None else asdict(self.eval_summary)


def _same_summary(a: EvalSummary | None, b: EvalSummary | None) -> bool:
    if a is None or b is None:
        return a is b
    return all(x == y or (x != x and y != y) for x, y in zip(asdict(a).values(), asdict(b).values()))


def _frame(records: Sequence[Any], cls: type) -> pd.DataFrame:
    """Records as a DataFrame with the record's columns in order, also when empty."""
    names = [f.name for f in fields(cls)]
    return pd.DataFrame([[getattr(r, n) for n in names] for r in records], columns=names).astype(
        {n: FRAME_DTYPES[f.type] for n, f in zip(names, fields(cls))})


FRAME_DTYPES: Mapping[str, str] = {"int": "int64", "float": "float64", "bool": "bool", "str": "object"}
