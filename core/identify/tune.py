"""Hyperparameter search for the language identifier with Optuna, resumable from SQLite.

A search is an Optuna study stored in ``checkpoints/tune/<name>.db``; rerunning the same
command adds trials to it. Each trial trains :func:`core.train.fit` on the speaker-disjoint
train split in ``checkpoints/tune/<name>/trial-NNN/`` and reports the validation balanced
accuracy after every epoch; a MedianPruner stops trials that fall behind the median of earlier
ones at the same epoch. The objective is the trial's best validation balanced accuracy.

Searched (around the base :class:`core.train.TrainConfig`, which fixes the rest)::

    lr            1e-4 .. 3e-2, log    peak learning rate
    weight_decay  1e-4 .. 0.2, log
    width         0.5, 1, 2            multiplies the model's channels and embedding widths
    dropout       0 .. 0.5
    specaugment   0 .. 1               mask widths: 16 x s mel bands, 60 x s frames (0.5 = the defaults)
    crop_seconds  1 .. 4 s, step 0.5   random training crop

:func:`best_config` turns the best trial back into a TrainConfig to train as a normal run.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable

import pandas as pd

from core import runs
from core.errors import DeepLanguageError
from core.paths import CHECKPOINTS_DIR
from core.identify.models import model_config
from core.identify.clips import TrainConfig, load_clips
from core.identify.train import fit

TUNE_DIR = CHECKPOINTS_DIR / "tune"
OBJECTIVE = "val_balanced_accuracy"
WIDTH_KEYS = ("channels", "hidden", "embedding_dim", "attention_dim")  # model widths scaled by `width`
MAX_FREQ_MASK_BANDS, MAX_TIME_MASK_FRAMES = 16, 60  # specaugment = 1


def storage_url(name: str, tune_dir: str | Path = TUNE_DIR) -> str:
    return f"sqlite:///{Path(tune_dir).resolve() / name}.db"


def suggest(trial) -> dict:
    """One point of the search space (see the module docstring)."""
    return {
        "lr": trial.suggest_float("lr", 1e-4, 3e-2, log=True),
        "weight_decay": trial.suggest_float("weight_decay", 1e-4, 0.2, log=True),
        "width": trial.suggest_categorical("width", [0.5, 1.0, 2.0]),
        "dropout": trial.suggest_float("dropout", 0.0, 0.5),
        "specaugment": trial.suggest_float("specaugment", 0.0, 1.0),
        "crop_seconds": trial.suggest_float("crop_seconds", 1.0, 4.0, step=0.5),
    }


def apply_params(base, params: dict):
    """``base`` (a TrainConfig) with a trial's parameters applied."""

    model = asdict(model_config(base.model, base.model_config))
    overrides = dict(base.model_config)
    width = params.get("width", 1.0)
    for key in WIDTH_KEYS:
        if key in model and width != 1.0:
            value = model[key]
            overrides[key] = ([max(2, round(c * width)) for c in value] if isinstance(value, (list, tuple))
                              else max(2, round(value * width)))
    if "dropout" in params and "dropout" in model:
        overrides["dropout"] = params["dropout"]
    strength = params.get("specaugment")
    masks = {} if strength is None else {"freq_mask_bands": round(MAX_FREQ_MASK_BANDS * strength),
                                         "time_mask_frames": round(MAX_TIME_MASK_FRAMES * strength)}
    direct = {k: params[k] for k in ("lr", "weight_decay", "crop_seconds") if k in params}
    return replace(base, model_config=overrides, **masks, **direct)


def open_study(name: str, tune_dir: str | Path = TUNE_DIR, create: bool = False, seed: int = 0):
    """The Optuna study ``name`` in ``tune_dir/<name>.db``; ``create`` makes it when missing."""
    import optuna

    tune_dir = Path(tune_dir)
    if not create and not (tune_dir / f"{name}.db").exists():
        raise DeepLanguageError(f"no search named {name!r} in {tune_dir}; run `python -m core tune --data DIR "
                                f"--study-name {name}` first.")
    tune_dir.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(
        study_name=name, storage=storage_url(name, tune_dir), direction="maximize", load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1))


