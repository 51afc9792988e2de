"""Filters of what a listener hears: the study's low-pass."""


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


