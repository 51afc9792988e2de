"""core.identify.prosody: rhythm features find a known syllable rate, ignore level and channel, any length."""

import numpy as np

from core.audio.features import FeatureConfig, log_mel
from core.identify.prosody import MODULATION_EDGES_HZ, N_FEATURES, N_MODULATION, prosody_vector

SR = 16000


def _syllables(rate_hz: float, seconds: float = 4.0, seed: int = 0) -> np.ndarray:
    """A harmonic voice whose loudness rises and falls ``rate_hz`` times a second."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    phase = 2 * np.pi * np.cumsum(130 + 15 * np.sin(2 * np.pi * 0.7 * t)) / SR
    voice = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = np.clip(np.sin(2 * np.pi * rate_hz * t), 0, None) ** 2
    return (0.3 * voice * envelope + 1e-3 * rng.standard_normal(len(t))).astype(np.float32)


def _vector(audio: np.ndarray) -> np.ndarray:
    return prosody_vector(log_mel(audio, FeatureConfig()), FeatureConfig().frames_per_second)


def test_nucleus_rate_and_modulation_peak_follow_the_syllable_rate():
    for rate in (3.5, 5.5):  # away from band edges
        v = _vector(_syllables(rate))
        assert v.shape == (N_FEATURES,) and np.isfinite(v).all()
        assert abs(v[2 * N_MODULATION] - rate) < 0.6  # nuclei per second
        band = int(np.argmax(v[:N_MODULATION]))  # the envelope's modulation peak
        assert MODULATION_EDGES_HZ[band] <= rate < MODULATION_EDGES_HZ[band + 1]


def test_level_and_a_fixed_channel_change_nothing():
    mel = log_mel(_syllables(4.0), FeatureConfig())
    tilt = np.linspace(-1, 1, len(mel))[:, None]  # a microphone's fixed colouring, in log10 units
    assert np.allclose(prosody_vector(mel), prosody_vector(mel + 0.7 + tilt), atol=1e-9)


def test_short_silent_and_long_clips_give_finite_vectors_of_one_length():
    for mel in (np.full((64, 20), -5.0), np.random.default_rng(0).normal(-4, 1, (64, 3000))):
        v = prosody_vector(mel)
        assert v.shape == (N_FEATURES,) and np.isfinite(v).all()
