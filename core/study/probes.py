"""Linear probes on latents, and the statistics every figure of the study carries.

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

Across seeds (:func:`summarize_probes`), accuracies get a t-interval and the seeds' p-values are
combined (Fisher). Conditions are compared with Mann-Whitney U and the rank-biserial correlation
(:func:`compare_conditions`).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from scipy import stats
from sklearn import config_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from core.errors import DeepLanguageError
from core.study.latents import load_latents
from core.runs import write_json
from core.study.layout import AE, NONE, cell_label, load_study, parse_run_name, study_runs, write_tsv
from core.study.results import study_results, thresholds

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
TASK_TARGET = "target-vs-rest"
TASK_ALL = "all-languages"


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


def probe_latents(arrays: dict[str, np.ndarray], manifest: pd.DataFrame, target: str, **options) -> list[dict]:
    """Both tasks (target vs rest, all languages) for every latent kind of one run.

    Languages with clips from fewer than two speakers can't be scored speaker-disjointly: they
    are left out (named in ``dropped``) rather than scored on a speaker the probe trained on.
    """
    speakers = manifest.groupby("language")["speaker"].nunique()
    dropped = sorted(speakers.index[speakers < 2])
    keep = ~manifest["language"].isin(dropped).to_numpy()
    languages = manifest["language"].to_numpy().astype(str)[keep]
    groups = manifest["speaker"].to_numpy()[keep]
    tasks = {TASK_TARGET: np.where(languages == target, target, "other"), TASK_ALL: languages}
    rows = []
    for kind, X in arrays.items():
        for task, y in tasks.items():
            rows.append({"kind": kind, "task": task, **probe(X[keep], y, groups, **options),
                         "dropped": ",".join(dropped)})
    return rows


def probe_study(study_dir: str | Path, n_permutations: int = N_PERMUTATIONS, n_jobs: int | None = None,
                on_progress: Callable[..., None] | None = None) -> pd.DataFrame:
    """Probe the latents of every finished run of a study, ``n_jobs`` probes at once (default: all
    cores); writes ``probes.tsv`` and returns it, one row per run, latent kind and task."""
    import os

    from joblib import Parallel, delayed


    study_dir = Path(study_dir)
    config = load_study(study_dir)["config"]
    folders = [p for p in study_runs(study_dir) if (p / "latents.npz").exists()]
    if (study_dir / "identify" / "latents.npz").exists():
        folders.append(study_dir / "identify")
    jobs = []
    for folder in folders:
        arrays, manifest = load_latents(folder)
        for head in probe_heads(folder, config):
            for kind, X in arrays.items():
                jobs.append((head, {kind: X}, manifest, int(head["seed"])))
    rows = []
    parallel = Parallel(n_jobs=n_jobs or os.cpu_count() or 1, return_as="generator_unordered")
    for i, (head, result) in enumerate(parallel(
            delayed(_probe_job)(head, arrays, manifest, head["target"], n_permutations, seed)
            for head, arrays, manifest, seed in jobs)):
        rows += [{**head, **row} for row in result]
        if on_progress:
            on_progress(i + 1, len(jobs))
    table = pd.DataFrame(rows)
    if not table.empty:
        table = table.sort_values(["run", "kind", "task", "target"]).reset_index(drop=True)
        write_tsv(study_dir / "probes.tsv", table)
    return table


def probe_heads(folder: Path, config) -> list[dict]:
    """Who a latents folder belongs to: run, pretrain, target, seed, pretrain_epochs, condition (a
    label of the cell: the condition, with "@e<N>" for a dose other than the longest). A next-frame
    run is probed for its own target; the autoencoder and the identifier for every target."""
    if folder.name == "identify":
        return [{"run": "identify", "pretrain": "identify", "target": t, "seed": 0, "pretrain_epochs": 0,
                 "condition": "identify"} for t in config.targets]
    spec = parse_run_name(folder.name)
    if spec["kind"] == AE:
        return [{"run": folder.name, "pretrain": AE, "target": t, "seed": spec["seed"], "pretrain_epochs": 0,
                 "condition": AE} for t in config.targets]
    return [{"run": folder.name, **{k: spec[k] for k in ("pretrain", "target", "seed", "pretrain_epochs")},
             "condition": cell_label(spec["pretrain"], spec["pretrain_epochs"], config)}]


def _probe_job(head, arrays, manifest, target, n_permutations, seed):
    return head, probe_latents(arrays, manifest, target, n_permutations=n_permutations, seed=seed)


def load_probes(study_dir: str | Path) -> pd.DataFrame:
    path = Path(study_dir) / "probes.tsv"
    return pd.read_csv(path, sep="\t") if path.exists() else pd.DataFrame()


def mean_ci(values) -> tuple[float, float, float]:
    """Mean and 95 % t-interval of a few numbers (seeds); NaN bounds for fewer than two."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return np.nan, np.nan, np.nan
    mean = float(values.mean())
    if len(values) < 2:
        return mean, np.nan, np.nan
    half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return mean, mean - half, mean + half


