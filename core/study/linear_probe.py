"""The linear probe: how much a latent says about a label, speaker-disjointly, with its chance level.

A probe is ``make_pipeline(StandardScaler(), LinearSVC(class_weight="balanced"))`` scored by
balanced accuracy under speaker-grouped, stratified cross-validation (``StratifiedGroupKFold``):
no speaker is ever in both the fitted and the scored folds. Beside its accuracy stand

* ``chance``: the balanced accuracy of always answering one class, ``1 / n_classes``, and
  ``null_mean``, what the same CV scores with languages shuffled between speakers (the empirical
  chance: below ``1 / n_classes`` when there are few speakers);
* ``majority``: the plain accuracy of always answering the largest class (the original study's
  67 % baseline was this), for comparison with plain accuracies;
* a 95 % CI, by bootstrap over speakers (clips of a speaker are not independent);
* a permutation p-value: languages are shuffled between *speakers* (not clips) and the whole
  grouped CV is redone, so the null keeps each speaker's clips together; shuffling stops early
  once the null has beaten the real score ``EXCEEDANCES`` times (a sequential test: the p-value
  stays valid, and probes at chance cost a third).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn import config_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from core.errors import DeepLanguageError

N_SPLITS = 5  # at most; fewer when a class has fewer speakers
# Per run, at most: the smallest reachable p is 1 / 21; the seeds of a cell are then combined
# (Fisher: five seeds at 1 / 21 give p < 0.001). Probing is most of a big study's time after
# training (the default matrix probes 846 latents), and it grows with this number.
N_PERMUTATIONS = 20
# Besag & Clifford's sequential Monte Carlo test (Biometrika 1991): stop permuting once this many
# shuffles scored at least the real accuracy; p is then EXCEEDANCES / permutations done. Still a
# valid p-value; a probe at chance stops after about 10 shuffles instead of running them all.
EXCEEDANCES = 5
N_BOOTSTRAP = 1000
def make_probe(seed: int = 0):
    # Strong regularisation (C=0.01): a few hundred clips against 64-256 dimensions; the primal
    # solver is the fast one here (4 ms binary, 26 ms for 12 languages on 264 x 128).
    return make_pipeline(StandardScaler(), LinearSVC(C=0.01, dual=False, class_weight="balanced", max_iter=5000,
                                                     random_state=seed))


def _n_splits(y: np.ndarray, groups: np.ndarray, classes: np.ndarray) -> int:
    speakers_per_class = pd.Series(groups).groupby(classes[y]).nunique()
    n = int(min(N_SPLITS, speakers_per_class.min()))
    if n < 2:
        raise DeepLanguageError(
            f"a probe needs at least two speakers per class; class {speakers_per_class.idxmin()!r} has "
            f"{speakers_per_class.min()}. Use a dataset with more speakers or fewer languages.")
    return n


def _folds(y: np.ndarray, groups: np.ndarray, n_splits: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Speaker-grouped, stratified folds: no speaker is in both parts of any fold."""
    cv = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a split that can't be perfectly stratified
        return list(cv.split(np.zeros(len(y)), y, groups))


