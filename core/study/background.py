"""Starting a study in the background, as the Convergence page's form does: a detached ``python -m core study``.

Kept apart from core.study.run (which runs a study: torch, Dask) so that a page offering the form imports
neither.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from core import runs
from core.errors import DeepLanguageError
from core.paths import REPO_ROOT
from core.study.layout import StudyConfig, default_study_dir


def launch_study(config: StudyConfig, data_dir: str | Path, study_dir: str | Path | None = None,
                 workers: int | None = None, scheduler: str | None = None) -> tuple[Path, int]:
    """Start ``python -m core study`` in the background, detached from the caller (a page can reload
    while it runs). Returns the study folder and the process id; its output goes to ``<study>/study.log``."""
    study_dir = Path(study_dir) if study_dir else default_study_dir(data_dir, config)
    study_dir.mkdir(parents=True, exist_ok=True)
    if runs.is_locked(study_dir):
        raise DeepLanguageError(f"study {study_dir.name} is already running.")
    command = [sys.executable, "-m", "core", "study", "--data", str(data_dir), "--out", str(study_dir),
               *study_arguments(config)]
    if workers:
        command += ["--workers", str(workers)]
    if scheduler:
        command += ["--scheduler", scheduler]
    with open(study_dir / "study.log", "ab") as log:
        process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    runs.reap_when_done(process)  # no zombie left behind in the server
    return study_dir, process.pid


def study_arguments(config: StudyConfig) -> list[str]:
    """The CLI options that rebuild ``config`` (see core/commands/study.py)."""
    return ["--targets", ",".join(config.targets), "--pretrain", ",".join(config.pretrain),
            "--seeds", str(config.seeds), "--pretrain-epochs", ",".join(map(str, config.pretrain_epochs)),
            *(["--threshold", str(config.threshold)] if config.threshold is not None else []),
            "--threshold-step", str(config.threshold_step), "--threshold-ratio", str(config.threshold_ratio),
            "--budget", str(config.budget_steps), "--cutoff", str(config.cutoff_hz),
            "--hidden-size", str(config.hidden_size), "--normalization", config.normalization,
            *([] if config.autoencoder else ["--no-autoencoder"]),
            *(["--latent-languages", ",".join(config.latent_languages)] if config.latent_languages else []),
            *([] if config.keep_models else ["--no-keep-models"])]
