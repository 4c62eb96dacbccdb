"""The rules' vocabulary passes (engine/decoding/vocab.py): compiled, as a GPU runs them, they compute what the eager
functions compute. On a CPU with inductor (real code generation, other fusion and summation order than eager) and
with aot_eager; the credit matrix is updated in place the same way, float and per-row (parameter-free) weights."""
import pytest
import torch

from engine.decoding import Credit, generate, vocab
from engine.models.families import load_native
from tests.test_compiled_layers import FIXTURES


def inputs(seed: int, rows: int = 2, block: int = 8, size: int = 5000):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(rows, block, size, generator=g) * 3  # (B, Lb, V)
    logits[0, 1, 7] = 40.0  # one confident position
    credit = torch.rand(rows, block, size, generator=g) * (torch.rand(rows, block, size, generator=g) > 0.99)
    masked = torch.rand(rows, block, generator=g) > 0.3
    return logits, credit, masked


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_compiled_top1_equals_eager(backend):
    logits, _, _ = inputs(0)
    top1, prob = vocab._top1(logits)
    top1_c, prob_c = vocab.top1.compiled(backend)(logits)
    assert torch.equal(top1, top1_c)
    torch.testing.assert_close(prob_c, prob, rtol=1e-6, atol=1e-7)
    assert prob[0, 1].item() == pytest.approx(1.0)


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
@pytest.mark.parametrize("decay", [False, True])
@pytest.mark.parametrize("per_row", [False, True])
def test_compiled_credit_step_equals_eager(backend, decay, per_row):
    logits, credit, masked = inputs(1)
    alpha = beta = (1.0 - masked.float().mean(dim=-1)[:, None, None]) if per_row else 0.65  # parameter-free: (B,1,1)
    gamma = 1.0 if per_row else 0.2
    eager_credit, compiled_credit = credit.clone(), credit.clone()
    eager = vocab._credit_step(logits, eager_credit, masked, decay, alpha, beta if per_row else 0.7, gamma)
    compiled = vocab.credit_step.compiled(backend)(logits, compiled_credit, masked, decay, alpha,
                                                   beta if per_row else 0.7, gamma)
    torch.testing.assert_close(compiled_credit, eager_credit, rtol=1e-6, atol=1e-7)  # updated in place alike
    for name, a, b in zip(("fused_top1", "fused_prob", "credit_top1", "top1", "prob"), eager, compiled):
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-7, msg=name)
    assert not torch.equal(eager_credit, credit)  # the step did change the matrix


def test_a_cpu_decode_runs_the_passes_eagerly():
    """A CPU decode builds no compiled function (compiling would cost a CPU decode seconds, and its numbers are the
    eager ones every other CPU test checks)."""
    model = load_native("llada", source=FIXTURES / "llada", device="cpu")
    before = dict(vocab.credit_step._compiled)
    ids = torch.randint(0, 100, (1, 5), generator=torch.Generator().manual_seed(0))
    result = generate(model, ids, Credit(), gen_length=16, block_length=8, mask_id=model.spec.mask_id)
    assert result.nfe >= 2 and vocab.credit_step._compiled == before
