"""The pure UDS scorer: Gram-route nuclear norm, spectrum statistics, the FFT sketch, buffer, selectors, config."""
import math

import pytest
import torch

from engine.uds import (BufferEntry, CandidateScores, FFTSketch, FIFOBuffer, SelectionConfig, TrainConfig,
                        make_selector, mean_distance, nuclear_norm, spectrum_stats, top_k)


@pytest.mark.parametrize("shape", [(3, 17, 300), (2, 64, 1000), (1, 5, 7)])
def test_nuclear_norm_matches_svdvals_on_random_logits(shape):
    logits = torch.randn(*shape, generator=torch.Generator().manual_seed(0)) * 5
    expected = torch.linalg.svdvals(logits.double()).sum(-1)
    torch.testing.assert_close(nuclear_norm(logits), expected, rtol=1e-4, atol=0)


def test_nuclear_norm_mask_equals_dropping_rows():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 12, 200, generator=g)
    mask = torch.zeros(2, 12, dtype=torch.bool)
    mask[0, :7] = True
    mask[1, 3:] = True
    got = nuclear_norm(logits, mask)
    for b in range(2):
        expected = torch.linalg.svdvals(logits[b][mask[b]].double()).sum()
        assert math.isclose(float(got[b]), float(expected), rel_tol=1e-4)
    assert nuclear_norm(logits).shape == (2,) and not torch.equal(got, nuclear_norm(logits))


def test_spectrum_stats_on_hand_built_spectra():
    rank_one = spectrum_stats(torch.tensor([3.0, 0.0, 0.0], dtype=torch.float64))
    assert rank_one["flatness"] == pytest.approx(1.0) and rank_one["effective_rank"] == pytest.approx(1.0)
    assert rank_one["sigma1_share"] == pytest.approx(1.0) and rank_one["s_intra"] == pytest.approx(3.0)
    flat = spectrum_stats(torch.full((4,), 2.0, dtype=torch.float64))
    assert flat["flatness"] == pytest.approx(2.0) and flat["effective_rank"] == pytest.approx(4.0)
    assert flat["fro_norm"] == pytest.approx(4.0) and flat["sigma1_share"] == pytest.approx(0.25)


def _sketch_by_full_fft(sketch: FFTSketch, logits: torch.Tensor) -> torch.Tensor:
    """The sketch spelled out: full complex FFTs on the zero-padded (T, V) matrix, as the paper's SRFT."""
    batch, n, vocab = logits.shape
    padded = torch.zeros(batch, sketch.time_length, vocab, dtype=torch.float64)
    padded[:, :n] = logits.double()
    x = torch.fft.fft(padded * sketch.vocab_signs.double(), dim=-1).real[..., sketch.vocab_cols]
    x = x * math.sqrt(vocab / sketch.d1) * sketch.time_signs.double().view(1, -1, 1)
    x = torch.fft.fft(x, dim=1).real[:, sketch.time_rows, :] * math.sqrt(sketch.time_length / sketch.d2)
    return x.reshape(batch, -1)


def test_sketch_equals_full_fft_definition_and_is_seeded():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(3, 20, 301, generator=g)
    sketch = FFTSketch(301, time_length=64, d1=16, d2=4, seed=5)
    z = sketch(logits)
    assert z.shape == (3, 64) and z.dtype == torch.float32
    torch.testing.assert_close(z.double(), _sketch_by_full_fft(sketch, logits), rtol=1e-4, atol=1e-3)
    assert torch.equal(z, FFTSketch(301, 64, 16, 4, seed=5)(logits))
    assert not torch.equal(z, FFTSketch(301, 64, 16, 4, seed=6)(logits))


def test_sketch_mask_is_zeroing_rows_and_scale_is_linear():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 10, 128, generator=g)
    mask = torch.arange(10).expand(2, 10) < torch.tensor([[6], [9]])
    sketch = FFTSketch(128, time_length=32, d1=8, d2=2)
    torch.testing.assert_close(sketch(logits, mask), sketch(logits * mask.unsqueeze(-1)))
    torch.testing.assert_close(sketch(3 * logits), 3 * sketch(logits), rtol=1e-5, atol=1e-3)
    with pytest.raises(ValueError, match="time length"):
        sketch(torch.randn(1, 40, 128))


def test_mean_distance_and_empty_buffer():
    z = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    buffer = torch.tensor([[0.0, 0.0], [6.0, 8.0]])
    torch.testing.assert_close(mean_distance(z, buffer), torch.tensor([5.0, 5.0], dtype=torch.float64))
    assert torch.equal(mean_distance(z, torch.zeros(0, 2)), torch.zeros(2, dtype=torch.float64))


def test_fifo_buffer_evicts_oldest_first():
    buf = FIFOBuffer(capacity=3, dim=2)
    assert buf.push(torch.ones(2, 2), [BufferEntry("a", 0, 0), BufferEntry("b", 0, 1)]) == []
    evicted = buf.push(torch.full((2, 2), 2.0), [BufferEntry("c", 1, 0), BufferEntry("d", 1, 1)])
    assert [e.sample_id for e in evicted] == ["a"] and len(buf) == 3
    assert [e.sample_id for e in buf.entries()] == ["b", "c", "d"]
    assert buf.embeddings()[:, 0].tolist() == [1.0, 2.0, 2.0]


def test_selectors_rank_by_their_own_score_with_stable_ties():
    scores = CandidateScores(s_intra=torch.tensor([5.0, 1.0, 3.0, 3.0], dtype=torch.float64),
                             s_inter=torch.tensor([0.0, 100.0, 10.0, 0.0], dtype=torch.float64),
                             loss=torch.tensor([0.1, 0.2, 0.9, 0.3], dtype=torch.float64), alpha=0.05)
    gen = torch.Generator().manual_seed(0)
    picks = {name: top_k(make_selector(name).score(scores, gen), 2)[0].tolist()
             for name in ("uds", "utility", "diversity", "maxloss")}
    assert picks["uds"] == [True, True, False, False]  # totals 5, 6, 3.5, 3
    assert picks["utility"] == [True, False, True, False]  # 3 vs 3: the lower position wins
    assert picks["diversity"] == [False, True, True, False]
    assert picks["maxloss"] == [False, False, True, True]
    assert make_selector("full").keeps_all
    with pytest.raises(ValueError, match="selector='best'"):
        make_selector("best")


@pytest.mark.parametrize("kwargs, field", [({"batch": 4, "keep": 5}, "keep=5"), ({"alpha": -1.0}, "alpha=-1.0"),
                                           ({"mode": "fast"}, "mode='fast'"), ({"batch": 0}, "batch=0")])
def test_selection_config_names_field_value_and_range(kwargs, field):
    with pytest.raises(ValueError, match=field) as err:
        SelectionConfig(**kwargs)
    assert "allowed" in str(err.value)


def test_train_config_and_released_defaults():
    with pytest.raises(ValueError, match="steps=-1"):
        TrainConfig(steps=-1)
    with pytest.raises(ValueError, match="grad_accumulation=0 is out of range"):
        TrainConfig(grad_accumulation=0)
    released = SelectionConfig.as_released()
    assert (released.mode, released.keep, released.alpha, released.buffer_size, released.d1, released.d2,
            released.time_length, released.seed) == ("as_released", 4, 2.5e-3, 1024, 128, 8, 512, 21)
