"""The linear probe: how much a latent says about a label, speaker-disjointly, with its chance level.

A probe is diagonal linear discriminant analysis (Dudoit, Fridlyand and Speed 2002) with equal
priors: each training fold is standardised, and a clip goes to the class whose mean is nearest,
each dimension weighted by its pooled within-class variance. With a few hundred clips against 64-256
dimensions it needs no tuning (a full covariance cannot be estimated from so few clips), equal
priors make it balanced by construction, and it scores as well as the LinearSVC it replaced (on the
shipped studies' latents: `bench/probes.py`). It is scored by balanced accuracy under speaker-grouped,
stratified cross-validation (``StratifiedGroupKFold``): no speaker is ever in both the fitted and the
scored folds. A labelling enters only through its class means, which are sums of per-speaker sums,
so the real labels and every shuffle are scored together, one product per fold (the LinearSVC was
refitted per shuffle, and that was most of a study's time after training).

Beside its accuracy stand

* ``chance``: the balanced accuracy of always answering one class, ``1 / n_classes``, and
  ``null_mean``, what the same CV scores with languages shuffled between speakers (the empirical
  chance: below ``1 / n_classes`` when there are few speakers);
* ``majority``: the plain accuracy of always answering the largest class (the original study's
  67 % baseline was this), for comparison with plain accuracies;
* a 95 % CI, by bootstrap over speakers (clips of a speaker are not independent);
* a permutation p-value: languages are shuffled between *speakers* (not clips) and the whole
  grouped CV is redone, so the null keeps each speaker's clips together.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from core.errors import DeepLanguageError

N_SPLITS = 5  # at most; fewer when a class has fewer speakers
# Per run: the smallest reachable p is 1 / 201; the seeds of a cell are then combined (Fisher).
N_PERMUTATIONS = 200
N_BOOTSTRAP = 1000


def _n_splits(y: np.ndarray, groups: np.ndarray, classes: np.ndarray) -> int:
    speakers_per_class = pd.Series(groups).groupby(classes[y]).nunique()
    n = int(min(N_SPLITS, speakers_per_class.min()))
    if n < 2:
        raise DeepLanguageError(
            f"a probe needs at least two speakers per class; class {speakers_per_class.idxmin()!r} has "
            f"{speakers_per_class.min()}. Use a dataset with more speakers or fewer languages.")
    return n


def _folds(y: np.ndarray, groups: np.ndarray, n_splits: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Speaker-grouped, stratified folds: no speaker is in both parts of any fold.

    Remembered for the last few label sets: every latent kind of a run, and every run of a study
    with the same seed, is probed on the same clips (sklearn's fold search costs more than a probe)."""
    key = (y.tobytes(), "\0".join(groups), n_splits, seed)
    if key not in _FOLDS:
        if len(_FOLDS) >= 32:
            _FOLDS.pop(next(iter(_FOLDS)))
        _FOLDS[key] = _split(y, groups, n_splits, seed)
    return _FOLDS[key]


_FOLDS: dict = {}


