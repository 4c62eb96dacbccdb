"""The maths behind the measured nuclear-norm routes (lab/benchmarks/uds_bench_gram.py): the float32 Gram route and the Weyl
bound its guard would need (docs/UDS_SPEED.md explains why that route is not adopted)."""
import torch

from lab.benchmarks.uds_bench_gram import gram32_spectrum, weyl_bound


def test_gram32_spectrum_matches_svdvals_on_random_logits():
    logits = torch.randn(40, 3000, generator=torch.Generator().manual_seed(0)) * 4
    expected = torch.linalg.svdvals(logits.double())
    torch.testing.assert_close(gram32_spectrum(logits), expected, rtol=1e-5, atol=0)


def test_weyl_bound_on_a_hand_built_spectrum():
    # eigenvalues 4 and 0, eps 1: sqrt moves by at most 2 - sqrt(3) and 1; relative to the sum 2.
    bound = weyl_bound(torch.tensor([2.0, 0.0], dtype=torch.float64), 1.0)
    assert abs(bound - (2 - 3 ** 0.5 + 1) / 2) < 1e-12


def test_weyl_bound_holds_for_gram_perturbations_of_that_norm():
    g = torch.Generator().manual_seed(1)
    rows = torch.randn(12, 50, generator=g, dtype=torch.float64)
    rows[6:] = rows[:6] + 1e-4 * torch.randn(6, 50, generator=g, dtype=torch.float64)  # near-duplicate rows
    gram = rows @ rows.T  # (12, 12)
    exact = torch.linalg.svdvals(rows).sum()
    for trial in range(20):
        noise = torch.randn(12, 12, generator=g, dtype=torch.float64)
        noise = noise + noise.T
        eps = 1e-3 * (trial + 1)
        perturbed = gram + eps * noise / torch.linalg.matrix_norm(noise, ord=2)  # ||E||_2 = eps
        sigma = torch.linalg.eigvalsh(perturbed).clamp_min(0.0).flip(0).sqrt()
        assert abs(float(sigma.sum() - exact)) <= weyl_bound(sigma, eps) * float(sigma.sum()) * (1 + 1e-9)
