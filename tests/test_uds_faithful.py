"""Faithfulness on the real SmolLM2 logits: the Gram route equals svdvals, and UDS "as released" picks exactly what a
direct transcription of the released rule picks (svdvals on all rows, the same sketch draws, mean distance to the
buffer, top-K, FIFO push), step after step with a growing buffer."""
import math

import torch

from engine.uds import BufferEntry, CandidateScores, FFTSketch, FIFOBuffer, make_selector, nuclear_norm, top_k
from engine.uds.batching import collate, encode
from engine.uds.batch_scores import score_batch


def _batches(tokenizer, dataset, n_batches=2, batch=8, cutoff=96):
    # Chat and maths only: short rows keep svdvals (the slow reference) fast.
    pool = [s for s in dataset.train if s.source != "humaneval"]
    step = len(pool) // (n_batches * batch)
    chosen = pool[::step][: n_batches * batch]
    encoded = [encode(tokenizer, s, cutoff) for s in chosen]
    return [collate(encoded[i * batch:(i + 1) * batch], tokenizer.pad_token_id) for i in range(n_batches)]


def _released_rule(model, batches, sketch, alpha, keep, queue_size=1024):
    """The released compute_top_index, transcribed: returns the kept positions per step."""
    queue = torch.zeros(0, sketch.dim)
    picks = []
    for batch in batches:
        with torch.no_grad():
            logits = model(input_ids=batch.ids, attention_mask=batch.attention.long()).logits.float()  # (B, L, V)
        utility = torch.linalg.svdvals(logits).sum(dim=1)  # every row, padding included
        b, length, vocab = logits.shape
        # Released order is pad-then-FFT along vocab; the padded rows are zero either way, so FFT the real rows first.
        x = torch.fft.fft(logits * sketch.vocab_signs, dim=-1).real[..., sketch.vocab_cols]
        x = torch.cat([x, x.new_zeros((b, sketch.time_length - length, sketch.d1))], dim=1)  # (B, T, d1)
        x = x * math.sqrt(vocab / sketch.d1)
        x = x * sketch.time_signs.view(1, sketch.time_length, 1)
        x = torch.fft.fft(x, dim=1).real[:, sketch.time_rows, :] * math.sqrt(sketch.time_length / sketch.d2)
        projected = x.reshape(b, -1)  # (B, d2 * d1)
        diversity = torch.cdist(projected, queue).mean(dim=1) if len(queue) else torch.zeros(b)
        _, top = torch.topk(utility + alpha * diversity, keep, largest=True, sorted=False)
        picks.append(sorted(top.tolist()))
        queue = torch.cat([queue, projected[top]])[-queue_size:]
    return picks


def test_gram_route_equals_svdvals_on_real_logits(smollm2_causal, bundled_uds_dataset):
    model, tokenizer = smollm2_causal
    batch = _batches(tokenizer, bundled_uds_dataset, n_batches=1)[0]
    with torch.no_grad():
        logits = model(input_ids=batch.ids, attention_mask=batch.attention.long()).logits.float()
    expected = torch.linalg.svdvals(logits.double()).sum(-1)
    torch.testing.assert_close(nuclear_norm(logits), expected, rtol=1e-4, atol=0)
    real_rows = nuclear_norm(logits, batch.attention)
    padded = batch.attention.sum(1) < batch.ids.shape[1]
    assert torch.all(real_rows[padded] < nuclear_norm(logits)[padded])  # padding rows add mass as released


def test_as_released_picks_equal_the_released_rule(smollm2_causal, bundled_uds_dataset):
    model, tokenizer = smollm2_causal
    batches = _batches(tokenizer, bundled_uds_dataset, n_batches=3, batch=4)  # the released script's B = 4, K = 1
    sketch = FFTSketch(len(tokenizer), time_length=512, d1=128, d2=8, seed=21)
    alpha, keep = 2.5e-3, 1
    expected = _released_rule(model, batches, sketch, alpha, keep)
    buffer, selector, got = FIFOBuffer(1024, sketch.dim), make_selector("uds"), []
    for step, batch in enumerate(batches):
        scores = score_batch(model, batch, sketch, buffer.embeddings(), as_released=True)
        chosen = CandidateScores(scores.s_intra, scores.s_inter, scores.loss, alpha)
        selected, _ = top_k(selector.score(chosen, torch.Generator()), keep)
        kept = selected.nonzero().flatten()
        buffer.push(scores.z[kept], [BufferEntry(str(i), step, int(i)) for i in kept.tolist()])
        got.append(kept.tolist())
    assert got == expected
    assert len(buffer) == keep * len(batches)


def test_default_mode_scores_do_not_depend_on_batch_mates(smollm2_causal, bundled_uds_dataset):
    model, tokenizer = smollm2_causal
    batch = _batches(tokenizer, bundled_uds_dataset, n_batches=1, batch=4)[0]
    sketch = FFTSketch(len(tokenizer), seed=21)
    together = score_batch(model, batch, sketch, torch.zeros(0, sketch.dim), as_released=False)
    shortest = int(batch.attention.sum(1).argmin())
    alone = score_batch(model, batch.select(torch.tensor([shortest])), sketch, torch.zeros(0, sketch.dim), False)
    assert math.isclose(float(together.s_intra[shortest]), float(alone.s_intra[0]), rel_tol=1e-4)
    torch.testing.assert_close(together.z[shortest], alone.z[0], rtol=1e-3, atol=1e-2 * float(alone.z.abs().max()))
    released = score_batch(model, batch, sketch, torch.zeros(0, sketch.dim), as_released=True)
    assert float(released.s_intra[shortest]) > float(together.s_intra[shortest])
