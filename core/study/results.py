"""Reading a study's results back from disk: status, per-run convergence, curves, progress, probes.

Convergence is measured three ways, so that no single threshold decides the answer:

* ``steps_to_threshold``: target-phase steps until the validation loss first reaches the
  target's threshold, interpolated linearly between the two validation passes around the
  crossing (NaN, with ``converged`` False, when it never does within the budget); the
  threshold rule is :class:`core.study.layout.StudyConfig`'s (by default the mean validation
  loss of the target's ``none`` runs at ``threshold_step``);
* ``auc``: the mean validation loss over the fixed budget ``[0, budget_steps]`` (trapezoids
  over the validation passes, divided by the budget: lower is faster learning);
* ``loss_at_<N>``: the validation loss at each fixed budget N of ``loss_budgets``
  (interpolated between passes).

Every next-frame run trains the same fixed budget, so all three come from its stored curve
(``curve.json``) and can be recomputed under another rule without training again.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from core import runs
from core.errors import DeepLanguageError
from core.study.layout import NONE, StudyConfig, load_study, lstm_runs, study_runs

KEYS = ["pretrain", "target", "seed", "pretrain_epochs"]
PHASES = ("training", "latents", "probes", "finished")
# What core.study.probes writes to probes.tsv and the summary reads; "target" and "null_mean" are
# optional (tables written before they existed).
PROBE_NUMBERS = ("accuracy", "ci_low", "ci_high", "chance", "majority", "p_value", "n")
PROBE_COLUMNS = ("run", "condition", "kind", "task") + PROBE_NUMBERS


def study_status(study_dir: str | Path) -> dict:
    """The study process's state and progress: ``state``, ``phase`` (one of PHASES), ``done`` and
    ``total`` (runs of the current phase), ``steps``, ``failed`` and ``workers`` (runs finished per
    worker, host:pid), for a live progress bar."""
    study_dir = Path(study_dir)
    status = runs.run_status(study_dir)
    progress = runs.read_json(study_dir / "progress.json", {})
    phase = progress.get("phase") or ("finished" if status.get("state") == "finished" else "training")
    return {**status, "phase": phase, **{k: progress.get(k) for k in ("done", "total", "steps", "failed", "workers")}}


def read_curve(run_dir: str | Path) -> dict | None:
    """A finished run's ``curve.json``: step, val_loss (validation passes), train_loss (every
    step), seconds_per_step; None while the run is unfinished."""
    return runs.read_json(Path(run_dir) / "curve.json")


def study_curves(study_dir: str | Path) -> pd.DataFrame:
    """The validation curves of every finished next-frame run, long format: pretrain, target, seed,
    pretrain_epochs, step (target-phase steps; 0 is the start, after any pretraining), val_loss, run."""
    rows = []
    for run_dir, spec in lstm_runs(study_dir):
        curve = read_curve(run_dir)
        if curve:
            head = {k: spec[k] for k in KEYS}
            rows += [{**head, "step": s, "val_loss": v, "run": run_dir.name}
                     for s, v in zip(curve["step"], curve["val_loss"])]
    return pd.DataFrame(rows, columns=[*KEYS, "step", "val_loss", "run"])


def thresholds(study_dir: str | Path, curves: pd.DataFrame | None = None) -> dict[str, float]:
    """The threshold of each target under the study's rule (see StudyConfig), validation MSE."""
    study = load_study(study_dir)
    config: StudyConfig = study["config"]
    curves = study_curves(study_dir) if curves is None else curves
    found = {}
    for target in config.targets:
        if config.threshold is not None:
            found[target] = float(config.threshold)
            continue
        none = curves[(curves["target"] == target) & (curves["pretrain"] == NONE)]
        if len(none):
            found[target] = float(np.mean([np.interp(config.threshold_step, part["step"], part["val_loss"])
                                           for _, part in none.groupby("seed")]))
        elif target in study.get("copy_baselines", {}):
            found[target] = config.threshold_ratio * float(study["copy_baselines"][target])
    return found


