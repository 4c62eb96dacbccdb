"""The fast model callable (block-only logits, padded batches, CUDA-graph wrapper) gives the plain path's tokens."""
import numpy as np
import pytest
import torch

from engine.decoding import (Credit, CreditLowConfidence, LowConfidence, StepEvent, StepObserver, Threshold, generate,
                             make_rule)
from engine.decoding.feed import StepFeed, cpu
from engine.models.cuda_graph import StaticForward

RULES = [lambda: LowConfidence(steps=32), lambda: Threshold(0.9), lambda: Credit(),
         lambda: make_rule("credit", "parameter_free"), lambda: CreditLowConfidence(steps=16)]


def _decode(model_fn, spec, ids, rule, **kw):
    return generate(model_fn, ids, rule, gen_length=32, block_length=16, mask_id=spec.mask_id, eos_id=spec.eos_id,
                    shift=spec.shift, **kw)


def test_block_logits_equal_the_full_forward_rows(tiny_model):
    ids = torch.randint(4, 200, (2, 40), generator=torch.Generator().manual_seed(1))
    fast = StaticForward(tiny_model)
    assert torch.equal(fast(ids), tiny_model(ids))
    assert torch.allclose(fast.block_logits(ids, 7, 23), tiny_model(ids)[:, 7:23], atol=1e-5)
    with pytest.raises(ValueError, match=r"block rows \[30, 50\)"):
        fast.block_logits(ids, 30, 50)


@pytest.mark.parametrize("make_rule", RULES)
def test_fast_path_gives_identical_tokens_and_trace(tiny_model, make_rule):
    ids = tiny_model.encode_prompt("What is 3 + 4?")
    plain = _decode(tiny_model, tiny_model.spec, ids, make_rule())
    fast = _decode(StaticForward(tiny_model), tiny_model.spec, ids, make_rule())
    assert torch.equal(plain.tokens, fast.tokens) and plain.nfe == fast.nfe
    assert np.array_equal(plain.commit_step, fast.commit_step)
    for name in ("raw_top1_id", "fused_top1_id", "committed", "topk_ids"):
        assert np.array_equal(plain.trace.arrays[name], fast.trace.arrays[name])


def test_left_padded_batch_decodes_each_row_as_alone(tiny_model):
    prompts = [tiny_model.encode_prompt(text)[0] for text in ("hi", "a much longer prompt than the first")]
    width = max(len(p) for p in prompts)
    ids = torch.full((2, width), tiny_model.tokenizer.pad_token_id)
    key_mask = torch.zeros((2, width), dtype=torch.bool)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):], key_mask[i, width - len(p):] = p, True
    batch = _decode(StaticForward(tiny_model, key_mask=key_mask), tiny_model.spec, ids, Threshold(0.9))
    for i, p in enumerate(prompts):
        alone = _decode(tiny_model, tiny_model.spec, p[None], Threshold(0.9))
        assert torch.equal(alone.tokens[0], batch.tokens[i])


def test_graphs_refused_on_cpu_and_cpu_path_unchanged(tiny_model):
    from engine.models.cuda_graph import GraphCache, fast_model_fn

    with pytest.raises(ValueError, match="CUDA graphs need a CUDA model"):
        StaticForward(tiny_model, graphs=GraphCache.__new__(GraphCache))
    assert fast_model_fn(tiny_model) is tiny_model


def test_a_graph_key_holds_the_values_a_capture_bakes_in():
    """Two block-causal cached forwards of one shape (say the steps of two blocks) must not share a graph: their
    bounds are part of the key; equal shapes and bounds are one graph whatever the tensors hold."""
    from engine.models.cuda_graph import GraphCache

    inputs = {"ids": torch.zeros(1, 32, dtype=torch.long), "index": torch.arange(32), "mask": None}
    assert GraphCache.key(inputs, (32, 64, 64)) != GraphCache.key(inputs, (64, 96, 96))
    same = {"mask": None, "index": torch.arange(32, 64), "ids": torch.ones(1, 32, dtype=torch.long)}
    assert GraphCache.key(same, (32, 64, 64)) == GraphCache.key(inputs, (32, 64, 64))
    assert GraphCache.key(inputs) != GraphCache.key({**inputs, "ids": torch.zeros(1, 33, dtype=torch.long)})


