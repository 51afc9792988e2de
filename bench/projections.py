"""Projection speed: t-SNE of 2000 x 128 latents (target <= 4 s), UMAP cold and warm, the disk cache.

Run: .venv/bin/python bench/projections.py
Ratios are against PCA on the same array, measured in this run; "vs target" against 4 s.
"""

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.study.projections import project  # noqa: E402

TARGET_TSNE_S = 4.0


def timed(function, *args, **kwargs) -> float:
    started = time.perf_counter()
    function(*args, **kwargs)
    return time.perf_counter() - started


def main() -> None:
    rng = np.random.default_rng(0)
    # Eight clusters, as languages would be, in 128 dimensions.
    centres = rng.normal(scale=2.0, size=(8, 128))
    X = (centres[rng.integers(0, 8, 2000)] + rng.normal(size=(2000, 128))).astype(np.float32)
    project(X[:50], "pca", cache_dir=None)  # imports, outside the timings
    pca = timed(project, X, "pca", cache_dir=None)
    tsne = timed(project, X, "tsne", cache_dir=None)
    umap_first = timed(project, X, "umap", cache_dir=None)
    umap_second = timed(project, X, "umap", 1, cache_dir=None)
    with tempfile.TemporaryDirectory() as folder:
        cold = timed(project, X, "tsne", 0, cache_dir=folder)
        warm = timed(project, X, "tsne", 0, cache_dir=folder)
    print(f"PCA 2000x128 (baseline)      {pca:7.3f} s")
    print(f"t-SNE 2000x128               {tsne:7.3f} s  = {tsne / pca:6.0f}x PCA, {tsne / TARGET_TSNE_S:.2f}x the 4 s target")
    print(f"UMAP first in this process   {umap_first:7.3f} s  = {umap_first / pca:6.0f}x PCA (numba cache in data/cache/numba)")
    print(f"UMAP second                  {umap_second:7.3f} s  = {umap_second / pca:6.0f}x PCA")
    print(f"t-SNE cached on disk         {warm:7.4f} s  = {warm / cold:.5f}x computing it ({cold:.2f} s)")


if __name__ == "__main__":
    main()