def summarize_probes(table: pd.DataFrame) -> pd.DataFrame:
    """Per condition, latent kind and task: mean accuracy over seeds, its 95 % CI, chance,
    majority and the seeds' permutation p-values combined by Fisher's method."""
    rows = []
    table = table if "target" in table else table.assign(target="")
    for (task, kind, target, condition), group in table.groupby(["task", "kind", "target", "condition"],
                                                                sort=False):
        mean, low, high = mean_ci(group["accuracy"])
        if len(group) == 1:  # one model (identify): the bootstrap interval over speakers
            low, high = group["ci_low"].iloc[0], group["ci_high"].iloc[0]
        p = (stats.combine_pvalues(group["p_value"], method="fisher").pvalue if len(group) > 1
             else group["p_value"].iloc[0])
        rows.append({"task": task, "kind": kind, "target": target, "condition": condition, "n_seeds": len(group),
                     "accuracy": mean, "ci_low": low, "ci_high": high, "chance": group["chance"].iloc[0],
                     "null_mean": float(group["null_mean"].mean()) if "null_mean" in group else np.nan,
                     "majority": group["majority"].iloc[0], "p_value": float(p), "n_clips": int(group["n"].iloc[0])})
    return pd.DataFrame(rows)


def compare_conditions(table: pd.DataFrame, value: str, baseline: str = "none",
                       by: list[str] | None = None) -> pd.DataFrame:
    """Each condition against ``baseline`` on column ``value`` (one row per seed): two-sided
    Mann-Whitney U and the rank-biserial correlation ``r = 2U / (n1 n2) - 1`` (Cliff's delta):
    positive when the condition's values tend to be larger. Infinite values (runs that never
    reached the threshold) rank above every finite one."""
    rows = []
    groups = table.groupby(by, sort=False) if by else [((), table)]
    for key, part in groups:
        key = key if isinstance(key, tuple) else (key,)
        base = part.loc[part["condition"] == baseline, value].to_numpy(dtype=float)
        for condition, other in part.groupby("condition", sort=False):
            if condition == baseline or len(base) == 0:
                continue
            values = other[value].to_numpy(dtype=float)
            finite = values[np.isfinite(values)]
            if len(values) < 2 or len(base) < 2:  # one seed a side: nothing to test
                u, p = np.nan, np.nan
            else:
                # Exact, by enumerating every relabelling: right with ties and the few seeds a study has.
                result = stats.mannwhitneyu(values, base, alternative="two-sided", method=stats.PermutationMethod())
                u, p = float(result.statistic), float(result.pvalue)
            rows.append({**dict(zip(by or [], key)), "condition": condition, "baseline": baseline,
                         "n": len(values), "n_baseline": len(base),
                         "median": float(np.median(values)), "median_baseline": float(np.median(base)),
                         "mean": float(finite.mean()) if len(finite) else np.nan,
                         "u": u, "p_value": p, "rank_biserial": 2 * u / (len(values) * len(base)) - 1,
                         "min_p": float(min_attainable_p(len(values), len(base)))})
    return pd.DataFrame(rows)


def min_attainable_p(n1: int, n2: int) -> float:
    """The smallest two-sided exact Mann-Whitney p for these group sizes (3 vs 3 gives 0.1)."""
    from math import comb

    return min(1.0, 2 / comb(n1 + n2, n1))


