"""The ``noise`` condition: noise shaped like speech's long-term average spectrum, low-passed.

Is it speech at all that helps, or any sound with speech's spectrum? The long-term average
spectrum (LTAS) is measured once per study on training clips of its languages
(:func:`speech_ltas`, stored as ``<study>/ltas.npy``). Noise features are then drawn straight
in the STFT domain: the power of Gaussian noise with spectrum ``S(f)`` in one STFT bin is
``S(f)`` times an exponential variable of mean 1, independently per bin and frame (for a
Hann-windowed frame the bins are only approximately independent). That power goes through
the same low-pass and log-mel as speech (:func:`core.audio.features.log_mel_from_power`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from core.audio.decode import load_audio
from core.audio.features import FeatureConfig, log_mel_from_power, power_spectrogram
from core.errors import DeepLanguageError
from core.study.layout import feature_config
from core.study.normalization import study_normalizer

LTAS_FILE = "ltas.npy"
N_LTAS_CLIPS = 8  # training clips per language in the average
NOISE_SEED = 12345  # the noise is the same for every seed and run: only the model's seed varies


def speech_ltas(paths: list[str | Path], features: FeatureConfig) -> np.ndarray:
    """Mean power spectrum ``(n_fft // 2 + 1,)`` of the clips, each clip scaled to unit total power
    first (loud recordings must not dominate), then brought to the clips' typical (geometric mean)
    power, so that under corpus normalisation the noise is as loud as the speech it stands for."""
    total, log_levels = np.zeros(features.n_fft // 2 + 1), []
    for path in paths:
        power = power_spectrogram(load_audio(path, features.sample_rate), features).mean(axis=1)
        level = max(power.sum(), 1e-12)
        total += power / level
        log_levels.append(np.log(level))
    return (total / max(len(paths), 1) * np.exp(np.mean(log_levels or [0.0]))).astype(np.float32)


def read_ltas(path: Path) -> np.ndarray:
    """The stored spectrum ``(n_bins,)``; a damaged file is an error naming it (the study command rebuilds it)."""
    try:
        ltas = np.load(path)
        if ltas.ndim == 1 and len(ltas) > 1 and np.isfinite(ltas).all() and (ltas >= 0).all():
            return ltas
        reason = f"an array of shape {ltas.shape}, not a spectrum"
    except (OSError, ValueError, EOFError) as error:
        reason = str(error)
    raise DeepLanguageError(f"the speech spectrum {path} is damaged ({reason}); run the study command again: "
                            f"it rebuilds the file.")


def ltas_intact(path: Path) -> bool:
    try:
        read_ltas(path)
        return True
    except DeepLanguageError:
        return False


def ltas_paths(manifest: pd.DataFrame, data_root: Path, languages: list[str]) -> list[Path]:
    """The first N_LTAS_CLIPS training clips of each language (manifest paths are relative to the data)."""
    rows = manifest[(manifest["split"] == "train") & manifest["language"].isin(languages)]
    rows = rows.groupby("language", sort=True).head(N_LTAS_CLIPS)
    return [Path(p) if Path(p).is_absolute() else data_root / p for p in rows["path"]]


def noise_clips(study: dict) -> list[np.ndarray]:
    """As many noise clips as the study's average language has training clips, with lengths drawn
    from theirs: each ``(n_frames, n_mels)``, low-pass, normalised as the study normalises speech."""
    features = feature_config(study["config"], study["features"], "lowpass")
    ltas = read_ltas(study["dir"] / LTAS_FILE)
    manifest = pd.read_csv(study["dir"] / "manifest.tsv", sep="\t", dtype={"key": str})
    train = manifest[manifest["split"] == "train"]
    n_clips = int(round(len(train) / max(train["language"].nunique(), 1)))
    rng = np.random.default_rng(NOISE_SEED)
    normalize = study_normalizer(study)
    lengths = rng.choice(train["n_frames"].to_numpy(), size=n_clips)
    clips = []
    for n_frames in lengths:
        power = ltas[:, None] * rng.exponential(size=(len(ltas), int(n_frames))).astype(np.float32)
        # Through float16 and back, as the feature cache stores speech: the same rounding for both.
        log_mel = log_mel_from_power(power, features, lowpass=True).astype(np.float16).astype(np.float32)
        clips.append(normalize(log_mel).T.copy())
    return clips
