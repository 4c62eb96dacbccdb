"""The nuclear-norm routes of the Selection Lab, measured (parts `gram` and `precision` of lab.benchmarks.uds_bench).

Routes for one (N, V) logit matrix L:
* svdvals: torch.linalg.svdvals on float32 L, as the released code;
* gram64: the engine's logits route (engine.uds.nuclear_norm): float64 lower-triangle Gram, eigvalsh, sqrt;
* gram32: a float32 lower-triangle Gram, then float64 eigvalsh: measured here, not adopted (docs/UDS_SPEED.md);
* factored: the loop's route (engine/uds/factored.py) from the hidden states H, L = H W^T never formed.
Inputs are real SmolLM2 logits of bundled samples, plus random and adversarial near-duplicate matrices.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from engine.uds.batching import Batch, collate, encode
from engine.uds.factored import FactoredHead
from engine.uds.logit_scores import lower_gram, nuclear_norm, spectrum_of_gram

UNIT_ROUNDOFF_32 = 2.0 ** -24


def gram32_spectrum(rows: torch.Tensor) -> torch.Tensor:
    """Singular values of rows (n, V) from a float32 lower-triangle Gram and float64 eigenvalues."""
    return spectrum_of_gram(lower_gram(rows.float()).double())


def weyl_bound(sigma: torch.Tensor, eps: float) -> float:
    """An upper bound on |sum sigma - ||L||_*| / sum sigma when the Gram matrix behind `sigma` is off by at most
    `eps` in 2-norm: Weyl moves each eigenvalue by at most eps, so sqrt moves by at most b_i (below)."""
    lam = sigma.square()  # (n,) computed eigenvalues, clamped at 0
    b = torch.maximum((lam + eps).sqrt() - sigma, sigma - (lam - eps).clamp_min(0.0).sqrt())  # (n,)
    return float(b.sum() / sigma.sum())


def _document(tokenizer: Any, dataset: Any, n: int) -> Batch:
    """One real sequence of exactly n tokens: bundled training conversations back to back, chat-templated."""
    ids: list[int] = []
    for sample in dataset.train:
        ids.extend(encode(tokenizer, sample, n).ids)
        if len(ids) >= n:
            break
    row = torch.tensor(ids[:n]).view(1, n)  # (1, n)
    real = torch.ones_like(row, dtype=torch.bool)  # (1, n)
    return Batch(ids=row, attention=real, prompt=~real, labels=torch.full_like(row, -100))


def _padded_candidates(tokenizer: Any, dataset: Any, n: int) -> Batch:
    """Eight short bundled candidates (chat and maths, 41 to 51 tokens) right-padded to n rows, as the released
    code would score them in a batch padded to n."""
    pool = [s for s in dataset.train if s.source != "humaneval"][::25][:8]
    batch = collate([encode(tokenizer, s, n) for s in pool], tokenizer.pad_token_id)
    width = n - batch.ids.shape[1]
    pad = torch.nn.functional.pad
    return Batch(ids=pad(batch.ids, (0, width), value=tokenizer.pad_token_id),
                 attention=pad(batch.attention, (0, width)), prompt=pad(batch.prompt, (0, width)),
                 labels=pad(batch.labels, (0, width), value=-100))


def real_inputs(n: int = 512) -> dict[str, Any]:
    """SmolLM2 with its factored head, a real n-token document and eight padded candidates (hidden states + logits)."""
    from engine.models import load_sft_model
    from engine.uds.data import bundled_dataset
    from engine.uds.factored import factored_head
    from engine.uds.logit_scores import FFTSketch

    model, tokenizer = load_sft_model("smollm2")
    dataset = bundled_dataset()
    factored = factored_head(model, FFTSketch(len(tokenizer)), "factored")
    out: dict[str, Any] = {"factored": factored}
    with torch.no_grad():
        for name, batch in (("document", _document(tokenizer, dataset, n)),
                            ("candidates", _padded_candidates(tokenizer, dataset, n))):
            hidden = factored.hidden(batch)  # (B, n, d)
            out[name] = {"batch": batch, "hidden": hidden, "logits": factored.head(hidden)}  # logits (B, n, V)
    return out


def bench_gram(median_seconds: Callable[[Callable[[], Any]], float], inputs: dict[str, Any]) -> dict[str, Any]:
    """Seconds per route on the real n x V document logits, speed-up over svdvals, relative error vs float64 svdvals."""
    factored, doc = inputs["factored"], inputs["document"]
    logits, hidden = doc["logits"], doc["hidden"]  # (1, n, V), (1, n, d)
    rows = torch.ones(hidden.shape[:2], dtype=torch.bool)  # (1, n)
    reference = float(torch.linalg.svdvals(logits[0].double()).sum())
    routes: dict[str, Callable[[], torch.Tensor]] = {
        "svdvals": lambda: torch.linalg.svdvals(logits[0]).double().sum(),
        "gram64": lambda: nuclear_norm(logits)[0],
        "gram32": lambda: gram32_spectrum(logits[0]).sum(),
        "factored": lambda: factored.singular_values(hidden, rows)[0].sum(),
    }
    out: dict[str, Any] = {"n": int(logits.shape[1]), "vocab": int(logits.shape[2])}
    for name, fn in routes.items():
        out[f"{name}_s"] = median_seconds(fn)
        out[f"{name}_rel_error"] = abs(float(fn()) - reference) / reference
    for name in ("gram64", "gram32", "factored"):
        out[f"{name}_speedup"] = out["svdvals_s"] / out[f"{name}_s"]

    # Once per head weight (once per run with LoRA): W^T W and W^T P in float64, as a fresh scorer builds them.
    out["factored_cache_s"] = median_seconds(
        lambda: FactoredHead(factored.decoder, factored.head, factored.sketch)._cached())
    out["head_s"] = median_seconds(lambda: factored.head(hidden))  # the (n, V) logits the factored route skips
    return out


def _case(rows: torch.Tensor, hidden: torch.Tensor | None, factored: Any) -> dict[str, float]:
    """Relative errors of each route vs float64 svdvals on rows (n, V), and the float32 guard's numbers."""
    reference = float(torch.linalg.svdvals(rows.double()).sum())
    sigma32 = gram32_spectrum(rows)
    gram_error = lower_gram(rows.float()).double() - lower_gram(rows.double())  # (n, n), lower triangles
    gram_error = gram_error + gram_error.tril(-1).T  # the symmetric error matrix E
    fro2 = float(rows.double().square().sum())  # ||L||_F^2
    out = {"n": int(rows.shape[0]), "gram64_rel_error": abs(float(nuclear_norm(rows[None])[0]) - reference) / reference,
           "gram32_rel_error": abs(float(sigma32.sum()) - reference) / reference,
           "gram32_error_over_u_fro2": float(torch.linalg.matrix_norm(gram_error, ord=2)) / (UNIT_ROUNDOFF_32 * fro2),
           "gram32_weyl_bound": weyl_bound(sigma32, UNIT_ROUNDOFF_32 * fro2),
           "tiny_eigenvalues": int((sigma32.square() < 1e-6 * float(sigma32[0]) ** 2).sum())}
    if hidden is not None:
        keep = torch.ones(1, hidden.shape[0], dtype=torch.bool)
        out["factored_rel_error"] = abs(float(factored.singular_values(hidden[None], keep)[0].sum()) - reference
                                        ) / reference
    return out


