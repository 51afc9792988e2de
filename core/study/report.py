"""The summary of a transfer-matrix study: every cell's speed-up with its test, dose, similarity, probes.

:func:`study_summary` is the study's one summary: ``python -m core report --json`` prints it, the
Convergence and Latent space pages show it, :mod:`core.study.report_html` renders it with the figures
into one self-contained HTML file and :mod:`core.study.report_text` into the text that ``study`` and
``probe`` print.
The summary is cached in ``<study>/report_summary.json``, keyed by the study's result files and the
stored similarities, so a page rerun does not redo the bootstraps and permutations.

A study that is still running (or was stopped) is summarised from its finished runs; ``progress``
lists every planned run that has no result yet.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from core import runs
from core.errors import DeepLanguageError
from core.files import write_json
from core.paths import CV_SAMPLE_DIR, DEMO_CORPUS_DIR
from core.study import similarity, stats
from core.study.layout import cell_label, load_study, no_probes_reason, portable, resolve, study_runs
from core.study.results import load_probes, study_curves, study_results

CACHE_NAME = "report_summary.json"
CACHE_VERSION = 5  # bump when the summary's content changes, so old caches are recomputed
MAX_MISSING_LISTED = 50  # an unfinished study names at most this many missing runs (and counts the rest)
MODEL_FIELDS = ("hidden_size", "n_layers", "crop_frames", "batch_size", "learning_rate", "eval_every",
                "budget_steps", "pretrain_epoch_steps", "group_size", "max_epochs")


def study_summary(study_dir: str | Path, use_cache: bool = True) -> dict:
    """One JSON-ready dict summarising a study (see the module docstring); NaN becomes None.

    Keys: study, data, model, filters, threshold, progress, cells, dose, similarity,
    similarity_methods, probes, probe_tests, identify_latents (which model made the "identify" latents,
    else None), probe_note (why a study has no probes, else None), commands, definitions.
    core.study.report_text renders it as the plain text the CLI prints.
    """
    study_dir = Path(study_dir)
    study = load_study(study_dir)
    key = _cache_key(study_dir)
    cache = study_dir / CACHE_NAME
    if use_cache:
        stored = runs.read_json(cache, {})
        if stored.get("key") == key:
            return stored["summary"]
    summary = _clean(_summarize(study_dir, study))
    try:
        write_json(cache, {"key": key, "summary": summary})
    except OSError:  # a read-only shipped study: summarise every time
        pass
    return summary


def contract_results(results: pd.DataFrame, config) -> pd.DataFrame:
    """Results in the matrix columns (pretrain, target, pretrain_epochs, ...), also from a one-target
    study whose table names the pretraining ``condition`` only."""
    results = results.copy()
    if "pretrain" not in results and "condition" in results:
        results = results.rename(columns={"condition": "pretrain"})
    if "target" not in results:
        results["target"] = getattr(config, "target", "")
    if "pretrain_epochs" not in results:
        results["pretrain_epochs"] = _doses(config)[-1]
    if "auc" not in results:
        results["auc"] = math.nan
    results["pretrain_epochs"] = results["pretrain_epochs"].where(results["pretrain"] != stats.NONE, 0)
    return results


def study_curves_long(study_dir: str | Path, config) -> pd.DataFrame:
    """Validation curves: pretrain, target, seed, pretrain_epochs, step, val_loss."""
    curves = study_curves(study_dir)
    curves = curves[0] if isinstance(curves, tuple) else curves
    return contract_results(curves, config).drop(columns=["auc"])


def _summarize(study_dir: Path, study: dict) -> dict:
    config = study["config"]
    results = contract_results(study_results(study_dir), config)
    censor_at = getattr(config, "budget_steps", None)  # a run that never crossed took at least the budget
    cells = stats.cell_statistics(results, censor_at) if len(results) else pd.DataFrame()
    if len(cells):  # in the order the study lists its conditions and targets, as a reader set them
        order = {"pretrain": list(dict.fromkeys(config.pretrain)), "target": _targets(config)}
        cells = cells.sort_values(["pretrain", "target", "pretrain_epochs"], kind="stable", key=lambda column: (
            column.map({name: i for i, name in enumerate(order[column.name])}) if column.name in order
            else column)).reset_index(drop=True)
    return {
        "study": portable(study_dir),
        "data": data_summary(study_dir, study),
        "model": {"kind": "next-frame LSTM on log-mels", **{k: getattr(config, k) for k in MODEL_FIELDS
                                                             if hasattr(config, k)}},
        "filters": {"lowpass_cutoff_hz": getattr(config, "cutoff_hz", None),
                    "conditions": list(dict.fromkeys(config.pretrain))},
        "threshold": threshold_summary(results, study),
        "progress": progress_summary(results, config),
        "cells": cell_records(results, cells),
        "dose": dose_records(results, censor_at),
        **similarity_summary(results, censor_at, study_dir),
        **probe_summary(study_dir, results, config),
        "identify_latents": runs.read_json(study_dir / "identify" / "about.json", None),  # which model made them
        "probe_note": no_probes_reason(study_dir),
        "commands": commands(study_dir, study),
        "definitions": {
            "speedup": "geometric mean over seeds of steps(none) / steps(cell), same target and seed; > 1 = faster",
            "auc_speedup": "the same with the area under the validation-loss curve over a fixed step budget",
            "p": "exact two-sided sign-flip permutation test of the mean log speed-up (null: speed-up 1); "
                 "p_min is the smallest p attainable with n_runs seeds",
            "p_t": "paired t-test of the per-seed log speed-ups against 0 (parametric; it can fall below p_min)",
            "p_holm, p_t_holm": "Holm-adjusted over every cell (family-wise error 5 %); the matrix marks "
                                "cells with p_t_holm < 0.05",
            "effect_size": "Cohen's d_z of the per-seed log speed-ups",
            "ci95": "percentile bootstrap over seeds",
            "probes": "balanced accuracy of a speaker-grouped linear probe (diagonal LDA, equal priors): mean over "
                      "seeds with a 95 % t-interval "
                      "(one model: bootstrap over speakers); p_value: the seeds' permutation p combined by Fisher's "
                      "method; null_mean: mean accuracy on shuffled labels",
            "probe_tests": "each LSTM condition against none on probe accuracy over seeds: exact two-sided "
                           "Mann-Whitney U; rank_biserial = 2U / (n n_baseline) - 1 (> 0 = higher); min_p: the "
                           "smallest p these seed counts allow",
        },
    }


def threshold_summary(results: pd.DataFrame, study: dict) -> dict:
    """The threshold rule in words and its value per target (validation MSE on normalised log-mels)."""
    config = study["config"]
    if getattr(config, "threshold", None) is not None:
        rule = f"an explicit validation MSE of {config.threshold}"
    elif getattr(config, "threshold_step", None) is not None:
        rule = (f"the mean validation loss of the target's 'none' runs at step {config.threshold_step}, so "
                f"'none' needs about {config.threshold_step} steps by construction (without 'none' runs: "
                f"{config.threshold_ratio} x the loss of repeating the last frame)")
    else:
        rule = f"{config.threshold_ratio} x the loss of repeating the last frame on the target's validation clips"
    per_target = (results.groupby("target")["threshold"].first().to_dict() if "threshold" in results
                  and results["threshold"].notna().any() else {})
    value = study.get("threshold")
    if not per_target and isinstance(value, (int, float)):
        per_target = {target: value for target in _targets(config)}
    return {"rule": "a run has learnt its target when its validation loss (next-frame MSE, validation "
                    f"speakers; checked every {config.eval_every} steps, crossing interpolated) first falls below "
                    f"the threshold: {rule}", "per_target": per_target,
            "value": next(iter(per_target.values()), None) if len(set(per_target.values())) == 1 else None}


def data_summary(study_dir: Path, study: dict) -> dict:
    """Languages, speakers and clips per split, and whether the speech is real or synthetic."""
    data_dir = str(study.get("data_dir", ""))
    synthetic = resolve(data_dir).resolve() == DEMO_CORPUS_DIR.resolve() or "demo-corpus" in data_dir
    out = {"dir": data_dir, "speech": "synthetic (espeak-ng)" if synthetic else "real (Common Voice)"
           if resolve(data_dir).resolve() == CV_SAMPLE_DIR.resolve() or "cv" in data_dir.lower() else "real"}
    manifest_path = study_dir / "manifest.tsv"
    if manifest_path.exists():
        manifest = pd.read_csv(manifest_path, sep="\t", usecols=["language", "speaker", "split"])
        table = manifest.groupby(["language", "split"]).agg(clips=("speaker", "size"),
                                                            speakers=("speaker", "nunique"))
        out["splits"] = [{"language": lang, "split": split, **row} for (lang, split), row
                         in table.to_dict("index").items()]
        out["languages"] = sorted(manifest["language"].unique())
        out["n_clips"], out["n_speakers"] = len(manifest), int(manifest["speaker"].nunique())
    return out


def planned_runs(config) -> pd.DataFrame:
    """Every (pretrain, target, seed, pretrain_epochs) the study's config asks for; "none" once per
    target and seed, with 0 epochs (a dose of 0 is "none")."""
    if hasattr(config, "cells"):
        cells = config.cells()
    else:
        doses = [d for d in _doses(config) if d > 0]
        cells = [(c, 0) if c == stats.NONE else (c, d) for c in dict.fromkeys(config.pretrain)
                 for d in ([0] if c == stats.NONE else doses)]
    rows = [(c, t, s, e) for t in _targets(config) for c, e in cells for s in range(config.seeds)]
    return pd.DataFrame(rows, columns=["pretrain", "target", "seed", "pretrain_epochs"])


def progress_summary(results: pd.DataFrame, config) -> dict:
    """How many planned runs are finished, and which are missing (named pretrain/target/seed/epochs)."""
    planned = planned_runs(config)
    keys = ["pretrain", "target", "seed", "pretrain_epochs"]
    done = set(map(tuple, results[keys].astype({"seed": int, "pretrain_epochs": int}).to_numpy().tolist()))
    missing = [row for row in map(tuple, planned[keys].to_numpy().tolist()) if row not in done]
    names = [f"{p} -> {t}, seed {s}, {e} pretraining epochs" for p, t, s, e in missing]
    return {"planned": len(planned), "finished": len(planned) - len(missing), "complete": not missing,
            "missing": names[:MAX_MISSING_LISTED], "n_missing": len(missing)}


def cell_records(results: pd.DataFrame, cells: pd.DataFrame) -> list[dict]:
    """One record per pretrained cell, in the JSON contract's shape."""
    records = []
    for _, cell in cells.iterrows():
        runs_of = results[(results["pretrain"] == cell["pretrain"]) & (results["target"] == cell["target"])
                          & (results["pretrain_epochs"] == cell["pretrain_epochs"])]
        records.append({
            "pretrain": cell["pretrain"], "target": cell["target"], "pretrain_epochs": int(cell["pretrain_epochs"]),
            "n_runs": len(runs_of), "n_converged": int(runs_of["steps_to_threshold"].notna().sum()),
            "steps_to_threshold": _bootstrap_mean(runs_of["steps_to_threshold"]),
            "auc": _bootstrap_mean(runs_of["auc"]),
            "speedup": {"mean": cell.get("speedup"), "ci95": cell.get("speedup_ci95"),
                        "measure": "steps_to_threshold", "n_pairs": cell.get("n_pairs"),
                        "n_censored": cell.get("n_censored")},
            "auc_speedup": {"mean": cell.get("auc_speedup"), "ci95": cell.get("auc_speedup_ci95"),
                            "p": cell.get("auc_p"), "p_holm": cell.get("auc_p_holm"),
                            "p_t": cell.get("auc_p_t"), "p_t_holm": cell.get("auc_p_t_holm"),
                            "effect_size": cell.get("auc_effect_size")},
            "p": cell.get("p"), "p_holm": cell.get("p_holm"), "p_min": cell.get("p_min"),
            "p_t": cell.get("p_t"), "p_t_holm": cell.get("p_t_holm"),
            "effect_size": cell.get("effect_size"),
        })
    baseline = results[results["pretrain"] == stats.NONE]
    for target, runs_of in baseline.groupby("target"):
        records.append({"pretrain": stats.NONE, "target": target, "pretrain_epochs": 0, "n_runs": len(runs_of),
                        "n_converged": int(runs_of["steps_to_threshold"].notna().sum()),
                        "steps_to_threshold": _bootstrap_mean(runs_of["steps_to_threshold"]),
                        "auc": _bootstrap_mean(runs_of["auc"]), "speedup": {"mean": 1.0, "ci95": [1.0, 1.0]},
                        "p": None, "p_holm": None, "effect_size": None})
    return records


