"""The run registry: what every run under ``checkpoints/runs/`` is doing, read from disk without guessing.

A run's state comes from three facts on disk (see :mod:`core.runs`):

* ``status.json``, written by the trainer (running, finished, failed, stopped);
* the run's ``lock``, held by the live trainer: the kernel drops it when the process dies,
  even by ``kill -9``, so "running" with a free lock means the trainer died;
* ``job.json`` and ``stop-requested``, written by :mod:`core.jobs.launch` when it launches or stops
  a run: a launched process that has not taken the lock yet is "starting", and a run that
  died after a stop was asked for is "stopped", not "failed".

States: created, starting, running, finished, failed, stopped.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from core import progress as progress_module, runs

JOB_FILE = "job.json"  # the launched process: pid, command, time (core.jobs.launch)
STOP_FILE = "stop-requested"  # exists once a stop was asked for; removed on resume
RECORD_COLUMNS = ["run", "kind", "model", "state", "created", "epochs_done", "epochs", "best_epoch", "best_metric",
                  "best_value", "final_val_accuracy", "final_val_loss", "final_train_loss", "config", "error", "path"]


def process_alive(pid: int | None, started: float | None = None) -> bool:
    """True while process ``pid`` lives (a zombie counts as dead).

    ``started``: the process's start time as :func:`process_start_time` gave it, so that a
    recycled pid is not mistaken for the launched process.
    """
    if not pid:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        try:
            os.kill(pid, 0)  # no /proc (not Linux): existence is all we can tell
        except (ProcessLookupError, PermissionError):
            return False
        return True
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] in ("Z", "X"):
        return False
    return started is None or float(fields[19]) == started


def process_start_time(pid: int) -> float | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), or None where /proc is missing."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return float(stat[stat.rindex(")") + 2:].split()[19])


def status_stamp(status: dict) -> float:
    """When ``status.json`` was last written (its "updated", else its "created"): what tells one status from the next."""
    return status.get("updated", status.get("created", 0))


def run_state(run_dir: str | Path) -> dict:
    """``status.json`` corrected by the lock, the launched job and a requested stop.

    Returns the status dict with ``state`` one of created, starting, running, finished, failed,
    stopped, and ``error`` explaining a failure.
    """
    run_dir = Path(run_dir)
    status = runs.run_status(run_dir)  # running + free lock -> failed
    job = runs.read_json(run_dir / JOB_FILE, {})
    stop_asked = (run_dir / STOP_FILE).exists()
    state = status.get("state", "created")
    died = state == "failed" and runs.read_json(run_dir / "status.json", {}).get("state") == "running"
    # The job was launched over the status still on disk: it has not written one of its own yet.
    launched_after = (job.get("over") == status_stamp(status) if "over" in job
                      else job.get("started", 0) >= status_stamp(status))  # a job.json of an older version
    if state != "running" and job and launched_after and runs.is_locked(run_dir):
        return {**status, "state": "starting", "error": ""}  # locked, its "running" not written yet
    if state != "running" and job and launched_after and not runs.is_locked(run_dir):
        # A job launched after the last status change: still starting up, or gone before training.
        if process_alive(job.get("pid"), job.get("proc_start")):
            return {**status, "state": "starting", "error": ""}
        if state in ("created", "stopped", "failed") and not stop_asked:
            return {**status, "state": "failed",
                    "error": f"the training process exited before it started training; see {run_dir / 'log.txt'}"}
    if (died or state == "created" and job) and stop_asked:
        return {**status, "state": "stopped", "error": "stopped on request"}
    return status


def run_record(run_dir: str | Path) -> dict:
    """One row of the registry: identity, state, progress, best and final metrics, config summary."""
    run_dir = Path(run_dir)
    config = runs.read_json(run_dir / "config.json", {})
    status = run_state(run_dir)
    metrics = runs.read_metrics(run_dir)
    train = config.get("train") or {}
    kind = config.get("kind", "")
    best_metric = "val_balanced_accuracy" if any("val_balanced_accuracy" in r for r in metrics) else "val_loss"
    best = None
    if metrics:
        if best_metric == "val_loss":
            best = min(metrics, key=lambda r: r.get("val_loss", float("inf")))
        else:
            best = max(metrics, key=lambda r: (r.get(best_metric, -1.0), -r.get("val_loss", 0.0)))
    last = metrics[-1] if metrics else {}
    return {
        "run": run_dir.name, "kind": kind,
        "model": train.get("model") or config.get("model") or (kind if "study" in config else ""),
        "state": status.get("state", "created"),
        "created": pd.Timestamp(status["created"], unit="s") if status.get("created") else pd.NaT,
        "epochs_done": len(metrics),
        "epochs": train.get("epochs") or config.get("epochs") or (config.get("study") or {}).get("max_epochs"),
        "best_epoch": best.get("epoch") if best else None, "best_metric": best_metric if best else "",
        "best_value": best.get(best_metric) if best else None,
        "final_val_accuracy": last.get("val_accuracy"), "final_val_loss": last.get("val_loss"),
        "final_train_loss": last.get("train_loss", last.get("loss")),
        "config": config_summary(config), "error": status.get("error", ""), "path": str(run_dir),
    }


def config_summary(config: dict) -> str:
    """A short readable line of the settings that tell runs apart."""
    train = config.get("train") or {}
    if train:
        data = Path(train.get("data_dir", "")).name
        parts = [f"data={data}", f"lr={train.get('lr')}", f"batch={train.get('batch_size')}",
                 f"wd={train.get('weight_decay')}", f"crop={train.get('crop_seconds')}s", f"seed={train.get('seed')}"]
        if train.get("languages"):
            parts.insert(1, "langs=" + ",".join(train["languages"]))
        if train.get("model_config"):
            parts.append(f"model_config={train['model_config']}")
        return " ".join(parts)
    skip = {"kind", "study", "features"}
    flat = {**{k: v for k, v in config.items() if k not in skip}, **(config.get("study") or {})}
    return " ".join(f"{k}={Path(v).name if k == 'data_dir' else v}" for k, v in flat.items()
                    if not isinstance(v, dict))


def list_run_records(runs_dir: str | Path = runs.RUNS_DIR) -> pd.DataFrame:
    """Every run under ``runs_dir``, newest first, one row each (columns: :data:`RECORD_COLUMNS`)."""
    rows = [run_record(run_dir) for run_dir in runs.list_runs(runs_dir)]
    return pd.DataFrame(rows, columns=RECORD_COLUMNS)


def run_progress(run_dir: str | Path) -> dict:
    """Live progress of a run: ``done``, ``total`` (steps), ``fraction``, ``epoch``, ``epochs``,
    ``loss`` and ``eta_seconds`` (None until it can be estimated).

    A run that is not training (stopped, failed) shows where it would resume: the last finished
    epoch, never a step of the epoch it discarded.
    """
    run_dir = Path(run_dir)
    progress = runs.read_json(run_dir / "progress.json", {})
    done, total = int(progress.get("done", 0)), int(progress.get("total", 0))
    metrics = runs.read_metrics(run_dir)
    if runs.run_status(run_dir).get("state") in ("stopped", "failed"):
        done = int(metrics[-1].get("step", 0)) if metrics else 0
        progress = {**progress, "epoch": len(metrics)}
        progress.pop("loss", None)
    eta = progress_module.phase_eta(progress) if progress.get("phase") else None
    if total and done < total and not progress.get("phase"):
        # Seconds per step as measured: over the last finished epoch (validation included), else over
        # the steps of the running epoch so far. Nothing measured yet (loading data): no estimate.
        timed = [r for r in metrics if r.get("seconds") and r.get("step")]
        if timed:
            steps = timed[-1]["step"] - (timed[-2]["step"] if len(timed) > 1 else 0)
            per_step = timed[-1]["seconds"] / max(1, steps)
        elif progress.get("epoch_steps") and progress.get("epoch_seconds"):
            per_step = progress["epoch_seconds"] / progress["epoch_steps"]
        else:
            per_step = None
        eta = None if per_step is None else per_step * (total - done)
    return {**progress, "done": done, "total": total, "fraction": done / total if total else 0.0,
            "eta_seconds": eta}


def progress_line(record: dict, progress: dict) -> str:
    """The text of a run's progress bar: state, phase (or epoch and step) and, once steps are measured, the ETA."""
    if progress.get("phase") and record["state"] == "running":
        eta = progress["eta_seconds"]
        return (f"running · {progress['phase']}: {progress['done']}/{progress['total']}"
                + (f" · ETA {eta:.0f} s" if eta is not None else ""))
    line = (f"{record['state']} · epoch {progress.get('epoch', record['epochs_done'])}/{record['epochs']} · "
            f"step {progress['done']}/{progress['total']}")
    if record["state"] != "running":
        return line
    eta = progress["eta_seconds"]
    return line + (f" · ETA {eta:.0f} s" if eta is not None else " · ETA once the first steps are timed")


def run_chance(run_dir: str | Path) -> float | None:
    """The accuracy of guessing among a run's languages (1 / their number), once its data is read
    (``data.json``); None before, and for runs that classify nothing (the study's next-frame models)."""
    labels = runs.read_json(Path(run_dir) / "data.json", {}).get("labels")
    return 1 / len(labels) if labels else None


def run_curves(run_dirs: list[str | Path]) -> pd.DataFrame:
    """Per-epoch metrics of several runs in long form: run, epoch, metric, value (for comparison charts)."""
    rows = []
    for run_dir in map(Path, run_dirs):
        for row in runs.read_metrics(run_dir):
            for metric, value in row.items():
                if metric not in ("epoch", "step", "seconds", "time", "lr") and isinstance(value, (int, float)):
                    rows.append({"run": run_dir.name, "epoch": row.get("epoch"), "metric": metric,
                                 "value": float(value)})
    return pd.DataFrame(rows, columns=["run", "epoch", "metric", "value"])
