"""The hyperparameter searches stored in ``checkpoints/tune/``: list them, open one, its trials as a table and a figure.

What the Runs page shows. Apart from :mod:`core.identify.tune`, which runs searches and so imports the trainer
(torch): reading a search needs only Optuna, imported when a search is opened.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from core.errors import DeepLanguageError
from core.paths import CHECKPOINTS_DIR

TUNE_DIR = CHECKPOINTS_DIR / "tune"


def storage_url(name: str, tune_dir: str | Path = TUNE_DIR) -> str:
    return f"sqlite:///{Path(tune_dir).resolve() / name}.db"


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