def dose_records(results: pd.DataFrame, censor_at: float | None = None) -> list[dict]:
    """Speed-up against pretraining epochs per condition, pooled over targets (geometric mean, CI over seeds)."""
    paired = stats.paired_log_speedups(results, censor_at=censor_at) if len(results) else pd.DataFrame()
    records = []
    for (condition, dose), group in (paired.groupby(["pretrain", "pretrain_epochs"]) if len(paired) else []):
        per_seed = group.groupby("seed")["log_speedup"].mean().to_numpy()  # seeds are the unit of the CI
        records.append({"pretrain": condition, "pretrain_epochs": int(dose), "n_targets": int(group["target"].nunique()),
                        "n_seeds": len(per_seed), "speedup": float(np.exp(per_seed.mean())),
                        "ci95": [float(np.exp(v)) for v in stats.bootstrap_ci(per_seed)]})
    return records


def similarity_summary(results: pd.DataFrame, censor_at: float | None = None,
                       study_dir: Path | None = None) -> dict:
    """The primary similarity test and every method's, each with rho, p, ci95 (or why there is none) and
    p_holm (Holm over the methods that have a p); each also on the AUC speed-up (``auc``, Holm likewise), so
    the threshold alone does not decide. The Whisper methods are measured on ``study_dir``'s clips."""
    methods = []
    for method in similarity.METHODS:
        test: dict = {"rho": None, "p": None, "ci95": None, "reason": "no finished runs"}
        try:
            table = similarity.language_similarity(method, study_dir)
            if len(results):
                test = stats.similarity_test(results, table, censor_at=censor_at)
                if results["auc"].notna().any():
                    auc = stats.similarity_test(results, table, measure="auc")
                    test["auc"] = {k: auc.get(k) for k in ("rho", "p", "ci95", "n_pairs")}
            test["source"] = similarity.similarity_source(method, study_dir)
        except DeepLanguageError as error:
            test = {"rho": None, "p": None, "ci95": None, "reason": str(error)}
        methods.append({"method": method, **test})
    holm_across_methods(methods)
    primary = next(m for m in methods if m["method"] == similarity.PRIMARY_METHOD)
    return {"similarity": {**primary, "primary": True}, "similarity_methods": methods}


