"""Planning a study: check the request, prepare features, fix the splits, create every run's folder."""


from __future__ import annotations

import os
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from core import runs
from core.audio.features import FeatureConfig
from core.data.cache import FeatureCache, prepare, prepared_dataset
from core.data.datasets import assign_splits, balance, filter_min_duration, select_languages
from core.files import save_array
from core.errors import DeepLanguageError
from core.paths import default_cache_dir
from core.study.layout import (AE, GROWABLE, NOISE, StudyConfig, default_study_dir, feature_config,
                               parse_condition, parse_run_name, portable, stored_config,
                               write_tsv)
from core.study.noise import LTAS_FILE, ltas_intact, ltas_paths, speech_ltas
from core.study.normalization import study_normalizer, write_corpus_stats
from core.study.trainer import fixed_crops

SPLITS = ("train", "validation", "test")
MAX_WIDENED_LANGUAGES = 6  # a one-language study's latent sample: its language and 5 more
# Held-out clips per language whose latents are probed, by default: the smallest test split grows with the data
# (1,000 clips a language at 64x the sample, where it is 22), and every run's latents and probes with it (the
# probes' SVMs about linearly). 50 a language keeps them at about twice what they cost on the sample.
MAX_LATENT_PER_LANGUAGE = 50


def plan_study(
    config: StudyConfig,
    data_dir: str | Path,
    study_dir: str | Path | None = None,
    *,
    cache_dir: str | Path | None = None,
    workers: int | None = None,
    on_progress: Callable[..., None] | None = None,
    manifest: pd.DataFrame | None = None,
) -> Path:
    """Prepare the dataset, fix the splits and create every run's folder; returns the study folder.

    ``manifest``: the dataset as the caller already read it (read_dataset), so it is not read again.

    An existing study folder is reused when its settings match (targets, conditions, seeds and
    doses may grow); different settings are an error naming each difference, never a silent mix.
    """
    study_dir = Path(study_dir) if study_dir else default_study_dir(data_dir, config)
    for condition in config.pretrain:
        parse_condition(condition)  # a misspelt condition fails before any work
    stored = runs.read_json(study_dir / "study.json")
    if stored:
        config = merged_config(stored_config(stored), config, study_dir)
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir(data_dir)
    features = feature_config(config)
    manifest = prepared_dataset(data_dir, cache_dir, features, workers=workers, on_progress=on_progress,
                                manifest=manifest)
    check_languages(config, sorted(set(manifest["language"])), data_dir)
    manifest = filter_min_duration(manifest.assign(duration=manifest["n_frames"] / features.frames_per_second),
                                   max(config.min_seconds, (config.crop_frames + 1) / features.frames_per_second))
    manifest = assign_splits(manifest, config.split_fractions, seed=config.split_seed)
    check_speakers(manifest, config)
    utero = [language for language, variant in map(parse_condition, config.conditions()) if variant == "utero"]
    if utero:  # the in-utero filter has its own cache; only its languages are prepared
        prepare(manifest[manifest["language"].isin(utero)], cache_dir, feature_config(config, features, "utero"),
                workers=workers, on_progress=on_progress)
    held_out = manifest[manifest["split"] == "test"]
    held_out = select_languages(held_out, latent_languages(config, held_out))
    smallest = int(held_out["language"].value_counts().min())
    latent = balance(held_out, config.n_per_language or min(smallest, MAX_LATENT_PER_LANGUAGE), seed=config.split_seed)
    study_dir.mkdir(parents=True, exist_ok=True)
    if config.normalization == "corpus":
        write_corpus_stats(study_dir, manifest, FeatureCache(cache_dir, features))
    normalize = study_normalizer({"config": config, "dir": study_dir})
    baselines = {t: copy_baseline(manifest, cache_dir, features, config, t, normalize) for t in config.targets}
    root = Path(data_dir).resolve()
    if NOISE in config.pretrain and not ltas_intact(study_dir / LTAS_FILE):  # missing or damaged: (re)built
        save_array(study_dir / LTAS_FILE, speech_ltas(ltas_paths(manifest, root, config.languages()), features))
    columns = ["key", "path", "language", "speaker", "split", "n_frames"]
    # Clip paths are kept relative to the dataset: it may move.
    for table in (manifest, latent):
        table["path"] = [os.path.relpath(p, root) if Path(p).is_relative_to(root) else p for p in table["path"]]
    write_tsv(study_dir / "manifest.tsv", manifest[columns])
    write_tsv(study_dir / "latent_manifest.tsv", latent[columns])
    runs.write_json(study_dir / "study.json", {
        "study": asdict(config), "features": asdict(features), "data_dir": portable(data_dir),
        "cache_dir": portable(cache_dir), "copy_baselines": baselines,
        "created": (stored or {}).get("created", time.time()),
    })
    for name in config.run_names():
        if not (study_dir / "runs" / name / "config.json").exists():
            spec = parse_run_name(name)
            runs.create_run("study-ae" if spec["kind"] == AE else "study-lstm", spec, study_dir / "runs", name=name)
    return study_dir