def _split(y: np.ndarray, groups: np.ndarray, n_splits: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    cv = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a split that can't be perfectly stratified
        return list(cv.split(np.zeros(len(y)), y, groups))


# Within-class variances are floored here (features are standardised: total variance 1), so a dimension
# that happens to be nearly constant within each class of a training fold cannot take over the decision.
MIN_VARIANCE = 1e-3


class _Folds:
    """The folds of one probe, with everything that sees no label computed once.

    Per fold: the training rows' standardisation, the held-out rows standardised alike, and each
    training speaker's sum of rows. A labelling then only picks which speakers each class mean
    sums; the pooled within-class variance of each dimension follows from those means (the total is
    1 after standardising: ``var_w = 1 - sum_k n_k / n * m_k^2``), and the scores
    ``x . (m_k / var_w) - m_k . (m_k / var_w) / 2`` of all labellings come from one product.
    """

    def __init__(self, X: np.ndarray, folds, speaker_index: np.ndarray):
        self.parts = []
        for train, test in folds:
            mean, scale = X[train].mean(0), X[train].std(0)
            scale[scale == 0] = 1.0  # a constant dimension: as StandardScaler
            x_train, x_test = (X[train] - mean) / scale, (X[test] - mean) / scale
            speakers, rows = np.unique(speaker_index[train], return_inverse=True)
            sums = np.eye(len(speakers))[rows].T @ x_train  # each training speaker's rows, summed
            self.parts.append((test, speakers, np.bincount(rows).astype(np.float64), sums, x_test))

    def predict(self, speaker_labels: np.ndarray, k: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Out-of-fold predictions ``(P, n)`` for ``P`` labellings of the speakers ``(P, n_speakers)``,
        and which labellings every training fold could fit (each class present)."""
        predicted = np.zeros((len(speaker_labels), n), dtype=np.int64)
        valid = np.ones(len(speaker_labels), dtype=bool)
        for test, speakers, counts, sums, x_test in self.parts:
            labels = speaker_labels[:, speakers]
            members = (labels[:, None, :] == np.arange(k)[None, :, None]).reshape(-1, len(speakers)).astype(float)
            clips = members @ counts  # (P * k,): each labelling's clips per class
            valid &= (clips > 0).reshape(-1, k).all(1)
            means = (members @ sums) / np.maximum(clips, 1)[:, None]  # (P * k, dim)
            between = (clips[:, None] / counts.sum() * means ** 2).reshape(-1, k, means.shape[1]).sum(1)
            variance = np.maximum(1.0 - between, MIN_VARIANCE)  # (P, dim): pooled within-class
            weights = means / np.repeat(variance, k, axis=0)
            scores = x_test @ weights.T - 0.5 * (weights * means).sum(1)  # (n_test, P * k), one gemm
            predicted[:, test] = scores.reshape(len(test), -1, k).argmax(2).T
        return predicted, valid


def balanced_accuracy(y: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray | float:
    """Mean recall over the classes present in ``y`` (integer codes); sklearn's, without its per-call
    validation. ``y`` and ``predicted`` ``(n,)`` give a float, ``(P, n)`` one accuracy per row."""
    single = np.ndim(y) == 1
    y, predicted = np.atleast_2d(y), np.atleast_2d(predicted)
    cells = y + n_classes * np.arange(len(y))[:, None]
    present = np.bincount(cells.ravel(), minlength=n_classes * len(y)).reshape(len(y), n_classes)
    hits = np.bincount(cells.ravel(), (y == predicted).ravel(), minlength=n_classes * len(y)).reshape(present.shape)
    recall = np.divide(hits, present, out=np.full(present.shape, np.nan), where=present > 0)
    accuracy = np.nanmean(recall, axis=1)
    return float(accuracy[0]) if single else accuracy


def _bootstrap(y: np.ndarray, predicted: np.ndarray, speaker_index: np.ndarray, n_speakers: int, k: int,
               n_bootstrap: int, rng: np.random.Generator) -> np.ndarray:
    """Balanced accuracies of ``n_bootstrap`` resamples of speakers (with replacement): a draw
    counts each speaker's clips and hits as often as it was drawn; draws missing a class are dropped."""
    cells = speaker_index * k + y
    clips = np.bincount(cells, minlength=n_speakers * k).reshape(n_speakers, k).astype(np.float64)
    hits = np.bincount(cells, y == predicted, minlength=n_speakers * k).reshape(n_speakers, k)
    drawn = rng.integers(0, n_speakers, (n_bootstrap, n_speakers)) + n_speakers * np.arange(n_bootstrap)[:, None]
    times = np.bincount(drawn.ravel(), minlength=n_bootstrap * n_speakers).reshape(n_bootstrap, n_speakers)
    times = times.astype(np.float64)
    counts, correct = times @ clips, times @ hits
    complete = (counts > 0).all(axis=1)
    return (correct[complete] / counts[complete]).mean(axis=1)


def probe(X: np.ndarray, y, groups, *, n_permutations: int = N_PERMUTATIONS, n_bootstrap: int = N_BOOTSTRAP,
          seed: int = 0) -> dict:
    """Probe ``X`` ``(n, dim)`` for labels ``y`` ``(n,)``, grouped by speaker ``groups`` ``(n,)``.

    Returns accuracy (balanced, out of fold), ci_low, ci_high, chance, null_mean, majority, p_value,
    n, n_classes, n_speakers, n_splits, n_permutations (the shuffles every fold could fit).
    """
    X = np.asarray(X, dtype=np.float64)
    classes, y = np.unique(np.asarray(y).astype(str), return_inverse=True)
    groups = np.asarray(groups).astype(str)
    k = len(classes)
    if k < 2:
        raise DeepLanguageError("a probe needs at least two classes.")
    n_splits = _n_splits(y, groups, classes)
    speakers, speaker_index = np.unique(groups, return_inverse=True)
    folds = _Folds(X, _folds(y, groups, n_splits, seed), speaker_index)

    rng = np.random.default_rng(seed)
    speaker_label = y[np.unique(speaker_index, return_index=True)[1]]
    # Row 0: the real labels; then the shuffles, on the same speaker folds: only which language each
    # speaker spoke changes.
    labellings = np.vstack([speaker_label, rng.permuted(np.tile(speaker_label, (n_permutations, 1)), axis=1)])
    predicted, valid = folds.predict(labellings, k, len(y))
    truth = labellings[:, speaker_index]
    scores = balanced_accuracy(truth, predicted, k)
    accuracy, null = float(scores[0]), scores[1:][valid[1:]]

    boot = _bootstrap(y, predicted[0], speaker_index, len(speakers), k, n_bootstrap, rng)
    ci_low, ci_high = np.percentile(boot, [2.5, 97.5]) if len(boot) else (np.nan, np.nan)
    p_value = (1 + np.sum(null >= accuracy)) / (1 + len(null))
    # What shuffled languages score under the same folds: the empirical chance level. With few
    # speakers it sits below 1 / classes (holding a speaker out shifts the training mean away from it).
    null_mean = float(np.mean(null)) if len(null) else np.nan
    counts = np.bincount(y, minlength=k)
    return {"accuracy": accuracy, "ci_low": float(ci_low), "ci_high": float(ci_high),
            "chance": 1.0 / k, "null_mean": null_mean, "majority": float(counts.max() / len(y)),
            "p_value": float(p_value), "n": int(len(y)), "n_classes": int(k), "n_speakers": int(len(speakers)),
            "n_splits": n_splits, "n_permutations": int(len(null))}
