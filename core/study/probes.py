"""Probing a study's latents into ``<study>/probes.tsv``.

Every finished run's latents (and the autoencoder's and the identifier's) are probed with
:func:`core.study.linear_probe.probe` for two tasks: the run's target against the rest, and all
languages. Their statistics across seeds and conditions (core.study.stats) are in the study's one
summary, core.study.report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from core.study.linear_probe import N_PERMUTATIONS, balanced_accuracy, probe  # noqa: F401  (re-exported)
from core.study.latent_files import load_latents
from core.study.layout import (AE, TASK_ALL, TASK_TARGET, cell_label, load_study, no_probes_reason,  # noqa: F401
                               parse_run_name, study_runs, write_tsv)
from core.study.results import load_probes



def probe_latents(arrays: dict[str, np.ndarray], manifest: pd.DataFrame, target: str, **options) -> list[dict]:
    """Both tasks (target vs rest, all languages) for every latent kind of one run.

    Languages with clips from fewer than two speakers can't be scored speaker-disjointly: they
    are left out (named in ``dropped``) rather than scored on a speaker the probe trained on.
    """
    speakers = manifest.groupby("language")["speaker"].nunique()
    dropped = sorted(speakers.index[speakers < 2])
    keep = ~manifest["language"].isin(dropped).to_numpy()
    languages = manifest["language"].to_numpy().astype(str)[keep]
    groups = manifest["speaker"].to_numpy()[keep]
    tasks = {TASK_TARGET: np.where(languages == target, target, "other"), TASK_ALL: languages}
    rows = []
    for kind, X in arrays.items():
        for task, y in tasks.items():
            rows.append({"kind": kind, "task": task, **probe(X[keep], y, groups, **options),
                         "dropped": ",".join(dropped)})
    return rows


def probe_study(study_dir: str | Path, n_permutations: int = N_PERMUTATIONS, n_jobs: int | None = None,
                on_progress: Callable[..., None] | None = None, only: list[str] | None = None) -> pd.DataFrame:
    """Probe the latents of every finished run of a study, ``n_jobs`` probes at once (default: all
    cores); writes ``probes.tsv`` and returns it, one row per run, latent kind and task. A study
    :func:`no_probes_reason` names gets an empty table and no file. ``only``: probe these latent
    folders (run names, or "identify") again and keep the stored rows of the others."""
    import os

    from joblib import Parallel, delayed

    study_dir = Path(study_dir)
    if no_probes_reason(study_dir):
        return pd.DataFrame()
    config = load_study(study_dir)["config"]
    folders = [p for p in study_runs(study_dir) if (p / "latents.npz").exists()]
    if (study_dir / "identify" / "latents.npz").exists():
        folders.append(study_dir / "identify")
    kept = pd.DataFrame()
    if only is not None:
        folders = [f for f in folders if f.name in only]
        stored = load_probes(study_dir)
        kept = stored[~stored["run"].isin(only)] if len(stored) else stored
    jobs = []
    for folder in folders:
        arrays, manifest = load_latents(folder)
        for head in probe_heads(folder, config):
            for kind, X in arrays.items():
                jobs.append((head, {kind: X}, manifest, int(head["seed"])))
    rows = []
    parallel = Parallel(n_jobs=n_jobs or os.cpu_count() or 1, return_as="generator_unordered")
    for i, (head, result) in enumerate(parallel(
            delayed(_probe_job)(head, arrays, manifest, head["target"], n_permutations, seed)
            for head, arrays, manifest, seed in jobs)):
        rows += [{**head, **row} for row in result]
        if on_progress:
            on_progress(i + 1, len(jobs))
    table = pd.concat([kept, pd.DataFrame(rows)], ignore_index=True)
    if not table.empty:
        table = table.sort_values(["run", "kind", "task", "target"]).reset_index(drop=True)
        write_tsv(study_dir / "probes.tsv", table)
    return table


def probe_heads(folder: Path, config) -> list[dict]:
    """Who a latents folder belongs to: run, pretrain, target, seed, pretrain_epochs, condition (a
    label of the cell: the condition, with "@e<N>" for a dose other than the longest). A next-frame
    run is probed for its own target; the autoencoder and the identifier for every target."""
    if folder.name == "identify":
        return [{"run": "identify", "pretrain": "identify", "target": t, "seed": 0, "pretrain_epochs": 0,
                 "condition": "identify"} for t in config.targets]
    spec = parse_run_name(folder.name)
    if spec["kind"] == AE:
        return [{"run": folder.name, "pretrain": AE, "target": t, "seed": spec["seed"], "pretrain_epochs": 0,
                 "condition": AE} for t in config.targets]
    return [{"run": folder.name, **{k: spec[k] for k in ("pretrain", "target", "seed", "pretrain_epochs")},
             "condition": cell_label(spec["pretrain"], spec["pretrain_epochs"], config)}]


def _probe_job(head, arrays, manifest, target, n_permutations, seed):
    return head, probe_latents(arrays, manifest, target, n_permutations=n_permutations, seed=seed)
