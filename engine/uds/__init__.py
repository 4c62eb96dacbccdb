"""UDS online batch selection for SFT: scorer, selectors, buffer, training loop and the run log they write.

Modes, labelled wherever they show: "default" masks padding rows out of the scores; "as_released" scores every row
of the padded batch like the released UDSamplingTrainer (see engine/uds/config.py).
"""
from engine.uds.buffer import BufferEntry, FIFOBuffer
from engine.uds.config import MODES, SelectionConfig, TrainConfig
from engine.uds.runlog import RunLog
from engine.uds.logit_scores import FFTSketch, mean_distance, nuclear_norm, singular_values, spectrum_stats, token_stats
from engine.uds.selectors import SELECTORS, CandidateScores, make_selector, top_k

__all__ = ["BufferEntry", "FIFOBuffer", "MODES", "SelectionConfig", "TrainConfig", "RunLog", "FFTSketch",
           "mean_distance", "nuclear_norm", "singular_values", "spectrum_stats", "token_stats", "SELECTORS",
           "CandidateScores", "make_selector", "top_k", "run_selection"]


def __getattr__(name: str):
    # The loop pulls in peft and the data readers; import it only when asked for.
    if name == "run_selection":
        from engine.uds.loop import run_selection

        return run_selection
    raise AttributeError(f"module 'engine.uds' has no attribute {name!r}")
