"""Backends over GMM supervectors: from Baum-Welch statistics to language probabilities.

Backends map a batch of vectors ``(n, n_features)`` (GMM supervectors, or a pretrained encoder's pooled states
in :mod:`core.identify.pretrained`) to probabilities ``(n, n_classes)``:

* ``lr``: a multinomial logistic regression on standardised supervectors (the first shipped backend);
* ``gauss``: a linear Gaussian backend: standardise, project on the top principal axes (``dim``), then
  one Gaussian per language with a shared, shrunk covariance. Its classes are just means, so a new
  language is enrolled by adding a mean (:mod:`core.identify.enroll`), no retraining;

Each has ``fit(x, y)`` returning self and ``predict_proba(x)``, in the scikit-learn manner.
"""

from __future__ import annotations


import numpy as np
import torch

from core.identify import vectors

LR_C = 0.01  # inverse L2 strength of the logistic regression, from the first shipped recipe's CV
GAUSS_DIM = 200  # principal axes kept by the Gaussian backend (at most n_train - n_classes)
GAUSS_SHRINKAGE = 0.1  # shared covariance -> (1 - s) cov + s * mean variance * I: 900 clips for 200 dims


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


class LogisticBackend:
    """Standardise -> multinomial logistic regression (L2, ``c``), classes weighted by inverse frequency.

    Fitted over chunks of rows (:func:`core.identify.vectors.fit_logistic`, scikit-learn's objective and solver),
    so ``x`` may be a memory map larger than RAM. ``start``, a fitted backend on the same classes, is where the
    solver starts (the same optimum, reached in fewer steps when it is near: a fold from the fit on every row).
    """

    def __init__(self, c: float = LR_C, balanced: bool = True, start: LogisticBackend | None = None):
        self.c, self.balanced, self.start = c, balanced, start

    def fit(self, x: np.ndarray, y: np.ndarray, rows: np.ndarray | None = None) -> "LogisticBackend":
        """Fit on ``x[rows]`` ``(n, n_features)`` and ``y[rows]`` (all rows when None); returns self."""
        start = self.start and {name: getattr(self.start, name) for name in ("classes_", "mean_", "scale_", "coef_",
                                                                           "intercept_")}
        for name, value in vectors.fit_logistic(x, y, self.c, self.balanced, rows, start=start).items():
            setattr(self, name, value)
        return self

    def folded(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Standardiser mean and scale ``(n_features,)``, logit weight ``(n_classes, n_features)`` and bias."""
        coef, intercept = self.coef_, self.intercept_
        if len(self.classes_) == 2:  # one logit z for class 1; softmax of (-z/2, z/2) is the same sigmoid(z)
            coef, intercept = np.concatenate([-coef, coef]) / 2, np.concatenate([-intercept, intercept]) / 2
        return self.mean_, self.scale_, coef, intercept

    def log_proba(self, x: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        mean, scale, weight, bias = self.folded()
        return _log_softmax(vectors.project(x, mean, scale, weight, rows) + bias)

    def predict_proba(self, x: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        return np.exp(self.log_proba(x, rows))


class GaussianBackend:
    """Standardise -> top ``dim`` principal axes -> one Gaussian per class, shared covariance (linear scores).

    Learned: ``mean_``/``scale_`` (standardiser), ``components_ (dim, n_features)``, ``class_means_
    (n_classes, dim)``, ``precision_ (dim, dim)``. The logits are ``x P^T S mu_c - mu_c S mu_c / 2`` (flat
    prior): a linear layer, so it folds into the model's classifier.
    """

    def __init__(self, dim: int = GAUSS_DIM, shrinkage: float = GAUSS_SHRINKAGE):
        self.dim, self.shrinkage = dim, shrinkage

    def fit(self, x: np.ndarray, y: np.ndarray, rows: np.ndarray | None = None) -> "GaussianBackend":
        """Fit on ``x[rows]`` ``(n, n_features)`` and ``y[rows]`` (all rows when None), over chunks of rows."""
        rows = np.arange(len(x)) if rows is None else np.asarray(rows)
        y = np.asarray(y)[rows]
        self.mean_, std = vectors.standardizer(x, rows)
        self.scale_ = std + 1e-8
        dim = min(self.dim, len(rows) - len(np.unique(y)))
        # Top principal axes by a randomized SVD (seeded; a full SVD of thousands of augmented examples is
        # minutes), stored rounded to float16 as the checkpoint keeps them, so enrolment computes the same means.
        components = vectors.top_components(x, self.mean_, self.scale_, dim, rows)
        self.components_ = components.astype(np.float16).astype(np.float64)
        p = vectors.project(x, self.mean_, self.scale_, self.components_, rows)  # (n, dim): small beside x
        self.classes_ = np.unique(y)
        self.class_means_ = np.stack([p[y == c].mean(0) for c in self.classes_])
        within = p - self.class_means_[np.searchsorted(self.classes_, y)]
        self.set_covariance(within.T @ within / max(1, len(p) - len(self.classes_)))
        return self

    def set_covariance(self, covariance: np.ndarray) -> None:
        shrunk = (1 - self.shrinkage) * covariance + self.shrinkage * np.trace(covariance) / len(covariance) \
            * np.eye(len(covariance))
        self.covariance_ = covariance
        self.precision_ = np.linalg.inv(shrunk)

    def project(self, x: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Supervectors ``x[rows]`` ``(n, n_features)`` -> embedding ``(n, dim)``."""
        return vectors.project(x, self.mean_, self.scale_, self.components_, rows)

    def linear(self) -> tuple[np.ndarray, np.ndarray]:
        """Logit weights ``(n_classes, dim)`` and biases ``(n_classes,)`` over the embedding."""
        weights = self.class_means_ @ self.precision_
        return weights, -0.5 * (weights * self.class_means_).sum(1)

    def folded(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Standardiser mean and scale ``(n_features,)``, logit weight ``(n_classes, n_features)`` and bias."""
        weights, bias = self.linear()
        return self.mean_, self.scale_, weights @ self.components_, bias

    def log_proba(self, x: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        weights, bias = self.linear()
        z = self.project(x, rows) @ weights.T + bias
        return np.log(_softmax(z) + 1e-300)

    def predict_proba(self, x: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        return np.exp(self.log_proba(x, rows))


def linear_from_backend(components: torch.Tensor, class_means: torch.Tensor,
                        precision: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The Gaussian backend folded onto standardised supervectors: weight ``(n_classes, n_features)``, bias.

    ``components (dim, n_features)``, ``class_means (n_classes, dim)``, ``precision (dim, dim)``.
    """
    weights = class_means @ precision
    return weights @ components, -0.5 * (weights * class_means).sum(1)


def backend_entry(backend: GaussianBackend, keep: list[int]) -> dict:
    """What enrolment needs, as tensors for a checkpoint (classes ``keep`` only); the projection in float16."""
    return {"kind": "gauss", "components": torch.from_numpy(backend.components_).half(),
            "mean": torch.from_numpy(backend.mean_).float(), "scale": torch.from_numpy(backend.scale_).float(),
            "class_means": torch.from_numpy(backend.class_means_[keep]).float(),
            "precision": torch.from_numpy(backend.precision_).float(),
            "shrinkage": backend.shrinkage}
