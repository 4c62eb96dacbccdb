"""2-D maps of the UDS embedding buffer: UMAP fitted once and reused as the buffer grows, PCA as the fallback.

UMAP costs seconds of numba compilation on its first fit in a process and again on its first `transform`, so a map
is fitted once (on the first buffer snapshot with enough points) and every later point is placed with `transform`;
a point keeps its coordinates once placed, so the map does not jump as the buffer grows. Before UMAP sees the
1024-dim sketches they are reduced to `pca_dims` principal components: the neighbour search is then ~2x cheaper and
the map barely changes (the sketches are a random projection already).
"""
from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Hashable, Sequence

import numpy as np
import scipy.linalg

METHODS = ("auto", "umap", "pca")
NUMBA_CACHE = "dllm-numba-cache"  # folder under the system temp dir for numba's compiled-code cache


@dataclass(frozen=True)
class ProjectionConfig:
    method: str = "auto"  # "auto": UMAP when installed and enough points, else PCA; "umap" / "pca" force one
    seed: int = 21  # UMAP random_state (also makes UMAP single-threaded, the price of reproducible maps)
    n_neighbors: int = 15  # UMAP neighbourhood size; clipped to the number of fitted points minus one
    min_dist: float = 0.1  # UMAP minimum distance between embedded points
    n_epochs: int = 200  # UMAP optimisation epochs (its default is 500 below 10k points; 200 looks the same here)
    init: str = "pca"  # UMAP's starting layout: "pca" (~0.3 s cheaper at 1,024 points) or "spectral" (UMAP's default)
    pca_dims: int = 50  # principal components kept before UMAP; 0 disables the pre-reduction
    min_umap_points: int = 16  # below this many points UMAP's graph is meaningless: fit PCA instead
    fit_after: int = 64  # GrowingMap waits for this many points before fitting (a map fitted on 16 points is poor)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"ProjectionConfig.method={self.method!r}; choose one of {METHODS}.")
        if self.n_neighbors < 2:
            raise ValueError(f"ProjectionConfig.n_neighbors={self.n_neighbors}; it must be at least 2.")
        if not 0.0 <= self.min_dist <= 1.0:
            raise ValueError(f"ProjectionConfig.min_dist={self.min_dist}; it must lie in [0, 1].")
        if self.init not in ("pca", "spectral"):
            raise ValueError(f"ProjectionConfig.init={self.init!r}; choose 'pca' or 'spectral'.")
        if self.n_epochs < 1:
            raise ValueError(f"ProjectionConfig.n_epochs={self.n_epochs}; it must be at least 1.")
        if self.pca_dims < 0:
            raise ValueError(f"ProjectionConfig.pca_dims={self.pca_dims}; use 0 (off) or a positive count.")
        if self.min_umap_points < 4:
            raise ValueError(f"ProjectionConfig.min_umap_points={self.min_umap_points}; it must be at least 4.")
        if self.fit_after < 1:
            raise ValueError(f"ProjectionConfig.fit_after={self.fit_after}; it must be at least 1.")


def use_writable_numba_cache() -> Path:
    """Point numba's cache (UMAP's first fit compiles and caches code) at a folder under the system temp dir unless
    NUMBA_CACHE_DIR is set: by default numba writes next to the installed package, which fails on a read-only
    install (a Space). Returns the folder."""
    folder = Path(os.environ.setdefault("NUMBA_CACHE_DIR", str(Path(tempfile.gettempdir()) / NUMBA_CACHE)))
    folder.mkdir(parents=True, exist_ok=True)
    numba = sys.modules.get("numba")
    if numba is not None and not numba.config.CACHE_DIR:  # imported already: its config read the environment then
        numba.config.CACHE_DIR = str(folder)
    return folder


def umap_available() -> bool:
    """Whether umap-learn is importable (checked without importing it: the import alone takes seconds)."""
    return importlib.util.find_spec("umap") is not None


class _PCA:
    """Top principal axes from the smaller of the two Gram matrices (a partial eigh is ~5x cheaper than a full SVD
    of 1,024 x 1,024); signs fixed so the same data always gives the same picture."""

    def __init__(self, points: np.ndarray, dims: int) -> None:
        self.mean = points.mean(axis=0)  # (D,)
        centred = points - self.mean  # (n, D)
        n, d = centred.shape
        k = min(dims, n, d)
        if n < d:
            gram = centred @ centred.T  # (n, n)
            eigvals, left = scipy.linalg.eigh(gram, subset_by_index=[n - k, n - 1])  # ascending
            axes = (centred.T @ left / np.sqrt(np.clip(eigvals, 1e-12, None))).T  # (k, D)
        else:
            eigvals, right = scipy.linalg.eigh(centred.T @ centred, subset_by_index=[d - k, d - 1])  # (D, k)
            axes = right.T  # (k, D)
        axes = axes[::-1]  # largest variance first
        flip = np.sign(axes[np.arange(k), np.abs(axes).argmax(axis=1)])
        self.axes = axes * np.where(flip == 0, 1.0, flip)[:, None]  # (k, D)

    def transform(self, points: np.ndarray) -> np.ndarray:
        out = (points - self.mean) @ self.axes.T  # (n, dims')
        if out.shape[1] < 2:
            out = np.pad(out, ((0, 0), (0, 2 - out.shape[1])))
        return out