def holm_across_methods(methods: list[dict]) -> list[dict]:
    """Add ``p_holm`` to each method's test (and ``auc.p_holm``): Holm over the methods with a p, in place."""
    for adjusted, test in zip(stats.holm([_p_or_nan(m.get("p")) for m in methods]), methods):
        test["p_holm"] = adjusted
    auc = [m["auc"] for m in methods if m.get("auc")]
    for adjusted, test in zip(stats.holm([_p_or_nan(a.get("p")) for a in auc]), auc):
        test["p_holm"] = adjusted
    return methods


def _p_or_nan(p) -> float:
    return math.nan if p is None else float(p)


def probe_summary(study_dir: Path, results: pd.DataFrame, config) -> dict:
    """``probes``: the probes across seeds (stats.summarize_probes: accuracy with its CI, chance, the
    shuffled null's mean, majority, Fisher-combined p, n_seeds); ``probe_tests``: each LSTM condition
    against "none" on accuracy, per task, latent kind and target (stats.compare_conditions). Both empty
    without probes; a broken probes.tsv is a DeepLanguageError (results.load_probes)."""
    table = load_probes(study_dir)
    if table.empty or no_probes_reason(study_dir):
        return {"probes": [], "probe_tests": []}
    table = table if "target" in table else table.assign(target="")
    # The tests compare the LSTM's conditions only: the autoencoder and the identifier are references.
    lstm = {cell_label(p, e, config) for p, e in zip(results["pretrain"], results["pretrain_epochs"])}
    tests = stats.compare_conditions(table[table["condition"].isin(lstm)] if lstm else table, "accuracy",
                                     stats.NONE, by=["task", "kind", "target"])
    return {"probes": stats.summarize_probes(table).to_dict("records"), "probe_tests": tests.to_dict("records")}


