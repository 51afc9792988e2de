"""2-D projections of latents (PCA, t-SNE, UMAP) through one cached function.

``project(X, method, seed)`` is keyed by a hash of the array's bytes and the parameters, and
the result is kept as ``.npy`` under ``data/cache/projections``: a page view, a rerun or a
second process never recomputes a projection it has made before.

UMAP's numba code is compiled the first time it runs in a process (about 10 s). numba keeps
the compiled code on disk when ``NUMBA_CACHE_DIR`` names a writable folder, so this module
points it at ``data/cache/numba`` (unless already set) before umap is imported, lazily, the
first time UMAP is asked for: the compile is then paid once per machine, not per page view.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from core.files import save_array
from core.errors import DeepLanguageError
from core.paths import CACHE_DIR

PROJECTIONS_DIR = CACHE_DIR / "projections"
NUMBA_CACHE_DIR = CACHE_DIR / "numba"
METHODS = ("pca", "tsne", "umap")
PERPLEXITY = 30.0  # t-SNE's neighbourhood size; lowered for small samples
TSNE_ITERATIONS = 500  # 250 exaggerated + 250 free: the layout has settled; 1000 would double the time
TSNE_PCA_DIMS = 50  # t-SNE runs on the first 50 principal components (the usual trick): 8x faster on 2000 x 128
N_NEIGHBORS = 15  # UMAP's
# At most this many points are projected: t-SNE grows as n^1.4 (143 s at 16k points, about 45 min at 135k) and
# UMAP took 52 s at 16k, while 5000 points of a dozen languages already show every cloud.
MAX_POINTS = 5000


def _reducer(method: str, n: int, dim: int, seed: int):
    """A fresh estimator per method: the loop-over-a-dict of scikit-learn's examples, by name."""
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed)
    if method == "tsne":
        from sklearn.manifold import TSNE

        from sklearn.decomposition import PCA
        from sklearn.pipeline import make_pipeline

        tsne = TSNE(n_components=2, perplexity=min(PERPLEXITY, max(2.0, (n - 1) / 3)), init="pca",
                    max_iter=TSNE_ITERATIONS, random_state=seed)
        return make_pipeline(PCA(n_components=min(TSNE_PCA_DIMS, n, dim), random_state=seed), tsne)
    os.environ.setdefault("NUMBA_CACHE_DIR", str(NUMBA_CACHE_DIR))
    Path(os.environ["NUMBA_CACHE_DIR"]).mkdir(parents=True, exist_ok=True)
    import umap  # lazily: importing it costs seconds, and it compiles with numba

    return umap.UMAP(n_components=2, n_neighbors=min(N_NEIGHBORS, n - 1), random_state=seed, n_jobs=1)


def warm_up_umap() -> None:
    """Import umap and fit a tiny random set, so its numba compile is paid before anyone asks.

    umap and pynndescent compile many functions without numba's disk cache, so every new process
    pays several seconds; the dashboard calls this once per server process, in a background thread.
    """
    points = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    with _one_thread():
        _reducer("umap", len(points), points.shape[1], 0).fit_transform(points)


def _one_thread():
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1)


def projection_key(X: np.ndarray, method: str, seed: int) -> str:
    """Hash of the array (bytes, shape, dtype) and every parameter that changes the result."""
    X = np.ascontiguousarray(X)
    digest = hashlib.sha1(X.tobytes())
    digest.update(json.dumps({"shape": X.shape, "dtype": str(X.dtype), "method": method, "seed": seed,
                              "perplexity": PERPLEXITY, "n_neighbors": N_NEIGHBORS,
                              "tsne": [TSNE_ITERATIONS, TSNE_PCA_DIMS]}).encode())
    return digest.hexdigest()[:20]


def sample_rows(n: int, max_points: int = MAX_POINTS, seed: int = 0) -> np.ndarray:
    """Sorted row indices of at most ``max_points`` of ``n`` rows: all of them, or a uniform random sample
    without replacement drawn with ``seed`` (the same rows every time)."""
    if n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))


def project_sample(X: np.ndarray, method: str = "pca", seed: int = 0, max_points: int = MAX_POINTS,
                   cache_dir: str | Path | None = PROJECTIONS_DIR) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, xy)``: :func:`project` of at most ``max_points`` rows of ``X`` (:func:`sample_rows`, ``seed``),
    ``rows`` the indices projected and ``xy`` their ``(len(rows), 2)`` coordinates."""
    rows = sample_rows(len(X), max_points, seed)
    return rows, project(np.asarray(X)[rows], method, seed, cache_dir)


def project(X: np.ndarray, method: str = "pca", seed: int = 0, cache_dir: str | Path | None = PROJECTIONS_DIR
            ) -> np.ndarray:
    """``(n, dim)`` -> ``(n, 2)`` float32 by ``method`` (pca, tsne or umap), cached on disk by its inputs.

    Features are standardised first, as the probes see them. ``cache_dir=None`` computes without caching.
    """
    method = method.lower()
    if method not in METHODS:
        raise DeepLanguageError(f"unknown projection {method!r}; choose one of {', '.join(METHODS)}.")
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or len(X) < 3:
        raise DeepLanguageError(f"a projection needs at least 3 points of 2-D data; got shape {X.shape}.")
    path = Path(cache_dir) / f"{method}-{projection_key(X, method, seed)}.npy" if cache_dir else None
    if path is not None and path.exists():
        try:
            return np.load(path)
        except (OSError, ValueError):
            pass  # a damaged file is recomputed and replaced
    scaled = (X - X.mean(axis=0)) / np.maximum(X.std(axis=0), 1e-6)
    # One thread: on 2 shared cores t-SNE's OpenMP threads fight other jobs and run 4-40x slower
    # (2000 points: 40 s with the default threads under load, 9.5 s with one; 80 points: 10 s vs 0.2 s).
    with _one_thread():
        result = _reducer(method, len(X), X.shape[1], seed).fit_transform(scaled).astype(np.float32)
    if path is not None:
        try:
            save_array(path, result)
        except OSError:
            pass  # read-only: still correct, just not cached
    return result
