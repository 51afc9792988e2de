"""GMM-token phonotactics: which acoustic units follow which, as a second view of a clip beside its supervector.

Torres-Carrasquillo et al. (2002) "GMM tokenization": every speech frame becomes the index of its most
likely UBM component (a crude acoustic unit), runs of the same token collapse into one, and a clip is its
bag of token unigrams and bigrams. Weighted by TF-IDF (sublinear counts) and classified by a logistic
regression, this captures order (which unit follows which), which the supervector's averaged statistics
lose.
"""

from __future__ import annotations

import math

import numpy as np
import torch

C = 1.0  # inverse L2 strength of the regression on TF-IDF vectors


def tokens(frames: torch.Tensor, weights: torch.Tensor, means: torch.Tensor, variances: torch.Tensor) -> np.ndarray:
    """Most likely component ``(n_frames,)`` of each frame ``(n_frames, d)`` under a diagonal GMM ``(k, d)``."""
    precision = 1.0 / variances
    constant = weights.log() - 0.5 * (variances.log().sum(1) + (means ** 2 * precision).sum(1)
                                      + frames.shape[1] * math.log(2 * math.pi))
    log_likelihood = constant - 0.5 * (frames ** 2) @ precision.T + frames @ (means * precision).T
    return log_likelihood.argmax(1).numpy()


def token_counts(sequences: list[np.ndarray], n_tokens: int):
    """Sparse counts ``(n_clips, n_tokens + n_tokens ** 2)`` of unigrams and bigrams, repeats collapsed."""
    from scipy.sparse import csr_matrix

    rows, columns = [], []
    for i, seq in enumerate(sequences):
        seq = np.asarray(seq, dtype=np.int64)
        if len(seq):
            seq = seq[np.concatenate([[True], seq[1:] != seq[:-1]])]
        grams = np.concatenate([seq, n_tokens + seq[:-1] * n_tokens + seq[1:]])
        rows.append(np.full(len(grams), i))
        columns.append(grams)
    rows, columns = np.concatenate(rows), np.concatenate(columns)
    return csr_matrix((np.ones(len(rows)), (rows, columns)), shape=(len(sequences), n_tokens + n_tokens ** 2))


class PhonotacticBackend:
    """Token n-gram counts -> TF-IDF (sublinear) -> multinomial logistic regression (balanced classes)."""

    def __init__(self, c: float = C):
        self.c = c

    def fit(self, counts, y: np.ndarray) -> "PhonotacticBackend":
        from sklearn.feature_extraction.text import TfidfTransformer
        from sklearn.linear_model import LogisticRegression

        self.tfidf_ = TfidfTransformer(sublinear_tf=True).fit(counts)
        self.model_ = LogisticRegression(C=self.c, max_iter=2000, class_weight="balanced")
        self.model_.fit(self.tfidf_.transform(counts), y)
        self.classes_ = self.model_.classes_
        return self

    def log_proba(self, counts) -> np.ndarray:
        return self.model_.predict_log_proba(self.tfidf_.transform(counts))

    def predict_proba(self, counts) -> np.ndarray:
        return np.exp(self.log_proba(counts))