# StudyConfig field -> `python -m core study` flag, for the settings that differ from the defaults.
STUDY_FLAGS = {"budget_steps": "--budget", "threshold": "--threshold", "threshold_step": "--threshold-step",
               "threshold_ratio": "--threshold-ratio", "cutoff_hz": "--cutoff", "hidden_size": "--hidden-size",
               "latent_languages": "--latent-languages", "group_size": "--group-size", "group_backend": "--backend"}
SWITCHES = {"autoencoder": "--no-autoencoder", "keep_models": "--no-keep-models"}  # given when False
MATRIX_FIELDS = ("targets", "target", "pretrain", "seeds", "pretrain_epochs")


def commands(study_dir: Path, study: dict) -> list[str]:
    """The commands that regenerate the study, its report and the stored similarities."""
    return [study.get("command") or study_command(study_dir, study),
            f"python -m core report --study {portable(study_dir)} --out report.html",
            f"python -m core report --study {portable(study_dir)} --json",
            similarity.CONFUSION_COMMAND, similarity.PHONEMES_COMMAND,
            similarity.WHISPER_COMMAND.format(study=portable(study_dir))]


def study_command(study_dir: Path, study: dict) -> str:
    """`python -m core study` with the study's matrix and every setting that differs from the defaults;
    a differing setting the CLI has no flag for is named after it (set it in StudyConfig)."""
    config = study["config"]
    words = [f"python -m core study --data {study.get('data_dir', 'DATA')} --targets {','.join(_targets(config))}",
             f"--pretrain {','.join(dict.fromkeys(config.pretrain))} --seeds {config.seeds}",
             f"--pretrain-epochs {','.join(map(str, _doses(config)))}"]
    unflagged = []
    try:
        defaults = type(config)()
    except TypeError:
        defaults = None
    for field in getattr(config, "__dataclass_fields__", {}):
        value, default = getattr(config, field), getattr(defaults, field, None)
        if field in MATRIX_FIELDS or value == default:
            continue
        if field in STUDY_FLAGS:
            shown = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else value
            words.append(f"{STUDY_FLAGS[field]} {shown}")
        elif field in SWITCHES and value is False:
            words.append(SWITCHES[field])
        else:
            unflagged.append(f"{field}={value!r}")
    words.append(f"--out {portable(study_dir)}")
    note = f"   # and in StudyConfig (no flag): {', '.join(unflagged)}" if unflagged else ""
    return " ".join(words) + note


