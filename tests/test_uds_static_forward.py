"""The bucketed, explicitly masked scoring forward (what the trainer captures as CUDA graphs on a GPU) gives the scores
of the eager forwards. CI has no GPU: here it runs eagerly on the CPU, which checks everything the graph
replays (padding to the bucket, the 4D causal mask, cutting back to N); the replay itself is compared with the eager
route on the GPU by lab/benchmarks/gpu_uds_graphs.py."""
import pytest
import torch

from engine.uds import FFTSketch, SelectionConfig, TrainConfig, run_selection
from engine.uds.batching import collate, encode
from engine.uds.factored import factored_head
from engine.uds.batch_scores import score_batch
from engine.uds.selectors import CandidateScores, make_selector, top_k
from engine.uds.static_forward import StaticScoringForward

from tests.conftest import smoke_json


@pytest.fixture(scope="module")
def mixed_batch(smollm2_causal, bundled_uds_dataset):
    """Chat, maths and HumanEval samples (41 to 209 tokens): long and short rows, padding rows, N not a multiple of
    the bucket."""
    _, tokenizer = smollm2_causal
    by_source = {}
    for sample in bundled_uds_dataset.train:
        by_source.setdefault(sample.source, []).append(sample)
    chosen = [s for source in ("chatterbot", "mathematics", "humaneval") for s in by_source[source][:2]]
    batch = collate([encode(tokenizer, s, 256) for s in chosen], tokenizer.pad_token_id)
    assert batch.ids.shape[1] % 64 != 0 and not batch.attention.all()
    return batch


def _relative(got: torch.Tensor, expected: torch.Tensor) -> float:
    got, expected = got.double(), expected.double()
    if got.dim() == 1:
        return float(((got - expected).abs() / expected.abs()).max())
    return float(((got - expected).norm(dim=1) / expected.norm(dim=1)).max())


@pytest.mark.parametrize("route", ["logits", "factored"])
@pytest.mark.parametrize("mode", ["default", "as_released"])
def test_bucketed_forward_scores_equal_the_eager_route(smollm2_causal, mixed_batch, route, mode):
    model, tokenizer = smollm2_causal
    sketch = FFTSketch(len(tokenizer), seed=21)
    factored = factored_head(model, sketch, route)
    static = StaticScoringForward(model, factored, graphs=False)
    buffer_z = torch.randn(64, sketch.dim, generator=torch.Generator().manual_seed(0)) * 3e7
    as_released = mode == "as_released"
    eager = score_batch(model, mixed_batch, sketch, buffer_z, as_released, factored)
    bucketed = score_batch(model, mixed_batch, sketch, buffer_z, as_released, factored, static=static)
    # The bucket pads 209 rows to 256: other GEMM shapes, so float32 round-off differs (~1e-7 relative).
    assert _relative(bucketed.s_intra, eager.s_intra) <= 1e-5
    assert _relative(bucketed.z, eager.z) <= 1e-5
    assert _relative(bucketed.s_inter, eager.s_inter) <= 1e-5
    assert _relative(bucketed.loss, eager.loss) <= 1e-4
    assert bucketed.logits.shape == eager.logits.shape
    rows = eager.rows  # the default mode's eager forward leaves padding rows as their length group padded them
    torch.testing.assert_close(bucketed.logits[rows], eager.logits[rows], rtol=1e-4, atol=1e-4)
    assert as_released or not bucketed.logits[~rows].any()  # padding rows are zeros by default
    chosen = [CandidateScores(s.s_intra, s.s_inter, s.loss, alpha=2.5e-3) for s in (eager, bucketed)]
    uds = make_selector("uds")
    picks = [top_k(uds.score(c, torch.Generator()), 2)[0] for c in chosen]
    assert torch.equal(picks[0], picks[1])


def test_padding_to_the_bucket_leaves_every_row_as_the_padded_forward_has_it(smollm2_causal, mixed_batch):
    model, _ = smollm2_causal
    with torch.no_grad():
        padded = model(input_ids=mixed_batch.ids, attention_mask=mixed_batch.attention.long()).logits  # (B, N, V)
    for bucket in (64, 512):
        bucketed = StaticScoringForward(model, None, graphs=False, bucket=bucket)(mixed_batch)
        torch.testing.assert_close(bucketed, padded, rtol=1e-4, atol=1e-4)  # padding rows too (as released)


def test_cuda_graphs_on_a_cpu_model_are_refused_with_the_fix(tiny_causal_lm):
    model, _ = tiny_causal_lm
    with pytest.raises(ValueError, match="CUDA graphs need a CUDA model.*graphs=False"):
        StaticScoringForward(model, None, graphs=True)


def test_a_cpu_run_scores_eagerly_and_says_so(tiny_causal_lm, bundled_uds_dataset):
    model, tokenizer = tiny_causal_lm
    log = run_selection(model, tokenizer, bundled_uds_dataset, SelectionConfig(batch=4, keep=1),
                        TrainConfig(steps=1, cutoff=64, eval_items=0, cuda_graphs=True))
    assert log.config["scoring_forward"] == "eager" and log.config["train"]["cuda_graphs"] is True



@pytest.mark.parametrize("bucketed", [False, True])
def test_scoring_runs_in_eval_mode_and_leaves_a_training_model_training(tiny_causal_lm, bundled_uds_dataset,
                                                                          bucketed):
    from engine.uds.run import prepare_trainable

    base, tokenizer = tiny_causal_lm
    model = prepare_trainable(base, TrainConfig()).train()
    modes = []
    hook = model.get_base_model().model.layers[0].register_forward_hook(lambda m, i, o: modes.append(m.training))
    batch = collate([encode(tokenizer, s, 64) for s in bundled_uds_dataset.train[:4]], tokenizer.pad_token_id)
    sketch = FFTSketch(len(tokenizer), seed=21)
    static = StaticScoringForward(model, None, graphs=False) if bucketed else None
    score_batch(model, batch, sketch, torch.zeros(0, sketch.dim), False, static=static)
    hook.remove()
    assert modes and not any(modes)  # every scoring forward ran in eval mode
    assert all(m.training for m in model.modules())


def test_the_gpu_overhead_benchmark_runs_on_a_cpu(tmp_path):
    """lab/benchmarks/gpu_uds_graphs.py --smoke: tiny model, eager bucketed forward, the same JSON a GPU run writes."""
    result = smoke_json("gpu_uds_graphs.py", tmp_path / "uds_graphs.json")
    per_batch = result["per_batch"]
    assert result["graphs"] is False and per_batch["graphs_captured"] == 0 and per_batch["all_picks_same"]
    assert per_batch["s_intra_rel_diff_max"] <= 1e-5 and per_batch["overhead_graph_pct"]["median"] > 0
    assert {"part_forward_ms", "part_spectra_ms", "part_loss_ms"} <= set(per_batch["batches"][0])
    assert result["runs"]["same_picks_graphs_vs_eager"] and result["runs"]["uds_graphs"]["scoring_forward"] == "eager"
