"""Diffusion-LLM decoding: the contracts, the loop, the rules and their registry, and the trace (see
docs/CREDITDECODING.md and DESIGN.md)."""
from engine.decoding.contracts import (Block, DecodeCancelled, DecodeResult, DecodeStart, ModelFn, Observer, Proposal,
                                       Rule, StepEvent, StepObserver)
from engine.decoding.loop import generate
from engine.decoding.registry import RULES, RuleEntry, make_rule, parse_rule_spec, rule_entry
from engine.decoding.rules import (CREDIT_PRESETS, DEFAULT_CREDIT_PRESET, Credit, CreditLowConfidence, LowConfidence,
                                   Threshold)
from engine.decoding.trace import SCHEMA_VERSION, Trace, TraceFormatError, TraceRecorder
from engine.decoding.trace_io import load_trace, save_trace

__all__ = ["generate", "Block", "DecodeResult", "DecodeStart", "DecodeCancelled", "ModelFn", "Observer", "Proposal",
           "Rule", "StepEvent", "StepObserver", "RULES", "RuleEntry", "make_rule", "parse_rule_spec", "rule_entry",
           "LowConfidence", "Threshold", "Credit", "CreditLowConfidence", "CREDIT_PRESETS", "DEFAULT_CREDIT_PRESET", "Trace",
           "TraceRecorder", "TraceFormatError", "load_trace", "save_trace", "SCHEMA_VERSION"]
