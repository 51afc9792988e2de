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




# In-utero attenuation of airborne speech, as a gain in dB against frequency. The figures it
# rests on (hydrophone in the amniotic fluid, sound played outside the mother):
#   * Gerhardt, Abrams & Oliver (1990), Am J Obstet Gynecol 162:282-287 (pregnant ewes): below
#     250 Hz the sound pressure is 2-5 dB *higher* inside than outside; above 250 Hz attenuation
#     grows by 6 dB per octave; at 4 kHz it averages 20 dB.
#   * Richards, Frentzen, Gerhardt, McCann & Abrams (1992), Obstet Gynecol 80:186-190 (eight
#     women in labour): +3.7 dB at 125 Hz, attenuation growing with frequency to 10.0 dB at 4 kHz;
#     external male and female voices attenuated by 2.1 and 3.2 dB overall.
#   * Gerhardt et al. (1998), Music Perception 15:307 (ewes): flat below 300 Hz, then 5 dB per
#     octave between 315 and 2500 Hz.
# The model below is the sheep slope: 0 dB up to 250 Hz, then -6 dB per octave (-24 dB at 4 kHz,
# against 20 dB measured), floored at -30 dB (reached at 8 kHz). It is an APPROXIMATION: it ignores
# the 2-5 dB low-frequency gain (per-utterance normalisation would remove a flat gain anyway),
# and humans measured in labour show about half the attenuation at 4 kHz (10 dB, not 20-24 dB).
# Cruz Blandón, Gonzalez-Gomez, Lavechin & Räsänen (2025, Cognition 256:106044) model
# prenatal input the same way, as an attenuation filter plus an amount of exposure; their exact
# filter coefficients are not reproduced here. The amount of exposure is the study's dose
# (``--pretrain-epochs``).
UTERO_KNEE_HZ = 250.0  # below it, airborne sound reaches the fetus unattenuated (Gerhardt 1990)
UTERO_DB_PER_OCTAVE = 6.0  # attenuation slope above the knee (Gerhardt 1990)
UTERO_MAX_DB = 30.0  # floor of the model: 6 dB/octave from 250 Hz gives 24 dB at 4 kHz, 30 dB at 8 kHz


def utero_gain(freqs_hz: np.ndarray) -> np.ndarray:
    """Power gain of airborne speech reaching the fetus at each frequency (Hz), float32 in (0, 1].

    0 dB up to :data:`UTERO_KNEE_HZ`, then ``-UTERO_DB_PER_OCTAVE`` per octave, never below
    ``-UTERO_MAX_DB`` (figures and sources in the comment above this function).
    """
    octaves = np.log2(np.maximum(np.asarray(freqs_hz, dtype=np.float64), UTERO_KNEE_HZ) / UTERO_KNEE_HZ)
    attenuation_db = np.minimum(UTERO_DB_PER_OCTAVE * octaves, UTERO_MAX_DB)
    return (10.0 ** (-attenuation_db / 10.0)).astype(np.float32)


PRENATAL_FILTERS = ("butterworth", "utero")  # what FeatureConfig.lowpass_filter may name


def prenatal_gain(freqs_hz: np.ndarray, kind: str = "butterworth", cutoff_hz: float = LOWPASS_HZ,
                  sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Power gain of the named prenatal filter: the 500 Hz Butterworth (``cutoff_hz``) or ``utero``."""
    if kind == "butterworth":
        return lowpass_gain(freqs_hz, cutoff_hz, sample_rate)
    if kind == "utero":
        return utero_gain(freqs_hz)
    raise DeepLanguageError(f"unknown prenatal filter {kind!r}; choose one of {', '.join(PRENATAL_FILTERS)}.")
