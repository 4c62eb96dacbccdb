"""The factored route (scores from the hidden states, L = H W^T never formed) equals the logits route: on real SmolLM2
hidden states to 1e-6, in the picks of short real runs, and when the head trains (the W^T W cache follows it)."""
import copy

import pytest
import torch

from engine.uds import FFTSketch, SelectionConfig, TrainConfig, nuclear_norm, run_selection
from engine.uds.batching import collate, encode, response_loss
from engine.uds.factored import FactoredHead, factored_head
from engine.uds.run import prepare_trainable


def _relative(got: torch.Tensor, expected: torch.Tensor) -> torch.Tensor:
    """Per sample (rows of (B, D) or entries of (B,)): |got - expected| / |expected|."""
    got, expected = got.double(), expected.double()
    if got.dim() == 1:
        return (got - expected).abs() / expected.abs()
    return (got - expected).norm(dim=1) / expected.norm(dim=1)


@pytest.fixture(scope="module")
def real_batch(smollm2_causal, bundled_uds_dataset):
    """Chat, maths and HumanEval samples (41 to 209 tokens) padded together: long and short rows, padding rows."""
    _, tokenizer = smollm2_causal
    by_source = {}
    for sample in bundled_uds_dataset.train:
        by_source.setdefault(sample.source, []).append(sample)
    chosen = [s for source in ("chatterbot", "mathematics", "humaneval") for s in by_source[source][:2]]
    return collate([encode(tokenizer, s, 256) for s in chosen], tokenizer.pad_token_id)


@pytest.mark.parametrize("mode", ["default", "as_released"])
def test_factored_scores_equal_the_logits_route_on_real_hidden_states(smollm2_causal, real_batch, mode):
    model, tokenizer = smollm2_causal
    sketch = FFTSketch(len(tokenizer), seed=21)
    factored = factored_head(model, sketch, "factored")
    rows = real_batch.attention if mode == "default" else torch.ones_like(real_batch.attention)  # (B, N)
    with torch.no_grad():
        hidden = factored.hidden(real_batch)  # (B, N, d)
        logits = model(input_ids=real_batch.ids, attention_mask=real_batch.attention.long()).logits  # (B, N, V)
    assert torch.equal(logits, factored.head(hidden))  # the model's logits are the head's output, untouched
    exact = hidden.double() @ factored.head.weight.double().T  # (B, N, V): L = H W^T without float32 rounding
    s_intra = torch.stack([s.sum() for s in factored.singular_values(hidden, rows)])
    assert _relative(s_intra, nuclear_norm(logits, rows)).max() <= 1e-6
    assert _relative(s_intra, nuclear_norm(exact, rows)).max() <= 1e-9
    z = factored.sketch_embeddings(hidden, rows)
    assert _relative(z, sketch(logits, rows)).max() <= 1e-6  # the float32 FFT of the logits route: ~6e-7
    assert _relative(z, sketch(exact, rows)).max() <= 1e-6  # float64 logits: only the final float32 rounding
    with torch.no_grad():
        loss_sum, count = factored.response_loss(hidden, real_batch.labels)
        expected_sum, expected_count = response_loss(logits, real_batch.labels)
        strip_logits = factored.logits(hidden, rows)
    # The loss is a difference of ~40-sized float32 terms and the head's GEMM runs on fewer rows (other blocking):
    # both routes carry ~1e-5 of float32 round-off here, as the logits route does across batch compositions.
    assert torch.equal(count, expected_count) and _relative(loss_sum, expected_sum).max() <= 1e-4
    torch.testing.assert_close(strip_logits[rows], logits[rows], rtol=1e-6, atol=1e-5)
    assert not strip_logits[~rows].any()


