"""Per-clip vectors kept on disk, and the linear algebra the backends need done over them in chunks of rows.

A GMM supervector is 14,336 numbers (256 components x 56): 8x the embedded sample, augmented, is about 18,000 of
them, 2 GB as float64, and a Common Voice release 1000 times more. So they are written once, as float16, to a
:class:`VectorStore` (an append-only file read back as a memory map), and everything fitted on them reads them
``CHUNK_ROWS`` at a time: the standardiser (:func:`standardizer`), the logistic regression (:func:`fit_logistic`,
scikit-learn's objective and L-BFGS settings with its loss summed chunk by chunk) and the Gaussian backend's
principal axes (:func:`top_components`, scikit-learn's ``randomized_svd`` with its products summed chunk by chunk).
``x`` is an array ``(n, n_features)`` in RAM or a store's memory map; ``rows`` picks the rows used (all if None).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator

import numpy as np

from core.files import atomic_path

CHUNK_ROWS = 512  # rows per chunk: 512 x 14,336 float64 is 59 MB


class VectorStore:
    """Float16 rows ``(n, dim)`` appended to ``<folder>/vectors.f16`` by units (a clip and its copies).

    ``units.json`` names the units in order (what a rerun must match to resume) and ``counts.npy`` holds how many
    rows each finished unit wrote; both are rewritten (to a temporary name, then renamed) after the rows of each
    :meth:`append` are on disk, so a killed run resumes after its last whole chunk of units.
    """

    def __init__(self, folder: Path, dim: int, units: list[str]):
        self.folder, self.dim = Path(folder), dim
        self.folder.mkdir(parents=True, exist_ok=True)
        self.data = self.folder / "vectors.f16"
        names = self.folder / "units.json"
        stored = json.loads(names.read_text()) if names.exists() else None
        counts = self.folder / "counts.npy"
        if stored != {"dim": dim, "units": units} or not counts.exists():
            with atomic_path(names) as tmp:
                tmp.write_text(json.dumps({"dim": dim, "units": units}))
            self.counts = np.zeros(0, dtype=np.int64)
            self._write_counts()
        else:
            self.counts = np.load(counts)
        with open(self.data, "ab") as handle:  # rows past the last recorded unit are from a killed run: dropped
            handle.truncate(int(self.counts.sum()) * dim * 2)

    @property
    def n_units_done(self) -> int:
        return len(self.counts)

    def append(self, blocks: list[np.ndarray]) -> None:
        """The rows ``(n_i, dim)`` of the next ``len(blocks)`` units, flushed to disk before they are counted."""
        with open(self.data, "ab") as handle:
            for block in blocks:
                handle.write(np.ascontiguousarray(block, dtype=np.float16).tobytes())
            handle.flush()
            os.fsync(handle.fileno())
        self.counts = np.concatenate([self.counts, [len(b) for b in blocks]]).astype(np.int64)
        self._write_counts()

    def _write_counts(self) -> None:
        with atomic_path(self.folder / "counts.npy") as tmp:
            with open(tmp, "wb") as handle:
                np.save(handle, self.counts)

    def rows(self) -> np.ndarray:
        """Every row so far as a read-only memory map ``(n, dim)`` float16."""
        n = int(self.counts.sum())
        if n == 0:
            return np.zeros((0, self.dim), dtype=np.float16)
        return np.memmap(self.data, dtype=np.float16, mode="r", shape=(n, self.dim))


def chunks(x: np.ndarray, rows: np.ndarray | None = None, size: int = CHUNK_ROWS) -> Iterator[np.ndarray]:
    """``x[rows]`` as float64 blocks of at most ``size`` rows, in order."""
    rows = np.arange(len(x)) if rows is None else np.asarray(rows)
    for start in range(0, len(rows), size):
        part = rows[start: start + size]
        contiguous = len(part) and part[-1] - part[0] == len(part) - 1 and bool(np.all(np.diff(part) == 1))
        block = x[part[0]: part[-1] + 1] if contiguous else x[part]
        yield np.asarray(block, dtype=np.float64)


def standardizer(x: np.ndarray, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (population) standard deviation per column of ``x[rows]``, in two passes over chunks."""
    n = len(x) if rows is None else len(rows)
    mean = sum(block.sum(0) for block in chunks(x, rows)) / n
    variance = sum(((block - mean) ** 2).sum(0) for block in chunks(x, rows)) / n
    return mean, np.sqrt(variance)


