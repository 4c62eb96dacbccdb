"""UDS online batch selection for SFT: scorer, selectors, buffer, a transformers Trainer (UDSTrainer) and the run log.

Modes, labelled wherever they show: "default" right-pads and masks padding rows out of the scores; "as_released"
left-pads and scores every row of the padded batch like the released UDSamplingTrainer (see engine/uds/config.py).
"""
from engine.uds.buffer import BufferEntry, FIFOBuffer
from engine.uds.config import MODES, SelectionConfig, TrainConfig
from engine.uds.logit_scores import FFTSketch, mean_distance, nuclear_norm, singular_values, spectrum_stats, token_stats
from engine.uds.runlog import RunLog
from engine.uds.selectors import SELECTORS, CandidateScores, make_selector, top_k

__all__ = ["BufferEntry", "FIFOBuffer", "MODES", "SelectionConfig", "TrainConfig", "RunLog", "FFTSketch",
           "mean_distance", "nuclear_norm", "singular_values", "spectrum_stats", "token_stats", "SELECTORS",
           "CandidateScores", "make_selector", "top_k", "run_selection", "UDSTrainer", "RunLogCallback"]
_LAZY = {"run_selection": "engine.uds.run", "UDSTrainer": "engine.uds.trainer",
         "RunLogCallback": "engine.uds.callbacks"}


def __getattr__(name: str):
    # The trainer and the run pull in transformers' Trainer, peft and the data readers: import them only when asked.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'engine.uds' has no attribute {name!r}")
