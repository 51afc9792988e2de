"""Statistics of a transfer-matrix study: paired speed-ups, their tests, Holm, and the similarity test.

Every number is compared with a stated null.

* A *cell* is one (pretraining condition, target, pretraining epochs). Its speed-up is paired by
  seed: ``steps(none) / steps(condition)`` for the same target and seed, so > 1 means the pretrained
  model reached the threshold in fewer target-phase steps. Null: pretraining changes nothing (the
  per-seed log speed-ups are symmetric around 0, speed-up 1). Test: the exact sign-flip permutation
  test of their mean (all 2^n sign patterns of n seeds; the smallest two-sided p it can give is
  2/2^n, 0.0625 with 5 seeds, which is reported beside p). So that a cell can be singled out with
  few seeds, ``p_t`` is the paired t-test of the same log speed-ups (parametric). Effect size:
  Cohen's d_z of the log speed-ups (mean / standard deviation). CI: percentile bootstrap over seeds
  of the geometric mean. Each kind of p is Holm-corrected over all cells (family-wise error 5 %).
* Area under the validation-loss curve (``auc``, fixed step budget) gives a second speed-up,
  ``auc(none) / auc(condition)``, with the same test, so a threshold alone never decides.
* "Similar languages converge faster": Spearman's rho between the similarity of (pretraining
  language, target) and the mean log speed-up of that pair, over pairs of different languages.
  Null: the speed-ups do not depend on which language is which, so the language labels of the
  similarity matrix are exchangeable (a Mantel test: rows and columns permuted together; every
  permutation when there are at most 8 languages). CI: bootstrap over seeds (whole seeds resampled,
  as a seed's pretraining is shared by every target).
* Linear probes (:func:`summarize_probes`): per condition, the mean accuracy over seeds with a
  t-interval, the seeds' permutation p-values combined by Fisher's method; conditions against
  ``none`` with an exact Mann-Whitney U and the rank-biserial correlation (:func:`compare_conditions`).

Runs that never crossed the threshold have no step count; they count as taking the whole step budget
(``censor_at``; without one, as long as the slowest run of the same target that did cross): a lower
bound, which pulls speed-ups towards 1. Each cell reports how many such runs it holds.
"""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pandas as pd

from core.errors import DeepLanguageError

NONE = "none"  # the condition without pretraining, the baseline of every speed-up
CONFIDENCE = 0.95
N_BOOTSTRAP = 2000
N_PERMUTATIONS = 9999  # random label permutations when there are too many to enumerate
MAX_EXACT_LANGUAGES = 8  # 8! = 40320 permutations: enumerated; more languages: random draws
MIN_STEPS = 1.0  # steps to threshold below this (0: below the threshold from the start) count as this
MAX_EXACT_SEEDS = 16  # 2^16 sign patterns: enumerated; more seeds: random draws


def condition_language(condition: str) -> tuple[str | None, str]:
    """``"es"`` -> ("es", "lowpass"), ``"es:full"`` -> ("es", "full"), ``"noise"``/``"none"`` -> (None, name)."""
    if condition in (NONE, "noise"):
        return None, condition
    language, _, variant = condition.partition(":")
    return language, variant or "lowpass"


