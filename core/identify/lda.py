"""i-vector-style backends over GMM supervectors: projection, whitening, length norm, LDA, then scoring.

The recipe of the i-vector era (Dehak et al. 2011; Garcia-Romero & Espy-Wilson 2011 for length
normalisation), with a principal-axes projection standing in for the total-variability matrix:

1. standardise the supervectors ``(n, n_features)`` and project them on their top ``pca_dim`` principal
   axes (a low-rank "total variability" space);
2. whiten (unit variance along each axis) and, with ``length_norm``, scale every vector to unit length:
   it makes the within-language scatter closer to Gaussian and removes a clip's "how much it says";
3. LDA to at most ``n_classes - 1`` dimensions, scaled so the within-language covariance is the identity;
4. scoring against the languages: ``"gauss"`` (a Gaussian per language, shared covariance: linear logits),
   ``"cosine"`` (cosine similarity to each language's mean, times ``scale``) or ``"plda"`` (a
   two-covariance model: each language's mean is itself uncertain, which matters for languages with few
   clips, such as enrolled ones).

Each backend has ``fit(x, y)`` returning self and ``predict_proba(x)``, as :mod:`core.identify.backends`.
"""

from __future__ import annotations

import numpy as np

from core.identify.backends import _softmax

PCA_DIM = 400  # principal axes kept before LDA (at most n_train - 1)
WITHIN_SHRINKAGE = 0.05  # within-language covariance -> (1 - s) S_w + s * mean variance * I before LDA
COSINE_SCALE = 10.0  # cosine scores times this are the logits (a temperature refits it later)


def length_normalise(x: np.ndarray) -> np.ndarray:
    return x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-12) * np.sqrt(x.shape[1])