class Projector:
    """Fit once, then place new points into the same 2-D map."""

    def __init__(self, config: ProjectionConfig | None = None) -> None:
        self.config = config or ProjectionConfig()
        self.method: str | None = None  # "umap" or "pca" once fitted
        self._reduce: _PCA | None = None
        self._umap = None

    @property
    def fitted(self) -> bool:
        return self.method is not None

    def fit_transform(self, points: np.ndarray) -> np.ndarray:
        """Fit on `points` (n, D) and return their coordinates (n, 2)."""
        points = _as_matrix(points)
        cfg = self.config
        use_umap = cfg.method == "umap" or (cfg.method == "auto" and umap_available())
        if use_umap and len(points) < cfg.min_umap_points:
            use_umap = False
        if cfg.method == "umap" and not umap_available():
            raise ValueError("ProjectionConfig.method='umap' but umap-learn is not installed; install it or use 'pca'.")
        if not use_umap:
            self._reduce = _PCA(points, 2)
            self.method = "pca"
            return self._reduce.transform(points)[:, :2]
        use_writable_numba_cache()
        import umap  # deferred: importing umap compiles numba code for seconds

        if cfg.pca_dims:
            self._reduce = _PCA(points, cfg.pca_dims)
            points = self._reduce.transform(points)
        self._umap = umap.UMAP(
            n_components=2,
            n_neighbors=min(cfg.n_neighbors, len(points) - 1),
            min_dist=cfg.min_dist,
            n_epochs=cfg.n_epochs,
            init=cfg.init,
            random_state=cfg.seed,
        )
        self.method = "umap"
        return np.asarray(self._umap.fit_transform(points.astype(np.float32)), dtype=np.float64)

    def transform(self, points: np.ndarray) -> np.ndarray:
        """Place new `points` (n, D) into the fitted map: (n, 2)."""
        if not self.fitted:
            raise ValueError("Projector.transform called before fit_transform; fit on the first snapshot first.")
        points = _as_matrix(points)
        if self.method == "pca":
            return self._reduce.transform(points)[:, :2]
        if self._reduce is not None:
            points = self._reduce.transform(points)
        return np.asarray(self._umap.transform(points.astype(np.float32)), dtype=np.float64)


class GrowingMap:
    """Coordinates per sample id over a growing buffer: fitted on the first large-enough snapshot, then reused.

    Points are held back until `config.fit_after` have arrived (or `finish` is called), so the map is fitted on a
    meaningful set and is UMAP whenever the run had at least `config.min_umap_points` points. Once placed, a sample id keeps its coordinates.
    """

    def __init__(self, config: ProjectionConfig | None = None) -> None:
        self.projector = Projector(config)
        self.coords: dict[Hashable, np.ndarray] = {}
        self._pending: dict[Hashable, np.ndarray] = {}

    @property
    def method(self) -> str | None:
        return self.projector.method

    def add(self, ids: Sequence[Hashable], points: np.ndarray) -> None:
        """Add a snapshot: `ids` (n,) and their embeddings `points` (n, D); known ids keep their place."""
        points = _as_matrix(points)
        if len(ids) != len(points):
            raise ValueError(f"GrowingMap.add got {len(ids)} ids for {len(points)} points; pass one id per row.")
        fresh = {i: p for i, p in zip(ids, points) if i not in self.coords}
        if not self.projector.fitted:
            self._pending.update(fresh)
            if len(self._pending) >= self.projector.config.fit_after:
                self._fit_pending()
            return
        if fresh:
            placed = self.projector.transform(np.stack(list(fresh.values())))  # (n_new, 2)
            self.coords.update(zip(fresh, placed))

    def finish(self) -> None:
        """Fit whatever is pending even if it is small (PCA then), so every added id has coordinates."""
        if not self.projector.fitted and self._pending:
            self._fit_pending()

    def lookup(self, ids: Sequence[Hashable]) -> np.ndarray:
        """Coordinates (n, 2) of `ids`, all of which must have been added and placed."""
        self.finish()
        missing = [i for i in ids if i not in self.coords]
        if missing:
            raise ValueError(f"GrowingMap.lookup: ids {missing[:5]} were never added; add their snapshot first.")
        return np.stack([self.coords[i] for i in ids]) if ids else np.zeros((0, 2))

    def _fit_pending(self) -> None:
        ids = list(self._pending)
        if len(ids) == 1:
            self.projector.fit_transform(np.stack([self._pending[ids[0]]] * 2))
            self.coords[ids[0]] = np.zeros(2)
        else:
            placed = self.projector.fit_transform(np.stack([self._pending[i] for i in ids]))  # (n, 2)
            self.coords.update(zip(ids, placed))
        self._pending.clear()


def _as_matrix(points: np.ndarray) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or len(points) == 0:
        raise ValueError(f"expected a non-empty (n, D) array of embeddings, got shape {points.shape}.")
    if not np.isfinite(points).all():
        raise ValueError("embeddings contain NaN or inf; the run log is damaged or the scorer overflowed.")
    return points
