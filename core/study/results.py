"""Reading a study's results: status, per-run results, curves, progress."""


from __future__ import annotations

from pathlib import Path

import pandas as pd

from core import runs
from core.study.layout import study_runs

def study_status(study_dir: str | Path) -> dict:
    """The study process's state and its progress (runs finished of total, steps so far)."""
    study_dir = Path(study_dir)
    status = runs.run_status(study_dir)
    progress = runs.read_json(study_dir / "progress.json", {})
    return {**status, **{k: progress.get(k) for k in ("done", "total", "steps", "failed")}}


def study_results(study_dir: str | Path) -> pd.DataFrame:
    """One row per finished LSTM run: condition, seed, converged, epochs/steps/seconds to threshold."""
    rows = []
    for run_dir in study_runs(study_dir):
        result = runs.read_json(run_dir / "result.json")
        if result and result.get("kind") == "study-lstm":
            rows.append({k: result.get(k) for k in RESULT_COLUMNS})
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


RESULT_COLUMNS = ["condition", "seed", "converged", "epochs_to_threshold", "steps_to_threshold",
                  "seconds_to_threshold", "pretrain_seconds", "start_val_loss", "final_val_loss", "epochs"]


def study_curves(study_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The learning curves of every LSTM run, in long form, against target-phase steps.

    Returns ``(validation, training)``: validation has run, condition, seed, step, val_loss (step 0
    is the start of the target phase, after any pretraining; then every ``eval_every`` steps and at
    each epoch's end); training has run, condition, seed, phase, step, loss per optimisation step
    (pretraining steps are numbered below zero, so every condition's target phase starts at 1).
    """
    validation, training = [], []
    for run_dir in study_runs(study_dir):
        spec = runs.read_json(run_dir / "config.json", {})
        if spec.get("kind") != "study-lstm":
            continue
        head = {"run": run_dir.name, "condition": spec["condition"], "seed": spec["seed"]}
        rows = runs.read_metrics(run_dir)
        n_pretrain = sum(len(r.get("step_losses", [])) for r in rows if r["phase"] == "pretrain")
        step = -n_pretrain
        for row in rows:
            for loss in row.get("step_losses", []):
                step += 1
                training.append({**head, "phase": row["phase"], "step": step if step > 0 else step - 1,
                                 "loss": loss})
            if row["phase"] != "target":
                continue
            if row["target_epoch"] == 1 and row.get("start_val_loss") is not None:
                validation.append({**head, "step": 0, "val_loss": row["start_val_loss"]})
            validation += [{**head, "step": s, "val_loss": v} for s, v in row.get("val_steps", [])]
            validation.append({**head, "step": row["steps"] - n_pretrain, "val_loss": row["val_loss"]})
    validation = pd.DataFrame(validation, columns=["run", "condition", "seed", "step", "val_loss"])
    return (validation.drop_duplicates(["run", "step"]).sort_values(["run", "step"]).reset_index(drop=True),
            pd.DataFrame(training, columns=["run", "condition", "seed", "phase", "step", "loss"]))


def run_progress(study_dir: str | Path) -> pd.DataFrame:
    """Each run's live state for a progress table: name, state, done, total, phase, val_loss."""
    rows = []
    for run_dir in study_runs(study_dir):
        progress = runs.read_json(run_dir / "progress.json", {})
        rows.append({"run": run_dir.name, "state": runs.run_status(run_dir)["state"],
                     "done": progress.get("done", 0), "total": progress.get("total", 0),
                     "phase": progress.get("phase", ""), "val_loss": progress.get("val_loss")})
    return pd.DataFrame(rows, columns=["run", "state", "done", "total", "phase", "val_loss"])