def time_to_threshold(results: pd.DataFrame, value: str = "seconds_to_threshold") -> pd.DataFrame:
    """Per target and condition: runs, how many converged, mean and 95 % CI over converged seeds, median."""
    rows = []
    for (target, condition), group in results.groupby(["target", "condition"], sort=False):
        values = group[value].to_numpy(dtype=float)
        mean, low, high = mean_ci(values)
        rows.append({"target": target, "condition": condition, "n_runs": len(group), "n_converged": int(group["converged"].sum()),
                     "mean": mean, "ci_low": low, "ci_high": high, "median": float(np.median(values))})
    return pd.DataFrame(rows)


def study_report(study_dir: str | Path, write: bool = True) -> dict:
    """Every figure of a study, from what is on disk (no training, no probing): time and steps to
    threshold per condition with tests against "none", and the probe summary with tests.

    Returns tables as lists of dicts plus ``text``, a plain-text report; also written to ``summary.json``.
    """

    config = load_study(study_dir)["config"]
    results = study_results(study_dir)
    results["condition"] = [cell_label(p, e, config) for p, e in zip(results["pretrain"], results["pretrain_epochs"])]
    bars = thresholds(study_dir)
    report = {"study": str(study_dir), "targets": list(config.targets), "thresholds": bars,
              "time": [], "time_tests": [], "probes": [], "probe_tests": []}
    lines = [f"study {Path(study_dir).name}: targets {', '.join(config.targets)}; thresholds (validation MSE) "
             + ", ".join(f"{t} {v:.4f}" for t, v in bars.items())]
    if not results.empty:
        censored = results.copy()
        for column in ("seconds_to_threshold", "steps_to_threshold"):
            # A run that never got there took longer than any that did: +inf keeps its rank right.
            censored[column] = censored[column].astype(float).where(censored["converged"].astype(bool), np.inf)
        times, tests = [], []
        for value in ("steps_to_threshold", "seconds_to_threshold"):
            times.append(time_to_threshold(censored, value).assign(measure=value))
            tests.append(compare_conditions(censored, value, NONE, by=["target"]).assign(measure=value))
        report["time"] = pd.concat(times).to_dict("records")
        report["time_tests"] = pd.concat(tests).to_dict("records") if any(len(t) for t in tests) else []
        lines.append("\nto threshold (mean [95% CI] over converged seeds; test vs none: Mann-Whitney U, "
                     "rank-biserial r < 0 = faster):")
        for row in report["time"]:
            test = next((t for t in report["time_tests"] if t["condition"] == row["condition"]
                         and t["target"] == row["target"] and t["measure"] == row["measure"]), None)
            lines.append(f"  {row['measure']:<22} {row['target']:<6} {row['condition']:<10} {row['mean']:8.1f} "
                         f"[{row['ci_low']:.1f}, {row['ci_high']:.1f}]  converged {row['n_converged']}/{row['n_runs']}"
                         + (f"  p={test['p_value']:.3f} r={test['rank_biserial']:+.2f} (min p {test['min_p']:.3f})"
                            if test else ""))
    table = load_probes(study_dir)
    if not table.empty:
        summary = summarize_probes(table)
        report["probes"] = summary.to_dict("records")
        lstm = table[table["condition"].isin(results["condition"].unique())] if not results.empty else table
        tests = compare_conditions(lstm, "accuracy", NONE, by=["task", "kind", "target"])
        report["probe_tests"] = tests.to_dict("records")
        lines.append("\nlinear probes (balanced accuracy, speaker-grouped CV; mean [95% CI] over seeds; "
                     "chance; Fisher-combined permutation p):")
        for row in report["probes"]:
            lines.append(f"  {row['task']:<15} {row['kind']:<8} {row['target']:<6} {row['condition']:<10} "
                         f"{row['accuracy']:.3f} "
                         f"[{row['ci_low']:.3f}, {row['ci_high']:.3f}]  chance {row['chance']:.3f} "
                         f"(shuffled {row['null_mean']:.3f})  "
                         f"majority {row['majority']:.3f}  p={row['p_value']:.3g}  seeds {row['n_seeds']}")
    report["text"] = "\n".join(lines)
    if write:
        write_json(Path(study_dir) / "summary.json", {k: v for k, v in report.items() if k != "text"})
    return report
