"""Score fusion of several language identifiers, fitted on validation speakers' scores (never test speakers).

The standard fusion of language-recognition systems (Brummer's FoCal multiclass): each system ``s`` gives
log-probabilities ``(n, n_classes)``; the fused logits are ``sum_s alpha_s * log p_s + beta`` with one weight
per system and one offset per language, fitted by multinomial logistic regression (cross-entropy, a little L2
on the weights). Few parameters (``n_systems + n_classes``), so a few hundred validation clips fit it without
overfitting, and a system that adds nothing gets a weight near 0.

The scores it is fitted on must come from models that never saw those clips' speakers: out-of-fold scores
of an inner, speaker-grouped split of the training speakers.
"""

from __future__ import annotations

import numpy as np

L2 = 1e-3  # on the system weights, per validation clip


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


class LinearFusion:
    """``fit(scores, y)`` with scores ``(n_systems, n, n_classes)`` log-probabilities; learned ``alpha_``, ``beta_``."""

    def __init__(self, l2: float = L2):
        self.l2 = l2

    def fit(self, scores: np.ndarray, y: np.ndarray) -> "LinearFusion":
        from scipy.optimize import minimize

        scores = np.asarray(scores, dtype=np.float64)
        n_systems, n, n_classes = scores.shape
        rows = np.arange(n)

        def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
            alpha, beta = theta[:n_systems], theta[n_systems:]
            log_p = _log_softmax(np.tensordot(alpha, scores, 1) + beta)
            residual = np.exp(log_p)
            residual[rows, y] -= 1.0  # d(-log p_y)/d logits
            grad_alpha = np.einsum("snc,nc->s", scores, residual) / n + 2 * self.l2 * alpha
            return float(-log_p[rows, y].mean() + self.l2 * alpha @ alpha), \
                np.concatenate([grad_alpha, residual.mean(0)])

        start = np.concatenate([np.full(n_systems, 1.0 / n_systems), np.zeros(n_classes)])
        theta = minimize(loss, start, jac=True, method="L-BFGS-B").x
        self.alpha_, self.beta_ = theta[:n_systems], theta[n_systems:]
        return self

    def log_proba(self, scores: np.ndarray) -> np.ndarray:
        return _log_softmax(np.tensordot(self.alpha_, np.asarray(scores, dtype=np.float64), 1) + self.beta_)

    def predict_proba(self, scores: np.ndarray) -> np.ndarray:
        return np.exp(self.log_proba(scores))
