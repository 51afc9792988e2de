"""Planning a study: the manifest, splits and the runs to train."""


from __future__ import annotations

import os
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from core import runs
from core.errors import DeepLanguageError
from core.audio.features import FeatureConfig
from core.paths import portable
from core.study.layout import AE, NONE, StudyConfig, default_study_dir, feature_config, write_tsv
from core.study.trainer import fixed_crops
from core.data.cache import prepared_dataset
from core.data.datasets import assign_splits, balance, filter_min_duration, select_languages
from core.paths import default_cache_dir
from core.data.cache import FeatureCache

def plan_study(
    config: StudyConfig,
    data_dir: str | Path,
    study_dir: str | Path | None = None,
    *,
    cache_dir: str | Path | None = None,
    workers: int | None = None,
    on_progress: Callable[..., None] | None = None,
) -> Path:
    """Prepare the dataset, fix the splits and create every run's folder; returns the study folder.

    An existing study folder is reused when its settings match (more seeds or conditions are
    added to it); different settings are an error rather than a silent mix.
    """

    study_dir = Path(study_dir) if study_dir else default_study_dir(data_dir, config)
    features = feature_config(config)
    stored = runs.read_json(study_dir / "study.json")
    if stored:
        old = StudyConfig.from_dict(stored["study"])
        if old.key() != config.key():
            raise DeepLanguageError(
                f"study {study_dir} was made with other settings ({_diff(old, config)}); "
                f"give a new --out folder, or repeat the original settings to resume it.")
        config = replace(config, pretrain=tuple(dict.fromkeys(old.pretrain + config.pretrain)),
                         seeds=max(old.seeds, config.seeds))
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir(data_dir)
    manifest = prepared_dataset(data_dir, cache_dir, features, workers=workers, on_progress=on_progress)
    languages = set(manifest["language"])
    for language in [config.target, *config.pretrain, *config.latent_languages]:
        if language != NONE and language not in languages:
            raise DeepLanguageError(f"language {language!r} is not in {data_dir}; it has "
                                    f"{', '.join(sorted(languages))}.")
    manifest = filter_min_duration(manifest.assign(duration=manifest["n_frames"] / features.frames_per_second),
                                   max(config.min_seconds, (config.crop_frames + 1) / features.frames_per_second))
    manifest = assign_splits(manifest, config.split_fractions, seed=config.split_seed)
    for split in ("train", "validation"):
        if not ((manifest["language"] == config.target) & (manifest["split"] == split)).any():
            raise DeepLanguageError(f"the target language {config.target} has no {split} speakers; it needs "
                                    f"at least three speakers with clips over {config.min_seconds} s.")
    held_out = select_languages(manifest[manifest["split"] == "test"], list(config.latent_languages))
    latent = balance(held_out, config.n_per_language, seed=config.split_seed)

    threshold = config.threshold
    if threshold is None:
        threshold = config.threshold_ratio * copy_baseline(manifest, cache_dir, features, config)
    study_dir.mkdir(parents=True, exist_ok=True)
    columns = ["key", "path", "language", "speaker", "split", "n_frames"]
    root = Path(data_dir).resolve()  # clip paths are kept relative to the dataset: it may move
    manifest["path"] = [os.path.relpath(p, root) if Path(p).is_relative_to(root) else p for p in manifest["path"]]
    latent = latent.assign(path=[os.path.relpath(p, root) if Path(p).is_relative_to(root) else p
                                 for p in latent["path"]])
    write_tsv(study_dir / "manifest.tsv", manifest[columns])
    write_tsv(study_dir / "latent_manifest.tsv", latent[columns])
    runs.write_json(study_dir / "study.json", {
        "study": asdict(config), "features": asdict(features), "data_dir": portable(data_dir),
        "cache_dir": portable(cache_dir), "threshold": float(threshold), "created": (stored or {}).get("created", time.time()),
    })
    for name in config.run_names():
        run_dir = study_dir / "runs" / name
        if not (run_dir / "config.json").exists():
            condition, seed = name.rsplit("-s", 1)
            runs.create_run("study-ae" if condition == AE else "study-lstm",
                            {"condition": condition, "seed": int(seed)}, study_dir / "runs", name=name)
    return study_dir


def copy_baseline(manifest: pd.DataFrame, cache_dir: Path, features: FeatureConfig, config: StudyConfig) -> float:
    """MSE of predicting each frame by the one before, on the target's validation crops."""

    cache = FeatureCache(cache_dir, features)
    rows = manifest[(manifest["language"] == config.target) & (manifest["split"] == "validation")]
    crops = fixed_crops([cache.load(key).T for key in rows["key"]], config.crop_frames + 1)
    return float(np.mean((crops[:, 1:] - crops[:, :-1]) ** 2))


def _diff(old: StudyConfig, new: StudyConfig) -> str:
    a, b = asdict(old), asdict(new)
    return ", ".join(f"{k}: {a[k]} there, {b[k]} now" for k in a if a[k] != b[k] and k not in ("pretrain", "seeds"))

