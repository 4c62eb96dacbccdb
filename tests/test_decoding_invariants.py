"""Invariants every rule must keep, on a seeded toy model and on the tiny bidirectional Llama."""
import numpy as np
import pytest
import torch

from engine.decoding import (CreditLowConfidence, LowConfidence, StepEvent, StepObserver, Threshold, generate,
                             make_rule)

MASK, EOS = 39, 7
RULES = {
    "low_confidence": lambda: LowConfidence(steps=32),
    "low_confidence_t": lambda: LowConfidence(steps=16, temperature=0.7),
    "threshold": lambda: Threshold(0.5),
    "credit_paper": lambda: make_rule("credit", "paper", threshold=0.5),
    "credit_dinfer": lambda: make_rule("credit", "dinfer", threshold=0.5),
    "credit_free": lambda: make_rule("credit", "parameter_free", threshold=0.5),
    "credit_fixed": lambda: CreditLowConfidence(steps=16),
}


class Collect(StepObserver):
    def __init__(self):
        self.events: list[StepEvent] = []

    def step(self, event):
        self.events.append(event)


def prompt(batch=2, length=6, seed=1):
    return torch.randint(0, MASK - 1, (batch, length), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", RULES)
def test_all_masks_filled_and_nfe_bounds(name, toy_model):
    ids = prompt()
    before = ids.clone()
    result = generate(toy_model, ids, RULES[name](), gen_length=32, block_length=8, mask_id=MASK)
    assert torch.equal(ids, before), "the prompt tensor must not be mutated"
    assert not (result.tokens == MASK).any()
    assert 4 <= result.nfe <= 32  # at least one step per block, at most one per token
    assert result.nfe == toy_model.calls
    assert (result.commit_step >= 0).all() and (result.commit_step < result.nfe).all()
    if name.startswith(("low_confidence", "credit_fixed")):
        assert result.nfe == RULES[name]().steps


@pytest.mark.parametrize("name", RULES)
def test_committed_tokens_never_change(name, toy_model):
    collect = Collect()
    generate(toy_model, prompt(), RULES[name](), gen_length=32, block_length=8, mask_id=MASK, observers=[collect])
    seen = {}
    for event in collect.events:
        for (row, pos), token in np.ndenumerate(event.tokens):
            if token != MASK:
                assert seen.setdefault((row, pos), token) == token
        assert event.committed.sum(axis=1)[event.masked_before.any(axis=1)].min() >= 1  # >= 1 commit per row
        assert not (event.committed & ~event.masked_before).any()


@pytest.mark.parametrize("name", RULES)
def test_recorder_on_off_identical_and_deterministic(name, toy_model):
    on = generate(toy_model, prompt(), RULES[name](), gen_length=32, block_length=8, mask_id=MASK, seed=3)
    off = generate(toy_model, prompt(), RULES[name](), gen_length=32, block_length=8, mask_id=MASK, seed=3,
                   record_trace=False)
    assert off.trace is None
    assert torch.equal(on.tokens, off.tokens) and on.nfe == off.nfe
    np.testing.assert_array_equal(on.commit_step, off.commit_step)
    np.testing.assert_array_equal(on.trace.commit_step, on.commit_step)


@pytest.mark.parametrize("name", RULES)
def test_early_stop_rows_finish_independently(name, toy_model):
    # Row 0 is pushed to say EOS from its 11th answer token on; rows stop on their own and a stopped row commits
    # nothing afterwards while the others go on.
    def eos_in_row0(ids):
        logits = toy_model(ids)
        logits[0, 6 + 10:, EOS] += 50.0
        return logits
    collect = Collect()
    result = generate(eos_in_row0, prompt(batch=3), RULES[name](), gen_length=32, block_length=8, mask_id=MASK,
                      eos_id=EOS, observers=[collect])
    tokens = result.tokens.numpy()
    for row in range(3):
        eos_at = np.flatnonzero(tokens[row] == EOS)
        if eos_at.size:
            block_end = (eos_at[0] // 8 + 1) * 8
            assert (tokens[row, block_end:] == EOS).all()
            assert (result.commit_step[row, block_end:] == -1).all()  # filled, not committed
        for event in collect.events:
            if not event.active[row]:
                assert not event.committed[row].any()
    assert (tokens[0, 16:] == EOS).all() and (result.commit_step[0, 16:] == -1).all()
    assert (tokens[1:] != EOS).any(axis=1).all() and (result.commit_step[1:] >= 0).all()


def test_tiny_llama_decodes_with_every_rule(tiny_model):
    ids = tiny_model.encode_prompt("What is 2 + 3?")
    for make in RULES.values():
        result = generate(tiny_model, ids, make(), gen_length=32, block_length=16, mask_id=tiny_model.spec.mask_id,
                          eos_id=tiny_model.spec.eos_id, shift=True)
        assert not (result.tokens == tiny_model.spec.mask_id).any()
