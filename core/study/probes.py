"""Probing a study's latents, and the statistics every figure of the study carries.

Every finished run's latents (and the autoencoder's and the identifier's) are probed with
:func:`core.study.linear_probe.probe` for two tasks: the run's target against the rest, and all
languages. Across seeds (:func:`summarize_probes`), accuracies get a t-interval and the seeds'
p-values are combined (Fisher). Conditions are compared with Mann-Whitney U and the rank-biserial
correlation (:func:`compare_conditions`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from scipy import stats

from core.study.linear_probe import N_PERMUTATIONS, balanced_accuracy, probe  # noqa: F401  (re-exported)
from core.study.latent_files import load_latents
from core.runs import write_json
from core.study.layout import (AE, NONE, cell_label, load_study, no_probes_reason, parse_run_name, study_runs,
                               write_tsv)
from core.study.results import study_results, thresholds

TASK_TARGET = "target-vs-rest"
TASK_ALL = "all-languages"


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
                on_progress: Callable[..., None] | None = None, only: list[str] | None = None) -> pd.DataFrame:
    """Probe the latents of every finished run of a study, ``n_jobs`` probes at once (default: all
    cores); writes ``probes.tsv`` and returns it, one row per run, latent kind and task. A study
    :func:`no_probes_reason` names gets an empty table and no file. ``only``: probe these latent
    folders (run names, or "identify") again and keep the stored rows of the others."""
    import os

    from joblib import Parallel, delayed

    study_dir = Path(study_dir)
    if no_probes_reason(study_dir):
        return pd.DataFrame()
    config = load_study(study_dir)["config"]
    folders = [p for p in study_runs(study_dir) if (p / "latents.npz").exists()]
    if (study_dir / "identify" / "latents.npz").exists():
        folders.append(study_dir / "identify")
    kept = pd.DataFrame()
    if only is not None:
        folders = [f for f in folders if f.name in only]
        stored = load_probes(study_dir)
        kept = stored[~stored["run"].isin(only)] if len(stored) else stored
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
    table = pd.concat([kept, pd.DataFrame(rows)], ignore_index=True)
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
    reason = no_probes_reason(study_dir)
    if reason:
        report["probe_note"] = reason
        lines.append("\n" + reason)
    elif not table.empty:
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