def tune(base, n_trials: int, name: str, tune_dir: str | Path = TUNE_DIR, timeout: float | None = None,
         on_trial: Callable[[dict], None] | None = None):
    """Run ``n_trials`` more trials of search ``name`` around ``base`` (a TrainConfig); returns the study.

    ``on_trial(row)`` is called after each trial with its number, state, value and params. A
    study keeps the base config of its first call; a different one is an error, not a mix.
    """
    import optuna


    study = open_study(name, tune_dir, create=True, seed=base.seed)
    stored = study.user_attrs.get("base_config")
    if stored is None:
        study.set_user_attr("base_config", _jsonable(asdict(base)))
    elif TrainConfig.from_dict(stored) != TrainConfig.from_dict(_jsonable(asdict(base))):
        raise DeepLanguageError(f"search {name!r} was started with other settings; give a new --study-name, "
                                f"or repeat the original ones to add trials.")
    clips_by_crop: dict[float, object] = {}  # the dataset once per crop length (clips are tiled to it)

    def objective(trial) -> float:
        config = apply_params(base, suggest(trial))
        if config.crop_seconds not in clips_by_crop:
            clips_by_crop[config.crop_seconds] = load_clips(config)
        clips = clips_by_crop[config.crop_seconds]
        run_dir = runs.create_run("tune-trial", {"train": asdict(config), "trial": trial.number},
                                  Path(tune_dir) / name, name=f"trial-{trial.number:03d}")
        trial.set_user_attr("run_dir", str(run_dir))
        reported: list[int] = []

        def report(*_, **__) -> None:
            # fit appends each epoch's metrics before the next epoch's first progress call.
            for row in runs.read_metrics(run_dir)[len(reported):]:
                reported.append(row["epoch"])
                trial.report(row[OBJECTIVE], row["epoch"])
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned after epoch {row['epoch']}")

        with runs.lifecycle(run_dir, resume="", stop_on=(optuna.TrialPruned,)):
            try:
                fit(config, clips, clips.rows("train"), clips.rows("validation"), run_dir, on_progress=report)
                report()
            finally:
                (run_dir / "last.pt").unlink(missing_ok=True)  # only best.pt is worth keeping
        return max(row[OBJECTIVE] for row in runs.read_metrics(run_dir))

    def callback(study, trial) -> None:
        if on_trial:
            on_trial({"number": trial.number, "state": trial.state.name, "value": trial.value, **trial.params})

    study.optimize(objective, n_trials=n_trials, timeout=timeout, callbacks=[callback],
                   catch=(DeepLanguageError,))
    return study


def _jsonable(values: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


def best_config(study):
    """The best trial's TrainConfig: the study's base config with the best parameters applied."""

    completed = [t for t in study.trials if t.value is not None and t.state.name == "COMPLETE"]
    if not completed:
        raise DeepLanguageError(f"search {study.study_name!r} has no completed trial yet; run more trials.")
    return apply_params(TrainConfig.from_dict(study.user_attrs["base_config"]), study.best_trial.params)


def trials_table(study) -> pd.DataFrame:
    """One row per trial: number, state, value (best validation balanced accuracy), params, seconds, epochs."""
    table = study.trials_dataframe(attrs=("number", "value", "state", "params", "duration"))
    if table.empty:
        return table
    table = table.rename(columns=lambda c: c.removeprefix("params_"))
    table["seconds"] = table.pop("duration").dt.total_seconds()
    epochs = {t.number: len(t.intermediate_values) for t in study.trials}
    table["epochs"] = table["number"].map(epochs)
    return table


def history_figure(study):
    """Plotly figure: each trial's value and the best so far (Optuna's optimisation history)."""
    import optuna

    return optuna.visualization.plot_optimization_history(study, target_name="validation balanced accuracy")


def list_searches(tune_dir: str | Path = TUNE_DIR) -> list[str]:
    """Names of the searches stored in ``tune_dir``, newest first."""
    tune_dir = Path(tune_dir)
    found = sorted(tune_dir.glob("*.db"), key=lambda p: p.stat().st_mtime, reverse=True) if tune_dir.exists() else []
    return [p.stem for p in found]


def delete_search(name: str, tune_dir: str | Path = TUNE_DIR) -> None:
    """Remove a search: its database and its trials' folders."""
    tune_dir = Path(tune_dir)
    (tune_dir / f"{name}.db").unlink(missing_ok=True)
    shutil.rmtree(tune_dir / name, ignore_errors=True)
