"""One run of the pretraining study as a training job: what ``python -m core train --start/--resume RUN_DIR`` runs
for a run of kind nextframe or autoencoder (made by :func:`core.jobs.launch.launch`).

Apart from :mod:`core.jobs.launch` because it imports the study's trainer (torch): the Train page launches such a
job without loading either; the job's own process does.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path

from core import runs
from core.study.layout import NONE, StudyConfig, ae_run_name, run_name
from core.study.plan import plan_study
from core.study.trainer import train_run


def train_study_run(run_dir: str | Path, on_progress=None) -> dict:
    """Train the study run that ``run_dir`` (kind nextframe or autoencoder) describes; resumable.

    The study's own machinery does the work in ``run_dir/study/`` (a one-condition study); this
    mirrors the inner run's metrics and progress into ``run_dir`` for the registry and the page.
    """
    run_dir = Path(run_dir)
    spec = runs.read_json(run_dir / "config.json")
    is_ae = spec["kind"] == "autoencoder"
    condition = NONE if is_ae else spec["condition"]
    config = replace(StudyConfig.from_dict(spec.get("study", {})), pretrain=(condition,),
                     seeds=spec["seed"] + 1, autoencoder=is_ae)
    inner_name = (ae_run_name(spec["seed"]) if is_ae else
                  run_name(condition, config.target, spec["seed"], 0 if condition == NONE else max(config.pretrain_epochs)))

    def mirror(*args, **kwargs) -> None:
        inner = run_dir / "study" / "runs" / inner_name
        for name in ("metrics.jsonl", "progress.json"):
            if (inner / name).exists():
                shutil.copyfile(inner / name, run_dir / f".{name}.tmp")
                os.replace(run_dir / f".{name}.tmp", run_dir / name)
        if on_progress and args:
            on_progress(*args, **kwargs)

    with runs.lifecycle(run_dir, resume=""):  # stopped: runs.STOPPED; the Train page offers Resume
        try:
            study_dir = plan_study(config, spec["data_dir"], run_dir / "study")
            result = train_run(study_dir / "runs" / inner_name, on_progress=mirror)
        finally:
            mirror()  # what the inner run reached, even when it stopped or failed
        runs.write_json(run_dir / "result.json", result)
    return result