class _ScaledFolds:
    """The folds of one probe with each fold's standardisation done once.

    The scaler sees no labels, so a permutation (which only relabels speakers) refits nothing
    but the SVM: fitting ``make_probe`` on ``X[train]`` gives the same model as this fits on the
    pre-scaled rows, and permutations no longer pay for the pipeline, the scaler and sklearn's
    input checks again and again (the permutation test is most of a study's probing time).
    """

    def __init__(self, X: np.ndarray, folds, seed: int):
        self.seed = seed
        self.parts = []
        for train, test in folds:
            scaler = StandardScaler().fit(X[train])
            self.parts.append((train, test, scaler.transform(X[train]), scaler.transform(X[test])))

    def predict(self, y: np.ndarray) -> np.ndarray:
        """Out-of-fold predictions (integer codes) of probes fitted on labels ``y``."""
        predicted = np.empty_like(y)
        with warnings.catch_warnings(), config_context(assume_finite=True, skip_parameter_validation=True):
            warnings.simplefilter("ignore", ConvergenceWarning)
            for train, test, x_train, x_test in self.parts:
                classes, coef, intercept = self._fit(x_train, y[train])
                scores = x_test @ coef.T + intercept
                predicted[test] = (classes[(scores[:, 0] > 0).astype(int)] if scores.shape[1] == 1
                                   else classes[scores.argmax(1)])
        return predicted

    def _fit(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``make_probe``'s LinearSVC on pre-scaled rows: ``classes, coef (n_models, dim), intercept``.

        Calls liblinear as LinearSVC.fit does, without the per-call input checks that cost as much
        as the fit itself on a few hundred rows (the same solver, numbers and seed: bit-identical,
        tests/test_probes.py checks it against the pipeline); LinearSVC itself where sklearn's
        internals differ.
        """
        svc = make_probe(self.seed)[-1]
        if len(np.unique(y)) < 2:  # as LinearSVC.fit: the caller skips such a shuffle
            raise ValueError("a probe needs samples of at least 2 classes in every training fold")
        try:
            from sklearn.svm import _liblinear

            classes, codes = np.unique(y, return_inverse=True)
            weights = len(y) / (len(classes) * np.bincount(codes).astype(np.float64))  # class_weight="balanced"
            _liblinear.set_verbosity_wrap(0)  # a process-wide switch; LinearSVC.fit sets it on every call
            raw, _ = _liblinear.train_wrap(x, codes.astype(np.float64), False, L2_LOSS_PRIMAL, svc.tol,
                                           svc.intercept_scaling, svc.C, weights, svc.max_iter, 0, 0.1,
                                           np.ones(len(y)))
            return classes, raw[:, :-1], svc.intercept_scaling * raw[:, -1]
        except (ImportError, AttributeError, TypeError, ValueError):
            svc.fit(x, y)
            return svc.classes_, svc.coef_, svc.intercept_


L2_LOSS_PRIMAL = 2  # liblinear's solver L2R_L2LOSS_SVC: LinearSVC(dual=False), squared hinge, L2 penalty


def balanced_accuracy(y: np.ndarray, predicted: np.ndarray, n_classes: int) -> float:
    """Mean recall over the classes present in ``y`` (integer codes); sklearn's, without its
    per-call validation, which would dominate a thousand bootstrap draws."""
    present = np.bincount(y, minlength=n_classes)
    hits = np.bincount(y[y == predicted], minlength=n_classes)
    return float(np.mean(hits[present > 0] / present[present > 0]))


def _bootstrap(y: np.ndarray, predicted: np.ndarray, speaker_index: np.ndarray, n_speakers: int, k: int,
               n_bootstrap: int, rng: np.random.Generator) -> np.ndarray:
    """Balanced accuracies of ``n_bootstrap`` resamples of speakers (with replacement): a draw
    counts each speaker's clips and hits as often as it was drawn; draws missing a class are dropped."""
    clips = np.zeros((n_speakers, k))
    hits = np.zeros((n_speakers, k))
    np.add.at(clips, (speaker_index, y), 1)
    np.add.at(hits, (speaker_index, y), y == predicted)
    drawn = rng.integers(0, n_speakers, (n_bootstrap, n_speakers))
    times = np.zeros((n_bootstrap, n_speakers))
    np.add.at(times, (np.arange(n_bootstrap)[:, None], drawn), 1)
    counts, correct = times @ clips, times @ hits
    complete = (counts > 0).all(axis=1)
    return (correct[complete] / counts[complete]).mean(axis=1)


def probe(X: np.ndarray, y, groups, *, n_permutations: int = N_PERMUTATIONS, n_bootstrap: int = N_BOOTSTRAP,
          seed: int = 0) -> dict:
    """Probe ``X`` ``(n, dim)`` for labels ``y`` ``(n,)``, grouped by speaker ``groups`` ``(n,)``.

    Returns accuracy (balanced, out of fold), ci_low, ci_high, chance, majority, p_value,
    n, n_classes, n_speakers, n_splits.
    """
    X = np.asarray(X, dtype=np.float64)
    classes, y = np.unique(np.asarray(y).astype(str), return_inverse=True)
    groups = np.asarray(groups).astype(str)
    k = len(classes)
    if k < 2:
        raise DeepLanguageError("a probe needs at least two classes.")
    n_splits = _n_splits(y, groups, classes)
    folds = _ScaledFolds(X, _folds(y, groups, n_splits, seed), seed)
    predicted = folds.predict(y)
    accuracy = balanced_accuracy(y, predicted, k)

    rng = np.random.default_rng(seed)
    speakers, speaker_index = np.unique(groups, return_inverse=True)
    boot = _bootstrap(y, predicted, speaker_index, len(speakers), k, n_bootstrap, rng)
    ci_low, ci_high = np.percentile(boot, [2.5, 97.5]) if len(boot) else (np.nan, np.nan)

    first_clip = np.unique(speaker_index, return_index=True)[1]
    speaker_label = y[first_clip]
    null = []
    for _ in range(n_permutations):
        # The same speaker folds as the real score: only which language each speaker spoke changes.
        shuffled = rng.permutation(speaker_label)[speaker_index]
        try:
            null.append(balanced_accuracy(shuffled, folds.predict(shuffled), k))
        except ValueError:  # a shuffle that leaves a training fold with one class
            continue
        if sum(score >= accuracy for score in null) >= EXCEEDANCES and len(null) < n_permutations:
            break
    exceed = sum(score >= accuracy for score in null)
    stopped_early = exceed >= EXCEEDANCES and len(null) < n_permutations
    p_value = exceed / len(null) if stopped_early else (1 + exceed) / (1 + len(null))
    # What shuffled languages score under the same folds: the empirical chance level. With few
    # speakers it sits below 1 / classes (holding a speaker out shifts the training mean away from it).
    null_mean = float(np.mean(null)) if null else np.nan
    counts = np.bincount(y, minlength=k)
    return {"accuracy": accuracy, "ci_low": float(ci_low), "ci_high": float(ci_high),
            "chance": 1.0 / k, "null_mean": null_mean, "majority": float(counts.max() / len(y)), "p_value": float(p_value),
            "n": int(len(y)), "n_classes": int(k), "n_speakers": int(len(speakers)),
            "n_splits": n_splits, "n_permutations": len(null)}
