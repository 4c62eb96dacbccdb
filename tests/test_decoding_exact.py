"""Exact cases on hand-built logits: each line of docs/CREDITDECODING.md checked by arithmetic."""
import numpy as np
import pytest
import torch

from engine.decoding import Block, Credit, LowConfidence, Threshold, generate, make_rule
from engine.decoding.rules import CreditState, fixed_schedule

V, MASK = 6, 5


class Scripted:
    """A model whose logits come from a function of (call index, ids); records what it saw."""

    def __init__(self, fn):
        self.fn, self.calls, self.seen = fn, 0, []

    def __call__(self, ids):
        self.seen.append(ids.clone())
        out = self.fn(self.calls, ids)
        self.calls += 1
        return out


def peaked(batch, length, token, prob_logit=5.0):
    logits = torch.zeros(batch, length, V)
    logits[..., token] = prob_logit
    return logits


def test_credit_decay_skipped_on_first_step_and_boost_only_at_masked():
    rule = Credit(threshold=0.99, alpha=1.0, beta=0.5, gamma=0.5)
    state = rule.start_block(Block(batch=1, block_length=2, vocab=V, n_blocks=1, device=torch.device("cpu"),
                                   generator=None))
    logits = torch.log(torch.tensor([[[0.6, 0.1, 0.1, 0.1, 0.1, 1e-9]] * 2]))  # (1, 2, V), top-1 id 0 with p=0.6
    masked = torch.tensor([[True, False]])
    rule.propose(logits, masked, 0, state)
    credit = state.credit
    assert credit[0, 0, 0].item() == pytest.approx(0.6 ** 0.5)  # no decay on the first step
    assert credit[0, 1].abs().sum().item() == 0.0  # committed position gets no credit
    rule.propose(logits, masked, 1, state)
    assert credit[0, 0, 0].item() == pytest.approx(0.5 * 0.6 ** 0.5 + 0.6 ** 0.5)


def test_credit_fusion_formula():
    state = CreditState(1, 1, 3, torch.device("cpu"))
    state.credit[0, 0] = torch.tensor([1.0, 0.0, 3.0])
    fused = state.fuse(torch.zeros(1, 1, 3), alpha=0.5)
    np.testing.assert_allclose(fused[0, 0].numpy(), 0.5 * np.log1p([1.0, 0.0, 3.0]), rtol=1e-6)


def test_credit_commits_a_token_that_keeps_winning_before_threshold():
    # Raw p(top-1) stays at 0.8 < tau = 0.9; credit accumulates and pushes the fused p over tau within a few steps.
    logits = torch.log(torch.tensor([0.8, 0.05, 0.05, 0.05, 0.05, 1e-9]))
    model = Scripted(lambda k, ids: logits.expand(1, ids.shape[1], V).clone())
    threshold = generate(model, torch.zeros(1, 1, dtype=torch.long), Threshold(0.9), gen_length=4, block_length=4,
                         mask_id=MASK)
    credit = generate(model, torch.zeros(1, 1, dtype=torch.long), Credit(0.9, alpha=1.0, beta=1.0, gamma=1.0),
                      gen_length=4, block_length=4, mask_id=MASK)
    assert threshold.nfe == 4  # fallback: one per step
    assert credit.nfe < threshold.nfe
    arrays = credit.trace.arrays
    forced = (arrays["raw_top1_prob"] < 0.9) & (arrays["fused_top1_prob"] >= 0.9) & arrays["committed"]
    assert forced.any()


def test_fallback_commits_exactly_the_most_confident():
    def fn(k, ids):
        logits = torch.zeros(1, ids.shape[1], V)
        logits[0, :, 1] = torch.arange(ids.shape[1], dtype=torch.float32) * 0.1  # later positions more confident
        return logits
    result = generate(Scripted(fn), torch.zeros(1, 2, dtype=torch.long), Threshold(0.99), gen_length=4,
                      block_length=4, mask_id=MASK)
    assert result.nfe == 4
    assert result.commit_step[0].tolist() == [3, 2, 1, 0]  # most confident (rightmost) first


def test_mask_id_is_never_committed():
    def fn(k, ids):
        logits = peaked(1, ids.shape[1], MASK, 50.0)
        logits[..., 2] = 1.0
        return logits
    for rule in (LowConfidence(4), Threshold(0.9), Credit()):
        result = generate(Scripted(fn), torch.zeros(1, 1, dtype=torch.long), rule, gen_length=4, block_length=4,
                          mask_id=MASK)
        assert (result.tokens == 2).all()


