"""i-vectors: a clip's Baum-Welch statistics against the UBM -> a low-dimensional total-variability factor.

Dehak et al. (2011): a clip's GMM mean supervector is ``m + T w`` with ``w ~ N(0, I)`` of ``rank`` dimensions;
``T`` (the total-variability matrix, ``(k * d, rank)``) is learned by EM from unlabelled clips, and a clip's
i-vector is the posterior mean of ``w`` given its statistics. Unlike a principal-axes projection of MAP
supervectors, the posterior weighs each component by how many frames it saw (``L = I + sum_c N_c T_c' T_c``),
so a short clip's sparse statistics are not taken at face value.

Statistics are centred on the UBM means and scaled by the UBM standard deviations first, so the model's
residual covariance is the identity. Arrays: ``counts (n, k)``, ``first (n, k, d)``.
"""

from __future__ import annotations

import numpy as np

RANK = 200  # i-vector dimensions
ITERATIONS = 10  # EM iterations (the likelihood gains little after about 10 here)
CHUNK = 256  # clips per block of posterior covariances


def centred_stats(stats: dict) -> tuple[np.ndarray, np.ndarray]:
    """``stats`` (counts, first, ubm_means, ubm_variances) -> counts ``(n, k)`` and whitened centred first ``(n, k * d)``."""
    counts = stats["counts"].astype(np.float64)
    first = (stats["first"] - counts[:, :, None] * stats["ubm_means"]) / np.sqrt(stats["ubm_variances"])
    return counts, first.reshape(len(counts), -1)


class TotalVariability:
    """``fit(counts, first)`` learns ``T_ (k, d, rank)`` by EM; ``transform(counts, first)`` gives i-vectors."""

    def __init__(self, rank: int = RANK, iterations: int = ITERATIONS, seed: int = 0):
        self.rank, self.iterations, self.seed = rank, iterations, seed

    def _posteriors(self, counts: np.ndarray, first: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior means ``(n, rank)`` and covariances ``(n, rank, rank)`` of the factors."""
        k, d, r = self.T_.shape
        tt = np.einsum("kdr,kds->krs", self.T_, self.T_).reshape(k, r * r)
        precision = np.eye(r)[None] + (counts @ tt).reshape(-1, r, r)
        covariance = np.linalg.inv(precision)
        projected = first @ self.T_.reshape(k * d, r)
        return np.einsum("nrs,ns->nr", covariance, projected), covariance

    def fit(self, counts: np.ndarray, first: np.ndarray, d: int | None = None) -> "TotalVariability":
        k = counts.shape[1]
        d = d or first.shape[1] // k
        rng = np.random.default_rng(self.seed)
        scale = np.sqrt((first ** 2).sum(0).reshape(k, d) / (counts.sum(0)[:, None] + 1e-9) + 1e-9)
        self.T_ = rng.standard_normal((k, d, self.rank)) * scale[:, :, None] / np.sqrt(self.rank)
        for _ in range(self.iterations):
            acc, cross = np.zeros((k, self.rank * self.rank)), np.zeros((k * d, self.rank))
            for start in range(0, len(counts), CHUNK):  # (chunk, rank, rank) arrays: bounded memory
                n, f = counts[start: start + CHUNK], first[start: start + CHUNK]
                mean, covariance = self._posteriors(n, f)
                second = covariance + mean[:, :, None] * mean[:, None, :]  # E[w w'] per clip
                acc += n.T @ second.reshape(len(n), -1)
                cross += f.T @ mean
            acc = acc.reshape(k, self.rank, self.rank)
            self.T_ = np.linalg.solve(acc, cross.reshape(k, d, self.rank).transpose(0, 2, 1)).transpose(0, 2, 1)
        return self

    def transform(self, counts: np.ndarray, first: np.ndarray) -> np.ndarray:
        """i-vectors ``(n, rank)``."""
        return np.concatenate([self._posteriors(counts[i: i + CHUNK], first[i: i + CHUNK])[0]
                               for i in range(0, len(counts), CHUNK)])