def bench_precision(inputs: dict[str, Any], seed: int = 0) -> dict[str, Any]:
    """Relative errors of gram64, gram32 and factored vs float64 svdvals on random, real (default and as released)
    and adversarial near-duplicate logits, with the float32 guard's error ratio and Weyl bound."""
    factored, doc, cand = inputs["factored"], inputs["document"], inputs["candidates"]
    gen = torch.Generator().manual_seed(seed)
    n, vocab = doc["logits"].shape[1:]
    out: dict[str, Any] = {"random": _case(torch.randn(n, vocab, generator=gen) * 4, None, factored),
                           "real_document": _case(doc["logits"][0], doc["hidden"][0], factored)}
    lengths = cand["batch"].attention.sum(1)  # (8,)
    for b in (int(lengths.argmin()), int(lengths.argmax())):
        real = cand["batch"].attention[b]  # (n,)
        out[f"real_default_len{int(lengths[b])}"] = _case(cand["logits"][b][real], cand["hidden"][b][real], factored)
        out[f"real_as_released_len{int(lengths[b])}"] = _case(cand["logits"][b], cand["hidden"][b], factored)
    base = doc["logits"][0][: n // 8]  # (n / 8, V) real rows, each repeated 8 times, plus noise of 1e-3
    repeated = base[torch.arange(n) % base.shape[0]]  # (n, V)
    out["near_duplicates"] = _case(repeated + 1e-3 * torch.randn(n, vocab, generator=gen), None, factored)
    return out