def test_shift_alignment():
    # Logits at sequence index i predict token (i % 4); with shift, position i takes logits[i - 1].
    def fn(k, ids):
        logits = torch.zeros(1, ids.shape[1], V)
        logits[0, torch.arange(ids.shape[1]), torch.arange(ids.shape[1]) % 4] = 10.0
        return logits
    prompt = torch.zeros(1, 3, dtype=torch.long)
    plain = generate(Scripted(fn), prompt, Threshold(), gen_length=4, block_length=4, mask_id=MASK)
    shifted = generate(Scripted(fn), prompt, Threshold(), gen_length=4, block_length=4, mask_id=MASK, shift=True)
    assert plain.tokens[0].tolist() == [3, 0, 1, 2]  # indices 3..6
    assert shifted.tokens[0].tolist() == [2, 3, 0, 1]  # indices 2..5


def test_llada_schedule():
    assert fixed_schedule(8, 3) == [3, 3, 2]
    assert fixed_schedule(32, 32) == [1] * 32
    assert fixed_schedule(10, 4) == [3, 3, 2, 2]
    model = Scripted(lambda k, ids: torch.randn(1, ids.shape[1], V, generator=torch.Generator().manual_seed(k)))
    result = generate(model, torch.zeros(1, 2, dtype=torch.long), LowConfidence(steps=6), gen_length=16,
                      block_length=8, mask_id=MASK)
    per_step = result.trace.arrays["committed"].sum(axis=(1, 2)).tolist()
    assert per_step == [3, 3, 2, 3, 3, 2] and result.nfe == 6


def test_early_stop_fills_eos_and_stops():
    eos = 4
    model = Scripted(lambda k, ids: peaked(1, ids.shape[1], eos))
    result = generate(model, torch.zeros(1, 2, dtype=torch.long), Threshold(0.5), gen_length=32, block_length=8,
                      mask_id=MASK, eos_id=eos)
    assert result.nfe == 1  # the whole first block passes tau at once, holds EOS, the rest is filled
    assert (result.tokens == eos).all()
    assert (result.commit_step[0, 8:] == -1).all() and (result.commit_step[0, :8] == 0).all()
    no_stop = generate(model, torch.zeros(1, 2, dtype=torch.long), Threshold(0.5), gen_length=32, block_length=8,
                       mask_id=MASK)
    assert no_stop.nfe == 4  # without eos_id every block is decoded


def test_future_blocks_stay_masked_while_decoding_a_block():
    model = Scripted(lambda k, ids: peaked(1, ids.shape[1], 1))
    generate(model, torch.zeros(1, 2, dtype=torch.long), Threshold(0.5), gen_length=8, block_length=4, mask_id=MASK)
    first_call = model.seen[0][0, 2:]
    assert (first_call == MASK).all()
    assert (model.seen[1][0, 2:6] == 1).all() and (model.seen[1][0, 6:] == MASK).all()


def test_gumbel_noise_is_seeded():
    model = Scripted(lambda k, ids: torch.randn(1, ids.shape[1], V, generator=torch.Generator().manual_seed(0)))
    runs = [generate(model, torch.zeros(1, 2, dtype=torch.long), LowConfidence(8, temperature=1.0), gen_length=8,
                     block_length=8, mask_id=MASK, seed=s).tokens for s in (1, 1, 2, 3, 4)]
    assert torch.equal(runs[0], runs[1])
    assert any(not torch.equal(runs[0], r) for r in runs[2:])


@pytest.mark.parametrize("kwargs, message", [
    ({"gen_length": 30, "block_length": 8}, "multiple of block_length"),
    ({"gen_length": 0, "block_length": 8}, "gen_length=0"),
])
def test_bad_lengths(kwargs, message, toy_model):
    with pytest.raises(ValueError, match=message):
        generate(toy_model, torch.zeros(1, 2, dtype=torch.long), Threshold(), mask_id=MASK, **kwargs)


@pytest.mark.parametrize("make, message", [
    (lambda: Threshold(0.0), "threshold=0.0"), (lambda: Threshold(1.5), "threshold=1.5"),
    (lambda: Credit(alpha=-1), "alpha=-1"), (lambda: Credit(beta=1.2), "beta=1.2"),
    (lambda: Credit(gamma=-0.1), "gamma=-0.1"), (lambda: LowConfidence(0), "steps=0"),
    (lambda: make_rule("credit", "fast"), "preset='fast'"), (lambda: Credit(alpha=float("nan")), "alpha=nan"),
    (lambda: Threshold(float("nan")), "threshold=nan"),
])
def test_bad_knobs_name_the_argument(make, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        make()


def test_steps_must_divide_blocks(toy_model):
    with pytest.raises(ValueError, match="steps=6 must be a multiple"):
        generate(toy_model, torch.zeros(1, 2, dtype=torch.long), LowConfidence(6), gen_length=16, block_length=4,
                 mask_id=39)
    with pytest.raises(ValueError, match="empty prompt"):
        generate(toy_model, torch.zeros(1, 0, dtype=torch.long), Threshold(), gen_length=16, block_length=4,
                 mask_id=39)