def latent_languages(config: StudyConfig, held_out: pd.DataFrame) -> list[str]:
    """The languages of the latent sample: ``config.latent_languages`` when given, else the study's own
    (every probe fit grows with the languages probed; a study's question is about its targets and
    pretraining languages). A study of one language gets the dataset's other languages too, up to
    ``MAX_WIDENED_LANGUAGES`` in all: a probe needs two classes to tell apart."""
    if config.latent_languages:
        return list(config.latent_languages)
    own = config.languages()
    if len(own) >= 2:
        return own
    speakers = held_out.groupby("language")["speaker"].nunique()
    others = [x for x in sorted(speakers.index[speakers >= 2]) if x not in own]  # probes need 2 speakers
    return (own + others)[:MAX_WIDENED_LANGUAGES]


def merged_config(old: StudyConfig, new: StudyConfig, study_dir: Path) -> StudyConfig:
    """The union of an existing study's matrix and a new request with the same fixed settings."""
    if old.key() != new.key():
        a, b = asdict(old), asdict(new)
        differences = ", ".join(f"{k} is {a[k]} there but {b[k]} now" for k in a if a[k] != b[k] and k not in GROWABLE)
        raise DeepLanguageError(
            f"study {study_dir} was made with other settings ({differences}); refusing to mix runs. "
            f"Give a new --out folder, or repeat the original settings to resume or extend it.")
    return replace(new, targets=tuple(dict.fromkeys(old.targets + new.targets)),
                   pretrain=tuple(dict.fromkeys(old.pretrain + new.pretrain)), seeds=max(old.seeds, new.seeds),
                   pretrain_epochs=tuple(sorted(set(old.pretrain_epochs + new.pretrain_epochs))))


def check_languages(config: StudyConfig, known: list[str], data_dir: str | Path) -> None:
    unknown = [x for x in [*config.languages(), *config.latent_languages] if x not in known]
    if unknown:
        raise DeepLanguageError(f"language {', '.join(map(repr, unknown))} is not in {data_dir}; "
                                f"it has {', '.join(known)}.")


def check_speakers(manifest: pd.DataFrame, config: StudyConfig) -> None:
    """Every target needs training and validation speakers; every pretraining language training ones."""
    needs = {t: ("train", "validation") for t in config.targets}
    for language in config.languages():
        needs.setdefault(language, ("train",))
    for language, splits in needs.items():
        rows = manifest[manifest["language"] == language]
        if any(not (rows["split"] == s).any() for s in splits):
            speakers = rows.groupby("split")["speaker"].nunique().reindex(SPLITS, fill_value=0)
            raise DeepLanguageError(
                f"language {language} has too few speakers to split: {rows['speaker'].nunique()} speakers with "
                f"{len(rows)} clips over {config.min_seconds} s (train/validation/test speakers: "
                f"{'/'.join(str(int(n)) for n in speakers)}); it needs {', '.join(splits)} speakers. "
                f"Leave it out, or add recordings by more speakers.")


def copy_baseline(manifest: pd.DataFrame, cache_dir: Path, features: FeatureConfig, config: StudyConfig,
                  target: str, normalize: Callable[[np.ndarray], np.ndarray]) -> float:
    """MSE of predicting each frame by the one before, on the target's validation crops."""
    cache = FeatureCache(cache_dir, features)
    rows = manifest[(manifest["language"] == target) & (manifest["split"] == "validation")]
    crops = fixed_crops([normalize(cache.load(key, normalize=False)).T for key in rows["key"]],
                        config.crop_frames + 1)
    return float(np.mean((crops[:, 1:] - crops[:, :-1]) ** 2))
