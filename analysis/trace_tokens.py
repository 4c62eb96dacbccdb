"""The answer as HTML token spans (a title tooltip on each): the live frame while decoding, the sequence at a scrubbed
step, and the answer coloured by decode order. Spans, not HighlightedText: that has a fixed -1..1 scale and no hover
value (docs/ANCHORS.md)."""
from __future__ import annotations

import html
from functools import lru_cache
from typing import Callable, Sequence

import numpy as np
from plotly.colors import sample_colorscale

from analysis import colors
from analysis.trace_data import (commit_confidence, credit_forced, sequence_at, token_label, view_window,
                                 window_note)
from engine.decoding.trace import Trace

LUT_SIZE = 101
EOS_LABEL = "[EOS]"  # how token_label shows the end-of-answer id
COLLAPSE_MIN = 3  # shorter trailing runs of EOS are shown box by box
# One rule for every token box, sent once per view instead of once per token (1024-token frames stay small).
STYLE = ("<style>.dllm-tokens .t{display:inline-block;margin:1px;padding:1px 3px;border-radius:3px;"
         "font-family:monospace;white-space:pre;font-size:13px}</style>")


@lru_cache(maxsize=8)
def _lut(scale: str) -> tuple[str, ...]:
    """A colour per 1/100 of a continuous scale (sampling the scale per token is too slow for 1024 tokens)."""
    return tuple(sample_colorscale(scale, list(np.linspace(0.0, 1.0, LUT_SIZE)), colortype="rgb"))


def scale_color(scale: str, fraction: float) -> str:
    """The colour of a value in [0, 1] on a named Plotly scale (clipped)."""
    return _lut(scale)[int(round(min(max(fraction, 0.0), 1.0) * (LUT_SIZE - 1)))]


def _text_color(rgb: str) -> str:
    red, green, blue = (int(float(c)) for c in rgb[rgb.index("(") + 1:-1].split(","))
    return "#000" if 0.299 * red + 0.587 * green + 0.114 * blue > 140 else "#fff"


def span(text: str, background: str, title: str, extra: str = "") -> str:
    """One token box with a hover title; text and title are escaped here."""
    foreground = _text_color(background) if background.startswith("rgb") else "#222"
    return (f'<span class="t" style="background:{background};color:{foreground};{extra}" '
            f'title="{html.escape(title, quote=True)}">{html.escape(text)}</span>')


def masked_span(guess: str | None, position: int) -> str:
    """A still-masked position; when known, the model's current guess is shown faint and italic."""
    if guess is None:
        return span("▒▒", colors.MASKED, f"position {position}: masked", "color:#999;")
    return span(guess, colors.MASKED, f"position {position}: masked; current top-1 guess {guess!r}",
                "color:#888;font-style:italic;")


def wrap(spans: Sequence[str], caption: str = "") -> str:
    head = f'<div style="font-size:12px;color:#555;margin-bottom:4px">{html.escape(caption)}</div>' if caption else ""
    return f'{STYLE}<div class="dllm-tokens" style="line-height:1.9">{head}{"".join(spans)}</div>'


def collapse_eos_tail(spans: list[str], labels: Sequence[str], committed: Sequence[bool]) -> list[str]:
    """A trailing run of committed [EOS] (the answer's end padding, often most of a long answer) is shown as its
    first box plus one "[EOS] × n" box."""
    start = len(labels)
    while start > 0 and committed[start - 1] and labels[start - 1] == EOS_LABEL:
        start -= 1
    hidden = len(labels) - start - 1
    if hidden < COLLAPSE_MIN:
        return spans
    return [*spans[:start + 1], span(f"{EOS_LABEL} × {hidden}", colors.GREYED,
                                     f"positions {start + 1}-{len(labels) - 1}: end-of-answer padding ({EOS_LABEL})")]


