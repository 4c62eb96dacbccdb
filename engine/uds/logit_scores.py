"""Pure functions of logits: nuclear norm and spectrum statistics, the FFT sketch, buffer distances, token signals.

Nothing here touches a model or an optimizer; every function maps tensors to tensors and leaves its inputs alone.
"""
from __future__ import annotations

import math

import torch


def singular_values(logits: torch.Tensor, mask: torch.Tensor | None = None) -> list[torch.Tensor]:
    """Per sample, the singular values (descending, float64) of the kept logit rows.

    logits (B, N, V); mask (B, N) bool, rows to keep (None keeps all). Computed as the square roots of the eigenvalues
    of the n x n Gram matrix L L^T in float64, clamped at 0 (round-off can make tiny eigenvalues negative): the same
    spectrum as an SVD of the n x V matrix at a fraction of the cost, because n (tokens) << V (vocabulary).
    """
    if logits.dim() != 3:
        raise ValueError(f"logits must be (B, N, V), got shape {tuple(logits.shape)}")
    if mask is not None and mask.shape != logits.shape[:2]:
        raise ValueError(f"mask must be (B, N) = {tuple(logits.shape[:2])}, got {tuple(mask.shape)}")
    spectra = []
    for b in range(logits.shape[0]):
        rows = logits[b] if mask is None else logits[b][mask[b].bool()]  # (n, V)
        spectra.append(spectrum_of_gram(lower_gram(rows.detach().to(torch.float64))))
    return spectra


def spectrum_of_gram(gram: torch.Tensor) -> torch.Tensor:
    """Singular values (descending) of L from its Gram matrix L L^T (n, n), of which only the lower triangle is read:
    sqrt of the eigenvalues, clamped at 0 first (round-off can make tiny eigenvalues negative)."""
    eigenvalues = torch.linalg.eigvalsh(gram, UPLO="L").clamp_min(0.0)  # (n,) ascending
    return eigenvalues.flip(0).sqrt()


def lower_gram(rows: torch.Tensor, block: int = 128) -> torch.Tensor:
    """The lower triangle of rows @ rows.T (n, n) by row blocks: about half the multiply-adds of the full product,
    which is all eigvalsh(UPLO="L") reads (a symmetric rank-k update, which torch does not expose)."""
    n = rows.shape[0]
    gram = rows.new_zeros((n, n))
    for start in range(0, n, block):
        end = min(start + block, n)
        gram[start:end, :end] = rows[start:end] @ rows[:end].T  # (b, end)
    return gram