def principal_axes(x: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Standardiser mean and scale ``(n_features,)``, singular values ``(dim,)`` and axes ``(dim, n_features)``
    of the standardised ``x (n, n_features)``, exactly, from the ``(n, n)`` Gram matrix (n is far below
    n_features here: a few hundred clips against 14336 supervector dimensions)."""
    mean, scale = x.mean(0), x.std(0) + 1e-8
    z = (x - mean) / scale
    values, vectors = np.linalg.eigh(z @ z.T)
    order = np.argsort(values)[::-1][: min(dim, len(x) - 1)]
    s = np.sqrt(np.clip(values[order], 1e-12, None))
    return mean, scale, s, (vectors[:, order].T @ z) / s[:, None]


class LDABackend:
    """Standardise -> PCA (``pca_dim``) -> whiten -> [length norm] -> LDA -> [length norm] -> score.

    Learned: ``mean_``, ``scale_``, ``components_ (pca_dim, n_features)`` (whitening folded in),
    ``pca_mean_``, ``lda_ (pca_dim, lda_dim)``, ``class_means_ (n_classes, lda_dim)`` and the scoring's
    ``weights_``/``bias_`` (gauss) or covariances (plda).
    """

    def __init__(self, pca_dim: int = PCA_DIM, length_norm: bool = True, scoring: str = "gauss",
                 lda_dim: int | None = None, shrinkage: float = WITHIN_SHRINKAGE, scale: float = COSINE_SCALE):
        self.pca_dim, self.length_norm, self.scoring = pca_dim, length_norm, scoring
        self.lda_dim, self.shrinkage, self.scale = lda_dim, shrinkage, scale

    def fit(self, x: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None,
            axes: tuple | None = None) -> "LDABackend":
        """``axes``: :func:`principal_axes` computed before, of ``x`` or of a part of it (the clean clips
        without their augmented copies, say), with at least ``pca_dim`` axes."""
        from scipy.linalg import eigh

        self.mean_, self.scale_, s, vt = axes or principal_axes(x, self.pca_dim)
        dim = min(self.pca_dim, len(s))
        self.components_ = vt[:dim]
        # Whitening folded into the projection: every axis gets unit variance over the training vectors.
        self.components_ = self.components_ / (((x - self.mean_) / self.scale_) @ self.components_.T).std(0)[:, None]
        p = self._first_stage(x)
        self.classes_ = np.unique(y)
        index = np.searchsorted(self.classes_, y)
        means = np.stack([p[index == c].mean(0) for c in range(len(self.classes_))])
        within = p - means[index]
        s_w = within.T @ within / max(1, len(p) - len(self.classes_))
        s_w = (1 - self.shrinkage) * s_w + self.shrinkage * np.trace(s_w) / len(s_w) * np.eye(len(s_w))
        centred = means - p.mean(0)
        s_b = centred.T @ centred / len(means)
        n_lda = min(self.lda_dim or len(self.classes_) - 1, len(self.classes_) - 1, p.shape[1])
        values, vectors = eigh(s_b, s_w)  # generalised: vectors.T @ s_w @ vectors = I
        self.lda_ = vectors[:, np.argsort(values)[::-1][:n_lda]]
        q = self._second_stage(p)
        self.class_means_ = np.stack([q[index == c].mean(0) for c in range(len(self.classes_))])
        self.counts_ = np.bincount(index, minlength=len(self.classes_)).astype(float)
        residual = q - self.class_means_[index]
        self.within_ = residual.T @ residual / max(1, len(q) - len(self.classes_))
        self.between_ = np.cov(self.class_means_.T, bias=True) + 1e-6 * np.eye(q.shape[1])
        self.precision_ = np.linalg.inv(self.within_ + 1e-6 * np.eye(len(self.within_)))
        return self

    def _first_stage(self, x: np.ndarray) -> np.ndarray:
        p = ((x - self.mean_) / self.scale_) @ self.components_.T
        return length_normalise(p) if self.length_norm else p

    def _second_stage(self, p: np.ndarray) -> np.ndarray:
        q = p @ self.lda_
        return length_normalise(q) if self.length_norm else q

    def embed(self, x: np.ndarray) -> np.ndarray:
        """Supervectors ``(n, n_features)`` -> LDA space ``(n, lda_dim)``."""
        return self._second_stage(self._first_stage(x))

    def logits(self, x: np.ndarray) -> np.ndarray:
        q = self.embed(x)
        if self.scoring == "cosine":
            m = self.class_means_ / np.linalg.norm(self.class_means_, axis=1, keepdims=True)
            return self.scale * (q / (np.linalg.norm(q, axis=1, keepdims=True) + 1e-12)) @ m.T
        if self.scoring == "plda":
            return self._plda_logits(q)
        weights = self.class_means_ @ self.precision_
        return q @ weights.T - 0.5 * (weights * self.class_means_).sum(1)

    def _plda_logits(self, q: np.ndarray) -> np.ndarray:
        """Two-covariance model: class mean ~ N(m, B), x ~ N(class mean, W); log p(x | the class's clips)."""
        b_inv, w_inv = np.linalg.inv(self.between_), np.linalg.inv(self.within_)
        centre = self.class_means_.mean(0)
        out = np.zeros((len(q), len(self.classes_)))
        for c, (n, mean) in enumerate(zip(self.counts_, self.class_means_)):
            posterior = np.linalg.inv(b_inv + n * w_inv)
            mu = posterior @ (b_inv @ centre + n * w_inv @ mean)
            cov = self.within_ + posterior
            sign, logdet = np.linalg.slogdet(cov)
            d = q - mu
            out[:, c] = -0.5 * (np.einsum("ij,jk,ik->i", d, np.linalg.inv(cov), d) + logdet)
        return out

    def log_proba(self, x: np.ndarray) -> np.ndarray:
        return np.log(_softmax(self.logits(x)) + 1e-300)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return _softmax(self.logits(x))


def parse_variant(name: str) -> LDABackend | None:
    """``lda-<gauss|cosine|plda>[-p<pca_dim>][-noln][-s<shrinkage>]`` -> a backend; other names -> None."""
    parts = name.split("-")
    if parts[0] != "lda" or len(parts) < 2 or parts[1] not in ("gauss", "cosine", "plda"):
        return None
    settings = {"scoring": parts[1]}
    for part in parts[2:]:
        if part == "noln":
            settings["length_norm"] = False
        elif part.startswith("p") and part[1:].isdigit():
            settings["pca_dim"] = int(part[1:])
        elif part.startswith("s"):
            settings["shrinkage"] = float(part[1:])
        else:
            raise ValueError(f"unknown part {part!r} of backend variant {name!r}")
    return LDABackend(**settings)