def paired_log_speedups(results: pd.DataFrame, measure: str = "steps_to_threshold",
                        censor_at: float | None = None) -> pd.DataFrame:
    """One row per pretrained run with its ``none`` partner (same target and seed).

    ``results`` holds study_results' columns (pretrain, target, seed, pretrain_epochs and the
    measure). Returns pretrain, target, pretrain_epochs, seed, baseline, value, log_speedup
    (natural log of baseline / value; > 0 = faster than none) and censored (either run never
    crossed; only for steps_to_threshold). A run that never crossed counts as taking ``censor_at``
    steps (the step budget, a lower bound), or without it as many as the slowest run of its target.
    """
    table = results.copy()
    table["censored"] = False
    if measure == "steps_to_threshold":
        # A run that never crossed took at least the budget (or the slowest crossing): a lower bound.
        slowest = table.groupby("target")[measure].transform("max")
        table["censored"] = table[measure].isna()
        table[measure] = table[measure].fillna(slowest if censor_at is None else censor_at)
    baseline = (table[table["pretrain"] == NONE]
                .drop_duplicates(["target", "seed"])
                [["target", "seed", measure, "censored"]]
                .rename(columns={measure: "baseline", "censored": "baseline_censored"}))
    pretrained = table[table["pretrain"] != NONE]
    paired = pretrained.merge(baseline, on=["target", "seed"], how="inner")
    paired = paired.rename(columns={measure: "value"})
    if measure == "steps_to_threshold":
        # A run already below the threshold at step 0 would have an infinite speed-up: it counts as
        # 1 step, so its speed-up is a lower bound.
        paired[["value", "baseline"]] = paired[["value", "baseline"]].clip(lower=MIN_STEPS)
    paired = paired[(paired["value"] > 0) & (paired["baseline"] > 0)]
    paired["log_speedup"] = np.log(paired["baseline"] / paired["value"])
    paired["censored"] = paired["censored"] | paired["baseline_censored"]
    columns = ["pretrain", "target", "pretrain_epochs", "seed", "baseline", "value", "log_speedup", "censored"]
    return paired[columns].reset_index(drop=True)


def sign_flip_test(x: np.ndarray, seed: int = 0) -> float:
    """Two-sided p of the exact sign-flip permutation test that ``x``'s mean is 0 (NaN for no data)."""
    x = np.asarray(x, dtype=float)
    if len(x) == 0:
        return math.nan
    if len(x) <= MAX_EXACT_SEEDS:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=len(x))))
    else:
        signs = np.random.default_rng(seed).choice((1.0, -1.0), size=(N_PERMUTATIONS, len(x)))
        signs[0] = 1.0  # the observed pattern is one of the draws
    flipped = np.abs((signs * x).mean(1))
    return float(np.mean(flipped >= abs(x.mean()) - 1e-12))


def paired_t_test(x: np.ndarray) -> float:
    """Two-sided p of the one-sample t-test that the mean of ``x`` (log speed-ups) is 0.

    Parametric (log speed-ups roughly normal), but unlike the exact tests it can fall below 2/2^n,
    so it is the one that can single out a cell with 5 seeds. NaN under 2 values or with no spread.
    """
    from scipy.stats import ttest_1samp

    x = np.asarray(x, dtype=float)
    if len(x) < 2 or x.std() == 0:
        return math.nan
    return float(ttest_1samp(x, 0.0).pvalue)


def smallest_p(n: int) -> float:
    """The smallest two-sided p the exact sign-flip test can give with ``n`` seeds."""
    return 2.0 / 2 ** n if n else math.nan


def cohen_dz(x: np.ndarray) -> float:
    """Cohen's d_z of paired differences: mean / standard deviation (NaN under 2 values)."""
    x = np.asarray(x, dtype=float)
    if len(x) < 2:
        return math.nan
    sd = x.std(ddof=1)
    return float(x.mean() / sd) if sd > 0 else math.copysign(math.inf, x.mean()) if x.mean() else 0.0


