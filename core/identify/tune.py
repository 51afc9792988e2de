"""Hyperparameter search for the language identifier with Optuna, resumable from SQLite.

A search is an Optuna study stored in ``checkpoints/tune/<name>.db`` (:mod:`core.identify.searches` lists and
reads them); rerunning the same command adds trials to it. Each trial trains :func:`core.train.fit` on the speaker-disjoint
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

from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable

from core import runs
from core.errors import DeepLanguageError
from core.identify.models import model_config
from core.identify.clips import TrainConfig, load_clips
from core.identify.searches import TUNE_DIR, open_study
from core.identify.train import fit

OBJECTIVE = "val_balanced_accuracy"
WIDTH_KEYS = ("channels", "hidden", "embedding_dim", "attention_dim")  # model widths scaled by `width`
MAX_FREQ_MASK_BANDS, MAX_TIME_MASK_FRAMES = 16, 60  # specaugment = 1


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
