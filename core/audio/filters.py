"""Filters of what a listener hears: the study's 500 Hz low-pass, and the in-utero attenuation."""


from functools import lru_cache

import numpy as np

from core.errors import DeepLanguageError
from core.audio.decode import SAMPLE_RATE

LOWPASS_HZ = 500.0  # the pretraining study's cutoff: prosody and voicing, few phonemes
LOWPASS_ORDER = 8  # Butterworth order; applied forward and backward, so 96 dB/octave


def _check_cutoff(cutoff_hz: float, sample_rate: int) -> None:
    if not 0 < cutoff_hz < sample_rate / 2:
        raise DeepLanguageError(
            f"low-pass cutoff {cutoff_hz} Hz must lie between 0 and {sample_rate / 2:.0f} Hz (half the sample rate)."
        )


@lru_cache(maxsize=16)
def _lowpass_sos(cutoff_hz: float, sample_rate: int) -> np.ndarray:
    from scipy import signal  # deferred: 0.6 s to import, and only filtering waveforms needs it

    _check_cutoff(cutoff_hz, sample_rate)
    return signal.butter(LOWPASS_ORDER, cutoff_hz, btype="low", fs=sample_rate, output="sos")


def lowpass(audio: np.ndarray, cutoff_hz: float = LOWPASS_HZ, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Zero-phase Butterworth low-pass of a clip; same shape, float32."""
    from scipy import signal

    return signal.sosfiltfilt(_lowpass_sos(float(cutoff_hz), sample_rate), audio).astype(np.float32)


def lowpass_gain(freqs_hz: np.ndarray, cutoff_hz: float = LOWPASS_HZ, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Power gain of :func:`lowpass` at each frequency (Hz), in closed form.

    A digital Butterworth made by the bilinear transform has
    |H(f)|^2 = 1 / (1 + (tan(pi f / fs) / tan(pi fc / fs))^(2 order)); filtering forward and
    backward squares it again.
    """
    _check_cutoff(cutoff_hz, sample_rate)
    ratio = np.tan(np.pi * np.minimum(freqs_hz, sample_rate / 2 - 1e-6) / sample_rate)
    ratio = ratio / np.tan(np.pi * cutoff_hz / sample_rate)
    with np.errstate(over="ignore"):
        return (1.0 / (1.0 + ratio ** (2 * LOWPASS_ORDER)) ** 2).astype(np.float32)




# The in-utero filter as published by Cruz Blandon, Gonzalez-Gomez, Lavechin & Rasanen (2025),
# "Computational models of prenatal language exposure", Cognition 256:106044; code
# SPEECHCOG/ple_exploration_study, filtering/filter_files.m. A second-order low-pass after
# Gerhardt & Abrams (1996, J Perinatol 16:S8-S11: the fetal sound environment), designed to
# attenuate airborne speech by about 10 dB at 100 Hz, 35 dB at 500 Hz and 44 dB at 2 kHz, run on
# 16 kHz audio, with optional maternal masking noise: white Gaussian noise added at 10 dB SNR
# before filtering. These are the published coefficients, unchanged. What they do at 16 kHz
# (the project's rate and the paper's): 5.6 dB at 100 Hz, 32 dB at 500 Hz, 57 dB at 2 kHz. A
# second-order filter falls 12 dB per octave, so it cannot meet both 35 dB at 500 Hz and only
# 44 dB at 2 kHz: above 1 kHz it attenuates more than the target. The paper found no consistent
# benefit of this prenatal exposure on later learning.
UTERO_B = (0.2373e-3, 0.4746e-3, 0.2373e-3)  # numerator, filter_files.m
UTERO_A = (1.0, -1.9560, 0.9569)  # denominator, filter_files.m
UTERO_SAMPLE_RATE = 16000  # Hz: the rate the coefficients were designed for
UTERO_MASKING_SNR_DB = 10.0  # maternal masking noise, dB below the speech


def utero_gain(freqs_hz: np.ndarray) -> np.ndarray:
    """Power gain |H(f)|^2 of the published in-utero filter at each frequency (Hz), float32.

    The biquad is defined at :data:`UTERO_SAMPLE_RATE`; above its Nyquist frequency (only
    reached at higher rates) the gain stays at its value there, below -200 dB.
    """
    f = np.minimum(np.asarray(freqs_hz, dtype=np.float64), UTERO_SAMPLE_RATE / 2)
    z = np.exp(-2j * np.pi * f / UTERO_SAMPLE_RATE)  # z^-1 on the unit circle
    response = np.polyval(UTERO_B[::-1], z) / np.polyval(UTERO_A[::-1], z)
    return (np.abs(response) ** 2).astype(np.float32)


def utero(audio: np.ndarray, masking: bool = False, seed: int = 0) -> np.ndarray:
    """A 16 kHz clip as the published model has a fetus hear it: same shape, float32.

    ``masking`` adds white Gaussian noise :data:`UTERO_MASKING_SNR_DB` below the clip's power
    first (maternal sounds), seeded by ``seed``. Causal filtering, as MATLAB's ``filter``; the
    paper then scales each file to peak 1, which a log-mel clamped below its maximum ignores.
    """
    from scipy import signal

    audio = np.asarray(audio, dtype=np.float64)
    if masking:
        noise = np.random.default_rng(seed).standard_normal(audio.shape)
        scale = np.sqrt(np.mean(audio ** 2) / np.mean(noise ** 2)) * 10 ** (-UTERO_MASKING_SNR_DB / 20)
        audio = audio + noise * scale
    return signal.lfilter(UTERO_B, UTERO_A, audio).astype(np.float32)


PRENATAL_FILTERS = ("butterworth", "utero")  # what FeatureConfig.lowpass_filter may name


def prenatal_gain(freqs_hz: np.ndarray, kind: str = "butterworth", cutoff_hz: float = LOWPASS_HZ,
                  sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Power gain of the named prenatal filter: the 500 Hz Butterworth (``cutoff_hz``) or ``utero``."""
    if kind == "butterworth":
        return lowpass_gain(freqs_hz, cutoff_hz, sample_rate)
    if kind == "utero":
        return utero_gain(freqs_hz)
    raise DeepLanguageError(f"unknown prenatal filter {kind!r}; choose one of {', '.join(PRENATAL_FILTERS)}.")