def bootstrap_ci(x: np.ndarray, n: int = N_BOOTSTRAP, seed: int = 0) -> list[float]:
    """Percentile-bootstrap 95 % interval of the mean of ``x`` over resamples of it ([nan, nan] if empty)."""
    x = np.asarray(x, dtype=float)
    if len(x) == 0:
        return [math.nan, math.nan]
    draws = np.random.default_rng(seed).integers(0, len(x), size=(n, len(x)))
    values = x[draws].mean(1)
    alpha = (1 - CONFIDENCE) / 2
    return [float(np.quantile(values, alpha)), float(np.quantile(values, 1 - alpha))]


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error control); NaNs stay NaN and do not count."""
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full_like(p, math.nan)
    valid = np.flatnonzero(~np.isnan(p))
    order = valid[np.argsort(p[valid], kind="stable")]
    m = len(order)
    running = 0.0
    for i, index in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[index]))
        adjusted[index] = running
    return adjusted


def cell_statistics(results: pd.DataFrame, censor_at: float | None = None) -> pd.DataFrame:
    """Every pretrained cell's paired statistics, on steps to threshold and on AUC.

    Returns one row per (pretrain, target, pretrain_epochs): n_pairs, n_censored, speedup (geometric
    mean of steps(none)/steps(cell)) and speedup_ci95, p (exact sign-flip), p_min (the smallest p
    attainable with n_pairs), p_holm (Holm over every cell), effect_size (Cohen's d_z of the log
    speed-ups); auc_speedup, auc_speedup_ci95, auc_p, auc_p_holm, auc_effect_size likewise.
    """
    keys = ["pretrain", "target", "pretrain_epochs"]
    rows = {}
    for measure, prefix in (("steps_to_threshold", ""), ("auc", "auc_")):
        if measure not in results or results[measure].isna().all():
            continue
        paired = paired_log_speedups(results, measure, censor_at)
        for key, group in paired.groupby(keys, sort=True):
            x = group.sort_values("seed")["log_speedup"].to_numpy()
            row = rows.setdefault(key, dict(zip(keys, key)))
            row.update({
                f"{prefix}speedup": float(np.exp(x.mean())),
                f"{prefix}speedup_ci95": [float(np.exp(v)) for v in bootstrap_ci(x)],
                f"{prefix}p": sign_flip_test(x),
                f"{prefix}p_t": paired_t_test(x),
                f"{prefix}effect_size": cohen_dz(x),
            })
            if not prefix:
                row.update(n_pairs=len(x), n_censored=int(group["censored"].sum()), p_min=smallest_p(len(x)))
    table = pd.DataFrame(list(rows.values()))
    for prefix in ("", "auc_"):
        for p in ("p", "p_t"):
            if f"{prefix}{p}" in table:
                table[f"{prefix}{p}_holm"] = holm(table[f"{prefix}{p}"])
    return table


def spearman(x: np.ndarray, y: np.ndarray) -> np.ndarray | float:
    """Spearman's rank correlation of each row of ``x`` with ``y`` (average ranks for ties).

    ``x`` (n,) gives a float, ``x`` (n_rows, n) an array; NaN where a side is constant.
    """
    from scipy.stats import rankdata

    rx = rankdata(np.atleast_2d(x), axis=1)
    ry = rankdata(np.asarray(y, dtype=float))
    rx = rx - rx.mean(1, keepdims=True)
    ry = ry - ry.mean()
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (rx @ ry) / np.sqrt((rx ** 2).sum(1) * (ry ** 2).sum())
    return float(rho[0]) if np.ndim(x) == 1 else rho


def lookup(similarity: pd.DataFrame, rows, columns) -> np.ndarray:
    """similarity[row, column] for each pair of labels."""
    r = similarity.index.get_indexer(list(rows))
    c = similarity.columns.get_indexer(list(columns))
    return similarity.to_numpy(dtype=float)[r, c]


def mantel_test(pairs: pd.DataFrame, similarity: pd.DataFrame, seed: int = 0) -> dict:
    """Spearman's rho of similarity vs ``value`` over (language, target) pairs, with a Mantel p.

    ``pairs`` has columns language, target, value (different languages only); ``similarity`` is a
    languages x languages table (higher = more similar). The null permutes the language labels of
    the similarity table (rows and columns together): exactly, over every permutation, for up to
    MAX_EXACT_LANGUAGES languages; else N_PERMUTATIONS random ones plus the observed one.
    """
    languages = sorted(set(pairs["language"]) | set(pairs["target"]))
    missing = [lang for lang in languages if lang not in similarity.index or lang not in similarity.columns]
    if missing:
        raise DeepLanguageError(
            f"the similarity table has no entry for {', '.join(missing)}; "
            f"it covers {', '.join(map(str, similarity.index))}.")
    index = {lang: i for i, lang in enumerate(languages)}
    matrix = similarity.loc[languages, languages].to_numpy(dtype=float)
    rows, cols = pairs["language"].map(index).to_numpy(), pairs["target"].map(index).to_numpy()
    values = pairs["value"].to_numpy(dtype=float)
    result = {"n_pairs": len(pairs), "n_languages": len(languages),
              "null": "similarity labels exchangeable (Mantel permutation of languages), rho = 0"}
    rho = spearman(matrix[rows, cols], values) if len(pairs) >= 3 else math.nan
    if math.isnan(rho):
        return {**result, "rho": math.nan, "p": math.nan, "n_permutations": 0, "exact": False}
    if len(languages) <= MAX_EXACT_LANGUAGES:
        permutations = np.array(list(itertools.permutations(range(len(languages)))))
    else:
        rng = np.random.default_rng(seed)
        permutations = np.array([np.arange(len(languages))]
                                + [rng.permutation(len(languages)) for _ in range(N_PERMUTATIONS)])
    null = spearman(matrix[permutations[:, rows], permutations[:, cols]], values)
    p = float(np.mean(np.abs(np.nan_to_num(null)) >= abs(rho) - 1e-12))
    # p_min: the smallest p the test can give (only the observed labelling as extreme).
    return {**result, "rho": rho, "p": p, "n_permutations": len(permutations), "p_min": 1 / len(permutations),
            "exact": len(languages) <= MAX_EXACT_LANGUAGES}


def similarity_pairs(paired: pd.DataFrame) -> pd.DataFrame:
    """Mean log speed-up per (pretraining language, target) over seeds: low-pass language
    conditions only (not none, noise or the :full/:utero controls), target != language."""
    parsed = paired["pretrain"].map(condition_language)
    table = paired.assign(language=parsed.str[0], variant=parsed.str[1])
    table = table[(table["variant"] == "lowpass") & (table["language"] != table["target"])]
    return table.groupby(["language", "target"], as_index=False)["log_speedup"].mean().rename(
        columns={"log_speedup": "value"})


def similarity_test(results: pd.DataFrame, similarity: pd.DataFrame, measure: str = "steps_to_threshold",
                    pretrain_epochs: int | None = None, seed: int = 0, censor_at: float | None = None) -> dict:
    """Do pairs of more similar languages speed up more? rho, Mantel p and a CI over seeds.

    Uses one dose: ``pretrain_epochs`` (default: the largest in ``results``). The CI resamples whole
    seeds (with replacement) and recomputes rho over the same pairs.
    """
    paired = paired_log_speedups(results, measure, censor_at)
    if pretrain_epochs is None and len(paired):
        pretrain_epochs = paired["pretrain_epochs"].max()
    paired = paired[paired["pretrain_epochs"] == pretrain_epochs]
    pairs = similarity_pairs(paired)
    out = {"measure": measure, "pretrain_epochs": None if pretrain_epochs is None else int(pretrain_epochs),
           "statistic": "Spearman rho of similarity vs mean log speed-up, pairs of different languages"}
    if len(pairs) < 3:
        return {**out, "rho": math.nan, "p": math.nan, "ci95": [math.nan, math.nan], "n_pairs": len(pairs),
                "reason": "fewer than 3 (pretraining language, target) pairs of different languages"}
    out.update(mantel_test(pairs, similarity, seed=seed))
    out["pairs"] = pairs.assign(similarity=lookup(similarity, pairs["language"], pairs["target"])).rename(
        columns={"value": "log_speedup"}).to_dict("records")
    out["ci95"] = _seed_bootstrap_ci(paired, pairs, similarity, seed)
    out["n_seeds"] = int(paired["seed"].nunique())
    return out


def _seed_bootstrap_ci(paired: pd.DataFrame, pairs: pd.DataFrame, similarity: pd.DataFrame,
                       seed: int) -> list[float]:
    """95 % interval of rho over resamples of whole seeds (the pairs stay, their means change)."""
    parsed = paired["pretrain"].map(condition_language)
    grid = (paired.assign(language=parsed.str[0])[parsed.str[1] == "lowpass"]
            .pivot_table(index=["language", "target"], columns="seed", values="log_speedup")
            .reindex(pd.MultiIndex.from_frame(pairs[["language", "target"]])))
    values = grid.to_numpy(dtype=float)  # (n_pairs, n_seeds)
    draws = np.random.default_rng(seed).integers(0, values.shape[1], size=(N_BOOTSTRAP, values.shape[1]))
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a pair with no seed in a draw: NaN, dropped
        means = np.nanmean(values[:, draws], axis=2).T  # (N_BOOTSTRAP, n_pairs)
    similarity_values = lookup(similarity, pairs["language"], pairs["target"])
    # A draw in which some pair has none of its seeds (possible only if seeds are missing) is dropped.
    means = means[~np.isnan(means).any(1)]
    rhos = spearman(means, similarity_values) if len(means) else np.array([])
    rhos = rhos[~np.isnan(rhos)]
    if not len(rhos):
        return [math.nan, math.nan]
    alpha = (1 - CONFIDENCE) / 2
    return [float(np.quantile(rhos, alpha)), float(np.quantile(rhos, 1 - alpha))]


def mean_ci(values) -> tuple[float, float, float]:
    """Mean and 95 % t-interval of a few numbers (seeds); NaN bounds for fewer than two."""
    from scipy.stats import t

    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return math.nan, math.nan, math.nan
    mean = float(values.mean())
    if len(values) < 2:
        return mean, math.nan, math.nan
    half = t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return mean, mean - half, mean + half


def summarize_probes(table: pd.DataFrame) -> pd.DataFrame:
    """Per task, latent kind, target and condition of a probes table: n_seeds, mean accuracy over seeds
    and its 95 % CI, chance, null_mean (the shuffled labels' mean accuracy), majority, the seeds'
    permutation p-values combined by Fisher's method, n_clips."""
    from scipy.stats import combine_pvalues

    rows = []
    table = table if "target" in table else table.assign(target="")
    for (task, kind, target, condition), group in table.groupby(["task", "kind", "target", "condition"],
                                                                sort=False):
        mean, low, high = mean_ci(group["accuracy"])
        if len(group) == 1:  # one model (identify): the bootstrap interval over speakers
            low, high = group["ci_low"].iloc[0], group["ci_high"].iloc[0]
        p = (combine_pvalues(group["p_value"], method="fisher").pvalue if len(group) > 1
             else group["p_value"].iloc[0])
        rows.append({"task": task, "kind": kind, "target": target, "condition": condition, "n_seeds": len(group),
                     "accuracy": mean, "ci_low": low, "ci_high": high, "chance": group["chance"].iloc[0],
                     "null_mean": float(group["null_mean"].mean()) if "null_mean" in group else math.nan,
                     "majority": group["majority"].iloc[0], "p_value": float(p), "n_clips": int(group["n"].iloc[0])})
    return pd.DataFrame(rows)


def compare_conditions(table: pd.DataFrame, value: str, baseline: str = NONE,
                       by: list[str] | None = None) -> pd.DataFrame:
    """Each condition against ``baseline`` on column ``value`` (one row per seed): two-sided exact
    Mann-Whitney U and the rank-biserial correlation ``r = 2U / (n1 n2) - 1`` (Cliff's delta): positive
    when the condition's values tend to be larger; min_p is the smallest p the group sizes allow.
    Infinite values rank above every finite one."""
    from scipy.stats import PermutationMethod, mannwhitneyu

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
            u, p = math.nan, math.nan  # one seed a side: nothing to test
            if len(values) >= 2 and len(base) >= 2:
                # Exact, by enumerating every relabelling: right with ties and the few seeds a study has.
                result = mannwhitneyu(values, base, alternative="two-sided", method=PermutationMethod())
                u, p = float(result.statistic), float(result.pvalue)
            rows.append({**dict(zip(by or [], key)), "condition": condition, "baseline": baseline,
                         "n": len(values), "n_baseline": len(base),
                         "median": float(np.median(values)), "median_baseline": float(np.median(base)),
                         "mean": float(finite.mean()) if len(finite) else math.nan,
                         "u": u, "p_value": p, "rank_biserial": 2 * u / (len(values) * len(base)) - 1,
                         "min_p": min_attainable_p(len(values), len(base))})
    return pd.DataFrame(rows)


def min_attainable_p(n1: int, n2: int) -> float:
    """The smallest two-sided exact Mann-Whitney p for these group sizes (3 vs 3 gives 0.1)."""
    return min(1.0, 2 / math.comb(n1 + n2, n1))