def fit_logistic(x: np.ndarray, y: np.ndarray, c: float, balanced: bool, rows: np.ndarray | None = None,
                 max_iter: int = 3000, tol: float = 1e-4, start: dict | None = None) -> dict:
    """L2 logistic regression on standardised ``x[rows]``: scikit-learn's ``LogisticRegression(C=c, lbfgs)``.

    The same objective (multinomial for 3+ classes, binomial for 2; intercepts unpenalised; ``class_weight=
    "balanced"`` as sample weights; the penalty scaled by the weights' sum) and the same L-BFGS settings,
    started from zero, so the result is the same to the solver's tolerance. Returns ``classes_``, the
    standardiser's ``mean_``/``scale_`` and ``coef_ (k, n_features)`` / ``intercept_ (k,)``, ``k`` = 1 for
    two classes.

    ``start``, an earlier result on the same classes (say, on every row, before the folds that each leave some
    out), is where the solver starts instead: the same logits, re-expressed in this fit's standardisation.
    The optimum is the same (the objective is strictly convex); only the path to it is shorter.
    """
    from scipy.optimize import minimize

    rows = np.arange(len(x)) if rows is None else np.asarray(rows)
    classes, index = np.unique(np.asarray(y)[rows], return_inverse=True)
    mean, std = standardizer(x, rows)
    scale = np.where(std < 10 * np.finfo(float).eps, 1.0, std)  # StandardScaler keeps constant columns as they are
    weights = (len(rows) / (len(classes) * np.bincount(index)))[index] if balanced else np.ones(len(rows))
    d, k = x.shape[1], 1 if len(classes) == 2 else len(classes)
    l2 = 1.0 / (c * weights.sum())

    def loss_gradient(w: np.ndarray) -> tuple[float, np.ndarray]:
        coef, intercept = w[: d * k].reshape(d, k), w[d * k:]
        # Standardisation folded into the weights: z @ W + b = x @ (W / s) + (b - (m / s) @ W).
        folded, offset = coef / scale[:, None], intercept - (mean / scale) @ coef
        loss, grad_x, grad_b, start = 0.0, np.zeros((d, k)), np.zeros(k), 0
        for block in chunks(x, rows):
            part = slice(start, start + len(block))
            logits = block @ folded + offset
            if k == 1:
                logits = np.concatenate([np.zeros((len(block), 1)), logits], axis=1)
            logits -= logits.max(1, keepdims=True)
            log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
            loss -= (weights[part] * log_p[np.arange(len(block)), index[part]]).sum()
            error = np.exp(log_p)
            error[np.arange(len(block)), index[part]] -= 1.0
            error = weights[part, None] * (error[:, 1:] if k == 1 else error)
            grad_x += block.T @ error
            grad_b += error.sum(0)
            start += len(block)
        total = weights.sum()
        grad_coef = (grad_x / scale[:, None] - np.outer(mean / scale, grad_b)) / total + l2 * coef
        value = loss / total + 0.5 * l2 * float((coef ** 2).sum())
        return value, np.concatenate([grad_coef.ravel(), grad_b / total])

    result = minimize(loss_gradient, _start(start, classes, mean, scale, d, k), method="L-BFGS-B", jac=True,
                      options={"maxiter": max_iter, "maxls": 50, "gtol": tol, "ftol": 64 * np.finfo(float).eps})
    return {"classes_": classes, "mean_": mean, "scale_": scale, "coef_": result.x[: d * k].reshape(d, k).T.copy(),
            "intercept_": result.x[d * k:].copy()}


def _start(start: dict | None, classes: np.ndarray, mean: np.ndarray, scale: np.ndarray, d: int, k: int) -> np.ndarray:
    """The solver's first point: zero, or ``start``'s function of x in this fit's standardisation."""
    if start is None or not np.array_equal(start["classes_"], classes):
        return np.zeros(d * k + k)
    coef = start["coef_"].T * (scale / start["scale_"])[:, None]  # (d, k): the same weight on each raw column
    intercept = start["intercept_"] - (start["mean_"] / start["scale_"]) @ start["coef_"].T + (mean / scale) @ coef
    return np.concatenate([coef.ravel(), intercept])


def top_components(x: np.ndarray, mean: np.ndarray, scale: np.ndarray, dim: int, rows: np.ndarray | None = None,
                   n_iter: int = 4, n_oversamples: int = 10, seed: int = 0) -> np.ndarray:
    """The top ``dim`` right singular vectors ``(dim, n_features)`` of ``z = (x[rows] - mean) / scale``.

    scikit-learn's ``randomized_svd(z, dim, n_iter=n_iter, random_state=seed)`` step for step (the same
    random start, LU-normalised power iterations, QR, SVD and sign rule), with every product by ``z`` or
    ``z.T`` summed over chunks of rows, so ``z`` is never whole in RAM.
    """
    from scipy import linalg
    from sklearn.utils.extmath import svd_flip

    rows = np.arange(len(x)) if rows is None else np.asarray(rows)
    n, size = len(rows), dim + n_oversamples
    transpose = n < x.shape[1]  # as randomized_svd: work on z.T when it is wider than tall

    def z_times(q: np.ndarray) -> np.ndarray:  # z @ q: (n_features, r) -> (n, r)
        return np.concatenate([((block - mean) / scale) @ q for block in chunks(x, rows)])

    def z_t_times(q: np.ndarray) -> np.ndarray:  # z.T @ q: (n, r) -> (n_features, r)
        out, start = np.zeros((x.shape[1], q.shape[1])), 0
        for block in chunks(x, rows):
            out += ((block - mean) / scale).T @ q[start: start + len(block)]
            start += len(block)
        return out

    a_times, a_t_times = (z_t_times, z_times) if transpose else (z_times, z_t_times)
    q = np.random.RandomState(seed).normal(size=(n if transpose else x.shape[1], size))
    for _ in range(n_iter):
        q, _ = linalg.lu(a_times(q), permute_l=True, check_finite=False)
        q, _ = linalg.lu(a_t_times(q), permute_l=True, check_finite=False)
    q, _ = linalg.qr(a_times(q), mode="economic", check_finite=False)
    u_hat, _, vt = linalg.svd(a_t_times(q).T, full_matrices=False, lapack_driver="gesdd")
    u = q @ u_hat
    if transpose:
        u, vt = svd_flip(u, vt, u_based_decision=False)
        return u[:, :dim].T
    u, vt = svd_flip(u, vt)
    return vt[:dim]


def project(x: np.ndarray, mean: np.ndarray, scale: np.ndarray, components: np.ndarray,
            rows: np.ndarray | None = None) -> np.ndarray:
    """``((x[rows] - mean) / scale) @ components.T``, chunk by chunk: ``(n, dim)``."""
    parts = [((block - mean) / scale) @ components.T for block in chunks(x, rows)]
    return np.concatenate(parts) if parts else np.zeros((0, len(components)))
