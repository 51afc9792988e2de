"""A run's latents on disk: written, read, listed, and where their clips are now. No torch here: the study
pages read latents without loading the models that made them (core.study.latents makes them).

    latents.npz   one (n_clips, dim) float16 array per kind: h, c, h_mean (LSTM), ae (autoencoder), identify
    latents.tsv   one row per clip, in the same order: key, path, language, speaker
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import DeepLanguageError
from core.files import atomic_path
from core.paths import resolve
from core.study.layout import load_study

MANIFEST_COLUMNS = ["key", "path", "language", "speaker"]
WHISPER_LABEL = "Whisper encoder (pretrained)"  # the identify kind of a Whisper-based identifier: the reference space


def save_latents(folder: str | Path, arrays: dict[str, np.ndarray], manifest: pd.DataFrame,
                 stem: str = "latents") -> None:
    """Write ``<stem>.npz`` and ``<stem>.tsv`` atomically; every array has one row per manifest row."""
    folder = Path(folder)
    for kind, array in arrays.items():
        if len(array) != len(manifest):
            raise ValueError(f"latent {kind} has {len(array)} rows for {len(manifest)} clips")
    # float16 halves the files (a shipped study must stay small); probes and plots don't notice.
    with atomic_path(folder / f"{stem}.npz") as tmp:
        np.savez(tmp, **{kind: array.astype(np.float16) for kind, array in arrays.items()})
    with atomic_path(folder / f"{stem}.tsv") as tmp:
        manifest[MANIFEST_COLUMNS].to_csv(tmp, sep="\t", index=False)


def load_latents(folder: str | Path, stem: str = "latents") -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    """A run's latents: ``{kind: (n_clips, dim)}`` and the clips' manifest, in the same order."""
    folder = Path(folder)
    if not (folder / f"{stem}.npz").exists():
        raise DeepLanguageError(f"{folder.name} has no latents yet: its run has not finished. "
                                f"Run the study command again to finish it.")
    try:
        with np.load(folder / f"{stem}.npz") as stored:
            arrays = {kind: stored[kind].astype(np.float32) for kind in stored.files}
        manifest = pd.read_csv(folder / f"{stem}.tsv", sep="\t", dtype={"key": str})
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, pd.errors.ParserError) as error:
        raise DeepLanguageError(damaged_latents_message(folder / f"{stem}.npz", error)) from None
    if any(len(array) != len(manifest) for array in arrays.values()):
        raise DeepLanguageError(damaged_latents_message(folder / f"{stem}.npz", f"{len(manifest)} clips listed"))
    return arrays, manifest


def latent_kinds(folder: str | Path, stem: str = "latents") -> list[str]:
    """The kinds stored in a run's latents file (h, c, h_mean, ae, ...), without reading the arrays."""
    path = Path(folder) / f"{stem}.npz"
    try:
        with np.load(path) as stored:
            return list(stored.files)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise DeepLanguageError(damaged_latents_message(path, error)) from None


def damaged_latents_message(path: Path, error) -> str:
    return (f"the latents file {path} is damaged ({error}); delete it and its .tsv and run the study command "
            f"again: the run's latents are computed again from its model.")


def _study_data_dir(study_dir: str | Path) -> str:

    return load_study(study_dir)["data_dir"]


def clip_path(study_dir: str | Path, path: str) -> Path:
    """Where a clip of a study's manifest lies now (manifests store paths relative to the dataset)."""

    path = Path(path)
    return path if path.is_absolute() else resolve(_study_data_dir(study_dir)) / path


def identify_label(study_dir: str | Path) -> str:
    """Which model made a study's ``identify`` latents, in words (older studies: "the language identifier")."""
    try:
        return json.loads((Path(study_dir) / "identify" / "about.json").read_text())["label"]
    except (OSError, ValueError, KeyError):
        return "the language identifier"
