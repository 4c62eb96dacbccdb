"""How long the buffer map takes: UMAP fit of 1,024 buffer points after warm-up, transform of new points, PCA.

Run: .venv/bin/python benchmarks/bench_projection.py [--runlog FOLDER]
With --runlog the points are the real sketches z of a saved run log (all candidates, tiled up to 1,024 rows with a
little seeded noise when the run had fewer); without it, seeded clustered Gaussians of the same shape (1,024 x 1,024).
Prints one JSON line; the numbers go to docs/SELECTION_LAB.md ("Views").
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from analysis.projection import ProjectionConfig, Projector


def _points(runlog: str | None, n: int, dims: int, seed: int) -> tuple[np.ndarray, str]:
    rng = np.random.default_rng(seed)
    if runlog:
        from engine.uds.runlog import RunLog

        z = RunLog.load(runlog).all_embeddings().astype(np.float64)  # (n_candidates, D)
        reps = int(np.ceil(n / len(z)))
        tiled = np.tile(z, (reps, 1))[:n]
        return tiled + rng.normal(scale=1e-3 * z.std(), size=tiled.shape), f"run log {runlog}"
    centres = rng.normal(scale=3.0, size=(8, dims))
    return rng.normal(size=(n, dims)) + np.repeat(centres, n // 8, axis=0), "clustered Gaussians"


def _timed(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runlog", default=None, help="saved run log folder whose sketches to project")
    parser.add_argument("--points", type=int, default=1024, help="buffer size to fit")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats; the best is reported")
    args = parser.parse_args()
    points, origin = _points(args.runlog, args.points, 1024, seed=0)
    start = time.perf_counter()
    warm = Projector(ProjectionConfig(method="umap"))
    warm.fit_transform(points[:64])
    warm.transform(points[64:96])
    warm_up = time.perf_counter() - start
    umap_fit = _timed(lambda: Projector(ProjectionConfig(method="umap")).fit_transform(points), args.repeats)
    fitted = Projector(ProjectionConfig(method="umap"))
    fitted.fit_transform(points)
    umap_transform = _timed(lambda: fitted.transform(points[:128] + 0.01), args.repeats)
    pca_fit = _timed(lambda: Projector(ProjectionConfig(method="pca")).fit_transform(points), args.repeats)
    print(json.dumps({"points": args.points, "dims": points.shape[1], "data": origin, "cpu_count": os.cpu_count(),
                      "warm_up_s": round(warm_up, 2), "umap_fit_s": round(umap_fit, 3),
                      "umap_transform_128_s": round(umap_transform, 3), "pca_fit_s": round(pca_fit, 3)}))


if __name__ == "__main__":
    main()
