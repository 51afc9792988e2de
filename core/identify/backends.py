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

LR_C = 0.01  # inverse L2 strength of the logistic regression, from the first shipped recipe's CV
GAUSS_DIM = 200  # principal axes kept by the Gaussian backend (at most n_train - n_classes)
GAUSS_SHRINKAGE = 0.1  # shared covariance -> (1 - s) cov + s * mean variance * I: 900 clips for 200 dims


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


class LogisticBackend:
    """Standardise -> multinomial logistic regression (L2, ``c``), classes weighted by inverse frequency."""

    def __init__(self, c: float = LR_C, balanced: bool = True):
        self.c, self.balanced = c, balanced

    def fit(self, x: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None) -> "LogisticBackend":
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        self.scaler_ = StandardScaler().fit(x)
        self.model_ = LogisticRegression(C=self.c, max_iter=3000, class_weight="balanced" if self.balanced else None)
        self.model_.fit(self.scaler_.transform(x), y)
        self.classes_ = self.model_.classes_
        return self

    def folded(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Standardiser mean and scale ``(n_features,)``, logit weight ``(n_classes, n_features)`` and bias."""
        coef, intercept = self.model_.coef_, self.model_.intercept_
        if len(self.classes_) == 2:  # one logit z for class 1; softmax of (-z/2, z/2) is the same sigmoid(z)
            coef, intercept = np.concatenate([-coef, coef]) / 2, np.concatenate([-intercept, intercept]) / 2
        return self.scaler_.mean_, self.scaler_.scale_, coef, intercept

    def log_proba(self, x: np.ndarray) -> np.ndarray:
        return self.model_.predict_log_proba(self.scaler_.transform(x))

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return np.exp(self.log_proba(x))


class GaussianBackend:
    """Standardise -> top ``dim`` principal axes -> one Gaussian per class, shared covariance (linear scores).

    Learned: ``mean_``/``scale_`` (standardiser), ``components_ (dim, n_features)``, ``class_means_
    (n_classes, dim)``, ``precision_ (dim, dim)``. The logits are ``x P^T S mu_c - mu_c S mu_c / 2`` (flat
    prior): a linear layer, so it folds into the model's classifier.
    """

    def __init__(self, dim: int = GAUSS_DIM, shrinkage: float = GAUSS_SHRINKAGE):
        self.dim, self.shrinkage = dim, shrinkage

    def fit(self, x: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None) -> "GaussianBackend":
        self.mean_ = x.mean(0)
        self.scale_ = x.std(0) + 1e-8
        z = (x - self.mean_) / self.scale_
        dim = min(self.dim, len(x) - len(np.unique(y)))
        # Top principal axes by a randomized SVD (seeded; a full SVD of thousands of augmented examples is
        # minutes), stored rounded to float16 as the checkpoint keeps them, so enrolment computes the same means.
        from sklearn.utils.extmath import randomized_svd

        _, _, vt = randomized_svd(z, dim, n_iter=4, random_state=0)
        self.components_ = vt.astype(np.float16).astype(np.float64)
        p = z @ self.components_.T
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

    def project(self, x: np.ndarray) -> np.ndarray:
        """Supervectors ``(n, n_features)`` -> embedding ``(n, dim)``."""
        return ((x - self.mean_) / self.scale_) @ self.components_.T

    def linear(self) -> tuple[np.ndarray, np.ndarray]:
        """Logit weights ``(n_classes, dim)`` and biases ``(n_classes,)`` over the embedding."""
        weights = self.class_means_ @ self.precision_
        return weights, -0.5 * (weights * self.class_means_).sum(1)

    def folded(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Standardiser mean and scale ``(n_features,)``, logit weight ``(n_classes, n_features)`` and bias."""
        weights, bias = self.linear()
        return self.mean_, self.scale_, weights @ self.components_, bias

    def log_proba(self, x: np.ndarray) -> np.ndarray:
        weights, bias = self.linear()
        z = self.project(x) @ weights.T + bias
        return np.log(_softmax(z) + 1e-300)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return np.exp(self.log_proba(x))


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