def live_html(ids: np.ndarray, committed: np.ndarray, confidence: np.ndarray, label: Callable[[int], str],
              caption: str = "") -> str:
    """A frame while decoding: committed tokens coloured by the confidence that committed them (grey where NaN: an
    early-stop fill), masks as boxes. ids, committed, confidence: (G,)."""
    spans = []
    for position, (token, done, conf) in enumerate(zip(ids.tolist(), committed.tolist(), confidence.tolist())):
        if not done:
            spans.append(masked_span(None, position))
        elif np.isnan(conf):  # filled by early stop after an EOS: no step chose it
            spans.append(span(label(token), colors.GREYED, f"position {position}: {label(token)!r}, early-stop fill"))
        else:
            spans.append(span(label(token), scale_color(colors.CONFIDENCE_SCALE, conf),
                              f"position {position}: {label(token)!r}, confidence {conf:.3f}"))
    return wrap(collapse_eos_tail(spans, [label(t) for t in ids.tolist()], committed.tolist()), caption)


def scrub_html(trace: Trace, step: int) -> str:
    """The answer right after `step`: committed tokens by confidence, this step's commits outlined, and the
    current block's masked positions showing the step's top-1 guess. Long answers: the MAX_VIEW_POSITIONS positions
    around the step's block."""
    state = sequence_at(trace, step)
    shown = min(max(int(step), 0), max(trace.n_steps - 1, 0))
    block_start = int(trace.arrays["step_block"][shown]) * trace.meta["block_length"] if trace.n_steps else 0
    lo, hi = window = view_window(len(state.ids), block_start)
    confidence = commit_confidence(trace)
    commit = trace.arrays["commit_step"][0]
    spans = []
    for position in range(lo, hi):
        if not state.committed[position]:
            guess = state.guess[position]
            spans.append(masked_span(token_label(trace, guess) if guess >= 0 else None, position))
            continue
        conf = confidence[position]
        text = token_label(trace, state.ids[position])
        title = (f"position {position}: {text!r}, committed at step {commit[position]}"
                 + (f", confidence {conf:.3f}" if np.isfinite(conf) else ", filled by early stop"))
        outline = f"outline:2px solid {colors.CREDIT_FORCED};" if state.just_committed[position] else ""
        background = scale_color(colors.CONFIDENCE_SCALE, conf) if np.isfinite(conf) else colors.GREYED
        spans.append(span(text, background, title, outline))
    note = window_note(window, len(state.ids), "scrub to another block's steps to see its positions")
    caption = (f"after step {shown} of {trace.n_steps - 1}: {int(state.committed.sum())} of {len(state.ids)} "
               f"committed, {int(state.just_committed.sum())} by this step (outlined); italics = current guess"
               + (f"; {note}" if note else ""))
    labels = [token_label(trace, t) for t in state.ids[lo:hi].tolist()]
    return wrap(collapse_eos_tail(spans, labels, state.committed[lo:hi].tolist()), caption)


def order_html(trace: Trace) -> str:
    """The final answer, each token coloured by the step that committed it (dark = early); credit-forced commits
    underlined. Long answers: the first MAX_VIEW_POSITIONS positions."""
    window = view_window(trace.meta["gen_length"])
    commit = trace.arrays["commit_step"][0]
    stable = trace.arrays["stable_step"][0]
    forced = credit_forced(trace)
    last = max(trace.n_steps - 1, 1)
    tokens = trace.arrays["tokens"][0, :window[1]].tolist()
    spans = []
    for position, token in enumerate(tokens):
        text = token_label(trace, token)
        if commit[position] < 0:
            spans.append(span(text, colors.GREYED, f"position {position}: {text!r}, filled by early stop"))
            continue
        title = (f"position {position}: {text!r}, committed at step {commit[position]}, stable since "
                 f"{stable[position] if stable[position] >= 0 else 'never'}"
                 + ("; committed because of credit" if forced[position] else ""))
        extra = f"border-bottom:3px solid {colors.CREDIT_FORCED};" if forced[position] else ""
        spans.append(span(text, scale_color(colors.ORDER_SCALE, commit[position] / last), title, extra))
    note = window_note(window, trace.meta["gen_length"], "the heatmap pages through all")
    caption = (f"coloured by decode order: dark = committed early (step 0), light = late (step {last}); "
               "underlined = committed because of credit; grey = early-stop fill" + (f"; {note}" if note else ""))
    labels = [token_label(trace, t) for t in tokens]
    return wrap(collapse_eos_tail(spans, labels, [True] * len(labels)), caption)