def nuclear_norm(logits: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """||L_b||_* for each sample b: logits (B, N, V), mask (B, N) rows to keep -> float64 (B,)."""
    return torch.stack([s.sum() for s in singular_values(logits, mask)])


def spectrum_stats(sigma: torch.Tensor) -> dict[str, float]:
    """Scale and shape of one spectrum (descending singular values): the fields of CandidateRecord of that name.

    fro_norm = sqrt(sum s^2); flatness = sum s / fro_norm; effective_rank = exp(entropy of s / sum s);
    sigma1_share = s_1 / sum s. An all-zero spectrum gives zeros (no rows, or all-zero logits).
    """
    total = float(sigma.sum())
    if total <= 0.0:
        return {"s_intra": 0.0, "fro_norm": 0.0, "flatness": 0.0, "effective_rank": 0.0, "sigma1_share": 0.0}
    fro = float(sigma.square().sum().sqrt())
    p = sigma / total  # (n,)
    p = p[p > 0]
    entropy = float(-(p * p.log()).sum())
    return {"s_intra": total, "fro_norm": fro, "flatness": total / fro, "effective_rank": math.exp(entropy),
            "sigma1_share": float(sigma[0]) / total}


def _real_fft_columns(x: torch.Tensor, dim: int, length: int, picks: torch.Tensor) -> torch.Tensor:
    """Real part of the full, unnormalised FFT of `x` along `dim` (zero-padded to `length`), at indices `picks`.

    For real input Re FFT[k] = Re FFT[length - k], so the half spectrum of rfft holds every value the full FFT has.
    """
    half = torch.fft.rfft(x, n=length, dim=dim).real
    folded = torch.minimum(picks, length - picks)  # index into the half spectrum
    return half.index_select(dim, folded)


class FFTSketch:
    """The bilinear randomised-FFT sketch of a logit matrix (N x V) -> z of d2 * d1 numbers, as the released code.

    Along the vocabulary: random signs, real part of the FFT, d1 columns drawn uniformly with replacement, times
    sqrt(V / d1). Along time, zero-padded to T: random signs, real part of the FFT, d2 rows drawn with replacement,
    times sqrt(T / d2). z is the (d2, d1) result flattened row-major. The draws come from a CPU generator seeded with
    `seed`, in the released order (vocab signs, vocab columns, time signs, time rows), so a seed fixes the sketch.
    """

    def __init__(self, vocab_size: int, time_length: int = 512, d1: int = 128, d2: int = 8, seed: int = 21) -> None:
        for name, value in (("vocab_size", vocab_size), ("time_length", time_length), ("d1", d1), ("d2", d2)):
            if value < 1:
                raise ValueError(f"{name}={value} must be >= 1")
        self.vocab_size, self.time_length, self.d1, self.d2 = vocab_size, time_length, d1, d2
        gen = torch.Generator().manual_seed(seed)
        self.vocab_signs = torch.randint(0, 2, (vocab_size,), generator=gen).float() * 2 - 1  # (V,)
        self.vocab_cols = torch.randint(0, vocab_size, (d1,), generator=gen)  # (d1,)
        self.time_signs = torch.randint(0, 2, (time_length,), generator=gen).float() * 2 - 1  # (T,)
        self.time_rows = torch.randint(0, time_length, (d2,), generator=gen)  # (d2,)

    @property
    def dim(self) -> int:
        return self.d1 * self.d2

    def __call__(self, logits: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """logits (B, N, V) float, mask (B, N) rows to keep (others count as zero rows) -> z float32 (B, d2 * d1)."""
        batch, n, vocab = logits.shape
        if vocab != self.vocab_size:
            raise ValueError(f"logits have vocabulary {vocab}, the sketch was built for {self.vocab_size}")
        if mask is None:
            return self.time_stage(self.vocab_stage(logits))
        # Rows left out are zero rows, whose FFT is zero: transform only the kept rows.
        keep = mask.to(logits.device).bool()  # (B, N)
        kept = self.vocab_stage(logits[keep])  # (R, d1)
        y = kept.new_zeros((batch, n, self.d1))  # (B, N, d1)
        y[keep] = kept
        return self.time_stage(y)

    def vocab_stage(self, rows: torch.Tensor) -> torch.Tensor:
        """Rows (..., V) -> (..., d1): random signs, real part of the FFT at the d1 drawn columns, times sqrt(V / d1).

        Linear in each row. float64 rows stay float64 (the factored route applies this to W^T); anything else is
        computed in float32.
        """
        rows = rows.detach()
        rows = rows if rows.dtype == torch.float64 else rows.float()
        signs = self.vocab_signs.to(rows.device, rows.dtype)  # (V,)
        y = _real_fft_columns(rows * signs, rows.dim() - 1, self.vocab_size, self.vocab_cols.to(rows.device))
        return y * math.sqrt(self.vocab_size / self.d1)

    def time_stage(self, y: torch.Tensor) -> torch.Tensor:
        """y (B, n, d1) from `vocab_stage` -> z float32 (B, d2 * d1): the time axis zero-padded to T, random signs,
        real part of the FFT at the d2 drawn rows, times sqrt(T / d2)."""
        batch, n, _ = y.shape
        if n > self.time_length:
            raise ValueError(f"sequence length {n} exceeds the sketch time length {self.time_length}; "
                             f"raise time_length or lower the cut-off")
        y = y * self.time_signs[:n].to(y.device, y.dtype).view(1, n, 1)  # rows >= n are the zero padding
        z = _real_fft_columns(y, 1, self.time_length, self.time_rows.to(y.device))  # (B, d2, d1)
        z = z * math.sqrt(self.time_length / self.d2)
        return z.reshape(batch, self.d2 * self.d1).float().cpu()


def mean_distance(z: torch.Tensor, buffer: torch.Tensor) -> torch.Tensor:
    """Mean L2 distance from each z (B, D) to every row of `buffer` (M, D) -> float64 (B,); zeros when M == 0."""
    if buffer.shape[0] == 0:
        return torch.zeros(z.shape[0], dtype=torch.float64)
    return torch.cdist(z.double(), buffer.double()).mean(dim=1)  # (B, M) -> (B,)


def token_stats(logits: torch.Tensor, ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-row signals of one sample for the strip view: logits (N, V), ids (N,) -> float32 (N,) each.

    token_loss[i] is the cross-entropy of predicting ids[i + 1] from row i (NaN on the last row, which predicts
    nothing inside the sequence); logit_norm is the L2 norm of row i; entropy is that of softmax(row i) in nats.
    """
    logp = torch.log_softmax(logits.detach().float(), dim=-1)  # (N, V)
    entropy = -(logp.exp() * logp).sum(-1)  # (N,)
    token_loss = torch.full((ids.shape[0],), float("nan"), device=logits.device)
    if ids.shape[0] > 1:
        token_loss[:-1] = -logp[:-1].gather(1, ids[1:].view(-1, 1).to(logits.device)).squeeze(1)
    return {"token_loss": token_loss, "logit_norm": logits.detach().float().norm(dim=-1), "entropy": entropy}
