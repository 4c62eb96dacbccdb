"""How long the buffer map takes: UMAP fit of 1,024 buffer points after warm-up, transform of new points, PCA.

Run: .venv/bin/python lab/benchmarks/bench_projection.py [--runlog FOLDER]
With --runlog the points are the real sketches z of a saved run log (all candidates, tiled up to 1,024 rows with a
little seeded noise when the run had fewer); without it, seeded clustered Gaussians of the same shape (1,024 x 1,024).
Prints one JSON line (wall and process-CPU seconds, best of --repeats); the numbers go to docs/SELECTION_LAB.md
("Views: speed").
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
        from engine.uds.runlog_io import load_runlog

        z = load_runlog(runlog).all_embeddings().astype(np.float64)  # (n_candidates, D)
        reps = int(np.ceil(n / len(z)))
        tiled = np.tile(z, (reps, 1))[:n]
        return tiled + rng.normal(scale=1e-3 * z.std(), size=tiled.shape), f"run log {runlog}"
    centres = rng.normal(scale=3.0, size=(8, dims))
    return rng.normal(size=(n, dims)) + np.repeat(centres, n // 8, axis=0), "clustered Gaussians"


def _timed(fn, repeats: int) -> tuple[float, float]:
    """Best (wall seconds, CPU seconds of this process) over `repeats`. On a shared machine the CPU time is the
    better estimate of the wall time an idle machine would give (UMAP with a seed is single-threaded)."""
    best_wall = best_cpu = float("inf")
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    return round(best_wall, 3), round(best_cpu, 3)


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
                      "load_average": [round(x, 1) for x in os.getloadavg()], "warm_up_wall_s": round(warm_up, 2),
                      "umap_fit_wall_cpu_s": umap_fit, "umap_transform_128_wall_cpu_s": umap_transform,
                      "pca_fit_wall_cpu_s": pca_fit}))


if __name__ == "__main__":
    main()
