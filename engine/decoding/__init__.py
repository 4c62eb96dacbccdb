"""Diffusion-LLM decoding: the loop, the rules, and the trace (see docs/CREDITDECODING.md and DESIGN.md)."""
from engine.decoding.loop import DecodeCancelled, DecodeResult, StepEvent, generate
from engine.decoding.rules import (CREDIT_PRESETS, DEFAULT_CREDIT_PRESET, STRATEGIES, Credit, CreditLowConfidence,
                                   LowConfidence, Threshold, make_strategy)
from engine.decoding.trace import SCHEMA_VERSION, Trace, TraceFormatError, TraceRecorder
from engine.decoding.trace_io import load_trace, save_trace

__all__ = ["generate", "DecodeResult", "DecodeCancelled", "StepEvent", "LowConfidence", "Threshold", "Credit",
           "CreditLowConfidence", "CREDIT_PRESETS", "DEFAULT_CREDIT_PRESET", "STRATEGIES", "make_strategy", "Trace",
           "TraceRecorder", "TraceFormatError", "load_trace", "save_trace", "SCHEMA_VERSION"]
