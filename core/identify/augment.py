"""Data augmentation as in speech recipes (Kaldi's speed perturbation, MUSAN-style noise, simulated rooms and
channels), on 16 kHz mono float32 audio ``(n_samples,)``. Only ever applied to *training* speakers' clips.

Each function is pure given its ``rng``; :func:`augmented_copies` makes the fixed set of copies a training
clip contributes (``KINDS``), each named so a figure can say which were used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import scipy.signal

from core.audio.decode import SAMPLE_RATE

SPEEDS = (0.9, 1.1)  # Kaldi's 3-way speed perturbation (with the original at 1.0)
SNRS_DB = (5.0, 10.0, 20.0)  # additive noise levels, signal over noise
RT60_S = (0.2, 0.7)  # reverberation time range of the simulated rooms, seconds
PHONE_BAND_HZ = (300.0, 3400.0)  # narrowband telephone channel
KINDS = ("speed0.9", "speed1.1", "noise", "reverb", "phone")


def speed(audio: np.ndarray, factor: float) -> np.ndarray:
    """Play ``factor`` times faster: tempo and pitch both scale, as in speed perturbation."""
    import soxr

    return soxr.resample(audio, SAMPLE_RATE * factor, SAMPLE_RATE).astype(np.float32)


def add_noise(audio: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Add pink-ish noise (white noise through a 1/sqrt(f) shaping) at ``snr_db`` over the clip's power."""
    white = rng.standard_normal(len(audio))
    spectrum = np.fft.rfft(white)
    freqs = np.fft.rfftfreq(len(audio), 1 / SAMPLE_RATE)
    noise = np.fft.irfft(spectrum / np.sqrt(np.maximum(freqs, 50.0)), len(audio))
    power = np.mean(audio ** 2) + 1e-12
    noise *= np.sqrt(power / (np.mean(noise ** 2) + 1e-12) / 10 ** (snr_db / 10))
    return (audio + noise).astype(np.float32)


def reverberate(audio: np.ndarray, rt60_s: float, rng: np.random.Generator) -> np.ndarray:
    """Convolve with a synthetic room response: a direct path then exponentially decaying noise (60 dB in rt60)."""
    n = int(rt60_s * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    tail = rng.standard_normal(n) * np.exp(-6.9 * t / rt60_s) * 0.3
    tail[0] = 1.0
    wet = scipy.signal.fftconvolve(audio, tail)[: len(audio)]
    return (wet * np.sqrt((np.mean(audio ** 2) + 1e-12) / (np.mean(wet ** 2) + 1e-12))).astype(np.float32)


def telephone(audio: np.ndarray) -> np.ndarray:
    """A narrowband phone channel: 300-3400 Hz band-pass, 8 kHz, G.711 mu-law 8-bit quantisation, back to 16 kHz."""
    import soxr

    sos = scipy.signal.butter(6, PHONE_BAND_HZ, btype="bandpass", fs=SAMPLE_RATE, output="sos")
    narrow = soxr.resample(scipy.signal.sosfilt(sos, audio), SAMPLE_RATE, 8000)
    peak = np.abs(narrow).max() + 1e-9
    mu = 255.0
    x = narrow / peak
    code = np.round(np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu) * 127) / 127
    decoded = np.sign(code) * ((1 + mu) ** np.abs(code) - 1) / mu * peak
    return soxr.resample(decoded, 8000, SAMPLE_RATE).astype(np.float32)


def augment(audio: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """One augmented copy of ``audio``; ``kind`` is one of ``KINDS``."""
    if kind.startswith("speed"):
        return speed(audio, float(kind[len("speed"):]))
    if kind == "noise":
        return add_noise(audio, float(rng.choice(SNRS_DB)), rng)
    if kind == "reverb":
        return reverberate(audio, float(rng.uniform(*RT60_S)), rng)
    if kind == "phone":
        return telephone(audio)
    raise ValueError(f"unknown augmentation {kind!r}; choose from {', '.join(KINDS)}")


def augmented_copies(audio: np.ndarray, kinds: Sequence[str], seed: int) -> list[tuple[str, np.ndarray]]:
    """``[(kind, copy)]`` for each of ``kinds``, seeded per clip so a rerun makes the same copies."""
    rng = np.random.default_rng(seed)
    return [(kind, augment(audio, kind, rng)) for kind in kinds]


def clip_copies(path: str, key: str, kinds: Sequence[str], features, cache_root: Path | None = None
                ) -> list[tuple[str, np.ndarray]]:
    """``[(kind, raw log-mel (n_mels, n_frames) float32)]``: one clip's augmented copies, decoded only if not cached.

    Copies are seeded by the clip's ``key`` (:func:`core.data.cache.clip_key`), and with ``cache_root`` kept as
    float16 ``<cache_root>/<kind>/<key>.npy`` so the next training (or the learning curve) decodes nothing again.
    """
    from core.audio.decode import load_audio
    from core.audio.features import log_mel
    from core.files import save_array

    cached = {kind: cache_root / kind / f"{key}.npy" for kind in kinds} if cache_root else {}
    missing = [kind for kind in kinds if not (cache_root and cached[kind].exists())]
    copies = dict(augmented_copies(load_audio(path), missing, seed=int(key[:8], 16))) if missing else {}
    out = []
    for kind in kinds:
        if kind in copies:
            # Rounded as the cache keeps it, cached or not, so a first run and its rerun see the same numbers.
            mel = log_mel(copies[kind], features).astype(np.float16)
            if cache_root:
                save_array(cached[kind], mel)
        else:
            mel = np.load(cached[kind])
        out.append((kind, mel.astype(np.float32)))
    return out

