"""Accuracy with its interval: a classification report and a bootstrap over speakers (clips of one speaker are
not independent, so speakers are resampled whole)."""

from __future__ import annotations

import numpy as np

CONFIDENCE = 0.95
N_BOOTSTRAP = 2000
CHUNK_DRAWS = 1 << 21  # speaker indices drawn at once: 16 MB of them, whatever the number of speakers


def classification_report(targets: np.ndarray, predicted: np.ndarray, labels: list[str],
                          groups: np.ndarray | None = None, seed: int = 0) -> dict:
    """Accuracy, balanced accuracy, per-language recall and confusion matrix (rows: truth, columns: prediction).

    With ``groups`` (speakers), also a 95% bootstrap CI of the accuracy resampling whole speakers.
    """
    from sklearn.metrics import balanced_accuracy_score, confusion_matrix

    targets, predicted = np.asarray(targets), np.asarray(predicted)
    present = sorted(set(targets.tolist()))
    matrix = confusion_matrix(targets, predicted, labels=list(range(len(labels))))
    recall = {labels[i]: float(matrix[i, i] / matrix[i].sum()) for i in present}
    report = {
        "n_clips": int(len(targets)),
        "accuracy": float((targets == predicted).mean()),
        "balanced_accuracy": float(balanced_accuracy_score(targets, predicted)),
        "chance": 1.0 / len(present),
        "recall": recall,
        "labels": list(labels),
        "confusion": matrix.tolist(),
    }
    if groups is not None:
        report["n_speakers"] = int(len(set(groups)))
        report["accuracy_ci95"] = bootstrap_ci(targets == predicted, np.asarray(groups), seed=seed)
    return report


def bootstrap_ci(correct: np.ndarray, groups: np.ndarray, n: int = N_BOOTSTRAP, seed: int = 0) -> list[float]:
    """95% percentile-bootstrap interval of the mean of ``correct``, resampling groups (speakers) whole.

    Clips of one speaker are not independent; resampling clips would make the interval too narrow.
    Resamples are drawn ``CHUNK_DRAWS`` numbers at a time (an even count, so the generator's stream, and so the
    interval, is the one a single ``(n, n_groups)`` draw gives), so memory does not grow with n x speakers
    (that draw took 1 GB at 33k speakers).
    """
    names, inverse = np.unique(groups, return_inverse=True)
    hits = np.bincount(inverse, weights=correct.astype(float), minlength=len(names))
    sizes = np.bincount(inverse, minlength=len(names))
    rng = np.random.default_rng(seed)
    per_chunk = max(1, CHUNK_DRAWS // (2 * len(names))) * 2  # resamples per chunk, even
    means = np.empty(n)
    for start in range(0, n, per_chunk):
        draws = rng.integers(0, len(names), size=(min(per_chunk, n - start), len(names)))
        means[start:start + len(draws)] = hits[draws].sum(1) / sizes[draws].sum(1)
    alpha = (1 - CONFIDENCE) / 2
    return [float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))]
