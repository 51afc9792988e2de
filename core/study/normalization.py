"""How a study normalises its log-mels: one per-band mean and SD for the corpus, or per utterance.

A filter's attenuation is a constant offset per band in log-mel. Per-utterance normalisation
(``StudyConfig.normalization="utterance"``, the identifier's, which wants channel robustness)
subtracts each clip's band means and so erases that offset: what is left of a low-pass is only
where the 80 dB clamp makes a band constant. Corpus normalisation (``"corpus"``, the default)
estimates each band's mean and SD once, from the full-band training clips of the study's corpus,
stores them in the study (``<study>/corpus_norm.npz``) and applies them identically to every
condition, variant and phase, so an attenuated band stays attenuated (as Cruz Blandon et al.
2025 normalise, SPEECHCOG/ple_exploration_study feature_extraction/global_normalisation.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from core.audio.features import normalize_utterance
from core.data.cache import FeatureCache
from core.errors import DeepLanguageError
from core.files import atomic_path

NORM_FILE = "corpus_norm.npz"
NORMALIZATIONS = ("corpus", "utterance")
MIN_SD = 1e-3  # log10 units: a band constant over the whole corpus is centred, not blown up


def corpus_stats(clips: Iterable[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-band mean and SD over every frame of ``clips`` (each ``(n_mels, n_frames)``): two ``(n_mels,)``."""
    n, total, squares = 0, 0.0, 0.0
    for clip in clips:
        clip = clip.astype(np.float64)
        n += clip.shape[1]
        total = total + clip.sum(axis=1)
        squares = squares + (clip ** 2).sum(axis=1)
    if n == 0:
        raise DeepLanguageError("no training clips to estimate the corpus normalisation from.")
    mean = total / n
    sd = np.sqrt(np.maximum(squares / n - mean ** 2, 0.0))
    return mean.astype(np.float32), np.maximum(sd, MIN_SD).astype(np.float32)


def write_corpus_stats(study_dir: Path, manifest: pd.DataFrame, cache: FeatureCache) -> None:
    """Estimate the statistics from every full-band training clip of ``manifest``, once: a study
    that grows keeps the statistics its finished runs were trained with."""
    path = Path(study_dir) / NORM_FILE
    if path.exists():
        return
    keys = manifest.loc[manifest["split"] == "train", "key"]
    mean, sd = corpus_stats(cache.load(key, normalize=False) for key in keys)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, mean=mean, sd=sd)


def study_normalizer(study: dict) -> Callable[[np.ndarray], np.ndarray]:
    """The study's normalisation of a raw log-mel ``(n_mels, n_frames)``, same shape, float32."""
    if study["config"].normalization == "utterance":
        return normalize_utterance
    path = Path(study["dir"]) / NORM_FILE
    try:
        with np.load(path) as stored:
            mean, sd = stored["mean"][:, None], stored["sd"][:, None]
    except (OSError, KeyError, ValueError) as error:
        raise DeepLanguageError(f"the study's corpus normalisation {path} is missing or damaged ({error}); "
                                f"run the study's command again to re-estimate it.") from None
    return lambda features: ((features - mean) / sd).astype(np.float32)
