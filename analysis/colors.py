"""Colours and labels shared by every view, so one meaning has one colour across the app.

Palettes are colour-blind-safe (Okabe-Ito for categorical meanings, Viridis / Cividis for continuous scales).
"""
from __future__ import annotations

from typing import Sequence

from plotly.colors import qualitative

from engine.decoding.registry import KNOBS, RULES

# Okabe-Ito, minus black: distinguishable under the common colour-vision deficiencies.
CATEGORICAL = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#999999")
SEQUENTIAL = "Viridis"  # ordered quantities: scores, losses, norms
AGE_SCALE = "Cividis"  # time axes (insertion step): distinct from score colours on purpose
GREYED = "#C8C8C8"  # rows that do not count: padding, prompt
NEUTRAL = "#7F7F7F"  # reference lines and "other"

SELECTED = "#0072B2"  # a candidate kept for the gradient step
REJECTED = "#E69F00"  # a candidate scored and dropped
EVICTED = "#D55E00"  # a buffer entry pushed out by FIFO

# Keys are engine.uds.selectors.SELECTORS names; the scoring mode ("default" / "as released") is labelled apart.
SELECTOR_LABELS = {
    "uds": "UDS",
    "random": "Random",
    "maxloss": "MaxLoss",
    "utility": "Utility only (α = 0)",
    "diversity": "Diversity only",
    "full": "Full (no selection)",
}

# Paper symbols for the run-log fields a user sees on axes, legends and table headers.
FIELD_LABELS = {
    "s_intra": "s_intra = ‖L‖_* (utility)",
    "s_inter": "s_inter (mean distance to buffer)",
    "alpha_s_inter": "α · s_inter",
    "total": "s = s_intra + α · s_inter",
    "selector_score": "selector score",
    "margin_to_kth": "margin to K-th",
    "loss": "loss (response tokens)",
    "fro_norm": "‖L‖_F",
    "flatness": "‖L‖_* / ‖L‖_F",
    "effective_rank": "effective rank",
    "sigma1_share": "σ₁ / Σσ",
    "length": "length (tokens)",
    "insert_step": "inserted at step",
    "logit_norm": "logit row norm",
    "token_loss": "token loss",
    "entropy": "entropy (nats)",
}


def selector_label(name: str) -> str:
    """Display name of a selector id; unknown ids are shown as given."""
    return SELECTOR_LABELS.get(name, name)


def field_label(name: str) -> str:
    """Display name of a run-log field; unknown fields are shown as given."""
    return FIELD_LABELS.get(name, name)


def category_colors(categories: Sequence[str]) -> dict[str, str]:
    """A stable colour per category: sorted names take the palette in order. Up to 8 categories get the
    colour-blind-safe palette; more get Plotly's Dark24 (cycling past 24) so that no two share a colour."""
    names = sorted(set(categories))
    palette = CATEGORICAL if len(names) <= len(CATEGORICAL) else qualitative.Dark24
    return {c: palette[i % len(palette)] for i, c in enumerate(names)}

# --- Decoding Explorer (Tab 1) ---
CONFIDENCE_SCALE = "Viridis"  # probabilities 0..1: raw / fused confidence of a token
CREDIT_SCALE = "Magma"  # credit of the top-1 (0..max): distinct from confidence on purpose
ENTROPY_SCALE = "Cividis"  # entropy of the raw distribution (nats)
ORDER_SCALE = AGE_SCALE  # decode order: the step at which a token was committed
MASKED = "#E0E0E0"  # a position still masked
COMMITTED = "#000000"  # outline of a cell committed at that step (committed cells are mostly light: confident)
CREDIT_FORCED = "#D55E00"  # a commit that happened because of credit (raw p < tau <= fused p)
STABLE = "#0072B2"  # "stable since": the step from which the top-1 stopped changing
COMMIT = "#E69F00"  # "committed at"
REFRESH = "#009E73"  # a step whose forward recomputed every key of a cached decode (a cache refresh)

HEATMAP_METRICS = {
    "raw": "raw confidence p (top-1)",
    "fused": "fused confidence ŝ (top-1 after credit)",
    "credit": "credit C of the fused top-1",
    "entropy": "entropy of p (nats)",
}


def rule_label(rule_id: str) -> str:
    """Display name of a decoding rule (from the registry); unknown ids are shown as given."""
    entry = RULES.get(rule_id)
    return entry.label if entry else rule_id


def knob_label(knob: str) -> str:
    """Display name of a rule knob with its paper symbol (from the registry)."""
    return KNOBS[knob][1] if knob in KNOBS else knob
