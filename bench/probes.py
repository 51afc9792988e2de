"""How long the linear probes of one study run take: the study's probe against the way it was done before.

    .venv/bin/python bench/probes.py [--study checkpoints/dose-study] [--runs 3] [--permutations 30]

A run's probes (every latent kind x {target-vs-rest, all-languages}, permutation p-values, speaker
bootstrap) are most of a big study's time after training. Two implementations on the same latents,
alternating, the median of each:

* before: the whole ``StandardScaler + LinearSVC`` pipeline refitted for every fold of every
  permutation, through sklearn's checks, and a Python loop of bootstrap resamples, always all
  ``--permutations`` shuffles;
* now (``core.study.probes.probe``): each fold standardised once (the scaler sees no labels), only
  the SVM refitted per shuffle, the bootstrap as one product, and the sequential stop
  (Besag-Clifford: done once 5 shuffles beat the real score).

Also prints whether the two give the same accuracy (they must: same folds, same SVM).
"""

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from core.study import linear_probe as probes  # noqa: E402
from core.study.latent_files import load_latents  # noqa: E402
from core.study.layout import DOSE_STUDY_DIR, parse_run_name, study_runs  # noqa: E402


def probe_before(X, y, groups, n_permutations: int, n_bootstrap: int = probes.N_BOOTSTRAP, seed: int = 0) -> float:
    """The probe as it was: returns its accuracy (what it computed besides is timed, not returned)."""
    from sklearn.exceptions import ConvergenceWarning

    X = np.asarray(X, dtype=np.float64)
    classes, y = np.unique(np.asarray(y).astype(str), return_inverse=True)
    groups = np.asarray(groups).astype(str)
    k = len(classes)
    folds = probes._folds(y, groups, probes._n_splits(y, groups, classes), seed)

    def predict(labels):
        out = np.empty_like(labels)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            for train, test in folds:
                out[test] = probes.make_probe(seed).fit(X[train], labels[train]).predict(X[test])
        return out

    predicted = predict(y)
    accuracy = probes.balanced_accuracy(y, predicted, k)
    rng = np.random.default_rng(seed)
    speakers, speaker_index = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(speaker_index == i) for i in range(len(speakers))]
    for _ in range(n_bootstrap):
        rows = np.concatenate([members[i] for i in rng.integers(0, len(speakers), len(speakers))])
        if len(np.unique(y[rows])) == k:
            probes.balanced_accuracy(y[rows], predicted[rows], k)
    speaker_label = np.array([y[m[0]] for m in members])
    for _ in range(n_permutations):
        shuffled = rng.permutation(speaker_label)[speaker_index]
        try:
            probes.balanced_accuracy(shuffled, predict(shuffled), k)
        except ValueError:  # a shuffle that leaves a training fold with one class
            continue
    return accuracy


def run_probes(folder: Path, function, n_permutations: int) -> tuple[float, list[float]]:
    arrays, manifest = load_latents(folder)
    target = parse_run_name(folder.name)["target"]
    languages = manifest["language"].to_numpy().astype(str)
    accuracies = []
    started = time.perf_counter()
    for X in arrays.values():
        for y in (np.where(languages == target, target, "other"), languages):
            accuracies.append(function(X, y, manifest["speaker"].to_numpy(), n_permutations))
    return time.perf_counter() - started, accuracies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", type=Path, default=DOSE_STUDY_DIR)
    parser.add_argument("--runs", type=int, default=3, help="runs probed by each implementation, alternating")
    parser.add_argument("--permutations", type=int, default=probes.N_PERMUTATIONS)
    args = parser.parse_args()
    folders = [p for p in study_runs(args.study)
               if parse_run_name(p.name)["kind"] == "lstm" and (p / "latents.npz").exists()][:args.runs]
    before, now, same = [], [], True
    for folder in folders:
        seconds, old = run_probes(folder, probe_before, args.permutations)
        before.append(seconds)
        seconds, new = run_probes(folder, lambda X, y, g, n: probes.probe(X, y, g, n_permutations=n)["accuracy"],
                                  args.permutations)
        now.append(seconds)
        same &= np.allclose(old, new)
    b, n = statistics.median(before), statistics.median(now)
    print(f"probes of one run ({args.study.name}, {len(folders)} runs, every latent kind x 2 tasks, up to "
          f"{args.permutations} permutations): before {b:.2f} s, now {n:.2f} s = {b / n:.1f}x faster; "
          f"same accuracies: {same}")


if __name__ == "__main__":
    main()
