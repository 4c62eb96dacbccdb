"""The one registry of decoding rules: each rule registered once with its class, label, paper symbols, presets and
capabilities. The pipeline, the CLI, the benchmark, the app's pickers and the views read it; traces record
a rule's id and capabilities, so no view matches rule names.

A rule spec (CLI, benchmark, API) names a rule by id or label, optionally with a preset and knobs:
`credit`, `credit:dinfer`, `credit:alpha=0.5,beta=0.9`, `low_confidence:steps=32`, `fixed steps (LLaDA)`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from engine.decoding.contracts import Rule
from engine.decoding.rules import CREDIT_PRESETS, Credit, CreditLowConfidence, LowConfidence, Threshold

# What a rule can do; views and controls ask for a capability, never for a rule's name.
CAPABILITIES = {
    "threshold": "commits every position whose confidence reaches tau",
    "step_budget": "commits a fixed number of positions per step (a steps budget)",
    "credit": "fuses trace credit into the logits (alpha, beta, gamma)",
    "sampling": "Gumbel noise with a temperature",
}
# Knob -> (paper symbol, display label), shared by every rule that has the knob.
KNOBS = {
    "threshold": ("τ", "threshold τ"),
    "alpha": ("α", "fusion strength α"),
    "beta": ("β", "credit decay β"),
    "gamma": ("γ", "boost exponent γ"),
    "steps": ("T", "steps (fixed-steps rules)"),
    "temperature": ("T_g", "Gumbel temperature"),
    "parameter_free": ("", "parameter-free α_k = β_k"),
}


@dataclass(frozen=True)
class RuleEntry:
    id: str  # stable id: traces, CLI, API, JSON
    cls: type  # the rule's frozen config class
    label: str  # display name (also accepted on input)
    paper: str  # where the rule comes from
    capabilities: frozenset[str]  # keys of CAPABILITIES
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)  # preset name -> knob values
    default_preset: str | None = None  # applied when a spec names no preset and no credit knob

    def knobs(self) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(self.cls))

    def has(self, capability: str) -> bool:
        return capability in self.capabilities


RULES: dict[str, RuleEntry] = {}


def register(entry: RuleEntry) -> RuleEntry:
    unknown = entry.capabilities - CAPABILITIES.keys()
    if unknown or entry.id in RULES:
        raise ValueError(f"rule {entry.id!r}: duplicate id or unknown capabilities {sorted(unknown)}")
    RULES[entry.id] = entry
    return entry


register(RuleEntry("low_confidence", LowConfidence, "fixed steps (LLaDA)", "LLaDA (arXiv 2502.09992)",
                   frozenset({"step_budget", "sampling"})))
register(RuleEntry("threshold", Threshold, "threshold τ (Fast-dLLM)", "Fast-dLLM (arXiv 2505.22618)",
                   frozenset({"threshold"})))
register(RuleEntry("credit", Credit, "credit (CreditDecoding)", "CreditDecoding (arXiv 2510.06133)",
                   frozenset({"threshold", "credit"}),
                   presets={**CREDIT_PRESETS, "parameter_free": {"gamma": 1.0, "parameter_free": True}},
                   default_preset="paper"))
register(RuleEntry("credit_low_confidence", CreditLowConfidence, "credit in fixed steps",
                   "CreditDecoding, Table 3 (arXiv 2510.06133)", frozenset({"step_budget", "credit"}),
                   presets=dict(CREDIT_PRESETS), default_preset="paper"))


BASELINE = "low_confidence"  # the rule others are compared against (speed-ups, NFE ratios): LLaDA's fixed steps


def is_baseline(spec: str) -> bool:
    """Whether a rule spec (id or label, with or without knobs) names the baseline rule."""
    return rule_entry(spec.partition(":")[0].strip()).id == BASELINE


def rule_entry(name: str) -> RuleEntry:
    """The entry of a rule id or label; ValueError listing both when unknown."""
    if name in RULES:
        return RULES[name]
    for entry in RULES.values():
        if name == entry.label:
            return entry
    allowed = ", ".join(f"{e.id} ({e.label})" for e in RULES.values())
    raise ValueError(f"rule {name!r} is unknown; allowed: {allowed}")


def entry_of(rule: Rule) -> RuleEntry:
    for entry in RULES.values():
        if type(rule) is entry.cls:
            return entry
    raise ValueError(f"{type(rule).__name__} is not a registered rule")


def make_rule(name: str, preset: str | None = None, **knobs: Any) -> Rule:
    """Build a rule from its id or label, an optional preset and knob values (knobs a rule lacks are ignored, so one
    set of UI knobs serves every rule). A preset's values win over the knobs; "custom" or None applies none."""
    entry = rule_entry(name)
    if preset not in (None, "custom") and preset not in entry.presets:
        allowed = ", ".join([*entry.presets, "custom"]) if entry.presets else "none (this rule has no presets)"
        raise ValueError(f"preset={preset!r} is not defined for rule {entry.id}; allowed: {allowed}")
    values = {k: v for k, v in knobs.items() if k in entry.knobs()}
    values.update(entry.presets.get(preset or "", {}))
    try:
        return entry.cls(**values)
    except TypeError as err:  # a required knob is missing
        raise ValueError(f"rule {entry.id}: {err}") from None


def parse_rule_spec(spec: str, **defaults: Any) -> Rule:
    """`id_or_label[:preset | :knob=value,...]` -> a rule; `defaults` fill the knobs the spec leaves out."""
    name, _, rest = spec.partition(":")
    entry = rule_entry(name.strip())
    preset, knobs, explicit = None, dict(defaults), set()
    for part in filter(None, (p.strip() for p in rest.split(","))):
        if "=" not in part:
            preset = part
            continue
        key, _, value = part.partition("=")
        explicit.add(key)
        if key not in entry.knobs():
            raise ValueError(f"rule spec {spec!r}: knob {key!r} is unknown for {entry.id}; allowed: "
                             f"{', '.join(entry.knobs())}")
        try:
            knobs[key] = int(value) if key == "steps" else float(value)
        except ValueError:
            raise ValueError(f"rule spec {spec!r}: {key}={value!r} is not a number") from None
    if preset is None and not explicit & {"alpha", "beta", "gamma"} and entry.default_preset:
        preset = entry.default_preset
    return make_rule(entry.id, preset, **knobs)


def describe(rule: Rule) -> dict[str, Any]:
    """What a trace records about its rule: id, label and capabilities."""
    entry = entry_of(rule)
    return {"rule": entry.id, "label": entry.label, "capabilities": sorted(entry.capabilities)}