def _targets(config) -> list[str]:
    targets = getattr(config, "targets", None) or (config.target,)
    return list(targets)


def _doses(config) -> list[int]:
    doses = config.pretrain_epochs
    return sorted(int(d) for d in doses) if isinstance(doses, (list, tuple)) else [int(doses)]


def _bootstrap_mean(values: pd.Series) -> dict:
    x = values.dropna().to_numpy(dtype=float)
    return {"mean": float(x.mean()) if len(x) else None, "ci95": stats.bootstrap_ci(x) if len(x) else None}


def _cache_key(study_dir: Path) -> list:
    """What the summary depends on: result files (count, newest time), study.json, probes, similarities."""
    watched = [study_dir / "study.json", study_dir / "probes.tsv", study_dir / "latent_manifest.tsv",
               similarity.CONFUSION_FILE,
               similarity.PHONEMES_FILE, similarity.FAMILIES_FILE, study_dir / similarity.WHISPER_FILE,
               study_dir / "identify" / "latents.npz", study_dir / "identify" / "about.json"]
    # A finished run leaves result.json (one-target studies) or curve.json (matrix studies).
    results = [p / name for p in study_runs(study_dir) for name in ("result.json", "curve.json")
               if (p / name).exists()]
    newest = max((p.stat().st_mtime for p in results), default=0.0)
    return [CACHE_VERSION, len(results), newest] + [p.stat().st_mtime if p.exists() else 0.0 for p in watched]


def _clean(value):
    """JSON-ready: numpy scalars to Python, NaN and infinities to None, tuples to lists."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.bool_):
        return bool(value)
    return value