def convergence(steps: np.ndarray, losses: np.ndarray, threshold: float, budget: int,
                budgets: tuple[int, ...]) -> dict:
    """The three measures of one curve (validation passes at ``steps``, ascending, from 0)."""
    steps, losses = np.asarray(steps, dtype=float), np.asarray(losses, dtype=float)
    below = np.flatnonzero(losses <= threshold)
    crossing = np.nan
    if len(below):
        i = below[0]
        crossing = steps[0] if i == 0 else steps[i - 1] + (losses[i - 1] - threshold) / (
            losses[i - 1] - losses[i]) * (steps[i] - steps[i - 1])
    inside = steps <= budget
    grid = np.append(steps[inside], budget) if steps[inside][-1] < budget else steps[inside]
    values = np.interp(grid, steps, losses)
    auc = float(np.sum((values[1:] + values[:-1]) / 2 * np.diff(grid)) / budget)
    return {"converged": bool(len(below)), "steps_to_threshold": float(crossing), "auc": auc,
            **{f"loss_at_{n}": float(np.interp(n, steps, losses)) if n <= steps[-1] else np.nan
               for n in budgets}}


def result_columns(config: StudyConfig) -> list[str]:
    return [*KEYS, "converged", "steps_to_threshold", "auc", *(f"loss_at_{n}" for n in config.loss_budgets),
            "threshold", "seconds_to_threshold", "start_val_loss", "final_val_loss", "run"]


def study_results(study_dir: str | Path) -> pd.DataFrame:
    """One row per finished next-frame run: pretrain, target, seed, pretrain_epochs, converged,
    steps_to_threshold, auc, loss_at_<N>, threshold, seconds_to_threshold (steps times the run's
    share of its batched model's training seconds per step), start/final_val_loss, run."""
    config = load_study(study_dir)["config"]
    curves = study_curves(study_dir)
    bars = thresholds(study_dir, curves)
    rows = []
    for run_dir, spec in lstm_runs(study_dir):
        curve = read_curve(run_dir)
        if not curve or spec["target"] not in bars:
            continue
        measures = convergence(curve["step"], curve["val_loss"], bars[spec["target"]], config.budget_steps,
                               config.loss_budgets)
        rows.append({**{k: spec[k] for k in KEYS}, **measures, "threshold": bars[spec["target"]],
                     "seconds_to_threshold": measures["steps_to_threshold"] * curve["seconds_per_step"],
                     "start_val_loss": curve["val_loss"][0], "final_val_loss": curve["val_loss"][-1],
                     "run": run_dir.name})
    return pd.DataFrame(rows, columns=result_columns(config))


def study_training_curves(study_dir: str | Path) -> pd.DataFrame:
    """The training loss of every step of every finished run, long format (as study_curves)."""
    rows = []
    for run_dir, spec in lstm_runs(study_dir):
        curve = read_curve(run_dir)
        if curve:
            head = {k: spec[k] for k in KEYS}
            rows += [{**head, "step": i + 1, "loss": v, "run": run_dir.name} for i, v in enumerate(curve["train_loss"])]
    return pd.DataFrame(rows, columns=[*KEYS, "step", "loss", "run"])


def run_progress(study_dir: str | Path) -> pd.DataFrame:
    """Each run's live state for a progress table: name, state, done, total, phase, val_loss."""
    rows = []
    for run_dir in study_runs(study_dir):
        progress = runs.read_json(run_dir / "progress.json", {})
        rows.append({"run": run_dir.name, "state": runs.run_status(run_dir)["state"],
                     "done": progress.get("done", 0), "total": progress.get("total", 0),
                     "phase": progress.get("phase", ""), "val_loss": progress.get("val_loss")})
    return pd.DataFrame(rows, columns=["run", "state", "done", "total", "phase", "val_loss"])


def load_probes(study_dir: str | Path) -> pd.DataFrame:
    """``probes.tsv``, one row per run, latent kind, task and target; empty when the study has none.

    A table that can't be read, lacks a column of PROBE_COLUMNS or holds text where a number belongs
    is a DeepLanguageError naming the file and how to write it again."""
    path = Path(study_dir) / "probes.tsv"
    if not path.exists():
        return pd.DataFrame()
    redo = f"probe the study again to rewrite it: python -m core probe --study {study_dir}"
    try:
        table = pd.read_csv(path, sep="\t")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise DeepLanguageError(f"{path} is not a readable probes table ({error}); {redo}") from None
    missing = [column for column in PROBE_COLUMNS if column not in table]
    if missing:
        raise DeepLanguageError(f"{path} lacks the column{'s' * (len(missing) > 1)} {', '.join(missing)}; {redo}")
    text = [column for column in PROBE_NUMBERS if not pd.api.types.is_numeric_dtype(table[column])]
    if text:
        raise DeepLanguageError(f"{path} holds text where numbers belong (column {', '.join(text)}); {redo}")
    return table