def test_cpu_copies_without_aliasing():
    state = torch.arange(6).reshape(2, 3)
    copy = cpu(state, np.int64)
    state += 100
    assert copy.tolist() == [[0, 1, 2], [3, 4, 5]]
    assert np.array_equal(cpu(state), state.numpy())


class Collect(StepObserver):
    """Keeps every StepEvent a feed delivers."""

    def __init__(self):
        self.events: list[StepEvent] = []

    def step(self, event):
        self.events.append(event)


def test_deferred_feed_delivers_every_step_late_in_order_as_snapshots():
    collect = Collect()
    feed = StepFeed([collect], torch.device("cpu"), deferred=True)
    tokens = torch.zeros(1, 4, dtype=torch.long)  # the loop's canvas, changed in place every step
    fields = {name: (torch.zeros(1, 2), np.float32) for name in
              ("raw_top1_prob", "fused_top1_prob", "credit_top1", "entropy")}
    fields |= {name: (torch.zeros(1, 2, dtype=torch.long), np.int64) for name in ("raw_top1_id", "fused_top1_id")}
    fields |= {"topk_ids": (torch.zeros(1, 2, 3, dtype=torch.long), np.int64), "topk_probs": (torch.ones(1, 2, 3),
               np.float32), "active": (torch.ones(1, dtype=torch.bool), bool),
               "masked_before": (torch.ones(1, 2, dtype=torch.bool), bool),
               "committed": (torch.zeros(1, 2, dtype=torch.bool), bool)}
    for step in range(3):
        tokens[0, step] = 10 + step
        feed.push({"step": step, "block": 0, "step_in_block": step, "recomputed": step == 0},
                  {**fields, "tokens": (tokens, np.int64)}, started=float(step))
        assert len(collect.events) == step  # one step late
        feed.flush(now=step + 1.5)
    tokens[0, 3] = 99
    assert [e.step for e in collect.events] == [0, 1, 2]
    assert [e.tokens[0].tolist() for e in collect.events] == [[10, 0, 0, 0], [10, 11, 0, 0], [10, 11, 12, 0]]
    assert [e.recomputed for e in collect.events] == [True, False, False]
    assert collect.events[0].topk_ids.shape == (1, 2, 3) and collect.events[0].topk_probs.dtype == np.float32
    assert collect.events[1].seconds == 1.5 and collect.events[0].committed.dtype == bool


def test_feed_derives_fields_from_a_source_deferred_or_not():
    def derive(logits):  # as the loop's vocabulary numbers: new tensors of two dtypes
        top_p, top_ids = logits.softmax(-1).topk(3, dim=-1)
        return {"topk_ids": (top_ids, np.int64), "topk_probs": (top_p, np.float32),
                "entropy": (logits.sum(-1), np.float32)}

    fields = {"raw_top1_prob": (torch.zeros(1, 2), np.float32), "raw_top1_id": (torch.ones(1, 2, dtype=torch.long),
              np.int64), "fused_top1_id": (torch.zeros(1, 2, dtype=torch.long), np.int64),
              "fused_top1_prob": (torch.zeros(1, 2), np.float32), "credit_top1": (torch.zeros(1, 2), np.float32),
              "active": (torch.ones(1, dtype=torch.bool), bool), "masked_before": (torch.ones(1, 2, dtype=torch.bool),
              bool), "committed": (torch.zeros(1, 2, dtype=torch.bool), bool),
              "tokens": (torch.zeros(1, 4, dtype=torch.long), np.int64)}
    collected = []
    for deferred in (False, True):
        collect = Collect()
        feed = StepFeed([collect], torch.device("cpu"), deferred=deferred)
        for step in range(3):
            logits = torch.randn(1, 2, 7, generator=torch.Generator().manual_seed(step))
            feed.push({"step": step, "block": 0, "step_in_block": step, "recomputed": step == 0}, fields,
                      started=0.0, derive=derive, source=logits)
            feed.flush(now=1.0)
        collected.append(collect.events)
    for now, late in zip(*collected):
        expected = derive(torch.randn(1, 2, 7, generator=torch.Generator().manual_seed(now.step)))
        for name, (tensor, _) in expected.items():
            assert np.array_equal(getattr(now, name), tensor.numpy()) and np.array_equal(getattr(late, name),
                                                                                          tensor.numpy())
        assert np.array_equal(late.raw_top1_id, [[1, 1]]) and late.tokens.shape == (1, 4)