@pytest.mark.parametrize("mode", ["default", "as_released"])
def test_uds_picks_of_a_real_run_identical_either_route(smollm2_causal, bundled_uds_dataset, mode):
    model, tokenizer = smollm2_causal
    train = TrainConfig(steps=3, cutoff=96, eval_items=0, strip_max_steps=1)  # strips (full logits) on step 0 only
    logs = {route: run_selection(model, tokenizer, bundled_uds_dataset,
                                 SelectionConfig(batch=4, keep=1, mode=mode, scoring_route=route), train,
                                 model_name="smollm2")
            for route in ("auto", "logits")}
    assert logs["auto"].config["scoring_route_used"] == "factored"
    assert logs["logits"].config["scoring_route_used"] == "logits"
    assert logs["auto"].selected_ids() == logs["logits"].selected_ids()
    frames = {route: log.candidates_frame() for route, log in logs.items()}
    for column, tolerance in (("s_intra", 1e-6), ("total", 1e-6), ("fro_norm", 1e-6), ("effective_rank", 1e-6),
                              ("loss", 1e-4)):
        assert _relative(torch.tensor(frames["auto"][column].values),
                         torch.tensor(frames["logits"][column].values)).max() <= tolerance, column
    assert logs["auto"].strip(0, 0).entropy.shape == logs["logits"].strip(0, 0).entropy.shape


def test_cache_follows_a_head_that_changes():
    g = torch.Generator().manual_seed(0)
    head = torch.nn.Linear(16, 300, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.randn(300, 16, generator=g))
    sketch = FFTSketch(300, time_length=32, d1=8, d2=2)
    factored = FactoredHead(torch.nn.Identity(), head, sketch)
    hidden = torch.randn(2, 10, 16, generator=g)  # (B, N, d)
    rows = torch.ones(2, 10, dtype=torch.bool)
    for scale in (1.0, 3.0):  # an in-place update, as an optimizer step does it
        with torch.no_grad():
            head.weight.mul_(scale)
            logits = hidden.double() @ head.weight.double().T  # (B, N, V) in float64: no float32 rounding
        s_intra = torch.stack([s.sum() for s in factored.singular_values(hidden, rows)])
        assert _relative(s_intra, nuclear_norm(logits)).max() <= 1e-9
        assert _relative(factored.sketch_embeddings(hidden, rows), sketch(logits)).max() <= 1e-6


def test_full_fine_tuning_factored_equals_logits(tiny_causal_lm, bundled_uds_dataset):
    model, tokenizer = tiny_causal_lm
    train = TrainConfig(steps=4, cutoff=64, eval_items=0, lora=False, lr=1e-2)  # the head changes every step
    logs = {route: run_selection(model, tokenizer, bundled_uds_dataset,
                                 SelectionConfig(batch=6, keep=2, scoring_route=route), train)
            for route in ("factored", "logits")}
    assert logs["factored"].selected_ids() == logs["logits"].selected_ids()
    frames = {route: log.candidates_frame() for route, log in logs.items()}
    assert _relative(torch.tensor(frames["factored"]["s_intra"].values),
                     torch.tensor(frames["logits"]["s_intra"].values)).max() <= 1e-6


def test_route_choice_and_refusals(tiny_causal_lm):
    model, tokenizer = tiny_causal_lm
    sketch = FFTSketch(len(tokenizer), time_length=64, d1=8, d2=2)
    lora = prepare_trainable(model, TrainConfig())
    full = prepare_trainable(model, TrainConfig(lora=False))
    assert isinstance(factored_head(lora, sketch, "auto"), FactoredHead)
    assert factored_head(full, sketch, "auto") is None  # a training head would need W^T W every step
    assert isinstance(factored_head(full, sketch, "factored"), FactoredHead)
    assert factored_head(lora, sketch, "logits") is None
    biased = copy.deepcopy(model)
    biased.lm_head = torch.nn.Linear(model.lm_head.in_features, model.lm_head.out_features, bias=True)
    assert factored_head(biased, sketch, "auto") is None
    with pytest.raises(ValueError, match="has a bias"):
        factored_head(biased, sketch, "factored")
    with pytest.raises(ValueError, match="scoring_route='fast'.*allowed"):
        SelectionConfig(scoring_route="fast")
